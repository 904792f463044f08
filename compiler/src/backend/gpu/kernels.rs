//! A module's step as device kernels: the plan the executors follow and each kernel as a small
//! structured program (`ast`), which each GPU target prints or lowers.
//!
//! - Map and integrator kernels: one thread per agent.
//! - All pairs: one thread per agent gathers over its partners, which the workgroup stages
//!   through workgroup-shared tiles of `wg` agents. Tiles wholly above or below the workgroup's
//!   own agents need no per-pair test and run unrolled; only the diagonal and the last tile test.
//! - Neighbours: a uniform grid hashed into buckets, built on the device each pass by a
//!   counting sort (count, scan, scatter); a thread visits the buckets of its cell and the cells
//!   around it, each bucket once.
//! - A pair kernel that reads a column it also adds to writes its changes to a delta buffer, added
//!   by a second kernel once every thread has read the old values (Jacobi semantics).

use super::ast::{
    self, add, bin, cast, incr, ld, let_, lt, mul, set, store, sub, u, var, var_, Binding, Bo, Shared, E, S,
};
use super::body::{self, depends_on, needed, product, reg, Names};
use super::{coop, gemm, mma};
use aiic_runtime::cpu::abi::{compensated_columns, compensated_stores};
use aiic_runtime::gpu::{
    self, device_scalar, Buf, CoopKernel, DeviceKernel, GpuOp, GpuPlan, GpuTerm, GridSpec, Launch, TensorChoice,
    PARTIALS, TILE_UNROLL,
};
use aiic_runtime::ir::{Activation, Kernel, Module, Op, Pattern, Precision, Scalar, Sched, TensorPlan, UnOp, V};
use std::cell::RefCell;
use std::collections::HashMap;

/// The plan of a module's step and each of its device kernels.
pub struct GpuCode {
    pub plan: GpuPlan,
    pub kernels: Vec<ast::Kernel>,
}

/// How device kernels are shaped.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Agents each thread of an all-pairs kernel holds (register blocking): a partner read from
    /// the tile then serves all of them, at the cost of fewer threads.
    pub rows: u32,
    /// The matrix units the target's kernels may use for the matrix work of `each` kernels
    /// (`ir::TensorPlan`), where the interaction's precision asks for them.
    pub matrix: MatrixUnits,
}

/// How a target runs tensor plans on matrix hardware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatrixUnits {
    /// Scalar kernels only.
    None,
    /// PTX `mma.sync` (`mma.rs`): the kernel is launched in the step, as every CUDA device of
    /// the targeted architecture has tensor cores.
    MmaSync,
    /// Vulkan cooperative matrices (`coop.rs`) for f16: a device may lack them, so the step
    /// launches the scalar kernel and the candidate waits in `GpuPlan::choices` for the
    /// executor to find the device able to run it.
    Cooperative,
}

impl Default for Options {
    fn default() -> Self {
        Options { rows: 1, matrix: MatrixUnits::None }
    }
}

pub fn generate(m: &Module, opts: Options) -> Result<GpuCode, String> {
    let plan = GpuPlan {
        kernels: Vec::new(),
        grids: Vec::new(),
        step: Vec::new(),
        prime: Vec::new(),
        laws: Vec::new(),
        choices: Vec::new(),
        finite: Vec::new(),
    };
    let mut g = Gen { m, plan, kernels: Vec::new(), rows: opts.rows.max(1), matrix: opts.matrix };
    let mut done: HashMap<usize, Vec<GpuOp>> = HashMap::new();
    let mut lists = [Vec::new(), Vec::new()];
    for (list, out) in [&m.step, &m.prime].into_iter().zip(lists.iter_mut()) {
        for s in list {
            match s {
                Sched::Zero { agent, cols } => {
                    out.extend(zeros(m, *agent, cols));
                }
                Sched::Run(k) => {
                    if !done.contains_key(k) {
                        let ops = g.kernel(*k)?;
                        done.insert(*k, ops);
                    }
                    out.extend(done[k].iter().cloned());
                }
                Sched::Exact { agent, cols } => out.push(GpuOp::Launch(g.exact(*agent, cols))),
                Sched::Model { agent, model, inputs, outputs } => {
                    out.push(GpuOp::host(m, *agent, *model, inputs, outputs))
                }
            }
        }
    }
    let [step, prime] = lists;
    g.plan.step = step;
    g.plan.prime = prime;
    // Before the law kernels, which a device without f64 drops from the end of the list.
    let finite: Vec<usize> = (0..m.agents.len()).flat_map(|a| g.finite(a)).collect();
    if !finite.is_empty() {
        g.plan.finite =
            std::iter::once(GpuOp::Zero(Buf::NonFinite)).chain(finite.into_iter().map(GpuOp::Launch)).collect();
    }
    // A law term without a device form leaves the laws to the host, which always can.
    let before = (g.plan.kernels.len(), g.kernels.len(), g.plan.grids.len());
    match g.laws() {
        Ok(laws) => g.plan.laws = laws,
        Err(_) => {
            g.plan.kernels.truncate(before.0);
            g.kernels.truncate(before.1);
            g.plan.grids.truncate(before.2);
        }
    }
    g.hoist_preludes();
    Ok(GpuCode { plan: g.plan, kernels: g.kernels })
}

struct Gen<'a> {
    m: &'a Module,
    plan: GpuPlan,
    kernels: Vec<ast::Kernel>,
    /// Agents each thread of a tiled pair kernel holds.
    rows: u32,
    matrix: MatrixUnits,
}

/// The buffers one kernel binds, in binding order.
struct Binds<'a> {
    m: &'a Module,
    list: Vec<(Buf, Binding)>,
}

impl<'a> Binds<'a> {
    fn new(m: &'a Module) -> Self {
        Binds { m, list: Vec::new() }
    }

    /// The name of a buffer in the kernel, binding it on first use.
    fn get(&mut self, b: Buf, write: bool) -> String {
        if let Some((_, bd)) = self.list.iter_mut().find(|(x, _)| *x == b) {
            bd.read_only &= !write;
            return bd.name.clone();
        }
        let (name, elem, atomic) = match b {
            Buf::Col { agent, col } => (col_name(self.m, agent, col), self.col_ty(agent, col), false),
            Buf::Field { agent, col, .. } => (field_name(self.m, "f", agent, col), self.col_ty(agent, col), false),
            Buf::Comp { agent, col } => (format!("comp_{}", &col_name(self.m, agent, col)[2..]), Scalar::F32, false),
            Buf::Delta { agent, col } => {
                (format!("delta_{}", &col_name(self.m, agent, col)[2..]), self.col_ty(agent, col), false)
            }
            Buf::Half { agent, col, .. } => (field_name(self.m, "h", agent, col), Scalar::F16, false),
            Buf::Weights { kernel } => (format!("gemm_w{kernel}"), Scalar::F16, false),
            Buf::Bias { kernel } => (format!("gemm_b{kernel}"), Scalar::F32, false),
            Buf::LayerWeights { kernel } => (format!("coop_w{kernel}"), Scalar::F16, false),
            Buf::LayerBiases { kernel } => (format!("coop_b{kernel}"), Scalar::F32, false),
            Buf::Sizes => ("sizes".into(), Scalar::U32, false),
            Buf::ParamsF32 => ("params_f".into(), Scalar::F32, false),
            Buf::ParamsI32 => ("params_i".into(), Scalar::I32, false),
            Buf::ParamsF64 => ("params_d".into(), Scalar::F64, false),
            Buf::Fail => ("fail".into(), Scalar::U32, false),
            Buf::NonFinite => ("nonfinite".into(), Scalar::U32, false),
            Buf::GridCell { grid } => (format!("grid{grid}_cell"), Scalar::U32, false),
            Buf::GridCount { grid } => (format!("grid{grid}_count"), Scalar::U32, true),
            Buf::GridStart { grid } => (format!("grid{grid}_start"), Scalar::U32, false),
            Buf::GridSorted { grid } => (format!("grid{grid}_sorted"), Scalar::U32, false),
            Buf::Partials { law, term, .. } => (format!("partials{law}_{term}"), Scalar::F64, false),
        };
        self.list.push((b, Binding { name: name.clone(), elem, atomic, read_only: !write }));
        name
    }

    fn col_ty(&self, agent: usize, col: u32) -> Scalar {
        device_scalar(self.m.column_types[agent][col as usize])
    }

    /// Element `idx` of a column of agent type `agent`.
    fn col(&mut self, agent: usize, col: u32, idx: E) -> E {
        let (buf, at) = self.place(agent, col, idx, false);
        ld(&buf, at)
    }

    /// The buffer and the index of element `idx` of a column: its own buffer, or its lane of a
    /// wide field's (`lane · count + idx`).
    fn place(&mut self, agent: usize, col: u32, idx: E, write: bool) -> (String, E) {
        match gpu::home(self.m, agent, col) {
            (b @ Buf::Field { .. }, lane) => (self.get(b, write), self.lane_index(agent, u(lane as u64), idx)),
            (b, _) => (self.get(b, write), idx),
        }
    }

    /// Where element `idx` of lane `lane` lies in a wide field's buffer: `lane · count + idx`.
    fn lane_index(&mut self, agent: usize, lane: E, idx: E) -> E {
        add(mul(lane, self.size(agent)), idx)
    }

    /// `sizes[slot]`: an agent count or a grid's bucket count.
    fn size(&mut self, slot: usize) -> E {
        ld(&self.get(Buf::Sizes, false), u(slot as u64))
    }

    fn param(&mut self, p: u32, s: Scalar) -> E {
        let buf = match s {
            Scalar::F64 => Buf::ParamsF64,
            Scalar::I32 => Buf::ParamsI32,
            _ => Buf::ParamsF32,
        };
        ld(&self.get(buf, false), u(p as u64))
    }
}

/// A column's name in generated code: `c_Body_position_x`.
fn col_lane(m: &Module, agent: usize, col: u32) -> String {
    m.agents[agent].fields.iter().flat_map(|f| f.lanes.iter()).nth(col as usize).cloned().unwrap_or(col.to_string())
}

/// `prefix_Agent_field` for the buffer of a wide field that starts at column `col`.
fn field_name(m: &Module, prefix: &str, agent: usize, col: u32) -> String {
    let first = col_lane(m, agent, col);
    let field = m.agents[agent].fields.iter().find(|f| f.lanes.first() == Some(&first));
    let raw = format!("{prefix}_{}_{}", m.agents[agent].name, field.map_or("field", |f| f.name.as_str()));
    raw.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

fn col_name(m: &Module, agent: usize, col: u32) -> String {
    let raw = format!("c_{}_{}", m.agents[agent].name, col_lane(m, agent, col));
    raw.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

/// Where consecutive entries of a list of columns live: a column of its own, or `n` lanes from
/// `lane` of a wide field's buffer.
enum Run {
    Col { at: usize, col: u32 },
    Lanes { at: usize, buf: Buf, lane: u32, n: u32 },
}

fn field_runs(m: &Module, agent: usize, cols: &[u32]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for (at, &col) in cols.iter().enumerate() {
        match gpu::home(m, agent, col) {
            (buf @ Buf::Field { .. }, lane) => match out.last_mut() {
                Some(Run::Lanes { buf: b, lane: l, n, .. }) if *b == buf && *l + *n == lane => *n += 1,
                _ => out.push(Run::Lanes { at, buf, lane, n: 1 }),
            },
            _ => out.push(Run::Col { at, col }),
        }
    }
    out
}

/// `for j in 0..n { body }`, over the lanes of a run of a wide field.
fn lanes_loop(n: u32, body: S) -> S {
    S::Block(vec![var_("j", Scalar::U32, u(0)), S::While(lt(var("j"), u(n as u64)), vec![body, incr("j", u(1))])])
}

/// State buffers a kernel of the search for non-finite values reads at most: lavapipe allows 32
/// a shader, the flag and the agent counts are two more.
const FINITE_BUFFERS: usize = 24;

/// The buffers holding these columns, each once (a wide field's for all its lanes).
fn homes(m: &Module, agent: usize, cols: &[u32]) -> Vec<Buf> {
    let mut out = Vec::new();
    for &col in cols {
        let b = gpu::home(m, agent, col).0;
        if !out.contains(&b) {
            out.push(b);
        }
    }
    out
}

/// The commands that zero these columns.
fn zeros(m: &Module, agent: usize, cols: &[u32]) -> Vec<GpuOp> {
    homes(m, agent, cols).into_iter().map(GpuOp::Zero).collect()
}

/// Hashes integer cell coordinates into one of `nb` (a power of two) buckets.
fn hash(cells: Vec<E>, nb: E) -> E {
    const PRIMES: [u64; 3] = [73_856_093, 19_349_663, 83_492_791];
    let mut terms = cells.into_iter().zip(PRIMES).map(|(c, p)| mul(cast(Scalar::U32, c), u(p)));
    let first = terms.next().unwrap_or(u(0));
    let mixed = terms.fold(first, |a, t| bin(Bo::BitXor, a, t));
    bin(Bo::BitAnd, mixed, sub(nb, u(1)))
}

/// An activation of an f32 value, as the IR computes it (`lower::body::activation`).
fn activation(act: Activation, x: E) -> E {
    use aiic_runtime::ir::UnOp;
    let f = |c: f64| E::F(c, Scalar::F32);
    let un = |op: UnOp, x: E| E::Un(op, Scalar::F32, Box::new(x));
    let sigmoid = |x: E| bin(Bo::Div, f(1.0), add(f(1.0), un(UnOp::Exp, un(UnOp::Neg, x))));
    match act {
        Activation::Identity => x,
        Activation::Tanh => un(UnOp::Tanh, x),
        Activation::Relu => bin(Bo::Max, x, f(0.0)),
        Activation::Sigmoid => sigmoid(x),
        Activation::Silu => mul(x.clone(), sigmoid(x)),
        Activation::Gelu => {
            let inner = add(x.clone(), mul(f(0.044715), mul(mul(x.clone(), x.clone()), x.clone())));
            let t = un(UnOp::Tanh, mul(f((2.0 / std::f64::consts::PI).sqrt()), inner));
            mul(mul(f(0.5), x), add(f(1.0), t))
        }
    }
}

/// `if (gid < n) { body }` with `n = sizes[agent]`: one thread per agent.
fn per_agent(b: &mut Binds, agent: usize, body: Vec<S>) -> Vec<S> {
    let n = b.size(agent);
    vec![let_("n", Scalar::U32, n), S::If(lt(E::Gid, var("n")), body, Vec::new())]
}

/// Which side of a pair a gathering thread stands on: its agent is in slot `own`.
#[derive(Clone, Copy, PartialEq)]
struct Side {
    own: u8,
}

impl Side {
    fn partner(self) -> u8 {
        1 - self.own
    }
}

impl Gen<'_> {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        name: String,
        source: Option<usize>,
        b: Binds,
        launch: Launch,
        shared: Vec<Shared>,
        body: Vec<S>,
        exact: bool,
    ) -> usize {
        let shared_bytes = shared.iter().map(Shared::bytes).sum();
        let bufs = b.list.iter().map(|(x, _)| *x).collect();
        let bindings = b.list.into_iter().map(|(_, bd)| bd).collect();
        let dk = DeviceKernel {
            name: name.clone(),
            source,
            bindings: bufs,
            launch,
            shared_bytes,
            rows: 1,
            coop: None,
            tiles: None,
            prelude: None,
            prelude_on_upload: false,
            hopper: None,
        };
        self.plan.kernels.push(dk);
        self.kernels.push(ast::Kernel { name, bindings, shared, body, exact, mma: None, gemm: None });
        self.plan.kernels.len() - 1
    }

    /// Marks each prelude whose input no kernel writes and no step clears as run once per
    /// upload: the f16 copy of a field only the host writes is the same every step.
    fn hoist_preludes(&mut self) {
        let written = |g: &Self, buf: Buf| {
            let kernel = g
                .plan
                .kernels
                .iter()
                .zip(&g.kernels)
                .any(|(dk, k)| dk.bindings.iter().zip(&k.bindings).any(|(b, bd)| *b == buf && !bd.read_only));
            let cleared = g.plan.ops().any(|op| *op == GpuOp::Zero(buf));
            kernel || cleared
        };
        for n in 0..self.plan.kernels.len() {
            let Some(p) = self.plan.kernels[n].prelude else { continue };
            let reads: Vec<Buf> = self.plan.kernels[p]
                .bindings
                .iter()
                .zip(&self.kernels[p].bindings)
                .filter(|(_, bd)| bd.read_only)
                .map(|(b, _)| *b)
                .filter(|b| *b != Buf::Sizes)
                .collect();
            self.plan.kernels[n].prelude_on_upload = !reads.iter().any(|&b| written(self, b));
        }
    }

    /// A kernel whose threads hold `rows` agents each.
    #[allow(clippy::too_many_arguments)]
    fn push_rows(
        &mut self,
        name: String,
        source: Option<usize>,
        b: Binds,
        launch: Launch,
        shared: Vec<Shared>,
        body: Vec<S>,
        rows: u32,
    ) -> usize {
        let n = self.push(name, source, b, launch, shared, body, false);
        self.plan.kernels[n].rows = rows;
        n
    }

    fn kernel(&mut self, kid: usize) -> Result<Vec<GpuOp>, String> {
        let k = &self.m.kernels[kid];
        // A plan's lanes are computed by its own kernels (`tensor`, `f32_tensor`).
        let planned = |op: &Op| matches!(op, Op::Tensor(_)) && k.tensor.is_some();
        if let Some(inst) = k.insts.iter().find(|i| !body::supported(&i.op) && !planned(&i.op)) {
            return Err(format!("kernel `{}` uses `{:?}`, which runs only on the host", k.name, inst.op));
        }
        if k.outputs != 0 {
            return Err(format!("kernel `{}` is a reduction, which runs on the host", k.name));
        }
        // Pair kernels write their agents' columns a buffer per lane.
        let slots = k.pattern.slots();
        let wide = |slot: u8, col: u32| matches!(gpu::home(self.m, slots[slot as usize], col).0, Buf::Field { .. });
        if k.pattern.is_pairwise()
            && k.insts.iter().any(|i| match i.op {
                Op::Store { slot, col, .. } | Op::Accum { slot, col, .. } => wide(slot, col),
                _ => false,
            })
        {
            return Err(format!(
                "kernel `{}` writes a field of more than {} lanes from pairs, which GPUs do not run yet; run it with --target cpu",
                k.name,
                gpu::WIDE
            ));
        }
        match k.pattern.clone() {
            Pattern::Map { agent } => {
                let n = match self.tensor(kid, agent).or_else(|| self.f32_tensor(kid, agent)) {
                    Some(n) => n,
                    None if k.tensor.is_some() => {
                        return Err(format!("kernel `{}`: its tensor plan has no kernel on this target", k.name))
                    }
                    None => self.map(kid, agent),
                };
                Ok(vec![GpuOp::Launch(n)])
            }
            Pattern::Integrate { agent, .. } => Ok(vec![GpuOp::Launch(self.map(kid, agent))]),
            Pattern::AllPairs { a, b } => self.pairs(kid, a, b, None),
            Pattern::Neighbors { a, b, bound } => {
                let (grid_b, mut ops) = self.grid(b, bound)?;
                let grid_a = if a == b {
                    grid_b
                } else {
                    let (g, more) = self.grid(a, bound)?;
                    ops.extend(more);
                    g
                };
                ops.extend(self.pairs(kid, a, b, Some((grid_a, grid_b)))?);
                Ok(ops)
            }
            _ => Err(format!("kernel `{}` runs on the host", k.name)),
        }
    }

    /// Each law term as device work: the kernels that fill its scratch columns (see
    /// `ir::TermPlan`) and a kernel that sums them.
    fn laws(&mut self) -> Result<Vec<Vec<GpuTerm>>, String> {
        let m = self.m;
        if m.laws.iter().any(|l| l.measure.len() != l.terms.len()) {
            return Err("a law term has no measuring plan".into());
        }
        let mut out = Vec::new();
        for (l, law) in m.laws.iter().enumerate() {
            let mut terms = Vec::new();
            for (t, tp) in law.measure.iter().enumerate() {
                let mut fill = Vec::new();
                for s in &tp.fill {
                    match s {
                        Sched::Zero { agent, cols } => fill.extend(zeros(self.m, *agent, cols)),
                        Sched::Run(k) => fill.extend(self.kernel(*k)?),
                        Sched::Exact { agent, cols } => fill.push(GpuOp::Launch(self.exact(*agent, cols))),
                        Sched::Model { agent, model, inputs, outputs } => {
                            fill.push(GpuOp::host(m, *agent, *model, inputs, outputs))
                        }
                    }
                }
                let partials = Buf::Partials { law: l, term: t, outputs: tp.cols.len() as u32 };
                let sum = self.sum_columns(&format!("law.{}.{t}.sum", law.name), tp.agent, &tp.cols, partials);
                terms.push(GpuTerm { fill, sum, partials });
            }
            out.push(terms);
        }
        Ok(out)
    }

    /// Copies the exact value of f32 columns (less the compensation of compensated updates) into
    /// f64 columns: see `Sched::Exact`.
    fn exact(&mut self, agent: usize, cols: &[(u32, u32)]) -> usize {
        let m = self.m;
        let mut b = Binds::new(m);
        let compensated = compensated_columns(m);
        let mut body = Vec::new();
        for &(from, to) in cols {
            let x = body::convert(
                device_scalar(m.column_types[agent][from as usize]),
                Scalar::F64,
                b.col(agent, from, E::Gid),
            );
            let x = if compensated.contains(&(agent, from)) {
                let c = b.get(Buf::Comp { agent, col: from }, false);
                sub(x, body::convert(Scalar::F32, Scalar::F64, ld(&c, E::Gid)))
            } else {
                x
            };
            let (target, at) = b.place(agent, to, E::Gid, true);
            body.push(store(&target, at, x));
        }
        let body = per_agent(&mut b, agent, body);
        let name = format!("exact_{}", m.agents[agent].name);
        self.push(name, None, b, Launch::Agents { agent }, Vec::new(), body, false)
    }

    /// The kernels that look for non-finite values in agent type `agent`'s state (every column
    /// of a field that is not scratch, as `World::find_non_finite` does): each thread tests its
    /// agent's float columns and writes 1 to `Buf::NonFinite` where one is NaN or infinite.
    /// `|x| <= max` is false for both in the IEEE arithmetic of every target (none is compiled
    /// with fast-math). A kernel reads at most [`FINITE_BUFFERS`] buffers, so that a type of
    /// many fields stays within a device's bindings; none where the type has no float column.
    fn finite(&mut self, agent: usize) -> Vec<usize> {
        let m = self.m;
        let mut cols = Vec::new();
        let mut col = 0u32;
        for f in &m.agents[agent].fields {
            for _ in &f.lanes {
                let s = device_scalar(m.column_types[agent][col as usize]);
                if f.kind != aiic_runtime::FieldKind::Scratch && matches!(s, Scalar::F32 | Scalar::F64) {
                    cols.push(col);
                }
                col += 1;
            }
        }
        // Runs of columns in groups of at most FINITE_BUFFERS buffers (a wide field is one).
        let mut groups: Vec<Vec<u32>> = Vec::new();
        for run in field_runs(m, agent, &cols) {
            let run_cols: Vec<u32> = match run {
                Run::Lanes { at, n, .. } => cols[at..at + n as usize].to_vec(),
                Run::Col { col, .. } => vec![col],
            };
            match groups.last_mut() {
                Some(g) if homes(m, agent, g).len() < FINITE_BUFFERS => g.extend(run_cols),
                _ => groups.push(run_cols),
            }
        }
        groups.into_iter().enumerate().map(|(i, cols)| self.finite_group(agent, i, &cols)).collect()
    }

    /// One kernel of [`Gen::finite`], for these float columns of agent type `agent`.
    fn finite_group(&mut self, agent: usize, part: usize, cols: &[u32]) -> usize {
        let m = self.m;
        let mut b = Binds::new(m);
        let flag = b.get(Buf::NonFinite, true);
        let not_finite = |x: E, s: Scalar| {
            let max = if s == Scalar::F64 { f64::MAX } else { f32::MAX as f64 };
            E::Un(UnOp::Not, Scalar::Bool, Box::new(bin(Bo::Le, E::Un(UnOp::Abs, s, Box::new(x)), E::F(max, s))))
        };
        let mark = || vec![store(&flag, u(0), u(1))];
        let mut body = Vec::new();
        for run in field_runs(m, agent, cols) {
            match run {
                Run::Lanes { at, buf, lane, n } => {
                    let s = device_scalar(m.column_types[agent][cols[at] as usize]);
                    let name = b.get(buf, false);
                    let at = b.lane_index(agent, add(u(lane as u64), var("j")), E::Gid);
                    body.push(lanes_loop(n, S::If(not_finite(ld(&name, at), s), mark(), Vec::new())));
                }
                Run::Col { col, .. } => {
                    let s = device_scalar(m.column_types[agent][col as usize]);
                    let x = b.col(agent, col, E::Gid);
                    body.push(S::If(not_finite(x, s), mark(), Vec::new()));
                }
            }
        }
        let body = per_agent(&mut b, agent, body);
        let name = if part == 0 {
            format!("finite_{}", m.agents[agent].name)
        } else {
            format!("finite_{}_{part}", m.agents[agent].name)
        };
        self.push(name, None, b, Launch::Agents { agent }, Vec::new(), body, false)
    }

    /// Sums f64 columns of agent type `agent` into one row per workgroup of `partials`: each
    /// workgroup takes a contiguous run of the agents, each of its threads every `wg`-th agent of
    /// the run, then the workgroup adds its threads' sums pairwise in workgroup memory (any
    /// workgroup size). The workgroup size appears alone in the code, never in a product that a
    /// shader compiler could fold before it is specialized.
    fn sum_columns(&mut self, name: &str, agent: usize, cols: &[u32], partials: Buf) -> usize {
        let mut b = Binds::new(self.m);
        let n = b.size(agent);
        let out = b.get(partials, true);
        let sh = |c: usize, i: E| E::Sh(format!("sh{c}"), Box::new(i), None);
        let parts = u(PARTIALS as u64);
        let mut body = vec![
            let_("n", Scalar::U32, n),
            let_("per", Scalar::U32, bin(Bo::Div, sub(add(var("n"), parts.clone()), u(1)), parts)),
            let_("lo", Scalar::U32, bin(Bo::Min, mul(E::Grp, var("per")), var("n"))),
            let_("hi", Scalar::U32, bin(Bo::Min, add(var("lo"), var("per")), var("n"))),
            var_("i", Scalar::U32, add(var("lo"), E::Lid)),
        ];
        for c in 0..cols.len() {
            body.push(var_(&format!("s{c}"), Scalar::F64, E::F(0.0, Scalar::F64)));
        }
        let mut visit: Vec<S> = Vec::new();
        for (c, &col) in cols.iter().enumerate() {
            let x = b.col(agent, col, var("i"));
            visit.push(incr(&format!("s{c}"), x));
        }
        visit.push(incr("i", E::Wg));
        body.push(S::While(lt(var("i"), var("hi")), visit));
        for c in 0..cols.len() {
            body.push(S::ShStore(format!("sh{c}"), E::Lid, var(&format!("s{c}"))));
        }
        body.push(S::Barrier);
        let pairs: Vec<S> = (0..cols.len())
            .map(|c| S::ShStore(format!("sh{c}"), E::Lid, add(sh(c, E::Lid), sh(c, add(E::Lid, var("w"))))))
            .collect();
        let leader = bin(Bo::Eq, bin(Bo::BitAnd, E::Lid, sub(mul(var("w"), u(2)), u(1))), u(0));
        body.push(var_("w", Scalar::U32, u(1)));
        body.push(S::While(
            lt(var("w"), E::Wg),
            vec![
                S::If(bin(Bo::And, leader, lt(add(E::Lid, var("w")), E::Wg)), pairs, Vec::new()),
                S::Barrier,
                set("w", mul(var("w"), u(2))),
            ],
        ));
        let rows: Vec<S> = (0..cols.len())
            .map(|c| store(&out, add(mul(E::Grp, u(cols.len() as u64)), u(c as u64)), sh(c, u(0))))
            .collect();
        body.push(S::If(bin(Bo::Eq, E::Lid, u(0)), rows, Vec::new()));
        let shared = (0..cols.len()).map(|c| Shared { name: format!("sh{c}"), elem: Scalar::F64, lanes: 1 }).collect();
        self.push(name.to_string(), None, b, Launch::Groups(PARTIALS), shared, body, false)
    }

    /// The word a failed check of message `msg` of the next kernel writes.
    fn fail_code(&self, msg: u32) -> E {
        u(((self.plan.kernels.len() as u64) << 16 | msg as u64) + 1)
    }

    /// The tensor-core kernel of an `each` kernel's matrix work, where the target has tensor
    /// cores, the interaction's precision asks for them and the generator can write it. For
    /// `auto`, the f32 kernel with the tensor-core candidates beside it (`GpuPlan::choices`).
    fn tensor(&mut self, kid: usize, agent: usize) -> Option<usize> {
        let m = self.m;
        let plan = m.kernels[kid].tensor.as_ref()?;
        let f32_col = |c: &u32| device_scalar(m.column_types[agent][*c as usize]) == Scalar::F32;
        if self.matrix == MatrixUnits::None || !plan.inputs.iter().chain(&plan.outputs).all(f32_col) {
            return None;
        }
        let fixed = plan.precision != Precision::Auto;
        if fixed && self.matrix == MatrixUnits::MmaSync {
            return self.mma(kid, agent, plan.precision, None);
        }
        let wanted = if fixed { vec![plan.precision] } else { vec![Precision::F16, Precision::Bf16, Precision::Tf32] };
        let f32 = self.f32_tensor(kid, agent)?;
        let candidates: Vec<(Precision, usize)> = wanted
            .into_iter()
            .flat_map(|p| match self.matrix {
                MatrixUnits::Cooperative => self.coop_variants(kid, agent, p),
                _ => self.mma(kid, agent, p, None).map(|k| (p, k)).into_iter().collect(),
            })
            .collect();
        if !candidates.is_empty() {
            self.plan.choices.push(TensorChoice {
                name: m.kernels[kid].name.clone(),
                f32,
                candidates,
                outputs: homes(m, agent, &plan.outputs),
                accumulate: plan.accumulate,
                tolerance: plan.tolerance,
                fixed,
            });
        }
        Some(f32)
    }

    /// The cooperative-matrix kernels of kernel `kid`'s matrix work in `precision`, one per
    /// variant ([`coop::variants`]), best first, or none if none can be written.
    fn coop_variants(&mut self, kid: usize, agent: usize, precision: Precision) -> Vec<(Precision, usize)> {
        let plan = TensorPlan { precision, ..self.m.kernels[kid].tensor.clone().expect("a tensor plan") };
        if coop::supported(&plan).is_err() {
            return Vec::new();
        }
        coop::variants(&plan)
            .into_iter()
            .filter_map(|v| Some((precision, self.mma(kid, agent, precision, Some(v))?)))
            .collect()
    }

    /// A tensor-core kernel of kernel `kid`'s matrix work in `precision` (variant `coop` of the
    /// cooperative-matrix kernel on Vulkan), if one can be written.
    fn mma(&mut self, kid: usize, agent: usize, precision: Precision, coop: Option<CoopKernel>) -> Option<usize> {
        let m = self.m;
        let plan = TensorPlan { precision, ..m.kernels[kid].tensor.clone()? };
        if self.matrix == MatrixUnits::MmaSync {
            if let Some(n) = self.gemm(kid, agent, &plan) {
                return Some(n);
            }
        }
        // The other kernels bind a buffer per lane, which a wide field does not have.
        if plan.inputs.iter().chain(&plan.outputs).any(|&c| matches!(gpu::home(m, agent, c).0, Buf::Field { .. })) {
            return None;
        }
        match self.matrix {
            MatrixUnits::MmaSync if mma::unsupported(&plan).is_none() => {}
            MatrixUnits::Cooperative if coop.is_some() => {}
            _ => return None,
        }
        let mut b = Binds::new(m);
        let index = |b: &mut Binds, buf: Buf, write: bool| {
            b.get(buf, write);
            b.list.iter().position(|(x, _)| *x == buf).unwrap_or(0)
        };
        let sizes = index(&mut b, Buf::Sizes, false);
        // The cooperative-matrix kernel reads its layers from buffers of their own; the PTX
        // kernels stage them from the parameters.
        let (params, weights, biases) = if coop.is_some() {
            let w = index(&mut b, Buf::LayerWeights { kernel: kid }, false);
            (0, Some(w), Some(index(&mut b, Buf::LayerBiases { kernel: kid }, false)))
        } else {
            (index(&mut b, Buf::ParamsF32, false), None, None)
        };
        let inputs = plan.inputs.iter().map(|&col| index(&mut b, Buf::Col { agent, col }, false)).collect();
        let outputs = plan.outputs.iter().map(|&col| index(&mut b, Buf::Col { agent, col }, true)).collect();
        let compensated = compensated_columns(m);
        let comps = plan
            .outputs
            .iter()
            .map(|&col| compensated.contains(&(agent, col)).then(|| index(&mut b, Buf::Comp { agent, col }, true)))
            .collect();
        let spec = mma::MmaKernel { plan, agent, sizes, params, inputs, outputs, comps, weights, biases };
        let variant = coop.as_ref().map_or(String::new(), coop::variant_name);
        let name = format!("{}.{}{variant}", m.kernels[kid].name, precision.name());
        let n = self.push(name, Some(kid), b, Launch::Agents { agent }, Vec::new(), Vec::new(), false);
        self.plan.kernels[n].rows = coop.map_or(mma::ROWS, |v| coop::TILES * v.rows);
        self.plan.kernels[n].coop = coop;
        // Kahan's update is only as good as the order of its operations.
        self.kernels[n].exact = spec.comps.iter().any(Option::is_some);
        self.kernels[n].mma = Some(spec);
        Some(n)
    }

    /// A GEMM on tensor cores for `p.y = W @ p.x` (or `+=`, or a one-layer model) between two
    /// wide fields in f16: a kernel that copies x to f16 (the GEMM stages it with `cp.async`),
    /// launched before the GEMM, which is `mma.sync` everywhere and `wgmma` on Hopper.
    fn gemm(&mut self, kid: usize, agent: usize, plan: &TensorPlan) -> Option<usize> {
        let m = self.m;
        let whole = |cols: &[u32]| match field_runs(m, agent, cols).as_slice() {
            [Run::Lanes { buf: buf @ Buf::Field { lanes, .. }, lane: 0, n, .. }] if n == lanes => Some(*buf),
            _ => None,
        };
        let (Some(x), Some(y), [layer]) = (whole(&plan.inputs), whole(&plan.outputs), plan.layers.as_slice()) else {
            return None;
        };
        if plan.precision != Precision::F16 {
            return None;
        }
        let Buf::Field { col, lanes, .. } = x else { return None };
        let half = Buf::Half { agent, col, lanes };
        let mut b = Binds::new(m);
        b.get(x, false);
        b.get(half, true);
        b.get(Buf::Sizes, false);
        let name = format!("{}.f16_copy", m.kernels[kid].name);
        let conv = self.push(name, Some(kid), b, Launch::Agents { agent }, Vec::new(), Vec::new(), false);
        self.plan.kernels[conv].tiles = Some(gemm::copy_tiles(lanes));
        self.kernels[conv].gemm = Some(gemm::GemmCode::Copy { agent: agent as u32 });

        let mut b = Binds::new(m);
        for (buf, write) in [(half, false), (Buf::Weights { kernel: kid }, false), (Buf::Bias { kernel: kid }, false)] {
            b.get(buf, write);
        }
        b.get(y, true);
        b.get(Buf::Sizes, false);
        let spec = |arch| gemm::GemmSpec {
            rows: layer.rows,
            cols: layer.cols,
            accumulate: plan.accumulate,
            arch,
            agent: agent as u32,
        };
        let name = format!("{}.f16", m.kernels[kid].name);
        let n = self.push(name, Some(kid), b, Launch::Agents { agent }, Vec::new(), Vec::new(), false);
        let entry = super::ptx::entry_name(n);
        let (sync, hopper) = (spec(gemm::GemmArch::MmaSync), spec(gemm::GemmArch::Wgmma));
        let (sync_ptx, hopper_ptx) = (gemm::gemm_ptx(&sync, &entry), gemm::gemm_ptx(&hopper, &entry));
        let dk = &mut self.plan.kernels[n];
        dk.tiles = Some(gemm::tiles(&sync_ptx, &sync));
        dk.prelude = Some(conv);
        dk.hopper = Some(gpu::Hopper { tiles: gemm::tiles(&hopper_ptx, &hopper), ptx: hopper_ptx.text });
        self.kernels[n].gemm = Some(gemm::GemmCode::Layer(sync_ptx.text));
        Some(n)
    }

    /// The f32 kernel of an `each` kernel's matrix work (`ir::TensorPlan`): one thread per
    /// agent, which runs the layers as loops over the weights in the parameter buffer with its
    /// activations in two local arrays. The scalar kernel would unroll every multiply-add (tens
    /// of thousands of instructions for a modest model, which drivers compile slowly or not at
    /// all); this one is the same size for any width. `None` where the kernel has no plan or its
    /// columns are not all f32.
    fn f32_tensor(&mut self, kid: usize, agent: usize) -> Option<usize> {
        let m = self.m;
        let plan = m.kernels[kid].tensor.clone()?;
        let f32_col = |c: &u32| device_scalar(m.column_types[agent][*c as usize]) == Scalar::F32;
        if !plan.inputs.iter().chain(&plan.outputs).all(f32_col) {
            return None;
        }
        let mut b = Binds::new(m);
        let params = b.get(Buf::ParamsF32, false);
        let widest = plan.layers.iter().map(|l| l.rows.max(l.cols)).max().unwrap_or(1) as usize;
        let f = |x: f64| E::F(x, Scalar::F32);
        let arr = |n: &str, i: E| E::Arr(n.to_string(), Scalar::F32, Box::new(i));
        let mut body = vec![S::Array("h0".into(), Scalar::F32, widest), S::Array("h1".into(), Scalar::F32, widest)];
        for run in field_runs(m, agent, &plan.inputs) {
            match run {
                Run::Lanes { at, buf, lane, n } => {
                    let name = b.get(buf, false);
                    let src = b.lane_index(agent, add(u(lane as u64), var("j")), E::Gid);
                    body.push(lanes_loop(n, S::ArrStore("h0".into(), add(u(at as u64), var("j")), ld(&name, src))));
                }
                Run::Col { at, col } => body.push(S::ArrStore("h0".into(), u(at as u64), b.col(agent, col, E::Gid))),
            }
        }
        let last = plan.layers.len() - 1;
        for (li, l) in plan.layers.iter().enumerate() {
            let (src, dst) = if li % 2 == 0 { ("h0", "h1") } else { ("h1", "h0") };
            // s = Σ_k W[o, k]·h[k], then the bias, in the order the IR adds them.
            let w = add(u(l.weight as u64), add(mul(var("o"), u(l.cols as u64)), var("k")));
            let mac = set("s", add(var("s"), mul(ld(&params, w), arr(src, var("k")))));
            let mut out = var("s");
            if let Some(bias) = l.bias {
                out = add(out, ld(&params, add(u(bias as u64), var("o"))));
            }
            let y = if li == last { out } else { activation(plan.act, out) };
            let rows = vec![
                var_("s", Scalar::F32, f(0.0)),
                var_("k", Scalar::U32, u(0)),
                S::While(lt(var("k"), u(l.cols as u64)), vec![mac, incr("k", u(1))]),
                S::ArrStore(dst.into(), var("o"), y),
                incr("o", u(1)),
            ];
            body.push(S::Block(vec![var_("o", Scalar::U32, u(0)), S::While(lt(var("o"), u(l.rows as u64)), rows)]));
        }
        let result = if last % 2 == 0 { "h1" } else { "h0" };
        let compensated = compensated_columns(m);
        for run in field_runs(m, agent, &plan.outputs) {
            let Run::Lanes { at, buf, lane, n } = run else { continue };
            if (0..n).any(|l| compensated.contains(&(agent, plan.outputs[at + l as usize]))) {
                return None;
            }
            let name = b.get(buf, true);
            let dst = b.lane_index(agent, add(u(lane as u64), var("j")), E::Gid);
            let v = arr(result, add(u(at as u64), var("j")));
            let v = if plan.accumulate { add(ld(&name, dst.clone()), v) } else { v };
            body.push(lanes_loop(n, store(&name, dst, v)));
        }
        for (j, &col) in plan.outputs.iter().enumerate() {
            if matches!(gpu::home(m, agent, col).0, Buf::Field { .. }) {
                continue;
            }
            let target = b.get(Buf::Col { agent, col }, true);
            let v = arr(result, u(j as u64));
            let comp = compensated.contains(&(agent, col)).then(|| b.get(Buf::Comp { agent, col }, true));
            body.push(match (plan.accumulate, comp) {
                (false, None) => store(&target, E::Gid, v),
                (false, Some(cb)) => S::Block(vec![store(&target, E::Gid, v), store(&cb, E::Gid, f(0.0))]),
                (true, None) => store(&target, E::Gid, add(ld(&target, E::Gid), v)),
                // Kahan's compensated update, as the scalar kernel makes it.
                (true, Some(cb)) => S::Block(vec![
                    let_("old", Scalar::F32, ld(&target, E::Gid)),
                    let_("y", Scalar::F32, sub(v, ld(&cb, E::Gid))),
                    let_("t", Scalar::F32, add(var("old"), var("y"))),
                    store(&cb, E::Gid, sub(sub(var("t"), var("old")), var("y"))),
                    store(&target, E::Gid, var("t")),
                ]),
            });
        }
        let exact = plan.outputs.iter().any(|&col| compensated.contains(&(agent, col)));
        let body = per_agent(&mut b, agent, body);
        Some(self.push(m.kernels[kid].name.clone(), Some(kid), b, Launch::Agents { agent }, Vec::new(), body, exact))
    }

    /// One thread per agent; loads and stores its own agent only.
    fn map(&mut self, kid: usize, agent: usize) -> usize {
        let m = self.m;
        let k = &m.kernels[kid];
        let b = RefCell::new(Binds::new(m));
        let fail_codes: Vec<E> = (0..k.messages.len() as u32).map(|msg| self.fail_code(msg)).collect();
        let value = |v: V| var(&format!("v{v}"));
        let load = |_s: u8, col: u32| b.borrow_mut().col(agent, col, E::Gid);
        let param = |p: u32, s: Scalar| b.borrow_mut().param(p, s);
        let names = Names { value: &value, load: &load, param: &param };
        let col_ty = |_s: u8, col: u32| m.column_types[agent][col as usize];
        let roots: Vec<V> = k.insts.iter().enumerate().filter(|(_, x)| x.op.is_effect()).map(|(v, _)| v as V).collect();
        let need = needed(k, &roots);
        let mut body: Vec<S> = Vec::new();
        for (v, inst) in k.insts.iter().enumerate() {
            if need[v] && !inst.op.is_effect() {
                body.push(let_(&format!("v{v}"), reg(inst.ty), body::expr(k, &col_ty, v as V, &names)));
            }
        }
        let mut b = b.into_inner();
        let comp_cols: Vec<u32> =
            compensated_columns(m).into_iter().filter(|(a, _)| *a == agent).map(|(_, c)| c).collect();
        let comp = compensated_stores(m, k);
        for inst in &k.insts {
            match inst.op {
                Op::Check { cond, msg } => {
                    let f = b.get(Buf::Fail, true);
                    let not = E::Un(aiic_runtime::ir::UnOp::Not, Scalar::Bool, Box::new(value(cond)));
                    body.push(S::If(not, vec![store(&f, u(0), fail_codes[msg as usize].clone())], Vec::new()));
                }
                Op::Store { col, value: x, .. } => {
                    let (target, at) = b.place(agent, col, E::Gid, true);
                    let cs = device_scalar(m.column_types[agent][col as usize]);
                    if let Some((_, old, inc)) = comp.iter().find(|(c, _, _)| *c == col) {
                        // Kahan's compensated update, as on the CPU.
                        let cb = b.get(Buf::Comp { agent, col }, true);
                        body.push(S::Block(vec![
                            let_("y", Scalar::F32, sub(value(*inc), ld(&cb, E::Gid))),
                            let_("t", Scalar::F32, add(value(*old), var("y"))),
                            store(&cb, E::Gid, sub(sub(var("t"), value(*old)), var("y"))),
                            store(&target, at.clone(), var("t")),
                        ]));
                    } else {
                        body.push(store(&target, at.clone(), body::convert(reg(k.insts[x as usize].ty), cs, value(x))));
                        if comp_cols.contains(&col) {
                            let cb = b.get(Buf::Comp { agent, col }, true);
                            body.push(store(&cb, E::Gid, E::F(0.0, Scalar::F32)));
                        }
                    }
                }
                _ => {}
            }
        }
        let exact = !comp.is_empty();
        let body = per_agent(&mut b, agent, body);
        self.push(k.name.clone(), Some(kid), b, Launch::Agents { agent }, Vec::new(), body, exact)
    }

    /// A uniform grid over agents of type `agent`, rebuilt before each use: returns its index and
    /// the operations that build it.
    fn grid(&mut self, agent: usize, cell: f64) -> Result<(usize, Vec<GpuOp>), String> {
        let m = self.m;
        let pos = position_columns(m, agent)?;
        let spec = GridSpec { agent, pos: pos.clone(), cell };
        let grid = match self.plan.grids.iter().position(|g| *g == spec) {
            Some(g) => g,
            None => {
                self.plan.grids.push(spec);
                self.plan.grids.len() - 1
            }
        };
        let nslot = m.agents.len() + grid;
        let name = format!("grid{grid}_{}", m.agents[agent].name);

        // Count: each agent's bucket, and how many agents each bucket holds.
        let mut b = Binds::new(m);
        let nb = b.size(nslot);
        let mut body = vec![let_("nb", Scalar::U32, nb)];
        let cells = cell_coords(&mut b, agent, &pos, cell, E::Gid, &mut body);
        let cellb = b.get(Buf::GridCell { grid }, true);
        let count = b.get(Buf::GridCount { grid }, true);
        body.push(let_("h", Scalar::U32, hash(cells, var("nb"))));
        body.push(store(&cellb, E::Gid, var("h")));
        body.push(let_("old", Scalar::U32, E::AtomicAdd(count, Box::new(var("h")), Box::new(u(1)))));
        let body = per_agent(&mut b, agent, body);
        let count_k = self.push(format!("{name}_count"), None, b, Launch::Agents { agent }, Vec::new(), body, false);

        // Scan: one workgroup; each thread sums a run of buckets, thread 0 scans the sums.
        let mut b = Binds::new(m);
        let n = b.size(agent);
        let nb = b.size(nslot);
        let count = b.get(Buf::GridCount { grid }, true);
        let startb = b.get(Buf::GridStart { grid }, true);
        let part = |i: E| E::Sh("part".into(), Box::new(i), None);
        let count_at = |i: E| E::AtomicLoad(count.clone(), Box::new(i));
        let body = vec![
            let_("n", Scalar::U32, n),
            let_("nb", Scalar::U32, nb),
            let_("per", Scalar::U32, bin(Bo::Div, sub(add(var("nb"), E::Wg), u(1)), E::Wg)),
            let_("lo", Scalar::U32, bin(Bo::Min, mul(E::Lid, var("per")), var("nb"))),
            let_("hi", Scalar::U32, bin(Bo::Min, add(var("lo"), var("per")), var("nb"))),
            var_("s", Scalar::U32, u(0)),
            var_("x", Scalar::U32, var("lo")),
            S::While(lt(var("x"), var("hi")), vec![incr("s", count_at(var("x"))), incr("x", u(1))]),
            S::ShStore("part".into(), E::Lid, var("s")),
            S::Barrier,
            S::If(
                bin(Bo::Eq, E::Lid, u(0)),
                vec![
                    var_("run", Scalar::U32, u(0)),
                    var_("q", Scalar::U32, u(0)),
                    S::While(
                        lt(var("q"), E::Wg),
                        vec![
                            let_("c", Scalar::U32, part(var("q"))),
                            S::ShStore("part".into(), var("q"), var("run")),
                            incr("run", var("c")),
                            incr("q", u(1)),
                        ],
                    ),
                    store(&startb, var("nb"), var("n")),
                ],
                Vec::new(),
            ),
            S::Barrier,
            var_("run2", Scalar::U32, part(E::Lid)),
            set("x", var("lo")),
            S::While(
                lt(var("x"), var("hi")),
                vec![
                    let_("c", Scalar::U32, count_at(var("x"))),
                    store(&startb, var("x"), var("run2")),
                    S::AtomicStore(count.clone(), var("x"), var("run2")),
                    incr("run2", var("c")),
                    incr("x", u(1)),
                ],
            ),
        ];
        let part_arr = Shared { name: "part".into(), elem: Scalar::U32, lanes: 1 };
        let scan_k = self.push(format!("{name}_scan"), None, b, Launch::Single, vec![part_arr], body, false);

        // Scatter: each agent takes the next place of its bucket.
        let mut b = Binds::new(m);
        let cellb = b.get(Buf::GridCell { grid }, false);
        let count = b.get(Buf::GridCount { grid }, true);
        let sorted = b.get(Buf::GridSorted { grid }, true);
        let at = E::AtomicAdd(count, Box::new(ld(&cellb, E::Gid)), Box::new(u(1)));
        let body = per_agent(&mut b, agent, vec![let_("at", Scalar::U32, at), store(&sorted, var("at"), E::Gid)]);
        let scatter_k =
            self.push(format!("{name}_scatter"), None, b, Launch::Agents { agent }, Vec::new(), body, false);
        Ok((
            grid,
            vec![
                GpuOp::Zero(Buf::GridCount { grid }),
                GpuOp::Launch(count_k),
                GpuOp::Launch(scan_k),
                GpuOp::Launch(scatter_k),
            ],
        ))
    }

    /// Gathering pair kernels: for pairs of one type one kernel; for two types one per side
    /// that has changes.
    fn pairs(&mut self, kid: usize, a: usize, b: usize, grids: Option<(usize, usize)>) -> Result<Vec<GpuOp>, String> {
        let k = &self.m.kernels[kid];
        let has = |slot: u8| {
            k.insts.iter().any(|i| {
                matches!(i.op, Op::Accum { slot: s, .. } if s == slot)
                    || (slot == 0 && matches!(i.op, Op::Check { .. }))
            })
        };
        let agents = [a, b];
        let loads: Vec<(usize, u32)> = k
            .insts
            .iter()
            .filter_map(|i| match i.op {
                Op::Load { slot, col } => Some((agents[slot as usize], col)),
                _ => None,
            })
            .collect();
        let accums: Vec<(usize, u32)> = k
            .insts
            .iter()
            .filter_map(|i| match i.op {
                Op::Accum { slot, col, .. } => Some((agents[slot as usize], col)),
                _ => None,
            })
            .collect();
        // Delta buffers where the kernel reads a column it adds to.
        let via_delta = accums.iter().any(|x| loads.contains(x));
        let mut kernels: Vec<Vec<Side>> = Vec::new();
        if a == b {
            let sides: Vec<Side> = [0u8, 1].into_iter().filter(|&s| has(s)).map(|own| Side { own }).collect();
            if !sides.is_empty() {
                kernels.push(sides);
            }
        } else {
            kernels.extend([0u8, 1].into_iter().filter(|&s| has(s)).map(|own| vec![Side { own }]));
        }
        let mut ops = Vec::new();
        for sides in kernels {
            let own_agent = agents[sides[0].own as usize];
            let par_agent = agents[sides[0].partner() as usize];
            let grid = grids.map(|(ga, gb)| if sides[0].own == 0 { gb } else { ga });
            let at = Gather { kid, sides, own_agent, par_agent, same: a == b, grid, via_delta };
            ops.push(GpuOp::Launch(self.gather(&at)?));
        }
        if via_delta {
            let mut done: Vec<usize> = Vec::new();
            for &(agent, _) in &accums {
                if !done.contains(&agent) {
                    done.push(agent);
                    let cols: Vec<u32> = accums.iter().filter(|(t, _)| *t == agent).map(|(_, c)| *c).collect();
                    ops.push(GpuOp::Launch(self.apply_deltas(kid, agent, &cols)));
                }
            }
        }
        Ok(ops)
    }

    fn apply_deltas(&mut self, kid: usize, agent: usize, cols: &[u32]) -> usize {
        let mut b = Binds::new(self.m);
        let mut body = Vec::new();
        let mut seen = Vec::new();
        for &col in cols {
            if !seen.contains(&col) {
                seen.push(col);
                let c = b.get(Buf::Col { agent, col }, true);
                let dl = b.get(Buf::Delta { agent, col }, false);
                body.push(store(&c, E::Gid, add(ld(&c, E::Gid), ld(&dl, E::Gid))));
            }
        }
        let body = per_agent(&mut b, agent, body);
        let name = format!("{}_apply_{}", self.m.kernels[kid].name, self.m.agents[agent].name);
        self.push(name, Some(kid), b, Launch::Agents { agent }, Vec::new(), body, false)
    }

    fn gather(&mut self, at: &Gather) -> Result<usize, String> {
        let m = self.m;
        let k: &Kernel = &m.kernels[at.kid];
        let (own_agent, par_agent) = (at.own_agent, at.par_agent);
        let agents_of = |slot: u8| if slot == at.sides[0].own { own_agent } else { par_agent };
        let fail_codes: Vec<E> = (0..k.messages.len() as u32).map(|msg| self.fail_code(msg)).collect();
        let b = RefCell::new(Binds::new(m));
        let col_ty = |slot: u8, col: u32| m.column_types[agents_of(slot)][col as usize];

        // Per side: its changes (split into factors where that pays), what it needs, and which of
        // that varies with the partner.
        let plans: Vec<SidePlan> = at
            .sides
            .iter()
            .map(|&side| {
                let accums: Vec<(u32, V)> = k
                    .insts
                    .iter()
                    .filter_map(|i| match i.op {
                        Op::Accum { slot, col, value } if slot == side.own => Some((col, value)),
                        _ => None,
                    })
                    .collect();
                let checks = side.own == at.sides[0].own;
                let vary = depends_on(k, side.partner());
                let terms = terms(k, &accums, &vary, |col| device_scalar(m.column_types[own_agent][col as usize]));
                let mut roots: Vec<V> = Vec::new();
                for t in &terms {
                    match &t.factors {
                        Some(f) => roots.extend(f.inv.iter().chain(&f.var)),
                        None => roots.push(t.value),
                    }
                }
                roots.extend(k.guard);
                if checks {
                    roots.extend(k.insts.iter().filter_map(|i| match i.op {
                        Op::Check { cond, .. } => Some(cond),
                        _ => None,
                    }));
                }
                let need = needed(k, &roots);
                let mut uses = vec![0u32; k.insts.len()];
                for (v, inst) in k.insts.iter().enumerate() {
                    if need[v] {
                        inst.op.args().iter().for_each(|a| uses[*a as usize] += 1);
                    }
                }
                roots.iter().for_each(|r| uses[*r as usize] += 1);
                SidePlan { side, need, vary, uses, terms, checks }
            })
            .collect();

        // Partner columns, staged in tiles for all pairs or read directly for neighbours.
        let mut par_cols: Vec<u32> = Vec::new();
        for p in &plans {
            for (v, inst) in k.insts.iter().enumerate() {
                if let Op::Load { slot, col } = inst.op {
                    if p.need[v] && slot == p.side.partner() && !par_cols.contains(&col) {
                        par_cols.push(col);
                    }
                }
            }
        }
        let tiled = at.grid.is_none();
        // f32 columns four to a vector, so that one wide read of the tile serves four of them.
        let mut shared: Vec<Shared> = Vec::new();
        let mut tile_cols: Vec<Vec<u32>> = Vec::new();
        if tiled {
            let is_f32 = |c: &u32| device_scalar(m.column_types[par_agent][*c as usize]) == Scalar::F32;
            let (wide, narrow): (Vec<u32>, Vec<u32>) = par_cols.iter().partition(|c| is_f32(c));
            for (g, group) in wide.chunks(4).enumerate() {
                shared.push(Shared { name: format!("t4_{g}"), elem: Scalar::F32, lanes: 4 });
                tile_cols.push(group.to_vec());
            }
            for col in narrow {
                let elem = device_scalar(m.column_types[par_agent][col as usize]);
                shared.push(Shared { name: format!("t_{}", &col_name(m, par_agent, col)[2..]), elem, lanes: 1 });
                tile_cols.push(vec![col]);
            }
        }
        let tile_load = |col: u32| -> E {
            let t = tile_cols.iter().position(|g| g.contains(&col)).unwrap_or(0);
            let lane = (shared[t].lanes == 4).then(|| tile_cols[t].iter().position(|c| *c == col).unwrap_or(0) as u8);
            E::Sh(shared[t].name.clone(), Box::new(var("kk")), lane)
        };

        // Tiled gathers hold `rows` agents per thread (register blocking): each partner read
        // from the tile serves all of them. Thread `lid` of workgroup `grp` holds agents
        // `grp·wg·rows + r·wg + lid`, so loads stay coalesced.
        let rows = if tiled { self.rows } else { 1 };
        let mut out: Vec<S> = Vec::new();
        let n_own = b.borrow_mut().size(own_agent);
        let n_par = b.borrow_mut().size(par_agent);
        out.push(let_("n_own", Scalar::U32, n_own));
        out.push(let_("n_par", Scalar::U32, n_par));
        out.push(let_("blk", Scalar::U32, mul(mul(E::Grp, E::Wg), u(rows as u64))));
        for r in 0..rows {
            let i = add(plus_wg(var("blk"), r), E::Lid);
            out.push(let_(&format!("i{r}"), Scalar::U32, i));
            out.push(let_(
                &format!("ic{r}"),
                Scalar::U32,
                bin(Bo::Min, var(&format!("i{r}")), sub(var("n_own"), u(1))),
            ));
            out.push(let_(&format!("live{r}"), Scalar::Bool, lt(var(&format!("i{r}")), var("n_own"))));
        }

        // Values that do not depend on the partner, once per thread and row.
        for r in 0..rows {
            for p in &plans {
                let s = p.side.own;
                let value = |v: V| var(&format!("h{s}_{v}_{r}"));
                let load = |_slot: u8, col: u32| b.borrow_mut().col(own_agent, col, var(&format!("ic{r}")));
                let param = |pi: u32, sc: Scalar| b.borrow_mut().param(pi, sc);
                let names = Names { value: &value, load: &load, param: &param };
                for (v, inst) in k.insts.iter().enumerate() {
                    if p.need[v] && !p.vary[v] && !inst.op.is_effect() {
                        out.push(let_(&format!("h{s}_{v}_{r}"), reg(inst.ty), body::expr(k, &col_ty, v as V, &names)));
                    }
                }
            }
        }
        // A sum per row, side and column; a factor every pair of a sum shares is applied once,
        // at the end (`fac`).
        let mut acc_cols: Vec<u32> = Vec::new();
        for r in 0..rows {
            for p in &plans {
                let s = p.side.own;
                for t in &p.terms {
                    if !acc_cols.contains(&t.col) {
                        acc_cols.push(t.col);
                    }
                    let cs = device_scalar(col_ty(s, t.col));
                    out.push(var_(&format!("acc{s}_{}_{r}", t.col), cs, body::constant(cs, 0.0)));
                    if let Some(f) = &t.factors {
                        let prod = product(f.inv.iter().map(|v| var(&format!("h{s}_{v}_{r}"))).collect());
                        let prod = if f.negate { E::Un(aiic_runtime::ir::UnOp::Neg, cs, Box::new(prod)) } else { prod };
                        out.push(let_(&format!("fac{s}_{}_{r}", t.col), cs, prod));
                    }
                }
            }
        }

        // With several rows, partner values are read once per partner, before the rows use them;
        // with one, where they are used (the form the Vulkan drivers measured fastest).
        let partner = |col: u32| -> E {
            if tiled {
                tile_load(col)
            } else {
                b.borrow_mut().col(par_agent, col, var("jj"))
            }
        };
        let prelude = || -> Vec<S> {
            if rows == 1 {
                return Vec::new();
            }
            par_cols
                .iter()
                .map(|&col| {
                    let ty = device_scalar(m.column_types[par_agent][col as usize]);
                    let_(&format!("pj_{col}"), ty, partner(col))
                })
                .collect()
        };
        // The body of one pair, for side `p` and row `r`, with the partner at index `jj`.
        let instance = |p: &SidePlan, r: u32| -> Vec<S> {
            let s = p.side.own;
            let value = |v: V| if p.vary[v as usize] { var(&format!("v{v}")) } else { var(&format!("h{s}_{v}_{r}")) };
            let load = |_slot: u8, col: u32| if rows == 1 { partner(col) } else { var(&format!("pj_{col}")) };
            let param = |pi: u32, sc: Scalar| b.borrow_mut().param(pi, sc);
            let names = Names { value: &value, load: &load, param: &param };
            let mut t: Vec<S> = Vec::new();
            for (v, inst) in k.insts.iter().enumerate() {
                if p.need[v] && p.vary[v] && !inst.op.is_effect() {
                    let e = invariant_last(k, v as V, &p.vary, &p.uses, &value)
                        .unwrap_or_else(|| body::expr(k, &col_ty, v as V, &names));
                    t.push(let_(&format!("v{v}"), reg(inst.ty), e));
                }
            }
            let mut eff: Vec<S> = Vec::new();
            // Partner-dependent factors every factored sum of the side shares, multiplied once.
            let factored: Vec<&Factors> = p.terms.iter().filter_map(|t| t.factors.as_ref()).collect();
            let distinct = factored.iter().all(|f| f.var.iter().enumerate().all(|(n, v)| !f.var[..n].contains(v)));
            let common: Vec<V> = match factored.split_first() {
                Some((first, rest)) if !rest.is_empty() && distinct => {
                    first.var.iter().copied().filter(|v| rest.iter().all(|f| f.var.contains(v))).collect()
                }
                _ => Vec::new(),
            };
            let common: &[V] = if common.len() > 1 { &common } else { &[] };
            if !common.is_empty() {
                let ty = reg(k.insts[common[0] as usize].ty);
                eff.push(let_(&format!("cm{s}"), ty, product(common.iter().map(|v| value(*v)).collect())));
            }
            for t in &p.terms {
                let cs = device_scalar(col_ty(s, t.col));
                let x = match &t.factors {
                    Some(f) => {
                        let mut parts: Vec<E> = Vec::new();
                        if !common.is_empty() {
                            parts.push(var(&format!("cm{s}")));
                        }
                        parts.extend(f.var.iter().filter(|v| !common.contains(v)).map(|v| value(*v)));
                        product(parts)
                    }
                    None => body::convert(reg(k.insts[t.value as usize].ty), cs, value(t.value)),
                };
                eff.push(incr(&format!("acc{s}_{}_{r}", t.col), x));
            }
            if p.checks {
                for inst in &k.insts {
                    if let Op::Check { cond, msg } = inst.op {
                        let f = b.borrow_mut().get(Buf::Fail, true);
                        let not = E::Un(aiic_runtime::ir::UnOp::Not, Scalar::Bool, Box::new(value(cond)));
                        let failed = bin(Bo::And, var(&format!("live{r}")), not);
                        eff.push(S::If(failed, vec![store(&f, u(0), fail_codes[msg as usize].clone())], Vec::new()));
                    }
                }
            }
            match k.guard {
                Some(g) => t.push(S::If(value(g), eff, Vec::new())),
                None => t.extend(eff),
            }
            vec![S::Block(t)]
        };
        let by_own = |own: u8| plans.iter().find(|p| p.side.own == own);
        // Every row on one side: `own` 0 when all partners of the tile lie above the rows.
        let all_rows = |own: u8| -> Vec<S> {
            let mut out = prelude();
            if let Some(p) = by_own(own) {
                (0..rows).for_each(|r| out.extend(instance(p, r)));
            }
            out
        };
        // Same type: a row holds slot 0 when its partner's index is higher.
        let visit_masked = || -> Vec<S> {
            let mut out = prelude();
            for r in 0..rows {
                if !at.same {
                    out.extend(instance(&plans[0], r));
                    continue;
                }
                let above = by_own(0).map(|p| instance(p, r)).unwrap_or_default();
                let below = by_own(1).map(|p| instance(p, r)).unwrap_or_default();
                let i = var(&format!("i{r}"));
                out.push(S::If(
                    bin(Bo::Gt, var("jj"), i.clone()),
                    above,
                    vec![S::If(lt(var("jj"), i), below, Vec::new())],
                ));
            }
            out
        };

        if tiled {
            // Whole tiles run `TILE_UNROLL` partners per trip; the others test each.
            let kloop = |inner: Vec<S>, masked: bool| -> Vec<S> {
                if masked {
                    let mut trip = vec![let_("jj", Scalar::U32, add(var("base"), var("kk")))];
                    trip.push(S::If(lt(var("jj"), var("n_par")), inner, Vec::new()));
                    trip.push(incr("kk", u(1)));
                    return vec![var_("kk", Scalar::U32, u(0)), S::While(lt(var("kk"), E::Wg), trip)];
                }
                let mut trip = Vec::new();
                for r in 0..TILE_UNROLL {
                    let mut one = vec![
                        let_("kk", Scalar::U32, add(var("kq"), u(r as u64))),
                        let_("jj", Scalar::U32, add(var("base"), var("kk"))),
                    ];
                    one.extend(inner.iter().cloned());
                    trip.push(S::Block(one));
                }
                trip.push(incr("kq", u(TILE_UNROLL as u64)));
                vec![var_("kq", Scalar::U32, u(0)), S::While(lt(var("kq"), E::Wg), trip)]
            };
            let mut fill = Vec::new();
            for (t, cols) in shared.iter().zip(&tile_cols) {
                let mut src: Vec<E> = cols.iter().map(|&col| b.borrow_mut().col(par_agent, col, var("j"))).collect();
                let value = if t.lanes == 4 {
                    src.resize(4, E::F(0.0, Scalar::F32));
                    E::Vec4(src)
                } else {
                    src.remove(0)
                };
                fill.push(S::ShStore(t.name.clone(), E::Lid, value));
            }
            let full = bin(Bo::Le, add(var("base"), E::Wg), var("n_par"));
            let mut trip = vec![
                let_("j", Scalar::U32, add(var("base"), E::Lid)),
                S::Barrier,
                S::If(lt(var("j"), var("n_par")), fill, Vec::new()),
                S::Barrier,
            ];
            if at.same {
                // A tile wholly above or below the workgroup's rows needs no test per pair.
                // (With one row, only the tile at `blk` overlaps: the simpler test keeps the
                // branch easy for drivers to see as uniform.)
                let apart = if rows == 1 {
                    bin(Bo::Ne, var("base"), var("blk"))
                } else {
                    let top = plus_wg(var("blk"), rows);
                    bin(Bo::Or, bin(Bo::Ge, var("base"), top), bin(Bo::Le, add(var("base"), E::Wg), var("blk")))
                };
                let whole = vec![S::If(
                    bin(Bo::Gt, var("base"), var("blk")),
                    kloop(all_rows(0), false),
                    kloop(all_rows(1), false),
                )];
                trip.push(S::If(bin(Bo::And, full, apart), whole, kloop(visit_masked(), true)));
            } else {
                trip.push(S::If(
                    full,
                    kloop(all_rows(0).into_iter().chain(Vec::new()).collect(), false),
                    kloop(visit_masked(), true),
                ));
            }
            trip.push(incr("base", E::Wg));
            out.push(var_("base", Scalar::U32, u(0)));
            out.push(S::While(lt(var("base"), var("n_par")), trip));
        } else {
            let grid = at.grid.unwrap_or(0);
            let spec = self.plan.grids[grid].clone();
            let nslot = m.agents.len() + grid;
            let nb = b.borrow_mut().size(nslot);
            out.push(let_("nb", Scalar::U32, nb));
            let own_pos = position_columns(m, own_agent)?;
            let cells = cell_coords(&mut b.borrow_mut(), own_agent, &own_pos, spec.cell, var("ic0"), &mut out);
            // The 3^dims cells around the agent's own; neighbouring cells may share a bucket,
            // and each bucket is visited once.
            let cells_n = 3u64.pow(cells.len() as u32);
            let coords: Vec<E> = cells
                .into_iter()
                .enumerate()
                .map(|(n, c)| {
                    let digit = bin(Bo::Rem, bin(Bo::Div, var("o"), u(3u64.pow(n as u32))), u(3));
                    sub(add(c, cast(Scalar::I32, digit)), E::I(1))
                })
                .collect();
            let hs = |i: E| E::Arr("hs".into(), Scalar::U32, Box::new(i));
            out.push(S::Array("hs".into(), Scalar::U32, cells_n as usize));
            out.push(var_("nh", Scalar::U32, u(0)));
            out.push(var_("o", Scalar::U32, u(0)));
            out.push(S::While(
                lt(var("o"), u(cells_n)),
                vec![
                    let_("h", Scalar::U32, hash(coords, var("nb"))),
                    var_("fresh", Scalar::Bool, E::B(true)),
                    var_("r", Scalar::U32, u(0)),
                    S::While(
                        lt(var("r"), var("nh")),
                        vec![
                            S::If(bin(Bo::Eq, hs(var("r")), var("h")), vec![set("fresh", E::B(false))], Vec::new()),
                            incr("r", u(1)),
                        ],
                    ),
                    S::If(
                        var("fresh"),
                        vec![S::ArrStore("hs".into(), var("nh"), var("h")), incr("nh", u(1))],
                        Vec::new(),
                    ),
                    incr("o", u(1)),
                ],
            ));
            let start = b.borrow_mut().get(Buf::GridStart { grid }, false);
            let sorted = b.borrow_mut().get(Buf::GridSorted { grid }, false);
            let mut visit = vec![let_("jj", Scalar::U32, ld(&sorted, var("at")))];
            visit.extend(visit_masked());
            visit.push(incr("at", u(1)));
            out.push(var_("q", Scalar::U32, u(0)));
            out.push(S::While(
                lt(var("q"), var("nh")),
                vec![
                    var_("at", Scalar::U32, ld(&start, hs(var("q")))),
                    let_("end", Scalar::U32, ld(&start, add(hs(var("q")), u(1)))),
                    S::While(lt(var("at"), var("end")), visit),
                    incr("q", u(1)),
                ],
            ));
        }

        // Write each row's sums.
        for r in 0..rows {
            let mut write = Vec::new();
            let i = var(&format!("i{r}"));
            for col in &acc_cols {
                let sums: Vec<E> = plans
                    .iter()
                    .flat_map(|p| p.terms.iter().map(move |t| (p.side.own, t)))
                    .filter(|(_, t)| t.col == *col)
                    .map(|(s, t)| match t.factors {
                        Some(_) => mul(var(&format!("fac{s}_{col}_{r}")), var(&format!("acc{s}_{col}_{r}"))),
                        None => var(&format!("acc{s}_{col}_{r}")),
                    })
                    .collect();
                let mut it = sums.into_iter();
                let first = it.next().unwrap_or(E::F(0.0, Scalar::F32));
                let total = it.fold(first, add);
                if at.via_delta {
                    let dl = b.borrow_mut().get(Buf::Delta { agent: own_agent, col: *col }, true);
                    write.push(store(&dl, i.clone(), total));
                } else {
                    let c = b.borrow_mut().get(Buf::Col { agent: own_agent, col: *col }, true);
                    write.push(store(&c, i.clone(), add(ld(&c, i.clone()), total)));
                }
            }
            out.push(S::If(var(&format!("live{r}")), write, Vec::new()));
        }
        let suffix = if at.same { String::new() } else { format!("_{}", m.agents[own_agent].name) };
        let name = format!("{}{suffix}", k.name);
        let launch = Launch::Agents { agent: own_agent };
        Ok(self.push_rows(name, Some(at.kid), b.into_inner(), launch, shared, out, rows))
    }
}

/// One gathering kernel: the pair kernel, the sides its threads take, and where partners are.
struct Gather {
    kid: usize,
    sides: Vec<Side>,
    own_agent: usize,
    par_agent: usize,
    same: bool,
    grid: Option<usize>,
    via_delta: bool,
}

struct SidePlan {
    side: Side,
    need: Vec<bool>,
    vary: Vec<bool>,
    /// How many needed instructions (and effects) read each value.
    uses: Vec<u32>,
    terms: Vec<Term>,
    checks: bool,
}

fn position_columns(m: &Module, agent: usize) -> Result<Vec<u32>, String> {
    let schema = &m.agents[agent];
    let (fi, f) = schema
        .field("position")
        .ok_or_else(|| format!("agent `{}` has no `position`, which a neighbour search needs", schema.name))?;
    if f.lanes.len() > 3 {
        return Err(format!(
            "`{}.position` has {} dimensions; the neighbour grid has at most 3",
            schema.name,
            f.lanes.len()
        ));
    }
    let start = schema.column_offsets()[fi] as u32;
    Ok((start..start + f.lanes.len() as u32).collect())
}

/// Declares the integer cell coordinates of agent `idx` into `out` and returns them.
fn cell_coords(b: &mut Binds, agent: usize, pos: &[u32], cell: f64, idx: E, out: &mut Vec<S>) -> Vec<E> {
    let inv = E::F(1.0 / cell, Scalar::F32);
    pos.iter()
        .enumerate()
        .map(|(n, &col)| {
            let cs = b.col_ty(agent, col);
            let x = body::convert(cs, Scalar::F32, b.col(agent, col, idx.clone()));
            let name = format!("cell{n}");
            let floor = E::Un(aiic_runtime::ir::UnOp::Floor, Scalar::F32, Box::new(mul(x, inv.clone())));
            out.push(let_(&name, Scalar::I32, cast(Scalar::I32, floor)));
            var(&name)
        })
        .collect()
}

/// `x + times·wg`, written as additions: the SPIR-V path specializes the workgroup size after
/// naga has folded constant expressions, so `wg` never meets another constant.
fn plus_wg(x: E, times: u32) -> E {
    (0..times).fold(x, |e, _| add(e, E::Wg))
}

/// `(a + b) + c`, with `c` the same for every partner and `a + b` used nowhere else, as
/// `a + (b + c)`, down the chain: the partner-independent term then meets the innermost product
/// first, and every addition of the chain fuses with a multiplication (r² + ε² of softened
/// forces becomes three multiply-adds). Only the f32 rounding changes.
fn invariant_last(k: &Kernel, v: V, vary: &[bool], uses: &[u32], value: &dyn Fn(V) -> E) -> Option<E> {
    use aiic_runtime::ir::BinOp;
    let chain = |x: V| {
        vary[x as usize]
            && uses[x as usize] == 1
            && k.insts[x as usize].ty.is_float()
            && matches!(k.insts[x as usize].op, Op::Bin(BinOp::Add, ..))
    };
    let Op::Bin(BinOp::Add, a, b) = k.insts[v as usize].op else { return None };
    if !k.insts[v as usize].ty.is_float() {
        return None;
    }
    let (sum, c) = match (vary[a as usize], vary[b as usize]) {
        (true, false) if chain(a) => (a, value(b)),
        (false, true) if chain(b) => (b, value(a)),
        _ => return None,
    };
    fn sink(k: &Kernel, x: V, c: E, chain: &dyn Fn(V) -> bool, value: &dyn Fn(V) -> E) -> E {
        match k.insts[x as usize].op {
            Op::Bin(aiic_runtime::ir::BinOp::Add, p, q) if chain(x) => add(value(p), sink(k, q, c, chain, value)),
            _ => add(value(x), c),
        }
    }
    Some(sink(k, sum, c, &chain, value))
}

/// One change a gathering thread sums: `value` into column `col`.
struct Term {
    col: u32,
    value: V,
    factors: Option<Factors>,
}

/// A product split into the factors that do not depend on the partner (`inv`, applied once to
/// the sum) and those that do (`var`, multiplied per pair).
struct Factors {
    negate: bool,
    inv: Vec<V>,
    var: Vec<V>,
}

/// The changes of one side, each split into factors where that pays: a float product with at
/// least one factor of each kind, the only change of its column on this side.
fn terms(k: &Kernel, accums: &[(u32, V)], vary: &[bool], col_ty: impl Fn(u32) -> Scalar) -> Vec<Term> {
    accums
        .iter()
        .map(|&(col, value)| {
            let alone = accums.iter().filter(|(c, _)| *c == col).count() == 1;
            let mut f = Factors { negate: false, inv: Vec::new(), var: Vec::new() };
            split_product(k, value, vary, &mut f);
            let useful = alone && col_ty(col).is_float() && !f.inv.is_empty() && !f.var.is_empty();
            Term { col, value, factors: useful.then_some(f) }
        })
        .collect()
}

/// Splits `v` along multiplications and negations down to the partner-independent factors;
/// a partner-dependent subtree with none inside stays one factor.
fn split_product(k: &Kernel, v: V, vary: &[bool], f: &mut Factors) {
    use aiic_runtime::ir::{BinOp, UnOp};
    let inst = &k.insts[v as usize];
    if !vary[v as usize] {
        f.inv.push(v);
        return;
    }
    if inst.ty.is_float() && holds_invariant(k, v, vary) {
        match inst.op {
            Op::Bin(BinOp::Mul, a, b) => {
                split_product(k, a, vary, f);
                split_product(k, b, vary, f);
                return;
            }
            Op::Un(UnOp::Neg, a) => {
                f.negate = !f.negate;
                split_product(k, a, vary, f);
                return;
            }
            _ => {}
        }
    }
    f.var.push(v);
}

/// Whether a product tree (through multiplications and negations) has a partner-independent factor.
fn holds_invariant(k: &Kernel, v: V, vary: &[bool]) -> bool {
    use aiic_runtime::ir::{BinOp, UnOp};
    if !vary[v as usize] {
        return true;
    }
    match k.insts[v as usize].op {
        Op::Bin(BinOp::Mul, a, b) => holds_invariant(k, a, vary) || holds_invariant(k, b, vary),
        Op::Un(UnOp::Neg, a) => holds_invariant(k, a, vary),
        _ => false,
    }
}
