//! The reference interpreter: runs kernel IR in f64. It defines what every backend must
//! reproduce (up to its precision), so it favours clarity over speed.

use super::{Activation, BinOp, Dist, InitOp, Kernel, Module, Op, Pattern, Scalar, Sched, TensorPlan, UnOp};
use crate::grid::{CellGrid, GridError};
use crate::input::{read_table, InputError};
pub use crate::monitor::LawSample;
use crate::onnx::hosted::{host_engine, Hosted};
use crate::sum::NeumaierSum;
use crate::{AgentData, World};
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Check(String),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("neighbour search: {0}")]
    Grid(#[from] GridError),
    #[error("{0}")]
    Invalid(String),
}

pub fn eval_un(op: UnOp, ty: Scalar, a: f64) -> f64 {
    let r = match op {
        UnOp::Neg => -a,
        UnOp::Not => f64::from(a == 0.0),
        UnOp::Sqrt => a.sqrt(),
        UnOp::Rsqrt => 1.0 / a.sqrt(),
        UnOp::Abs => a.abs(),
        UnOp::Exp => a.exp(),
        UnOp::Log => a.ln(),
        UnOp::Sin => a.sin(),
        UnOp::Cos => a.cos(),
        UnOp::Tanh => a.tanh(),
        UnOp::Floor => a.floor(),
    };
    if ty.is_int() {
        r.trunc()
    } else {
        r
    }
}

pub fn eval_bin(op: BinOp, ty: Scalar, a: f64, b: f64) -> f64 {
    let int = ty.is_int();
    match op {
        BinOp::Add => wrap(ty, a + b),
        BinOp::Sub => wrap(ty, a - b),
        BinOp::Mul => wrap(ty, a * b),
        // Integer division and remainder by zero give zero on every backend (the language's rule;
        // the CPU code guards the divisor the same way).
        BinOp::Div if int => {
            if b == 0.0 {
                0.0
            } else {
                (a / b).trunc()
            }
        }
        BinOp::Div => a / b,
        BinOp::Rem if int && b == 0.0 => 0.0,
        BinOp::Rem => a % b,
        BinOp::Pow => wrap(ty, a.powf(b)),
        BinOp::Min => a.min(b),
        BinOp::Max => a.max(b),
        BinOp::Eq => f64::from(a == b),
        BinOp::Ne => f64::from(a != b),
        BinOp::Lt => f64::from(a < b),
        BinOp::Le => f64::from(a <= b),
        BinOp::Gt => f64::from(a > b),
        BinOp::Ge => f64::from(a >= b),
        BinOp::And => f64::from(a != 0.0 && b != 0.0),
        BinOp::Or => f64::from(a != 0.0 || b != 0.0),
    }
}

fn wrap(ty: Scalar, x: f64) -> f64 {
    match ty {
        Scalar::I32 => (x as i64 as i32) as f64,
        Scalar::U32 => (x as i64 as u32) as f64,
        _ => x,
    }
}

pub fn eval_cast(ty: Scalar, a: f64) -> f64 {
    match ty {
        Scalar::Bool => f64::from(a != 0.0),
        Scalar::I32 => (a.trunc() as i64 as i32) as f64,
        Scalar::U32 => (a.trunc() as i64 as u32) as f64,
        _ => a,
    }
}

/// A counter-based random number: a pure function of its coordinates, so initial conditions do
/// not depend on evaluation order (or, later, on which device runs `init`).
pub fn random(seed: u64, kernel: u64, index: u64, stream: u64, dist: Dist) -> f64 {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    let base = mix(mix(mix(mix(seed) ^ kernel) ^ index) ^ stream);
    let unit = |h: u64| (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    match dist {
        Dist::Uniform => unit(base),
        Dist::Normal => {
            // Box–Muller from two independent uniforms; 1 - u keeps the logarithm finite.
            let u1 = 1.0 - unit(mix(base ^ 1));
            let u2 = unit(mix(base ^ 2));
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        }
    }
}

/// What the instructions of one kernel invocation read.
struct Inputs<'a> {
    agents: [Option<(&'a AgentData, usize)>; 2],
    uniforms: &'a [f64],
    inputs: &'a [f64],
    index: usize,
    count: usize,
    seed: u64,
    kernel: usize,
}

/// A tensor plan's outputs for one agent, in f64: each layer `W @ h + b` row by row, the
/// activation after every layer but the last. This is the definition every executor matches.
pub fn tensor_outputs(plan: &TensorPlan, uniforms: &[f64], input: &[f64]) -> Vec<f64> {
    let mut h = input.to_vec();
    let last = plan.layers.len().saturating_sub(1);
    for (li, l) in plan.layers.iter().enumerate() {
        let (rows, cols) = (l.rows as usize, l.cols as usize);
        let w = uniforms.get(l.weight as usize..l.weight as usize + rows * cols).unwrap_or(&[]);
        let z: Vec<f64> = (0..rows)
            .map(|r| {
                let dot: f64 = w
                    .get(r * cols..(r + 1) * cols)
                    .map_or(f64::NAN, |row| row.iter().zip(&h).map(|(a, b)| a * b).sum());
                let bias = l.bias.map_or(0.0, |b| uniforms.get(b as usize + r).copied().unwrap_or(f64::NAN));
                let y = dot + bias;
                if li == last {
                    y
                } else {
                    activation(plan.act, y)
                }
            })
            .collect();
        h = z;
    }
    h
}

/// An activation in f64 (`gelu` is the tanh approximation).
pub fn activation(act: Activation, x: f64) -> f64 {
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    match act {
        Activation::Identity => x,
        Activation::Tanh => x.tanh(),
        Activation::Relu => x.max(0.0),
        Activation::Sigmoid => sigmoid(x),
        Activation::Silu => x * sigmoid(x),
        Activation::Gelu => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
        }
    }
}

/// Evaluates every value-producing instruction of `k` into `regs`.
fn eval(k: &Kernel, regs: &mut [f64], inp: &Inputs) {
    // The plan's outputs for this agent, computed at its first `Tensor` lane.
    let mut tensor: Option<Vec<f64>> = None;
    for (i, inst) in k.insts.iter().enumerate() {
        let r = |v: u32| regs[v as usize];
        let x = match inst.op {
            Op::Const(c) => c,
            Op::Param(p) => inp.uniforms.get(p as usize).copied().unwrap_or(f64::NAN),
            Op::Load { slot, col } => match inp.agents[slot as usize] {
                Some((data, idx)) => data.columns[col as usize][idx],
                None => f64::NAN,
            },
            Op::Index => inp.index as f64,
            Op::Count => inp.count as f64,
            Op::Rand { dist, stream } => random(inp.seed, inp.kernel as u64, inp.index as u64, stream as u64, dist),
            Op::Input(n) => inp.inputs.get(n as usize).copied().unwrap_or(f64::NAN),
            Op::Un(op, a) => eval_un(op, inst.ty, r(a)),
            Op::Bin(op, a, b) => eval_bin(op, inst.ty, r(a), r(b)),
            Op::Select(c, a, b) => {
                if r(c) != 0.0 {
                    r(a)
                } else {
                    r(b)
                }
            }
            Op::Cast(a) => eval_cast(inst.ty, r(a)),
            Op::Tensor(lane) => {
                let out = tensor.get_or_insert_with(|| match (&k.tensor, inp.agents[0]) {
                    (Some(plan), Some((data, idx))) => {
                        let x: Vec<f64> = plan.inputs.iter().map(|&c| data.columns[c as usize][idx]).collect();
                        tensor_outputs(plan, inp.uniforms, &x)
                    }
                    _ => Vec::new(),
                });
                out.get(lane as usize).copied().unwrap_or(f64::NAN)
            }
            _ => continue,
        };
        regs[i] = x;
    }
}

/// Agents a spawn thread takes at least: fewer are not worth a thread.
const SPAWN_CHUNK: usize = 256;

fn checks(k: &Kernel, regs: &[f64]) -> Result<(), RunError> {
    for inst in &k.insts {
        if let Op::Check { cond, msg } = inst.op {
            if regs[cond as usize] == 0.0 {
                return Err(RunError::Check(k.messages[msg as usize].clone()));
            }
        }
    }
    Ok(())
}

/// Evaluates a kernel of pattern `Uniform` and returns its outputs.
pub fn eval_uniform(k: &Kernel, uniforms: &[f64], inputs: &[f64]) -> Result<Vec<f64>, RunError> {
    let mut regs = vec![0.0; k.insts.len()];
    let inp = Inputs { agents: [None, None], uniforms, inputs, index: 0, count: 1, seed: 0, kernel: 0 };
    eval(k, &mut regs, &inp);
    checks(k, &regs)?;
    let mut out = vec![NeumaierSum::new(); k.outputs as usize];
    for inst in &k.insts {
        if let Op::Reduce { out: o, value } = inst.op {
            out[o as usize].add(regs[value as usize]);
        }
    }
    Ok(out.iter().map(NeumaierSum::value).collect())
}

/// The reference interpreter: every value in f64, except hosted models' outputs, which are
/// their engine's f32.
pub struct Interp<'m> {
    pub module: &'m Module,
    pub world: World,
    pub uniforms: Vec<f64>,
    pub seed: u64,
    /// Sessions of hosted models, where the module has any.
    pub hosted: Option<Hosted>,
}

impl<'m> Interp<'m> {
    pub fn new(module: &'m Module, seed: u64) -> Self {
        Interp {
            module,
            world: World::new(module.agents.clone()),
            uniforms: module.uniform_values(),
            seed,
            hosted: (!module.hosted.is_empty()).then(|| Hosted::new(module, host_engine())),
        }
    }

    /// Creates the agents (`counts` overrides spawn counts by agent name) and runs the first
    /// force passes.
    pub fn init(&mut self, counts: &HashMap<String, u64>) -> Result<(), RunError> {
        self.spawn_agents(counts)?;
        self.prime()
    }

    /// The first force passes, which `init` runs after creating the agents.
    pub fn prime(&mut self) -> Result<(), RunError> {
        let prime = self.module.prime.clone();
        self.run_schedule(&prime)
    }

    /// Creates the agents (`counts` overrides spawn counts by agent name), without the first
    /// force passes: an executor that holds the state elsewhere runs those itself.
    pub fn spawn_agents(&mut self, counts: &HashMap<String, u64>) -> Result<(), RunError> {
        for op in &self.module.init {
            match op {
                InitOp::Spawn { agent, kernel, count } => {
                    let n = counts.get(&self.module.agents[*agent].name).copied().unwrap_or(*count) as usize;
                    let start = self.grow(*agent, n)?;
                    self.spawn(*agent, *kernel, start, n)?;
                }
                InitOp::File { agent, path, kernel } => {
                    let schema = &self.module.agents[*agent];
                    let wanted: Vec<String> = schema.output_columns().iter().map(|(_, n)| n.to_string()).collect();
                    let table = read_table(path, &wanted)?;
                    let given = self.kernel_stores(*kernel);
                    let missing: Vec<&str> = schema
                        .output_columns()
                        .into_iter()
                        .filter(|(c, n)| table.column(n).is_none() && !given.contains(&(*c as u32)))
                        .map(|(_, n)| n)
                        .collect();
                    if !missing.is_empty() {
                        return Err(RunError::Invalid(format!(
                            "{}: no column for {} (give it in the file, or in the spawn's `{{ … }}`)",
                            path.display(),
                            missing.join(", ")
                        )));
                    }
                    let n = table.rows;
                    let start = self.grow(*agent, n)?;
                    for (c, name) in self.module.agents[*agent].output_columns() {
                        if let Some(col) = table.column(name) {
                            self.world.agents[*agent].columns[c][start..start + n].copy_from_slice(col);
                        }
                    }
                    self.spawn(*agent, *kernel, start, n)?;
                }
            }
        }
        Ok(())
    }

    fn kernel_stores(&self, k: usize) -> Vec<u32> {
        self.module.kernels[k]
            .insts
            .iter()
            .filter_map(|i| if let Op::Store { col, .. } = i.op { Some(col) } else { None })
            .collect()
    }

    fn grow(&mut self, agent: usize, n: usize) -> Result<usize, RunError> {
        let data = &mut self.world.agents[agent];
        let start = data.count;
        for c in &mut data.columns {
            c.try_reserve(n).map_err(|_| {
                RunError::Invalid(format!(
                    "not enough memory for {n} more agents of `{}`",
                    self.module.agents[agent].name
                ))
            })?;
            c.resize(start + n, 0.0);
        }
        data.count += n;
        Ok(start)
    }

    /// Runs spawn kernel `kernel` for agents `start .. start + n`. Each agent's values depend
    /// only on its index and the seed, so ranges of agents are evaluated on all cores: a spawn
    /// of thousands of 4096-lane fields is millions of interpreted operations.
    fn spawn(&mut self, agent: usize, kernel: usize, start: usize, n: usize) -> Result<(), RunError> {
        let k = &self.module.kernels[kernel];
        let stores: Vec<(usize, usize)> = k
            .insts
            .iter()
            .filter_map(|i| {
                if let Op::Store { col, value, .. } = i.op {
                    Some((col as usize, value as usize))
                } else {
                    None
                }
            })
            .collect();
        if n == 0 {
            return Ok(());
        }
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let per = n.div_ceil(cores.min(n / SPAWN_CHUNK).max(1));
        let (data, uniforms, seed) = (&self.world.agents[agent], &self.uniforms[..], self.seed);
        let stores = &stores;
        let run = |lo: usize, hi: usize| -> Result<Vec<Vec<f64>>, RunError> {
            let mut regs = vec![0.0; k.insts.len()];
            let mut out = Vec::new();
            for _ in stores {
                let mut values = Vec::new();
                values.try_reserve_exact(hi - lo).map_err(|_| {
                    RunError::Invalid(format!("not enough memory to spawn {} agents of `{}`", n, k.name))
                })?;
                out.push(values);
            }
            for i in lo..hi {
                let agents = [Some((data, start + i)), None];
                let inp = Inputs { agents, uniforms, inputs: &[], index: i, count: n, seed, kernel };
                eval(k, &mut regs, &inp);
                checks(k, &regs)?;
                for (o, &(_, v)) in out.iter_mut().zip(stores) {
                    o.push(regs[v]);
                }
            }
            Ok(out)
        };
        // Whole ranges of `per` agents, the last one shorter: never an empty one.
        let ranges: Vec<(usize, usize)> = (0..n).step_by(per).map(|lo| (lo, (lo + per).min(n))).collect();
        let results: Vec<Result<Vec<Vec<f64>>, RunError>> = if ranges.len() == 1 {
            vec![run(0, n)]
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = ranges.iter().map(|&(lo, hi)| s.spawn(move || run(lo, hi))).collect();
                handles.into_iter().map(|h| h.join().expect("a spawn thread panicked")).collect()
            })
        };
        // In order, so that the first failing agent's check is the one reported and a column
        // stored twice keeps its last value, as one agent after another would.
        for (&(lo, hi), out) in ranges.iter().zip(results) {
            for (&(col, _), values) in stores.iter().zip(out?) {
                self.world.agents[agent].columns[col][start + lo..start + hi].copy_from_slice(&values);
            }
        }
        Ok(())
    }

    pub fn step(&mut self) -> Result<(), RunError> {
        let step = &self.module.step;
        self.run_schedule(step)?;
        self.world.step += 1;
        Ok(())
    }

    fn run_schedule(&mut self, list: &[Sched]) -> Result<(), RunError> {
        for s in list {
            match s {
                Sched::Zero { agent, cols } => {
                    for &c in cols {
                        self.world.agents[*agent].columns[c as usize].fill(0.0);
                    }
                }
                Sched::Run(k) => {
                    self.run_kernel(*k, &[])?;
                }
                // The interpreter's state is exact already.
                Sched::Exact { agent, cols } => {
                    for &(from, to) in cols {
                        let data = &mut self.world.agents[*agent].columns;
                        data[to as usize] = data[from as usize].clone();
                    }
                }
                Sched::Model { agent, model, inputs, outputs } => {
                    let module = self.module;
                    let hosted = self.hosted.get_or_insert_with(|| Hosted::new(module, host_engine()));
                    let data = &mut self.world.agents[*agent];
                    let out = hosted.run(module, *model, &data.columns, inputs, data.count)?;
                    for (&c, lane) in outputs.iter().zip(out) {
                        let col = &mut data.columns[c as usize];
                        col.iter_mut().zip(lane).for_each(|(x, y)| *x = y as f64);
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs one kernel over the current state; returns its reduction outputs.
    pub fn run_kernel(&mut self, kernel: usize, inputs: &[f64]) -> Result<Vec<f64>, RunError> {
        let k = &self.module.kernels[kernel];
        let mut regs = vec![0.0; k.insts.len()];
        let mut out = vec![NeumaierSum::new(); k.outputs as usize];
        match &k.pattern {
            Pattern::Uniform => return eval_uniform(k, &self.uniforms, inputs),
            Pattern::Map { agent } | Pattern::Integrate { agent, .. } | Pattern::Spawn { agent } => {
                let n = self.world.agents[*agent].count;
                let mut stores: Vec<(u32, f64)> = Vec::new();
                for i in 0..n {
                    let data = &self.world.agents[*agent];
                    let inp = Inputs {
                        agents: [Some((data, i)), None],
                        uniforms: &self.uniforms,
                        inputs,
                        index: i,
                        count: n,
                        seed: self.seed,
                        kernel,
                    };
                    eval(k, &mut regs, &inp);
                    checks(k, &regs)?;
                    stores.clear();
                    for inst in &k.insts {
                        match inst.op {
                            Op::Store { col, value, .. } => stores.push((col, regs[value as usize])),
                            Op::Reduce { out: o, value } => out[o as usize].add(regs[value as usize]),
                            _ => {}
                        }
                    }
                    // Each agent reads only its own columns, so writing in place keeps Jacobi order.
                    for &(col, v) in &stores {
                        self.world.agents[*agent].columns[col as usize][i] = v;
                    }
                }
            }
            Pattern::AllPairs { a, b } | Pattern::Neighbors { a, b, .. } => {
                let (a, b) = (*a, *b);
                let mut deltas: HashMap<(usize, u32), Vec<f64>> = HashMap::new();
                let effects: Vec<&Op> = k.insts.iter().map(|i| &i.op).filter(|op| op.is_effect()).collect();
                let world = &self.world;
                let (uniforms, seed) = (&self.uniforms, self.seed);
                let pair = |i: usize, j: usize| Inputs {
                    agents: [Some((&world.agents[a], i)), Some((&world.agents[b], j))],
                    uniforms,
                    inputs,
                    index: 0,
                    count: 0,
                    seed,
                    kernel,
                };
                let mut visit = |i: usize, j: usize| -> Result<(), RunError> {
                    eval(k, &mut regs, &pair(i, j));
                    checks(k, &regs)?;
                    if k.guard.is_some_and(|g| regs[g as usize] == 0.0) {
                        return Ok(());
                    }
                    for op in &effects {
                        match **op {
                            Op::Accum { slot, col, value } => {
                                let (agent, idx) = if slot == 0 { (a, i) } else { (b, j) };
                                let n = world.agents[agent].count;
                                deltas.entry((agent, col)).or_insert_with(|| vec![0.0; n])[idx] += regs[value as usize];
                            }
                            Op::Reduce { out: o, value } => out[o as usize].add(regs[value as usize]),
                            _ => {}
                        }
                    }
                    Ok(())
                };
                for_each_pair(&self.module.agents, world, &k.pattern, &mut visit)?;
                // A radius that depends on the agents may exceed its bound for a pair the grid
                // never visits: the reference checks every pair, so no interaction is silently lost.
                if matches!(k.pattern, Pattern::Neighbors { .. })
                    && k.insts.iter().any(|i| matches!(i.op, Op::Check { .. }))
                {
                    let mut check_only = |i: usize, j: usize| -> Result<(), RunError> {
                        eval(k, &mut regs, &pair(i, j));
                        checks(k, &regs)
                    };
                    for_each_pair(&self.module.agents, world, &Pattern::AllPairs { a, b }, &mut check_only)?;
                }
                let mut keys: Vec<(usize, u32)> = deltas.keys().copied().collect();
                keys.sort_unstable();
                for key in keys {
                    let d = &deltas[&key];
                    for (x, dx) in self.world.agents[key.0].columns[key.1 as usize].iter_mut().zip(d) {
                        *x += dx;
                    }
                }
            }
        }
        Ok(out.iter().map(NeumaierSum::value).collect())
    }

    /// Measures every conservation law of `module` on `world` (a state from any executor).
    pub fn laws_of(module: &'m Module, world: &World, seed: u64) -> Result<Vec<LawSample>, RunError> {
        let mut sim = Interp::new(module, seed);
        sim.world = world.clone();
        sim.laws()
    }

    /// Measures every conservation law of the module on the current state.
    pub fn laws(&mut self) -> Result<Vec<LawSample>, RunError> {
        let mut samples = Vec::new();
        for (l, law) in self.module.laws.iter().enumerate() {
            let sums = law.terms.iter().map(|&t| self.run_kernel(t, &[])).collect::<Result<Vec<_>, _>>()?;
            samples.push(law_sample(self.module, l, &sums, &self.uniforms)?);
        }
        Ok(samples)
    }
}

/// Law `law` of `m` from the outputs of its terms (`sums[t]`: the value and the magnitude of
/// each lane, in turn), on every executor alike: values enter the combiner, magnitudes the scale.
pub fn law_sample(m: &Module, law: usize, sums: &[Vec<f64>], uniforms: &[f64]) -> Result<LawSample, RunError> {
    let law = &m.laws[law];
    let mut inputs = Vec::new();
    let mut scale = vec![0.0; law.lanes as usize];
    for out in sums {
        for (l, pair) in out.chunks(2).enumerate() {
            inputs.push(pair[0]);
            if let (Some(s), Some(mag)) = (scale.get_mut(l), pair.get(1)) {
                *s += mag;
            }
        }
    }
    let value = eval_uniform(&m.kernels[law.combine], uniforms, &inputs)?;
    let scale = scale.iter().map(|s| s * s).sum::<f64>().sqrt();
    Ok(LawSample { value, scale })
}

/// Visits the (i, j) pairs a pair kernel covers, in a deterministic order, stopping at the first error.
fn for_each_pair(
    schemas: &[crate::AgentSchema],
    world: &World,
    p: &Pattern,
    f: &mut dyn FnMut(usize, usize) -> Result<(), RunError>,
) -> Result<(), RunError> {
    match *p {
        Pattern::AllPairs { a, b } => {
            let (na, nb) = (world.agents[a].count, world.agents[b].count);
            for i in 0..na {
                let from = if a == b { i + 1 } else { 0 };
                for j in from..nb {
                    f(i, j)?;
                }
            }
            Ok(())
        }
        Pattern::Neighbors { a, b, bound } => {
            let pos = |t: usize| -> Result<Vec<&[f64]>, RunError> {
                let schema = &schemas[t];
                let (fi, field) = schema
                    .field("position")
                    .ok_or_else(|| RunError::Invalid(format!("agent `{}` has no position", schema.name)))?;
                let start = schema.column_offsets()[fi];
                Ok((start..start + field.lanes.len()).map(|c| world.agents[t].columns[c].as_slice()).collect())
            };
            let grid = CellGrid::build(&pos(b)?, bound)?;
            let mut result = Ok(());
            let mut guarded = |i: usize, j: usize| {
                if result.is_ok() {
                    result = f(i, j);
                }
            };
            if a == b {
                grid.for_each_pair_within_cells(&mut guarded);
            } else {
                grid.for_each_candidate(&pos(a)?, &mut guarded)?;
            }
            result
        }
        _ => Ok(()),
    }
}
