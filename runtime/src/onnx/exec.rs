//! Runs a module's schedule with each kernel's ONNX graph ([`super::plan`]) on one engine.
//!
//! The state lives on the host in each column's storage type (f32, f64 or i32), as the CPU
//! executor keeps it, with the compensation of compensated updates beside it. A map kernel's
//! graph takes whole columns and returns the columns it writes. A pair kernel's graph runs over
//! blocks of rows, sized so that a block of pairs stays within [`BLOCK_PAIRS`]; a neighbour
//! kernel's over the candidate pairs the cell grid finds. Both return changes, which are added to
//! the columns after the whole kernel has run, as every executor does.

use super::engine::{Data, Engine, HostTensor, HostView, Session};
use super::hosted::Hosted;
use super::plan::{Feed, Form, OnnxKernel, OnnxPlan, Sink, StepGraph};
use crate::backend::Backend;
use crate::cpu::abi::compensated_columns;
use crate::ir::interp::RunError;
use crate::ir::{Module, Precision, Scalar, Sched};
use crate::World;
use std::borrow::Cow;

/// Pairs a pair kernel's graph takes at once: its intermediate values are blocks of this many.
pub const BLOCK_PAIRS: usize = 1 << 20;

pub struct OnnxBackend<'m> {
    module: &'m Module,
    plan: OnnxPlan,
    engine: Engine,
    /// Whether kernels that need f64 run on tract instead of `engine`.
    f64_on_tract: bool,
    sessions: Vec<Box<dyn Session>>,
    /// The step as one graph (see `OnnxPlan::step`), its models in the precision their kernels
    /// chose.
    step_session: Option<Box<dyn Session>>,
    /// The precisions other than f32 that kernels' models settled on.
    reduced: Vec<Precision>,
    /// Per kernel, the engine its session runs on and its graph as emitted (f32).
    engines: Vec<Engine>,
    graphs: Vec<Vec<u8>>,
    /// What the model compilation pipeline decided, for the user.
    notes: Vec<String>,
    /// Per agent type and column, the column in its storage type.
    cols: Vec<Vec<Data>>,
    /// Per agent type and column, the compensation of compensated updates.
    comps: Vec<Vec<Option<Vec<f32>>>>,
    counts: Vec<usize>,
    params_f32: Vec<f32>,
    params_f64: Vec<f64>,
    world: World,
    hosted: Option<Hosted>,
    /// Where the kernels that call models run, when not on `engine` (see `split`).
    models: Option<Engine>,
}

/// A zero column of `n` values in the storage type of `s`.
fn zeros(s: Scalar, n: usize) -> Data {
    match s {
        Scalar::F64 => Data::F64(vec![0.0; n]),
        Scalar::I32 | Scalar::U32 | Scalar::Bool => Data::I32(vec![0; n]),
        _ => Data::F32(vec![0.0; n]),
    }
}

fn set(d: &mut Data, i: usize, x: f64) {
    match d {
        Data::F32(v) => v[i] = x as f32,
        Data::F64(v) => v[i] = x,
        Data::I32(v) => v[i] = x as i32,
        Data::I64(v) => v[i] = x as i64,
    }
}

/// Adds `x` to value `i` of `d`.
fn add(d: &mut Data, i: usize, x: &Data, j: usize) {
    match (d, x) {
        (Data::F32(v), Data::F32(w)) => v[i] += w[j],
        (Data::F64(v), Data::F64(w)) => v[i] += w[j],
        (Data::I32(v), Data::I32(w)) => v[i] = v[i].wrapping_add(w[j]),
        (d, x) => {
            let s = d.get(i) + x.get(j);
            set(d, i, s);
        }
    }
}

/// Values `lo..hi` of a column.
fn slice(d: &Data, lo: usize, hi: usize) -> Data {
    match d {
        Data::F32(v) => Data::F32(v[lo..hi].to_vec()),
        Data::F64(v) => Data::F64(v[lo..hi].to_vec()),
        Data::I32(v) => Data::I32(v[lo..hi].to_vec()),
        Data::I64(v) => Data::I64(v[lo..hi].to_vec()),
    }
}

/// The range of the values of each calibration point (`compile::calibration_points`) in a
/// run's outputs.
fn value_ranges(points: &[String], outputs: &[HostTensor]) -> std::collections::HashMap<String, (f32, f32)> {
    points
        .iter()
        .zip(outputs)
        .map(|(p, t)| {
            let (lo, hi) = (0..t.data.len())
                .map(|i| t.data.get(i))
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)));
            (p.clone(), (lo as f32, hi as f32))
        })
        .collect()
}

/// How many agents of the initial state a precision trial runs on, at most.
const TRIAL_AGENTS: usize = 16_384;

/// The agents a precision trial ran on, as notes name them.
fn trial_agents(sample: usize, count: usize) -> String {
    if sample == count {
        "the initial state".into()
    } else {
        format!("the first {sample} of {count} agents of the initial state")
    }
}

fn failed(e: String) -> RunError {
    RunError::Invalid(e)
}

impl<'m> OnnxBackend<'m> {
    /// Loads the graphs (one per kernel of `plan`) into `engine` and takes the state of `world`.
    pub fn new(
        module: &'m Module,
        plan: OnnxPlan,
        graphs: &[Vec<u8>],
        world: &World,
        engine: Engine,
    ) -> Result<Self, String> {
        Self::placed(module, plan, graphs, world, engine, None)
    }

    /// As [`OnnxBackend::new`], with the kernels that call models (and hosted models) on
    /// `models`, an NPU, and the rest of the step on `engine`.
    pub fn split(
        module: &'m Module,
        plan: OnnxPlan,
        graphs: &[Vec<u8>],
        world: &World,
        engine: Engine,
        models: Engine,
    ) -> Result<Self, String> {
        Self::placed(module, plan, graphs, world, engine, Some(models))
    }

    fn placed(
        module: &'m Module,
        plan: OnnxPlan,
        graphs: &[Vec<u8>],
        world: &World,
        engine: Engine,
        models: Option<Engine>,
    ) -> Result<Self, String> {
        for s in module.step.iter().chain(&module.prime) {
            if let Sched::Run(k) = s {
                if plan.of(*k).is_none() {
                    return Err(format!("kernel `{}` has no ONNX graph", module.kernels[*k].name));
                }
            }
        }
        // An engine that computes f64 in f32 (OpenVINO) leaves the kernels that need f64 (the
        // conservation laws' sums, f64 state) to tract, so that they stay exact.
        // Constant folding first, for every engine (ONNX Runtime and OpenVINO fold too; tract
        // and the precision passes see the folded graph).
        let names: Vec<&str> = plan.kernels.iter().map(|k| k.name.as_str()).chain(["the step"]).collect();
        let graphs = graphs
            .iter()
            .zip(names)
            .map(|(g, name)| {
                let m = super::decode(g).map_err(|e| format!("kernel `{name}`: the graph is damaged: {e}"))?;
                super::compile::fold_constants(&m).map(|(m, n)| if n == 0 { g.clone() } else { super::encode(&m) })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The step as one graph where the plan has one and the engine computes what it needs.
        let step_session = match (&plan.step, graphs.get(plan.kernels.len())) {
            // Split between engines, the step runs kernel by kernel.
            _ if models.is_some() => None,
            (Some(_), Some(g)) if engine.computes_f64() || !super::uses_f64(g) => {
                Some(engine.load(g).map_err(|e| format!("the step's graph on {}: {e}", engine.name()))?)
            }
            _ => None,
        };
        let calls_model = |gi: usize| module.kernels[plan.kernels[gi].kernel].tensor.is_some();
        let engines: Vec<Engine> = graphs[..plan.kernels.len().min(graphs.len())]
            .iter()
            .enumerate()
            .map(|(gi, g)| match models {
                Some(m) if calls_model(gi) => m,
                _ if !engine.computes_f64() && super::uses_f64(g) => Engine::Tract,
                _ => engine,
            })
            .collect();
        let f64_on_tract =
            engines.iter().enumerate().any(|(gi, &e)| e != engine && !(models.is_some() && calls_model(gi)));
        let sessions = plan
            .kernels
            .iter()
            .zip(&graphs)
            .zip(&engines)
            .map(|((k, g), on)| on.load(g).map_err(|e| format!("kernel `{}` on {}: {e}", k.name, on.name())))
            .collect::<Result<Vec<_>, _>>()?;
        let uniforms = module.uniform_values();
        let lanes = &uniforms[..plan.param_lanes.min(uniforms.len())];
        let counts: Vec<usize> = world.agents.iter().map(|a| a.count).collect();
        let cols = world
            .agents
            .iter()
            .enumerate()
            .map(|(t, a)| {
                a.columns
                    .iter()
                    .enumerate()
                    .map(|(c, values)| {
                        let mut d = zeros(module.column_types[t][c], a.count);
                        values.iter().enumerate().for_each(|(i, x)| set(&mut d, i, *x));
                        d
                    })
                    .collect()
            })
            .collect();
        // Loaded now, so that an engine (an NPU) that refuses a model says so before the step and
        // `--target auto` can go on to the next backend.
        let hosted = match module.hosted.is_empty() {
            true => None,
            false => {
                let mut h = Hosted::new(module, models.unwrap_or(engine));
                h.load_all(module)?;
                Some(h)
            }
        };
        let mut comps: Vec<Vec<Option<Vec<f32>>>> =
            world.agents.iter().map(|a| a.columns.iter().map(|_| None).collect()).collect();
        for (agent, col) in compensated_columns(module) {
            comps[agent][col as usize] = Some(vec![0.0; counts[agent]]);
        }
        Ok(OnnxBackend {
            module,
            plan,
            engine,
            f64_on_tract,
            sessions,
            step_session,
            reduced: Vec::new(),
            engines,
            graphs,
            notes: Vec::new(),
            cols,
            comps,
            counts,
            params_f32: lanes.iter().map(|&x| x as f32).collect(),
            params_f64: lanes.to_vec(),
            hosted,
            models,
            world: world.clone(),
        })
    }

    /// The inputs of kernel `g`'s graph, the columns borrowed; `rows` gives a block of rows
    /// (pairs) and `pairs` the candidate pairs (neighbours).
    fn inputs(&self, g: &OnnxKernel, rows: (usize, usize), pairs: Option<&[(u32, u32)]>) -> Vec<Cow<'_, Data>> {
        let agent = |slot: u8| match g.form {
            Form::Map { agent } => agent,
            Form::Pairs { a, b } | Form::Neighbors { a, b, .. } => {
                if slot == 0 {
                    a
                } else {
                    b
                }
            }
        };
        g.feeds
            .iter()
            .map(|f| {
                Cow::Owned(match *f {
                    Feed::Col { slot, col } => {
                        let d = &self.cols[agent(slot)][col as usize];
                        match (g.form.clone(), slot) {
                            (Form::Pairs { .. }, 0) => slice(d, rows.0, rows.1),
                            _ => return Cow::Borrowed(d),
                        }
                    }
                    Feed::Comp { col } => {
                        let n = self.counts[agent(0)];
                        Data::F32(self.comps[agent(0)][col as usize].clone().unwrap_or_else(|| vec![0.0; n]))
                    }
                    Feed::ParamsF32 => Data::F32(self.params_f32.clone()),
                    Feed::ParamsF64 => Data::F64(self.params_f64.clone()),
                    Feed::Rows => Data::I64((rows.0 as i64..rows.1 as i64).collect()),
                    Feed::Cols => Data::I64((0..self.counts[agent(1)] as i64).collect()),
                    Feed::First => Data::I64(pairs.unwrap_or(&[]).iter().map(|p| p.0 as i64).collect()),
                    Feed::Second => Data::I64(pairs.unwrap_or(&[]).iter().map(|p| p.1 as i64).collect()),
                })
            })
            .collect()
    }

    /// Runs kernel `gi`'s graph on its inputs (see `inputs`); its outputs, after its checks.
    fn run_graph(
        &mut self,
        gi: usize,
        rows: (usize, usize),
        pairs: Option<&[(u32, u32)]>,
    ) -> Result<Vec<HostTensor>, RunError> {
        // The sessions are lent out for the call, so that the inputs can borrow the columns.
        let mut sessions = std::mem::take(&mut self.sessions);
        let ran = {
            let data = self.inputs(&self.plan.kernels[gi], rows, pairs);
            let views: Vec<HostView> = data.iter().map(|d| HostView { data: d.as_ref().into() }).collect();
            sessions[gi].run_views(&views)
        };
        self.sessions = sessions;
        let name = &self.plan.kernels[gi].name;
        let outputs = ran.map_err(|e| failed(format!("kernel `{name}`: {e}")))?;
        let k = &self.module.kernels[self.plan.kernels[gi].kernel];
        for (s, t) in self.plan.kernels[gi].sinks.iter().zip(&outputs) {
            if let Sink::Check { msg } = s {
                if !t.data.is_empty() && t.data.get(0) != 0.0 {
                    return Err(RunError::Check(k.messages.get(*msg as usize).cloned().unwrap_or_default()));
                }
            }
        }
        Ok(outputs)
    }

    fn run_kernel(&mut self, k: usize) -> Result<(), RunError> {
        let gi =
            self.plan.of(k).ok_or_else(|| failed(format!("kernel `{}` has no graph", self.module.kernels[k].name)))?;
        let g = self.plan.kernels[gi].clone();
        match g.form {
            Form::Map { agent } => {
                if self.counts[agent] == 0 {
                    return Ok(());
                }
                let outputs = self.run_graph(gi, (0, 0), None)?;
                for (s, t) in g.sinks.iter().zip(outputs) {
                    match *s {
                        Sink::Store { col } => self.cols[agent][col as usize] = t.data,
                        Sink::Comp { col } => {
                            if let Data::F32(v) = t.data {
                                self.comps[agent][col as usize] = Some(v);
                            }
                        }
                        _ => {}
                    }
                }
                Ok(())
            }
            Form::Pairs { a, b } => {
                let (na, nb) = (self.counts[a], self.counts[b]);
                if na == 0 || nb == 0 {
                    return Ok(());
                }
                let mut deltas = self.deltas(&g);
                let block = (BLOCK_PAIRS / nb).clamp(1, na);
                for r0 in (0..na).step_by(block) {
                    let r1 = (r0 + block).min(na);
                    let outputs = self.run_graph(gi, (r0, r1), None)?;
                    for ((s, t), d) in g.sinks.iter().zip(&outputs).zip(deltas.iter_mut()) {
                        if let (Sink::Accum { slot, .. }, Some(d)) = (s, d) {
                            let offset = if *slot == 0 { r0 } else { 0 };
                            (0..t.data.len()).for_each(|i| add(d, offset + i, &t.data, i));
                        }
                    }
                }
                self.apply(&g, deltas);
                Ok(())
            }
            Form::Neighbors { a, b, bound } => {
                let pairs = self.candidates(a, b, bound)?;
                if pairs.is_empty() {
                    return Ok(());
                }
                let mut deltas = self.deltas(&g);
                for chunk in pairs.chunks(BLOCK_PAIRS) {
                    let outputs = self.run_graph(gi, (0, 0), Some(chunk))?;
                    for ((s, t), d) in g.sinks.iter().zip(&outputs).zip(deltas.iter_mut()) {
                        if let (Sink::Accum { slot, .. }, Some(d)) = (s, d) {
                            for (p, &(i, j)) in chunk.iter().enumerate() {
                                add(d, if *slot == 0 { i } else { j } as usize, &t.data, p);
                            }
                        }
                    }
                }
                self.apply(&g, deltas);
                Ok(())
            }
        }
    }

    /// Per output of a pair or neighbour graph, a zero change buffer where it accumulates.
    fn deltas(&self, g: &OnnxKernel) -> Vec<Option<Data>> {
        let (a, b) = match g.form {
            Form::Pairs { a, b } | Form::Neighbors { a, b, .. } => (a, b),
            Form::Map { agent } => (agent, agent),
        };
        g.sinks
            .iter()
            .map(|s| match *s {
                Sink::Accum { slot, col } => {
                    let t = if slot == 0 { a } else { b };
                    Some(zeros(self.module.column_types[t][col as usize], self.counts[t]))
                }
                _ => None,
            })
            .collect()
    }

    /// Adds a pair kernel's changes to the columns, once the whole kernel has run.
    fn apply(&mut self, g: &OnnxKernel, deltas: Vec<Option<Data>>) {
        let (a, b) = match g.form {
            Form::Pairs { a, b } | Form::Neighbors { a, b, .. } => (a, b),
            Form::Map { agent } => (agent, agent),
        };
        for (s, d) in g.sinks.iter().zip(deltas) {
            if let (Sink::Accum { slot, col }, Some(d)) = (s, d) {
                let t = if *slot == 0 { a } else { b };
                let column = &mut self.cols[t][*col as usize];
                (0..self.counts[t]).for_each(|i| add(column, i, &d, i));
            }
        }
    }

    /// The candidate pairs of a neighbour kernel, from the cell grid over the agents' positions.
    fn candidates(&self, a: usize, b: usize, bound: f64) -> Result<Vec<(u32, u32)>, RunError> {
        let pos = |t: usize| -> Result<Vec<Vec<f64>>, RunError> {
            let schema = &self.module.agents[t];
            let (fi, f) =
                schema.field("position").ok_or_else(|| failed(format!("agent `{}` has no position", schema.name)))?;
            let start = schema.column_offsets()[fi];
            Ok((start..start + f.lanes.len())
                .map(|c| (0..self.counts[t]).map(|i| self.cols[t][c].get(i)).collect())
                .collect())
        };
        let pb = pos(b)?;
        let rb: Vec<&[f64]> = pb.iter().map(Vec::as_slice).collect();
        let pa = if a == b { None } else { Some(pos(a)?) };
        let ra: Option<Vec<&[f64]>> = pa.as_ref().map(|p| p.iter().map(Vec::as_slice).collect());
        Ok(crate::grid::candidate_pairs(ra.as_deref(), &rb, bound)?)
    }

    fn run_schedule(&mut self, list: &'m [Sched]) -> Result<(), RunError> {
        for s in list {
            match s {
                Sched::Zero { agent, cols } => {
                    for &c in cols {
                        let n = self.counts[*agent];
                        self.cols[*agent][c as usize] = zeros(self.module.column_types[*agent][c as usize], n);
                    }
                }
                Sched::Run(k) => self.run_kernel(*k)?,
                Sched::Exact { agent, cols } => {
                    for &(from, to) in cols {
                        let comp = self.comps[*agent][from as usize].as_ref();
                        let exact = crate::host::exact(&self.cols[*agent][from as usize], comp, self.counts[*agent]);
                        self.cols[*agent][to as usize] = Data::F64(exact);
                    }
                }
                Sched::Model { agent, model, inputs, outputs } => {
                    let hosted = self.hosted.as_mut().ok_or_else(|| failed("no hosted models".into()))?;
                    let out = hosted.run(self.module, *model, &self.cols[*agent], inputs, self.counts[*agent])?;
                    for (&c, lane) in outputs.iter().zip(out) {
                        self.cols[*agent][c as usize] = Data::F32(lane);
                    }
                }
            }
        }
        Ok(())
    }
}

impl OnnxBackend<'_> {
    /// Gives the step's graph the precision its models settled on: f16 converts its model
    /// regions; int8 quantizes them over the ranges their inputs have in the step's graph on the
    /// current state. Models that settled on different precisions run kernel by kernel.
    fn settle_step_precision(&mut self) -> Result<(), RunError> {
        use super::compile;
        let (Some(step), Some(_)) = (self.plan.step.clone(), self.step_session.as_ref()) else { return Ok(()) };
        let mut kinds = self.reduced.clone();
        kinds.dedup();
        let p = match kinds.as_slice() {
            [] => return Ok(()),
            [p] => *p,
            _ => {
                self.step_session = None;
                return Ok(());
            }
        };
        let graph = &self.graphs[self.plan.kernels.len()];
        let model = super::decode(graph).map_err(failed)?;
        let converted = match p {
            Precision::Int8 => {
                let points = compile::calibration_points(&model);
                let inputs = self.step_inputs(&step).into_iter().map(|d| HostTensor::vector(d.into_owned())).collect();
                let calibrate = super::encode(&compile::with_outputs(&model, &points));
                let all = self.engine.load(&calibrate).and_then(|mut s| s.run(inputs)).map_err(failed)?;
                let ranges = value_ranges(&points, &all[step.sinks.len()..]);
                compile::quantize_int8(&model, &ranges, compile::int8_reduced_range())
            }
            _ => compile::to_f16(&model),
        };
        match self.engine.load(&super::encode(&converted)) {
            Ok(s) => self.step_session = Some(s),
            Err(_) => self.step_session = None,
        }
        Ok(())
    }

    /// The inputs of the step's graph: the columns of its agents, as a map kernel's.
    fn step_inputs(&self, step: &StepGraph) -> Vec<Cow<'_, Data>> {
        let as_kernel = OnnxKernel {
            kernel: usize::MAX,
            name: "step".into(),
            form: Form::Map { agent: step.agent },
            feeds: step.feeds.clone(),
            sinks: Vec::new(),
        };
        self.inputs(&as_kernel, (0, 0), None)
    }

    /// The step in one call of the step's graph: its inputs are the agents' columns, its
    /// outputs their new values and the kernels' checks.
    fn run_step_graph(&mut self) -> Result<(), RunError> {
        let Some(step) = self.plan.step.clone() else { return Ok(()) };
        if self.counts[step.agent] == 0 {
            return Ok(());
        }
        let mut session = self.step_session.take().ok_or_else(|| failed("no step graph".into()))?;
        let ran = {
            let data = self.step_inputs(&step);
            let views: Vec<HostView> = data.iter().map(|d| HostView { data: d.as_ref().into() }).collect();
            session.run_views(&views)
        };
        self.step_session = Some(session);
        let outputs = ran.map_err(|e| failed(format!("the step's graph: {e}")))?;
        for ((k, sink), t) in step.sinks.iter().zip(&outputs) {
            if let Sink::Check { msg } = sink {
                if !t.data.is_empty() && t.data.get(0) != 0.0 {
                    let text = self.module.kernels.get(*k).and_then(|k| k.messages.get(*msg as usize));
                    return Err(RunError::Check(text.cloned().unwrap_or_default()));
                }
            }
        }
        for ((_, sink), t) in step.sinks.iter().zip(outputs) {
            match *sink {
                Sink::Store { col } => self.cols[step.agent][col as usize] = t.data,
                Sink::Comp { col } => {
                    if let Data::F32(v) = t.data {
                        self.comps[step.agent][col as usize] = Some(v);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A precision tried on a model: its error against f32, the time of one pass, and its session
/// (none for the f32 graph, which is loaded already).
type Trial = (Precision, f64, f64, Option<Box<dyn Session>>);

impl OnnxBackend<'_> {
    /// Puts the model of kernel `gi` through the precision passes its `@precision` asks for
    /// (f16; int8 calibrated on the current state; `auto`: int8, then f16, the first whose error
    /// against f32 on the current state stays within the tolerance) and loads the result.
    fn settle_precision(&mut self, gi: usize) -> Result<(), RunError> {
        use super::compile;
        let g = self.plan.kernels[gi].clone();
        let Some(tp) = self.module.kernels[g.kernel].tensor.clone() else { return Ok(()) };
        let Form::Map { agent } = g.form else { return Ok(()) };
        let mut wanted: Vec<Precision> = match tp.precision {
            Precision::F16 | Precision::Bf16 => vec![Precision::F16],
            Precision::Int8 => vec![Precision::Int8],
            Precision::Auto => vec![Precision::Int8, Precision::F16],
            Precision::F32 | Precision::Tf32 | Precision::F64 => return Ok(()),
        };
        if self.counts[agent] == 0 {
            return Ok(());
        }
        let model = super::decode(&self.graphs[gi]).map_err(failed)?;
        if !compile::has_model(&model) {
            return Ok(());
        }
        let on = self.engines[gi];
        // tract computes f16 in software on x86 (2.66 s a pass of the learned force at 10^4
        // agents against 6.9 ms in f32, on a Xeon): `auto` would never keep it, so it is not tried.
        if tp.precision == Precision::Auto && on == Engine::Tract && cfg!(target_arch = "x86_64") {
            wanted.retain(|&p| p != Precision::F16);
            self.notes.push(format!(
                "`{}`: f16 not tried on tract, which computes it in software on this processor",
                self.module.kernels[g.kernel].name
            ));
        }
        // The trial runs on the first agents only: at a million agents, trying every precision
        // on all of them took longer than the steps (and f16 emulated on a CPU far longer).
        let sample = self.counts[agent].min(TRIAL_AGENTS);
        let inputs: Vec<HostTensor> = g
            .feeds
            .iter()
            .zip(self.inputs(&g, (0, 0), None))
            .map(|(f, t)| match f {
                Feed::Col { .. } | Feed::Comp { .. } => HostTensor::vector(slice(&t, 0, sample)),
                _ => HostTensor::vector(t.into_owned()),
            })
            .collect();
        let outputs = g.sinks.len();
        let points = compile::calibration_points(&model);
        let calibrate = super::encode(&compile::with_outputs(&model, &points));
        let fail = |e: String| failed(format!("kernel `{}`: {e}", g.name));
        let all = on.load(&calibrate).and_then(|mut s| s.run(inputs.clone())).map_err(fail)?;
        let floats = |t: &HostTensor| -> Vec<f64> { (0..t.data.len()).map(|i| t.data.get(i)).collect() };
        let reference: Vec<Vec<f64>> = all[..outputs].iter().map(floats).collect();
        let ranges = value_ranges(&points, &all[outputs..]);
        // Where the model adds to a column, the error is measured on what it adds.
        let base: Vec<Option<Vec<f64>>> = g
            .sinks
            .iter()
            .map(|s| match *s {
                Sink::Store { col } if tp.accumulate && tp.outputs.contains(&col) => {
                    let d = &self.cols[agent][col as usize];
                    Some((0..sample).map(|i| d.get(i)).collect())
                }
                _ => None,
            })
            .collect();
        // One pass of each graph: the fastest of three after a first (which allocates and plans),
        // or the first alone where it took longer than `slow` (f16 emulated on a CPU).
        let timed = |s: &mut Box<dyn Session>, slow: f64| -> Result<(Vec<Vec<f64>>, f64), String> {
            let t = std::time::Instant::now();
            let out = s.run(inputs.clone())?;
            let mut best = t.elapsed().as_secs_f64();
            if best > slow {
                return Ok((out[..outputs].iter().map(floats).collect(), best));
            }
            best = f64::INFINITY;
            for _ in 0..3 {
                let t = std::time::Instant::now();
                s.run(inputs.clone())?;
                best = best.min(t.elapsed().as_secs_f64());
            }
            Ok((out[..outputs].iter().map(floats).collect(), best))
        };
        let (_, f32_time) = timed(&mut self.sessions[gi], f64::INFINITY).map_err(fail)?;
        // A candidate whose first pass is over a second and ten times f32's is slower whatever
        // its later passes take: it is not run again.
        let slow = (10.0 * f32_time).max(1.0);
        let mut measured: Vec<Trial> = Vec::new();
        let mut missing = Vec::new();
        for p in wanted {
            let graph = match p {
                Precision::Int8 => compile::quantize_int8(&model, &ranges, compile::int8_reduced_range()),
                _ => compile::to_f16(&model),
            };
            let tried = on.load(&super::encode(&graph)).and_then(|mut s| {
                let (other, time) = timed(&mut s, slow)?;
                Ok((compile::relative_error(&reference, &other, &base), time, s))
            });
            match tried {
                Ok((err, time, s)) => measured.push((p, err, time, Some(s))),
                Err(e) => missing.push(format!("{} cannot run on {}: {e}", p.name(), on.name())),
            }
        }
        let errors: Vec<String> = measured.iter().map(|m| format!("{} {:.2e}", m.0.name(), m.1)).collect();
        let times: Vec<String> = std::iter::once(format!("f32 {:.3} ms", f32_time * 1e3))
            .chain(measured.iter().map(|m| format!("{} {:.3} ms", m.0.name(), m.2 * 1e3)))
            .collect();
        let auto = tp.precision == Precision::Auto;
        // `auto` takes the fastest within the tolerance on this engine, f32 included: on a CPU,
        // f16 is often slower than f32.
        let chosen = if auto {
            measured.push((Precision::F32, 0.0, f32_time, None));
            measured.into_iter().filter(|m| m.1 <= tp.tolerance).min_by(|x, y| x.2.total_cmp(&y.2))
        } else {
            measured.into_iter().next()
        };
        let k = &self.module.kernels[g.kernel].name;
        let how = if auto { "@precision(auto) chose" } else { "runs" };
        let tolerance = if auto { format!(" (tolerance {:e})", tp.tolerance) } else { String::new() };
        let errors = if errors.is_empty() { "-".to_string() } else { errors.join(", ") };
        let note = match chosen {
            Some((p, _, _, session)) => {
                // int8 chosen on a sample: its ranges are calibrated again on every agent, so
                // that no value outside the sample's range is clipped.
                let session = match session {
                    Some(_) if p == Precision::Int8 && sample < self.counts[agent] => {
                        let all: Vec<HostTensor> = self
                            .inputs(&g, (0, 0), None)
                            .into_iter()
                            .map(|d| HostTensor::vector(d.into_owned()))
                            .collect();
                        let calibrated = on.load(&calibrate).and_then(|mut s| s.run(all)).map_err(fail)?;
                        let ranges = value_ranges(&points, &calibrated[outputs..]);
                        let graph = compile::quantize_int8(&model, &ranges, compile::int8_reduced_range());
                        Some(on.load(&super::encode(&graph)).map_err(fail)?)
                    }
                    other => other,
                };
                if let Some(s) = session {
                    self.sessions[gi] = s;
                    self.reduced.push(p);
                }
                let form = match p {
                    Precision::Int8 => "QDQ int8, calibrated on the initial state",
                    Precision::F16 => "f16",
                    _ => "f32",
                };
                format!(
                    "`{k}`: {how} {} on {} (ONNX model, {form}): error against f32 on {} {errors}{tolerance}; one pass over them: {}",
                    p.name(),
                    on.name(),
                    trial_agents(sample, self.counts[agent]),
                    times.join(", ")
                )
            }
            None => {
                format!(
                    "`{k}`: f32 runs on {}: error against f32 on {} {errors}{tolerance}",
                    on.name(),
                    trial_agents(sample, self.counts[agent])
                )
            }
        };
        self.notes.push(note);
        self.notes.extend(missing.into_iter().map(|m| format!("`{k}`: {m}")));
        Ok(())
    }
}

impl Backend for OnnxBackend<'_> {
    fn name(&self) -> String {
        let f64 = if self.f64_on_tract { "; f64 kernels on tract" } else { "" };
        let step = if self.step_session.is_some() { "; one graph a step" } else { "" };
        let models = self.models.map(|m| format!("; models on {}", m.name())).unwrap_or_default();
        format!("onnx ({}{models}{f64}{step})", self.engine.name())
    }

    fn step(&mut self) -> Result<(), RunError> {
        if self.step_session.is_some() {
            self.run_step_graph()?;
        } else {
            self.run_schedule(&self.module.step)?;
        }
        self.world.step += 1;
        Ok(())
    }

    fn prime(&mut self) -> Result<(), RunError> {
        for gi in 0..self.plan.kernels.len() {
            self.settle_precision(gi)?;
        }
        self.settle_step_precision()?;
        self.run_schedule(&self.module.prime)
    }

    fn notes(&self) -> Vec<String> {
        let hosted = self.hosted.as_ref().map(|h| h.notes(self.module)).unwrap_or_default();
        self.notes.iter().cloned().chain(hosted).collect()
    }

    fn world(&mut self) -> Result<&World, RunError> {
        crate::host::write_world(self.module, &self.cols, &self.comps, &mut self.world);
        Ok(&self.world)
    }

    /// The laws from their terms' graphs, summed on the host as the CPU executor sums them.
    fn laws(&mut self) -> Result<Option<Vec<crate::monitor::LawSample>>, RunError> {
        let m = self.module;
        let planned = m.laws.iter().all(|l| l.measure.len() == l.terms.len());
        let has_graphs = m.laws.iter().flat_map(|l| &l.measure).flat_map(|t| &t.fill).all(|s| match s {
            Sched::Run(k) => self.plan.of(*k).is_some(),
            Sched::Zero { .. } | Sched::Exact { .. } | Sched::Model { .. } => true,
        });
        if !planned || !has_graphs {
            return Ok(None);
        }
        let uniforms = m.uniform_values();
        let mut out = Vec::with_capacity(m.laws.len());
        for (l, law) in m.laws.iter().enumerate() {
            let mut sums = Vec::with_capacity(law.measure.len());
            for t in &law.measure {
                self.run_schedule(&t.fill)?;
                sums.push(crate::host::column_sums(&self.cols[t.agent], &t.cols, self.counts[t.agent]));
            }
            out.push(crate::ir::interp::law_sample(m, l, &sums, &uniforms)?);
        }
        Ok(Some(out))
    }

    fn find_non_finite(&mut self) -> Result<Option<(usize, usize, String)>, RunError> {
        Ok(crate::host::first_non_finite(self.module, &self.cols, &self.counts))
    }
}
