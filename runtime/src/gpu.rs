//! What every GPU target shares: the plan of device kernels a module's step becomes, and the
//! host-side layout of the buffers they bind.
//!
//! Pair kernels run as *gathers* on GPUs: one thread per agent visits its partners and adds only
//! its own agent's changes, so no two threads write the same element and no atomics are needed.
//! A pair of one agent type is evaluated with the lower index in slot 0, exactly as the
//! interpreter visits it; the thread takes slot 0's changes when it holds the lower index and
//! slot 1's otherwise. Each pair is therefore computed twice, once by each of its agents.

use crate::ir::{Module, Precision, Scalar};
use crate::World;
use serde::{Deserialize, Serialize};

/// A device buffer a kernel binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Buf {
    /// A column of agent state, in its compute type (f32, f64 or i32).
    Col {
        agent: usize,
        col: u32,
    },
    /// A field of more than [`WIDE`] lanes, columns `col..col + lanes` one after another (lane
    /// `l` of agent `i` at `l · count + i`): a `vec<f16, 4096>` is one buffer, not 4096 bindings.
    Field {
        agent: usize,
        col: u32,
        lanes: u32,
    },
    /// The rounding error of compensated f32 updates of a column (see `cpu::abi::compensated_stores`).
    Comp {
        agent: usize,
        col: u32,
    },
    /// Changes of a pair kernel that reads a column it also accumulates into, added afterwards.
    Delta {
        agent: usize,
        col: u32,
    },
    /// The f16 copy of a wide field ([`Buf::Field`]) that a tensor-core GEMM reads: lane `l`
    /// of agent `i` at `l · x_stride(count) + i`, zero past the count.
    Half {
        agent: usize,
        col: u32,
        lanes: u32,
    },
    /// The f16 weights of the one layer of module kernel `kernel`'s tensor plan, `[Mp][Kp]`
    /// row-major and zero-padded ([`gemm_padding`]).
    Weights {
        kernel: usize,
    },
    /// That layer's f32 biases, `[Mp]`, zeros where it has none.
    Bias {
        kernel: usize,
    },
    /// The f16 weights of every layer of module kernel `kernel`'s tensor plan for the
    /// cooperative-matrix kernel: each layer's K × N B operand row-major ([`coop_layers`]).
    LayerWeights {
        kernel: usize,
    },
    /// The f32 biases of those layers, each padded with zeros to its N ([`coop_layers`]).
    LayerBiases {
        kernel: usize,
    },
    /// `u32`s: the count of each agent type, then the bucket count of each grid.
    Sizes,
    /// The run-time parameters as f32, as i32 and as f64.
    ParamsF32,
    ParamsI32,
    ParamsF64,
    /// One `u32`: 0, or 1 + (kernel << 16 | message) of a failed check.
    Fail,
    /// One `u32`: 1 where a state value was not finite when [`GpuPlan::finite`] last ran.
    NonFinite,
    /// Per agent of the grid's type: its hashed cell.
    GridCell {
        grid: usize,
    },
    /// Per bucket: a count, then (after the scan) the next free place of the bucket.
    GridCount {
        grid: usize,
    },
    /// Buckets + 1: where each bucket's agents start in `GridSorted`.
    GridStart {
        grid: usize,
    },
    /// Agent indices, sorted by bucket.
    GridSorted {
        grid: usize,
    },
    /// f64 per-workgroup sums of a law term's scratch columns: [`PARTIALS`] rows of `outputs`.
    Partials {
        law: usize,
        term: usize,
        outputs: u32,
    },
}

/// Fields of more lanes than this live in one device buffer ([`Buf::Field`]); narrower ones
/// are a buffer per lane, which the tensor-core kernels address lane by lane.
pub const WIDE: usize = 256;

/// The buffer holding column `col` of agent type `agent`, and the lane of it that the column is
/// (0 for a column of its own).
pub fn home(m: &Module, agent: usize, col: u32) -> (Buf, u32) {
    let mut at = 0u32;
    for f in &m.agents[agent].fields {
        let n = f.lanes.len() as u32;
        if col < at + n {
            if n as usize > WIDE {
                return (Buf::Field { agent, col: at, lanes: n }, col - at);
            }
            break;
        }
        at += n;
    }
    (Buf::Col { agent, col }, 0)
}

/// The padded shape `(Mp, Kp)` of a GEMM layer of `rows` × `cols` weights: rows to the M tile
/// of the kernels (128), K to a multiple of both kernels' K tiles (64).
pub fn gemm_padding(rows: u32, cols: u32) -> (u32, u32) {
    (rows.div_ceil(128) * 128, cols.div_ceil(64) * 64)
}

/// A layer of a cooperative-matrix kernel: its input and output widths padded to 16, the row
/// stride of its K × N f16 weights (N: the kernel reads them from device memory, where rows
/// need no padding), and where its weights and its biases start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoopLayer {
    pub k: u32,
    pub n: u32,
    pub stride: u32,
    pub w_at: u32,
    pub b_at: u32,
}

/// The cooperative-matrix geometry of a plan's layers, in order.
pub fn coop_layers(layers: &[crate::ir::TensorLayer]) -> Vec<CoopLayer> {
    let (mut w_at, mut b_at) = (0, 0);
    layers
        .iter()
        .map(|l| {
            let (k, n) = (l.cols.div_ceil(16) * 16, l.rows.div_ceil(16) * 16);
            let out = CoopLayer { k, n, stride: n, w_at, b_at };
            w_at += k * out.stride;
            b_at += n;
            out
        })
        .collect()
}

/// Agents a lane of a [`Buf::Half`] copy holds are the count rounded up to this: every lane
/// starts 256-byte aligned, as the GEMM's `cp.async` copies need.
pub const X_STRIDE: usize = 128;

/// Agents a lane of a [`Buf::Half`] copy holds for `n` agents.
pub fn x_stride(n: usize) -> usize {
    n.div_ceil(X_STRIDE) * X_STRIDE
}

/// A launch over tiles of agents rather than one thread per agent: `ceil(count / agents)` ×
/// `y` blocks of `block` threads with `shared` bytes of dynamic workgroup memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tiles {
    pub agents: u32,
    pub y: u32,
    pub block: u32,
    pub shared: u32,
}

/// A variant of a kernel for Hopper (`sm_90a`), in a PTX module of its own, which the CUDA
/// executor loads in place of the kernel on such a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hopper {
    pub ptx: String,
    pub tiles: Tiles,
}

/// Workgroups of a law term's sum kernel: its threads stride over the agents, and each
/// workgroup leaves one row of sums. Only these rows cross the bus.
pub const PARTIALS: u32 = 128;

/// Partners a pair kernel visits per loop trip over a whole tile: workgroup sizes are multiples.
pub const TILE_UNROLL: u32 = 4;

/// How many threads a device kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Launch {
    /// One per agent of a type (rounded up to whole workgroups).
    Agents { agent: usize },
    /// One workgroup.
    Single,
    /// A fixed number of workgroups.
    Groups(u32),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceKernel {
    pub name: String,
    /// The IR kernel it comes from, whose messages its failed checks name.
    pub source: Option<usize>,
    /// Binding `n` of the kernel is `bindings[n]`.
    pub bindings: Vec<Buf>,
    pub launch: Launch,
    /// Bytes of workgroup memory per thread (tiles of partner columns, scan sums).
    pub shared_bytes: u32,
    /// Agents each thread holds (`Launch::Agents`): a workgroup covers `rows` × its size (or,
    /// for a cooperative-matrix kernel, each subgroup holds `rows` agents).
    #[serde(default = "one")]
    pub rows: u32,
    /// A cooperative-matrix kernel: a workgroup of whole subgroups, each holding `rows` agents,
    /// instead of the workgroup size the executor picks for all others.
    #[serde(default)]
    pub coop: Option<CoopKernel>,
    /// Launched over tiles (see [`Tiles`]) instead of by `launch`'s agents.
    #[serde(default)]
    pub tiles: Option<Tiles>,
    /// A kernel launched just before this one each time (the f16 copy a GEMM reads).
    #[serde(default)]
    pub prelude: Option<usize>,
    /// No kernel writes what the prelude reads: it runs once after each upload of the state
    /// instead of before every launch (the copy of a field only the host writes).
    #[serde(default)]
    pub prelude_on_upload: bool,
    #[serde(default)]
    pub hopper: Option<Hopper>,
}

/// A variant of a cooperative-matrix kernel, and what it asks of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoopKernel {
    /// Whole subgroups a workgroup has, whatever their size on the device.
    pub subgroups: u32,
    /// The side of its square f16 products with f32 accumulators (16: 16×16×16).
    pub shape: u32,
    /// Agents a subgroup takes at a time (whole row tiles of `shape`).
    pub rows: u32,
    /// It converts accumulators into operands (`VK_NV_cooperative_matrix2`).
    pub conversions: bool,
    /// Bytes of workgroup memory a workgroup declares.
    pub shared: u32,
    /// It copies the weights into workgroup memory (else it reads them from device memory).
    pub staged_weights: bool,
}

fn one() -> u32 {
    1
}

/// A uniform grid hashed into buckets, rebuilt on the device before each neighbour pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridSpec {
    pub agent: usize,
    /// Position columns (one per dimension, at most three).
    pub pos: Vec<u32>,
    /// Edge of a cell: the largest interaction radius.
    pub cell: f64,
}

/// One command of a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum GpuOp {
    /// Fill a buffer with zero bytes (0.0 and 0 in every type).
    Zero(Buf),
    Launch(usize),
    /// Runs hosted model `model` on the host (see `ir::Sched::Model`): the buffers (and lanes)
    /// of its input columns are read back, its outputs written to theirs.
    Host {
        agent: usize,
        model: usize,
        inputs: Vec<(Buf, u32)>,
        outputs: Vec<(Buf, u32)>,
    },
}

/// A list of ops in runs the device does alone, split at hosted models' runs.
pub enum Segment<'a> {
    Device(&'a [GpuOp]),
    Host(&'a GpuOp),
}

/// `ops` in [`Segment`]s, in order.
pub fn segments(ops: &[GpuOp]) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, op) in ops.iter().enumerate() {
        if matches!(op, GpuOp::Host { .. }) {
            if start < i {
                out.push(Segment::Device(&ops[start..i]));
            }
            out.push(Segment::Host(op));
            start = i + 1;
        }
    }
    if start < ops.len() {
        out.push(Segment::Device(&ops[start..]));
    }
    out
}

/// Whether any op runs a hosted model.
pub fn has_host(ops: &[GpuOp]) -> bool {
    ops.iter().any(|op| matches!(op, GpuOp::Host { .. }))
}

impl GpuOp {
    /// The op of a hosted model's run over columns `inputs` to `outputs` of agent type `agent`.
    pub fn host(m: &Module, agent: usize, model: usize, inputs: &[u32], outputs: &[u32]) -> GpuOp {
        let homes = |cols: &[u32]| cols.iter().map(|&c| home(m, agent, c)).collect();
        GpuOp::Host { agent, model, inputs: homes(inputs), outputs: homes(outputs) }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuPlan {
    pub kernels: Vec<DeviceKernel>,
    pub grids: Vec<GridSpec>,
    pub step: Vec<GpuOp>,
    /// The first force passes, run once before the first step.
    pub prime: Vec<GpuOp>,
    /// Per law, per term: how it is measured on the device. Empty where laws are measured on
    /// the host.
    #[serde(default)]
    pub laws: Vec<Vec<GpuTerm>>,
    /// Tensor interactions of precision `auto`, which the executor settles before the first step.
    #[serde(default)]
    pub choices: Vec<TensorChoice>,
    /// Commands that look for non-finite values in the state on the device, leaving 1 in
    /// `Buf::NonFinite` where they find one: the executor reads that word instead of the whole
    /// state every [`SCAN_EVERY`] steps, and the state only when it is set. Empty where the
    /// state has no float column.
    #[serde(default)]
    pub finite: Vec<GpuOp>,
}

/// A tensor interaction with kernels on matrix units that the executor decides between: the
/// step launches the f32 kernel `f32`. For precision `auto`, before the first step the executor
/// runs it and each candidate (cheapest first) on the run's own state, and launches the first
/// whose relative error stays within `tolerance`, then checks it again on the state of the run
/// at every law check. A `fixed` precision has one candidate, which the executor launches if
/// the device can run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorChoice {
    pub name: String,
    pub f32: usize,
    pub candidates: Vec<(crate::ir::Precision, usize)>,
    /// The columns the interaction writes.
    pub outputs: Vec<Buf>,
    /// `+=`: the error is measured on what the interaction adds.
    pub accumulate: bool,
    pub tolerance: f64,
    /// The precision was given, not `auto`: nothing to measure.
    #[serde(default)]
    pub fixed: bool,
}

/// What an executor offers for trying tensor kernels on the state of a run.
pub trait Trial {
    type Error;
    /// The executor's plan, whose launches a choice changes.
    fn plan(&mut self) -> &mut GpuPlan;
    /// Runs device kernel `k` once and waits for it.
    fn launch_once(&mut self, k: usize) -> Result<(), Self::Error>;
    fn read(&mut self, b: &Buf) -> Result<Vec<u8>, Self::Error>;
    fn write(&mut self, b: &Buf, bytes: &[u8]) -> Result<(), Self::Error>;
    /// The sessions of the module's hosted models (see [`run_hosted`]).
    fn hosted(&mut self) -> &mut Option<crate::onnx::hosted::Hosted>;
}

impl TensorChoice {
    /// The buffers a trial of its kernels changes: the outputs and their compensations.
    fn touched(&self, plan: &GpuPlan) -> Vec<Buf> {
        let mut list = self.outputs.clone();
        for &k in std::iter::once(&self.f32).chain(self.candidates.iter().map(|(_, k)| k)) {
            for b in &plan.kernels[k].bindings {
                if matches!(b, Buf::Comp { .. }) && !list.contains(b) {
                    list.push(*b);
                }
            }
        }
        list
    }

    /// The error of each candidate against the f32 kernel on the device's current state, which
    /// is left as it was.
    pub fn measure<T: Trial>(&self, dev: &mut T) -> Result<Vec<(Precision, usize, f64)>, T::Error> {
        let touched = self.touched(dev.plan());
        let saved = touched.iter().map(|b| dev.read(b)).collect::<Result<Vec<_>, _>>()?;
        let before: Vec<Vec<u8>> = saved[..self.outputs.len()].to_vec();
        let run = |dev: &mut T, k: usize| -> Result<Vec<Vec<u8>>, T::Error> {
            dev.launch_once(k)?;
            let out = self.outputs.iter().map(|b| dev.read(b)).collect::<Result<Vec<_>, _>>()?;
            for (b, bytes) in touched.iter().zip(&saved) {
                dev.write(b, bytes)?;
            }
            Ok(out)
        };
        let reference = run(dev, self.f32)?;
        let mut out = Vec::new();
        for &(p, k) in &self.candidates {
            let other = run(dev, k)?;
            out.push((p, k, self.error(&before, &reference, &other)));
        }
        Ok(out)
    }

    /// The kernel to launch after measuring: the first candidate within the tolerance, or f32.
    pub fn pick(&self, measured: &[(Precision, usize, f64)]) -> (Precision, usize) {
        measured.iter().find(|m| m.2 <= self.tolerance).map_or((Precision::F32, self.f32), |m| (m.0, m.1))
    }

    /// The kernel of this choice that the step launches now.
    pub fn launched(&self, plan: &GpuPlan) -> usize {
        let kernels: Vec<usize> = std::iter::once(self.f32).chain(self.candidates.iter().map(|c| c.1)).collect();
        plan.step
            .iter()
            .chain(&plan.prime)
            .find_map(|op| match op {
                GpuOp::Launch(k) if kernels.contains(k) => Some(*k),
                _ => None,
            })
            .unwrap_or(self.f32)
    }
}

/// Settles the tensor choices of `plan` before the first step (see [`TensorChoice`]): relaunches
/// the chosen kernels and returns what to tell the user. `usable` says whether the device can
/// run a candidate kernel at all; `units` names the hardware for the messages.
pub fn settle_choices<T: Trial>(dev: &mut T, usable: bool, units: &str) -> Result<Vec<String>, T::Error> {
    let mut notes = Vec::new();
    for c in dev.plan().choices.clone() {
        if !usable || c.candidates.is_empty() {
            notes.push(format!("`{}`: this device has no {units}; the f32 kernel runs", c.name));
            continue;
        }
        if c.fixed {
            let (p, k) = c.candidates[0];
            dev.plan().relaunch(c.f32, k);
            let kernel = &dev.plan().kernels[k].name;
            notes.push(format!("`{}`: {} on {units} (kernel `{kernel}`)", c.name, p.name()));
            continue;
        }
        let measured = c.measure(dev)?;
        let (p, k) = c.pick(&measured);
        dev.plan().relaunch(c.f32, k);
        notes.push(format!(
            "`{}`: @precision(auto) chose {} on {units} (kernel `{}`): error against f32 on the initial state {} (tolerance {:e})",
            c.name,
            p.name(),
            dev.plan().kernels[k].name,
            errors(&measured),
            c.tolerance
        ));
    }
    Ok(notes)
}

/// Measures again each `auto` choice that runs a candidate, on the run's current state, and
/// moves to the next candidate within the tolerance (or f32) where its error grew past it.
/// Returns what changed, for the user; an empty list when nothing did.
pub fn recheck_choices<T: Trial>(dev: &mut T, step: u64) -> Result<Vec<String>, T::Error> {
    let mut notes = Vec::new();
    for c in dev.plan().choices.clone() {
        let now = c.launched(dev.plan());
        if c.fixed || now == c.f32 {
            continue;
        }
        let measured = c.measure(dev)?;
        if measured.iter().any(|m| m.1 == now && m.2 <= c.tolerance) {
            continue;
        }
        let (p, k) = c.pick(&measured);
        dev.plan().relaunch(now, k);
        notes.push(format!(
            "`{}`: at step {step} the error of the chosen precision grew past {:e} ({}); now {}",
            c.name,
            c.tolerance,
            errors(&measured),
            p.name()
        ));
    }
    Ok(notes)
}

fn errors(measured: &[(Precision, usize, f64)]) -> String {
    measured.iter().map(|(p, _, e)| format!("{} {e:.2e}", p.name())).collect::<Vec<_>>().join(", ")
}

impl TensorChoice {
    /// The relative error of one run's outputs against the f32 kernel's, both from `before`
    /// (f32 columns as bytes): the largest difference over the largest reference magnitude. A
    /// non-finite value is an infinite error.
    pub fn error(&self, before: &[Vec<u8>], reference: &[Vec<u8>], other: &[Vec<u8>]) -> f64 {
        let floats = |b: &Vec<u8>| -> Vec<f64> {
            b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect()
        };
        let base: Vec<Option<Vec<f64>>> = before.iter().map(|b| self.accumulate.then(|| floats(b))).collect();
        let (r, o): (Vec<_>, Vec<_>) = (reference.iter().map(floats).collect(), other.iter().map(floats).collect());
        crate::ir::relative_error(&r, &o, &base)
    }
}

/// A law term on the device: `fill` writes every agent's share into scratch columns (see
/// `ir::TermPlan`), then device kernel `sum` adds them up into `Buf::Partials`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuTerm {
    pub fill: Vec<GpuOp>,
    pub sum: usize,
    pub partials: Buf,
}

/// The type a column is computed and stored in on GPUs (f16 and bf16 are widened, as on the CPU).
pub fn device_scalar(s: Scalar) -> Scalar {
    match s {
        Scalar::F64 => Scalar::F64,
        Scalar::I32 | Scalar::U32 | Scalar::Bool => Scalar::I32,
        _ => Scalar::F32,
    }
}

/// Buckets of a grid over `n` agents: a power of two, so that a mask picks the bucket.
pub fn buckets(n: usize) -> usize {
    n.max(1).next_power_of_two()
}

impl GpuPlan {
    /// Every buffer some kernel binds or the step fills.
    pub fn buffers(&self) -> Vec<Buf> {
        let mut out: Vec<Buf> = Vec::new();
        let all =
            self.kernels.iter().flat_map(|k| k.bindings.iter().copied()).chain(self.ops().flat_map(|op| match op {
                GpuOp::Zero(b) => vec![*b],
                GpuOp::Launch(_) => Vec::new(),
                GpuOp::Host { inputs, outputs, .. } => inputs.iter().chain(outputs).map(|(b, _)| *b).collect(),
            }));
        for b in all {
            if !out.contains(&b) {
                out.push(b);
            }
        }
        out
    }

    /// Every command the plan may issue: the step's, the first force passes', the search for
    /// non-finite values and the fills of the law terms.
    pub fn ops(&self) -> impl Iterator<Item = &GpuOp> {
        self.step.iter().chain(&self.prime).chain(&self.finite).chain(self.laws.iter().flatten().flat_map(|t| &t.fill))
    }

    /// The first of the law kernels, which the generator writes after the step's (the number
    /// of kernels where there are none).
    pub fn first_law_kernel(&self) -> usize {
        self.laws
            .iter()
            .flatten()
            .flat_map(|t| {
                t.fill.iter().filter_map(|op| if let GpuOp::Launch(k) = op { Some(*k) } else { None }).chain([t.sum])
            })
            .min()
            .unwrap_or(self.kernels.len())
    }

    /// Removes the law kernels, for a device that cannot run them; its laws are then measured
    /// on the host. Returns how many kernels remain.
    pub fn drop_laws(&mut self) -> usize {
        let first = self.first_law_kernel();
        self.laws.clear();
        self.kernels.truncate(first);
        first
    }

    /// Launches device kernel `kernel` wherever the step and the first force passes launch
    /// `from`.
    pub fn relaunch(&mut self, from: usize, kernel: usize) {
        for op in self.step.iter_mut().chain(self.prime.iter_mut()) {
            if *op == GpuOp::Launch(from) {
                *op = GpuOp::Launch(kernel);
            }
        }
    }

    /// The contents of `Buf::Sizes` for these agent counts.
    pub fn sizes(&self, counts: &[usize]) -> Vec<u32> {
        let mut s: Vec<u32> = counts.iter().map(|&n| n as u32).collect();
        s.extend(self.grids.iter().map(|g| buckets(counts[g.agent]) as u32));
        s
    }

    /// Elements and bytes per element of a buffer.
    pub fn extent(&self, m: &Module, b: Buf, counts: &[usize]) -> (usize, usize) {
        let col_bytes = |agent: usize, col: u32| match device_scalar(m.column_types[agent][col as usize]) {
            Scalar::F64 => 8,
            _ => 4,
        };
        match b {
            Buf::Col { agent, col } | Buf::Delta { agent, col } => (counts[agent], col_bytes(agent, col)),
            Buf::Field { agent, col, lanes } => (counts[agent] * lanes as usize, col_bytes(agent, col)),
            Buf::Half { agent, lanes, .. } => (x_stride(counts[agent]) * lanes as usize, 2),
            Buf::Weights { kernel } | Buf::Bias { kernel } => {
                let l = m.kernels[kernel].tensor.as_ref().and_then(|t| t.layers.first());
                let (mp, kp) = l.map_or((0, 0), |l| gemm_padding(l.rows, l.cols));
                match b {
                    Buf::Weights { .. } => (mp as usize * kp as usize, 2),
                    _ => (mp as usize, 4),
                }
            }
            Buf::LayerWeights { kernel } => {
                let layers = m.kernels[kernel].tensor.as_ref().map_or(&[][..], |t| &t.layers[..]);
                (coop_layers(layers).iter().map(|l| (l.k * l.stride) as usize).sum(), 2)
            }
            Buf::LayerBiases { kernel } => {
                let layers = m.kernels[kernel].tensor.as_ref().map_or(&[][..], |t| &t.layers[..]);
                (coop_layers(layers).iter().map(|l| l.n as usize).sum(), 4)
            }
            Buf::Comp { agent, .. } => (counts[agent], 4),
            Buf::Sizes => (counts.len() + self.grids.len(), 4),
            Buf::ParamsF32 | Buf::ParamsI32 => (m.lane_count(), 4),
            Buf::ParamsF64 => (m.lane_count(), 8),
            Buf::Fail | Buf::NonFinite => (1, 4),
            Buf::GridCell { grid } | Buf::GridSorted { grid } => (counts[self.grids[grid].agent], 4),
            Buf::GridCount { grid } => (buckets(counts[self.grids[grid].agent]), 4),
            Buf::GridStart { grid } => (buckets(counts[self.grids[grid].agent]) + 1, 4),
            Buf::Partials { outputs, .. } => (PARTIALS as usize * outputs as usize, 8),
        }
    }
}

/// The host's bytes of the parameter buffers, from the parameters' f64 values.
pub fn params_bytes(b: Buf, values: &[f64]) -> Vec<u8> {
    match b {
        Buf::ParamsF32 => values.iter().flat_map(|v| (*v as f32).to_le_bytes()).collect(),
        // Saturating, as the CPU backend converts.
        Buf::ParamsI32 => values.iter().flat_map(|v| (*v as i32).to_le_bytes()).collect(),
        Buf::ParamsF64 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        _ => Vec::new(),
    }
}

/// A column's values as device bytes.
pub fn column_bytes(s: Scalar, values: &[f64]) -> Vec<u8> {
    match device_scalar(s) {
        Scalar::F64 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Scalar::I32 => values.iter().flat_map(|v| (*v as i32).to_le_bytes()).collect(),
        _ => values.iter().flat_map(|v| (*v as f32).to_le_bytes()).collect(),
    }
}

/// Device bytes of a column back as f64 values; `comp` holds the compensation to take off.
pub fn column_values(s: Scalar, bytes: &[u8], comp: Option<&[u8]>, out: &mut [f64]) {
    let f32_at = |b: &[u8], i: usize| f32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap_or([0; 4]));
    for (i, o) in out.iter_mut().enumerate() {
        let x = match device_scalar(s) {
            Scalar::F64 => f64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().unwrap_or([0; 8])),
            Scalar::I32 => i32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap_or([0; 4])) as f64,
            _ => f32_at(bytes, i) as f64,
        };
        // The compensation holds what the stored value lacks, with the sign flipped.
        *o = x - comp.map_or(0.0, |c| f32_at(c, i) as f64);
    }
}

/// The message of a failed check, from the fail word the kernels wrote.
pub fn fail_message(m: &Module, plan: &GpuPlan, word: u32) -> Option<String> {
    if word == 0 {
        return None;
    }
    let code = word - 1;
    let (dk, msg) = ((code >> 16) as usize, (code & 0xffff) as usize);
    let source = plan.kernels.get(dk).and_then(|k| k.source);
    Some(
        source
            .and_then(|s| m.kernels.get(s))
            .and_then(|k| k.messages.get(msg).cloned())
            .unwrap_or_else(|| "a run-time check failed".into()),
    )
}

/// Steps between reads of a device's state to look for non-finite values and failed checks.
pub const SCAN_EVERY: u64 = 64;

/// The host's copy of a device's state, and when to look at it: reading it back costs a
/// transfer and a wait, so executors look for non-finite values every [`SCAN_EVERY`] steps and
/// whenever outputs or the monitor read the state anyway.
pub struct HostCopy {
    pub world: World,
    /// The copy equals the device's state (no step ran since it was read).
    pub fresh: bool,
    last_scan: u64,
}

impl HostCopy {
    pub fn new(world: World) -> Self {
        HostCopy { world, fresh: true, last_scan: 0 }
    }

    /// Records that `steps` steps ran on the device.
    pub fn ran(&mut self, steps: u64) {
        self.fresh = false;
        self.world.step += steps;
    }

    /// Whether the state should be looked at now.
    pub fn scan_due(&self) -> bool {
        !self.fresh && self.world.step >= self.last_scan + SCAN_EVERY
    }

    /// Records that the device found the state finite and no check failed ([`GpuPlan::finite`]):
    /// nothing to read back.
    pub fn clean(&mut self) {
        self.last_scan = self.world.step;
    }

    /// The first non-finite value of a copy just read, looked for once per step.
    pub fn scan(&mut self) -> Option<(usize, usize, String)> {
        if self.fresh && self.last_scan != self.world.step {
            self.last_scan = self.world.step;
            return self.world.find_non_finite();
        }
        None
    }
}

/// The initial contents of buffer `b`: state columns from `world`, agent and bucket counts,
/// parameters, or zeros; at least 16 bytes, since no GPU API takes an empty buffer.
pub fn initial_bytes(m: &Module, plan: &GpuPlan, b: Buf, world: &World) -> Vec<u8> {
    let counts: Vec<usize> = world.agents.iter().map(|a| a.count).collect();
    let (n, size) = plan.extent(m, b, &counts);
    let mut bytes = match b {
        Buf::Col { agent, col } => {
            column_bytes(m.column_types[agent][col as usize], &world.agents[agent].columns[col as usize])
        }
        Buf::Field { agent, col, lanes } => (col..col + lanes)
            .flat_map(|c| column_bytes(m.column_types[agent][c as usize], &world.agents[agent].columns[c as usize]))
            .collect(),
        Buf::Sizes => plan.sizes(&counts).iter().flat_map(|x| x.to_le_bytes()).collect(),
        Buf::Weights { kernel } | Buf::Bias { kernel } => gemm_operand(m, b, kernel),
        Buf::LayerWeights { kernel } => coop_weights(m, kernel),
        Buf::LayerBiases { kernel } => coop_biases(m, kernel),
        Buf::ParamsF32 | Buf::ParamsI32 | Buf::ParamsF64 => params_bytes(b, &m.uniform_values()),
        _ => vec![0; n * size],
    };
    bytes.resize(bytes.len().max(16), 0);
    bytes
}

/// The f16 weights of module kernel `kernel`'s layers in the [`coop_layers`] layout, zero in the
/// padding: element (k, n) of a layer's B operand is weight (n, k).
fn coop_weights(m: &Module, kernel: usize) -> Vec<u8> {
    let Some(t) = m.kernels[kernel].tensor.as_ref() else { return Vec::new() };
    let geometry = coop_layers(&t.layers);
    let total: u32 = geometry.iter().map(|g| g.k * g.stride).sum();
    let mut out = vec![half::f16::ZERO; total as usize];
    for (l, g) in t.layers.iter().zip(&geometry) {
        let (rows, cols) = (l.rows as usize, l.cols as usize);
        let w = m.tensor_lanes(l.weight, rows * cols).unwrap_or(&[]);
        for (n, row) in w.chunks_exact(cols.max(1)).enumerate().take(rows) {
            for (k, v) in row.iter().enumerate() {
                out[(g.w_at + k as u32 * g.stride + n as u32) as usize] = half::f16::from_f64(*v);
            }
        }
    }
    out.iter().flat_map(|h| h.to_le_bytes()).collect()
}

/// The f32 biases of module kernel `kernel`'s layers in the [`coop_layers`] layout, zero in the
/// padding and for layers without biases.
fn coop_biases(m: &Module, kernel: usize) -> Vec<u8> {
    let Some(t) = m.kernels[kernel].tensor.as_ref() else { return Vec::new() };
    let geometry = coop_layers(&t.layers);
    let mut out = vec![0f32; geometry.iter().map(|g| g.n as usize).sum()];
    for (l, g) in t.layers.iter().zip(&geometry) {
        let bias = l.bias.and_then(|b| m.tensor_lanes(b, l.rows as usize)).unwrap_or(&[]);
        for (i, v) in bias.iter().enumerate() {
            out[g.b_at as usize + i] = *v as f32;
        }
    }
    out.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The padded f16 weights or f32 biases of module kernel `kernel`'s GEMM layer.
fn gemm_operand(m: &Module, b: Buf, kernel: usize) -> Vec<u8> {
    let Some(l) = m.kernels[kernel].tensor.as_ref().and_then(|t| t.layers.first()) else { return Vec::new() };
    let (rows, cols) = (l.rows as usize, l.cols as usize);
    let (mp, kp) = gemm_padding(l.rows, l.cols);
    match b {
        Buf::Weights { .. } => {
            let w = m.tensor_lanes(l.weight, rows * cols).unwrap_or(&[]);
            (0..mp as usize)
                .flat_map(|r| (0..kp as usize).map(move |c| (r, c)))
                .flat_map(|(r, c)| {
                    let v = if r < rows && c < cols { w.get(r * cols + c).copied().unwrap_or(0.0) } else { 0.0 };
                    half::f16::from_f64(v).to_le_bytes()
                })
                .collect()
        }
        _ => {
            let bias = l.bias.and_then(|b| m.tensor_lanes(b, rows)).unwrap_or(&[]);
            (0..mp as usize).flat_map(|r| (bias.get(r).copied().unwrap_or(0.0) as f32).to_le_bytes()).collect()
        }
    }
}

/// Brings a device's state into `host`: `read` gives a buffer's bytes (`None` where the device
/// has no such buffer). A failed check, recorded in the fail word, is reported first.
pub fn read_back(
    m: &Module,
    plan: &GpuPlan,
    host: &mut HostCopy,
    mut read: impl FnMut(&Buf) -> Result<Option<Vec<u8>>, crate::ir::interp::RunError>,
) -> Result<(), crate::ir::interp::RunError> {
    if let Some(word) = read(&Buf::Fail)? {
        let word = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        if let Some(msg) = fail_message(m, plan, word) {
            return Err(crate::ir::interp::RunError::Check(msg));
        }
    }
    // A wide field is read once for all its lanes.
    let mut fields: std::collections::HashMap<Buf, Option<Vec<u8>>> = std::collections::HashMap::new();
    for t in 0..host.world.agents.len() {
        let kinds = m.agents[t].column_kinds();
        for c in 0..host.world.agents[t].columns.len() as u32 {
            // Scratch columns (integrator temporaries, law shares) are never shown or measured.
            if kinds.get(c as usize) == Some(&crate::FieldKind::Scratch) {
                continue;
            }
            let s = m.column_types[t][c as usize];
            let out = &mut host.world.agents[t].columns[c as usize];
            match home(m, t, c) {
                (b @ Buf::Field { .. }, lane) => {
                    if let std::collections::hash_map::Entry::Vacant(e) = fields.entry(b) {
                        e.insert(read(&b)?);
                    }
                    let Some(Some(data)) = fields.get(&b) else { continue };
                    column_values(s, &data[lane_bytes(s, out.len(), lane)], None, out);
                }
                (b, _) => {
                    let Some(data) = read(&b)? else { continue };
                    let comp = read(&Buf::Comp { agent: t, col: c })?;
                    column_values(s, &data, comp.as_deref(), out);
                }
            }
        }
    }
    host.fresh = true;
    Ok(())
}

/// Runs a hosted model (a [`GpuOp::Host`]) on state that lives on a device: its input columns
/// are read back, the model runs on the host, and its outputs are written to the device.
pub fn run_hosted<T: Trial>(
    dev: &mut T,
    m: &Module,
    op: &GpuOp,
    counts: &[usize],
) -> Result<(), crate::ir::interp::RunError>
where
    T::Error: std::fmt::Display,
{
    use crate::ir::interp::RunError;
    let GpuOp::Host { agent, model, inputs, outputs } = op else { return Ok(()) };
    let n = counts[*agent];
    if n == 0 {
        return Ok(());
    }
    let err = |e: T::Error| RunError::Invalid(e.to_string());
    let mut read: std::collections::HashMap<Buf, Vec<u8>> = std::collections::HashMap::new();
    let mut features = Vec::with_capacity(inputs.len());
    for &(b, lane) in inputs {
        if let std::collections::hash_map::Entry::Vacant(e) = read.entry(b) {
            e.insert(dev.read(&b).map_err(&err)?);
        }
        let bytes = &read[&b];
        let (s, range) = match b {
            Buf::Field { agent, col, .. } => {
                let s = m.column_types[agent][(col + lane) as usize];
                (s, lane_bytes(s, n, lane))
            }
            Buf::Col { agent, col } => (m.column_types[agent][col as usize], 0..bytes.len()),
            other => return Err(RunError::Invalid(format!("a model input in {other:?}"))),
        };
        let mut values = vec![0.0f64; n];
        column_values(s, &bytes[range], None, &mut values);
        features.push(values);
    }
    // The sessions are lent out for the call, so that the device can be read and written.
    let mut hosted = dev.hosted().take().ok_or_else(|| RunError::Invalid("no hosted models".into()))?;
    let which: Vec<u32> = (0..features.len() as u32).collect();
    let ran = hosted.run(m, *model, &features, &which, n);
    *dev.hosted() = Some(hosted);
    for ((b, _), lane) in outputs.iter().zip(ran?) {
        let lane: Vec<f64> = lane.into_iter().map(f64::from).collect();
        dev.write(b, &column_bytes(Scalar::F32, &lane)).map_err(err)?;
    }
    Ok(())
}

/// The bytes of lane `lane` of a wide field of `count` agents of type `s` in its buffer.
pub fn lane_bytes(s: Scalar, count: usize, lane: u32) -> std::ops::Range<usize> {
    let n = count * if device_scalar(s) == Scalar::F64 { 8 } else { 4 };
    lane as usize * n..(lane as usize + 1) * n
}

/// The commands that measure every law on the device: each term's fill, then its sum.
pub fn law_ops(plan: &GpuPlan) -> Vec<GpuOp> {
    plan.laws.iter().flatten().flat_map(|t| t.fill.iter().cloned().chain([GpuOp::Launch(t.sum)])).collect()
}

/// The laws from the partial sums [`law_ops`] left on the device (`read` gives a buffer's
/// bytes): each term's rows are added in f64 with compensation and combined as the interpreter
/// combines its sums.
pub fn law_samples(
    m: &Module,
    plan: &GpuPlan,
    mut read: impl FnMut(&Buf) -> Result<Vec<u8>, crate::ir::interp::RunError>,
) -> Result<Vec<crate::monitor::LawSample>, crate::ir::interp::RunError> {
    let uniforms: Vec<f64> = m.uniform_values();
    let mut out = Vec::with_capacity(plan.laws.len());
    for (l, terms) in plan.laws.iter().enumerate() {
        let mut sums = Vec::with_capacity(terms.len());
        for t in terms {
            let Buf::Partials { outputs, .. } = t.partials else { continue };
            let bytes = read(&t.partials)?;
            let value = |i: usize| {
                bytes.get(8 * i..8 * i + 8).map_or(f64::NAN, |b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            };
            let outputs = outputs as usize;
            let row: Vec<f64> = (0..outputs)
                .map(|o| {
                    (0..PARTIALS as usize).map(|g| value(g * outputs + o)).collect::<crate::sum::NeumaierSum>().value()
                })
                .collect();
            sums.push(row);
        }
        out.push(crate::ir::interp::law_sample(m, l, &sums, &uniforms)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(xs: &[f32]) -> Vec<u8> {
        xs.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn choice(accumulate: bool) -> TensorChoice {
        TensorChoice {
            name: "t".into(),
            f32: 0,
            candidates: Vec::new(),
            outputs: Vec::new(),
            accumulate,
            tolerance: 1e-3,
            fixed: false,
        }
    }

    #[test]
    fn a_choice_measures_the_largest_difference_over_the_largest_reference() {
        let before = [bytes(&[0.0, 0.0])];
        let reference = [bytes(&[2.0, -4.0])];
        let other = [bytes(&[2.5, -4.0])];
        assert_eq!(choice(false).error(&before, &reference, &other), 0.5 / 4.0);
        assert_eq!(choice(false).error(&before, &reference, &reference), 0.0);
        let nan = [bytes(&[2.0, f32::NAN])];
        assert_eq!(choice(false).error(&before, &reference, &nan), f64::INFINITY);
    }

    #[test]
    fn an_accumulating_choice_is_measured_on_what_it_adds() {
        // A large value already in the column must not hide an error in the increment.
        let before = [bytes(&[1000.0])];
        let reference = [bytes(&[1001.0])];
        let other = [bytes(&[1001.5])];
        assert_eq!(choice(true).error(&before, &reference, &other), 0.5);
        assert!(choice(false).error(&before, &reference, &other) < 1e-3);
    }

    #[test]
    fn relaunch_replaces_a_kernel_in_the_step_and_the_first_passes_only() {
        let mut plan = GpuPlan {
            kernels: Vec::new(),
            grids: Vec::new(),
            step: vec![GpuOp::Launch(0), GpuOp::Launch(1), GpuOp::Launch(0)],
            prime: vec![GpuOp::Launch(0)],
            laws: Vec::new(),
            choices: Vec::new(),
            finite: vec![GpuOp::Launch(0)],
        };
        plan.relaunch(0, 7);
        assert_eq!(plan.step, vec![GpuOp::Launch(7), GpuOp::Launch(1), GpuOp::Launch(7)]);
        assert_eq!(plan.prime, vec![GpuOp::Launch(7)]);
        assert_eq!(plan.finite, vec![GpuOp::Launch(0)]);
    }

    #[test]
    fn a_clean_search_on_the_device_defers_the_next_look_without_reading_the_state() {
        let mut host = HostCopy::new(World::new(Vec::new()));
        host.ran(SCAN_EVERY - 1);
        assert!(!host.scan_due());
        host.ran(1);
        assert!(host.scan_due());
        host.clean();
        assert!(!host.scan_due() && !host.fresh, "nothing was read");
        assert_eq!(host.scan(), None);
        host.ran(SCAN_EVERY);
        assert!(host.scan_due());
    }
}
