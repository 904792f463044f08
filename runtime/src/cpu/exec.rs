//! Runs compiled CPU kernels over typed column buffers on all cores.
//!
//! Map kernels split their agents into one contiguous chunk per thread. Pair kernels split rows
//! (or the neighbour list) likewise; each thread adds the changes it computes into buffers of its
//! own, which are then added to the columns in thread order, so a run is deterministic for a
//! given thread count.

use super::abi::{Ctx, TENSOR_AGENTS};
use super::jit::{compile, Compiled, JitError};
use crate::backend::Backend;
use crate::host::HostColumn;
use crate::ir::interp::RunError;
use crate::ir::{Module, Op, Pattern, Scalar, Sched};
use crate::onnx::hosted::{host_engine, Hosted};
use crate::World;

/// One column of agent state in the precision the kernels compute in.
enum Column {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I32(Vec<i32>),
}

/// Room for `n` agents and a whole tensor step past the last ([`TENSOR_AGENTS`]).
fn padded(n: usize) -> usize {
    n.next_multiple_of(TENSOR_AGENTS as usize)
}

impl Column {
    /// A column of `n` agents, zero, [`padded`].
    fn new(s: Scalar, n: usize) -> Self {
        let n = padded(n);
        match s {
            Scalar::F64 => Column::F64(vec![0.0; n]),
            Scalar::I32 | Scalar::U32 | Scalar::Bool => Column::I32(vec![0; n]),
            _ => Column::F32(vec![0.0; n]),
        }
    }
    fn ptr(&mut self) -> *mut u8 {
        match self {
            Column::F32(v) => v.as_mut_ptr() as *mut u8,
            Column::F64(v) => v.as_mut_ptr() as *mut u8,
            Column::I32(v) => v.as_mut_ptr() as *mut u8,
        }
    }
    fn set(&mut self, i: usize, x: f64) {
        match self {
            Column::F32(v) => v[i] = x as f32,
            Column::F64(v) => v[i] = x,
            Column::I32(v) => v[i] = x as i32,
        }
    }
    fn fill_zero(&mut self) {
        match self {
            Column::F32(v) => v.fill(0.0),
            Column::F64(v) => v.fill(0.0),
            Column::I32(v) => v.fill(0),
        }
    }
    fn add(&mut self, other: &Column) {
        match (self, other) {
            (Column::F32(a), Column::F32(b)) => a.iter_mut().zip(b).for_each(|(x, y)| *x += y),
            (Column::F64(a), Column::F64(b)) => a.iter_mut().zip(b).for_each(|(x, y)| *x += y),
            (Column::I32(a), Column::I32(b)) => a.iter_mut().zip(b).for_each(|(x, y)| *x = x.wrapping_add(*y)),
            _ => {}
        }
    }
}

impl HostColumn for Column {
    fn get(&self, i: usize) -> f64 {
        match self {
            Column::F32(v) => v[i] as f64,
            Column::F64(v) => v[i],
            Column::I32(v) => v[i] as f64,
        }
    }
    /// The first of the first `n` values (the agents; the padding is not state) not finite.
    fn first_non_finite(&self, n: usize) -> Option<usize> {
        match self {
            Column::F32(v) => v[..n].iter().position(|x| !x.is_finite()),
            Column::F64(v) => v[..n].iter().position(|x| !x.is_finite()),
            Column::I32(_) => None,
        }
    }
}

/// Per agent type, per column: a thread's change buffer, where the kernel accumulates into it.
type DeltaTables = Vec<Vec<Option<Column>>>;

/// Raw pointers handed to worker threads; each thread writes only what the partition gives it.
#[derive(Clone, Copy)]
struct Shared(*const u8);
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// Whole-value access, so that closures capture the `Send` wrapper and not its field.
    fn get(self) -> *const u8 {
        self.0
    }
}

pub struct CpuBackend<'m> {
    module: &'m Module,
    code: Compiled,
    threads: usize,
    cols: Vec<Vec<Column>>,
    /// Per agent type and column, the compensation of compensated integrator updates.
    comps: Vec<Vec<Option<Vec<f32>>>>,
    counts: Vec<usize>,
    uniforms: Vec<f64>,
    uniforms_f32: Vec<f32>,
    world: World,
    hosted: Option<Hosted>,
}

#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    #[error(transparent)]
    Jit(#[from] JitError),
    #[error("kernel `{0}` has no CPU code in this artifact")]
    Missing(String),
}

type MapFn = unsafe extern "C" fn(*const Ctx, i64, i64);
type PairsFn = unsafe extern "C" fn(*const Ctx, i64, i64, i64, i64);
type ListFn = unsafe extern "C" fn(*const Ctx, i64, i64);

/// Columns of `j` visited per call, so that the second agent's data stays in cache.
const TILE: usize = 2048;

/// Below this many agents (or pairs, for pair kernels) a kernel runs on the calling thread.
const SMALL: usize = 4096;
const SMALL_PAIRS: usize = 200_000;

impl<'m> CpuBackend<'m> {
    /// Compiles the kernels (CLIF text per kernel index) and takes the state of `world`.
    pub fn new(module: &'m Module, texts: &[Option<String>], world: &World, threads: usize) -> Result<Self, CpuError> {
        for s in &module.step {
            if let Sched::Run(k) = s {
                if texts.get(*k).and_then(|t| t.as_ref()).is_none() {
                    return Err(CpuError::Missing(module.kernels[*k].name.clone()));
                }
            }
        }
        let code = compile(texts)?;
        let mut me = CpuBackend {
            module,
            code,
            threads: threads.max(1),
            cols: Vec::new(),
            comps: Vec::new(),
            counts: Vec::new(),
            uniforms: Vec::new(),
            uniforms_f32: Vec::new(),
            world: world.clone(),
            hosted: (!module.hosted.is_empty()).then(|| Hosted::new(module, host_engine())),
        };
        me.set_uniforms(module.uniform_values());
        me.upload(world);
        Ok(me)
    }

    pub fn set_uniforms(&mut self, values: Vec<f64>) {
        self.uniforms_f32 = values.iter().map(|&v| v as f32).collect();
        self.uniforms = values;
    }

    fn upload(&mut self, world: &World) {
        self.counts = world.agents.iter().map(|a| a.count).collect();
        self.cols = world
            .agents
            .iter()
            .enumerate()
            .map(|(t, a)| {
                a.columns
                    .iter()
                    .enumerate()
                    .map(|(c, data)| {
                        let mut col = Column::new(self.module.column_types[t][c], a.count);
                        for (i, x) in data.iter().enumerate() {
                            col.set(i, *x);
                        }
                        col
                    })
                    .collect()
            })
            .collect();
        let mut comps: Vec<Vec<Option<Vec<f32>>>> =
            self.cols.iter().map(|c| c.iter().map(|_| None).collect()).collect();
        for (agent, col) in super::abi::compensated_columns(self.module) {
            comps[agent][col as usize] = Some(vec![0.0; padded(self.counts[agent])]);
        }
        self.comps = comps;
    }

    fn comp_table(&mut self, agent: usize) -> Vec<*mut u8> {
        self.comps[agent]
            .iter_mut()
            .map(|c| c.as_mut().map_or(std::ptr::null_mut(), |v| v.as_mut_ptr() as *mut u8))
            .collect()
    }

    fn table(&mut self, agent: usize) -> Vec<*mut u8> {
        self.cols[agent].iter_mut().map(Column::ptr).collect()
    }

    /// Splits `0..n` into one contiguous, lane-aligned range per thread; small jobs stay whole,
    /// since starting threads would cost more than the work.
    fn chunks(&self, n: usize) -> Vec<(usize, usize)> {
        if n < SMALL {
            return vec![(0, n)];
        }
        let per = n.div_ceil(self.threads).next_multiple_of(TENSOR_AGENTS as usize);
        (0..n).step_by(per).map(|s| (s, (s + per).min(n))).collect()
    }

    fn fail_message(&self, kernel: usize, fails: &[i32]) -> Result<(), RunError> {
        match fails.iter().find(|f| **f != 0) {
            Some(&f) => Err(RunError::Check(
                self.module.kernels[kernel].messages.get(f as usize - 1).cloned().unwrap_or_default(),
            )),
            None => Ok(()),
        }
    }

    fn run_map(&mut self, kernel: usize, agent: usize) -> Result<(), RunError> {
        let f: MapFn = unsafe { std::mem::transmute(self.code.entries[kernel].unwrap_or(std::ptr::null())) };
        let cols = self.table(agent);
        let comps = self.comp_table(agent);
        let comp_p = Shared(comps.as_ptr() as *const u8);
        let n = self.counts[agent];
        let chunks = self.chunks(n);
        let mut fails = vec![0i32; chunks.len()];
        let single = chunks.len() == 1;
        let uniforms = Shared(self.uniforms.as_ptr() as *const u8);
        let uniforms_f32 = Shared(self.uniforms_f32.as_ptr() as *const u8);
        let cols_p = Shared(cols.as_ptr() as *const u8);
        std::thread::scope(|s| {
            for ((b, e), fail) in chunks.iter().zip(fails.iter_mut()) {
                let (b, e) = (*b as i64, *e as i64);
                let fail = Shared(fail as *mut i32 as *const u8);
                let job = move || {
                    let ctx = Ctx {
                        cols_a: cols_p.get() as *const *mut u8,
                        cols_b: std::ptr::null(),
                        delta_a: std::ptr::null(),
                        delta_b: std::ptr::null(),
                        uniforms: uniforms.get() as *const f64,
                        uniforms_f32: uniforms_f32.get() as *const f32,
                        fail: fail.get() as *mut i32,
                        comp: comp_p.get() as *const *mut u8,
                    };
                    // SAFETY: the kernel touches agents [b, e) of the columns in the table only.
                    unsafe { f(&ctx, b, e) };
                };
                if single {
                    job();
                } else {
                    s.spawn(job);
                }
            }
        });
        self.fail_message(kernel, &fails)
    }

    /// Change buffers for one thread: one per column the kernel accumulates into, per agent type.
    fn delta_tables(&self, kernel: usize, agents: &[usize]) -> (DeltaTables, Vec<(usize, u32)>) {
        let k = &self.module.kernels[kernel];
        let mut written: Vec<(usize, u32)> = Vec::new();
        for inst in &k.insts {
            if let Op::Accum { slot, col, .. } = inst.op {
                let key = (agents[slot as usize], col);
                if !written.contains(&key) {
                    written.push(key);
                }
            }
        }
        let tables = (0..self.cols.len())
            .map(|t| {
                (0..self.cols[t].len())
                    .map(|c| {
                        written
                            .contains(&(t, c as u32))
                            .then(|| Column::new(self.module.column_types[t][c], self.counts[t]))
                    })
                    .collect()
            })
            .collect();
        (tables, written)
    }

    fn run_pairs(&mut self, kernel: usize, a: usize, b: usize, list: Option<Vec<(u32, u32)>>) -> Result<(), RunError> {
        let entry = self.code.entries[kernel].unwrap_or(std::ptr::null());
        let (cols_a, cols_b) = (self.table(a), self.table(b));
        let (na, nb) = (self.counts[a], self.counts[b]);
        // Rows per thread, balanced by the number of pairs each row holds.
        let parts: Vec<(usize, usize)> = match &list {
            Some(l) => self.chunks(l.len()),
            None => {
                let weight = |i: usize| if a == b { nb.saturating_sub(i + 1) } else { nb };
                let total: usize = (0..na).map(weight).sum();
                let threads = if total < SMALL_PAIRS { 1 } else { self.threads };
                let target = total.div_ceil(threads).max(1);
                let mut parts = Vec::new();
                let (mut start, mut acc) = (0, 0);
                for i in 0..na {
                    acc += weight(i);
                    if acc >= target || i + 1 == na {
                        parts.push((start, i + 1));
                        start = i + 1;
                        acc = 0;
                    }
                }
                parts
            }
        };
        let mut per_thread: Vec<(DeltaTables, Vec<*mut u8>, Vec<*mut u8>)> = Vec::new();
        let mut written = Vec::new();
        for _ in &parts {
            let (mut tables, w) = self.delta_tables(kernel, &[a, b]);
            written = w;
            let ptrs = |t: &mut Vec<Option<Column>>| -> Vec<*mut u8> {
                t.iter_mut().map(|c| c.as_mut().map_or(std::ptr::null_mut(), Column::ptr)).collect()
            };
            let da = ptrs(&mut tables[a]);
            let db = ptrs(&mut tables[b]);
            per_thread.push((tables, da, db));
        }
        let mut fails = vec![0i32; parts.len()];
        let single = parts.len() == 1;
        let uniforms = Shared(self.uniforms.as_ptr() as *const u8);
        let uniforms_f32 = Shared(self.uniforms_f32.as_ptr() as *const u8);
        let (ca, cb) = (Shared(cols_a.as_ptr() as *const u8), Shared(cols_b.as_ptr() as *const u8));
        let list_p = list.as_ref().map(|l| Shared(l.as_ptr() as *const u8));
        std::thread::scope(|s| {
            for (((lo, hi), (_, da, db)), fail) in parts.iter().zip(per_thread.iter()).zip(fails.iter_mut()) {
                let (lo, hi) = (*lo, *hi);
                let (da, db) = (Shared(da.as_ptr() as *const u8), Shared(db.as_ptr() as *const u8));
                let fail = Shared(fail as *mut i32 as *const u8);
                let entry = Shared(entry);
                let job = move || {
                    let ctx = Ctx {
                        cols_a: ca.get() as *const *mut u8,
                        cols_b: cb.get() as *const *mut u8,
                        delta_a: da.get() as *const *mut u8,
                        delta_b: db.get() as *const *mut u8,
                        uniforms: uniforms.get() as *const f64,
                        uniforms_f32: uniforms_f32.get() as *const f32,
                        fail: fail.get() as *mut i32,
                        comp: std::ptr::null(),
                    };
                    // SAFETY: each thread writes only its own change buffers; columns are read.
                    unsafe {
                        match list_p {
                            Some(l) => {
                                let f: ListFn = std::mem::transmute(entry.get());
                                f(&ctx, (l.get() as *const (u32, u32)).add(lo) as i64, (hi - lo) as i64);
                            }
                            None => {
                                let f: PairsFn = std::mem::transmute(entry.get());
                                for jt in (0..nb).step_by(TILE) {
                                    f(&ctx, lo as i64, hi as i64, jt as i64, (jt + TILE).min(nb) as i64);
                                }
                            }
                        }
                    }
                };
                if single {
                    job();
                } else {
                    s.spawn(job);
                }
            }
        });
        self.fail_message(kernel, &fails)?;
        for (tables, _, _) in &per_thread {
            for &(t, c) in &written {
                if let Some(d) = &tables[t][c as usize] {
                    self.cols[t][c as usize].add(d);
                }
            }
        }
        Ok(())
    }

    fn neighbor_list(&self, a: usize, b: usize, bound: f64) -> Result<Vec<(u32, u32)>, RunError> {
        let pos = |t: usize| -> Result<Vec<Vec<f64>>, RunError> {
            let schema = &self.module.agents[t];
            let (fi, f) = schema
                .field("position")
                .ok_or_else(|| RunError::Invalid(format!("agent `{}` has no position", schema.name)))?;
            let start = schema.column_offsets()[fi];
            Ok((start..start + f.lanes.len())
                .map(|c| (0..self.counts[t]).map(|i| self.cols[t][c].get(i)).collect())
                .collect())
        };
        let pb = pos(b)?;
        let refs: Vec<&[f64]> = pb.iter().map(Vec::as_slice).collect();
        let pa = if a == b { None } else { Some(pos(a)?) };
        let ra: Option<Vec<&[f64]>> = pa.as_ref().map(|p| p.iter().map(Vec::as_slice).collect());
        Ok(crate::grid::candidate_pairs(ra.as_deref(), &refs, bound)?)
    }

    fn run_kernel(&mut self, kernel: usize) -> Result<(), RunError> {
        match self.module.kernels[kernel].pattern.clone() {
            Pattern::Map { agent } | Pattern::Integrate { agent, .. } => self.run_map(kernel, agent),
            Pattern::AllPairs { a, b } => self.run_pairs(kernel, a, b, None),
            Pattern::Neighbors { a, b, bound } => {
                let list = self.neighbor_list(a, b, bound)?;
                self.run_pairs(kernel, a, b, Some(list))
            }
            _ => {
                Err(RunError::Invalid(format!("kernel `{}` does not run on the CPU", self.module.kernels[kernel].name)))
            }
        }
    }

    fn run_schedule(&mut self, list: &'m [Sched]) -> Result<(), RunError> {
        for s in list {
            match s {
                Sched::Zero { agent, cols } => {
                    for &c in cols {
                        self.cols[*agent][c as usize].fill_zero();
                    }
                }
                Sched::Run(k) => self.run_kernel(*k)?,
                Sched::Exact { agent, cols } => {
                    for &(from, to) in cols {
                        let comp = self.comps[*agent][from as usize].as_ref();
                        let exact = crate::host::exact(&self.cols[*agent][from as usize], comp, self.counts[*agent]);
                        self.cols[*agent][to as usize] = Column::F64(exact);
                    }
                }
                Sched::Model { agent, model, inputs, outputs } => {
                    let hosted = self.hosted.as_mut().ok_or_else(|| RunError::Invalid("no hosted models".into()))?;
                    let out = hosted.run(self.module, *model, &self.cols[*agent], inputs, self.counts[*agent])?;
                    for (&c, lane) in outputs.iter().zip(out) {
                        let col = &mut self.cols[*agent][c as usize];
                        lane.into_iter().enumerate().for_each(|(i, y)| col.set(i, y as f64));
                    }
                }
            }
        }
        Ok(())
    }

    /// Pairs a step's pair kernels visit (all pairs, or neighbour candidates): for `aiic bench`.
    pub fn pairs_per_step(&self) -> Result<u64, RunError> {
        let mut total = 0u64;
        for s in &self.module.step {
            if let Sched::Run(k) = s {
                total += match self.module.kernels[*k].pattern {
                    Pattern::AllPairs { a, b } if a == b => {
                        (self.counts[a] * self.counts[a].saturating_sub(1) / 2) as u64
                    }
                    Pattern::AllPairs { a, b } => (self.counts[a] * self.counts[b]) as u64,
                    Pattern::Neighbors { a, b, bound } => self.neighbor_list(a, b, bound)?.len() as u64,
                    _ => 0,
                };
            }
        }
        Ok(total)
    }
}

impl Backend for CpuBackend<'_> {
    fn name(&self) -> String {
        format!("cpu ({} thread{})", self.threads, if self.threads == 1 { "" } else { "s" })
    }

    fn notes(&self) -> Vec<String> {
        self.hosted.as_ref().map(|h| h.notes(self.module)).unwrap_or_default()
    }

    fn step(&mut self) -> Result<(), RunError> {
        self.run_schedule(&self.module.step)?;
        self.world.step += 1;
        Ok(())
    }

    fn prime(&mut self) -> Result<(), RunError> {
        self.run_schedule(&self.module.prime)
    }

    fn world(&mut self) -> Result<&World, RunError> {
        crate::host::write_world(self.module, &self.cols, &self.comps, &mut self.world);
        Ok(&self.world)
    }

    fn find_non_finite(&mut self) -> Result<Option<(usize, usize, String)>, RunError> {
        Ok(crate::host::first_non_finite(self.module, &self.cols, &self.counts))
    }

    fn laws(&mut self) -> Result<Option<Vec<crate::monitor::LawSample>>, RunError> {
        let m = self.module;
        let planned = m.laws.iter().all(|l| l.measure.len() == l.terms.len());
        let compiled = m.laws.iter().flat_map(|l| &l.measure).flat_map(|t| &t.fill).all(|s| match s {
            Sched::Run(k) => self.code.entries.get(*k).is_some_and(Option::is_some),
            Sched::Zero { .. } | Sched::Exact { .. } | Sched::Model { .. } => true,
        });
        if !planned || !compiled {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(m.laws.len());
        for (l, law) in m.laws.iter().enumerate() {
            let mut sums = Vec::with_capacity(law.measure.len());
            for t in &law.measure {
                self.run_schedule(&t.fill)?;
                sums.push(crate::host::column_sums(&self.cols[t.agent], &t.cols, self.counts[t.agent]));
            }
            out.push(crate::ir::interp::law_sample(m, l, &sums, &self.uniforms)?);
        }
        Ok(Some(out))
    }
}
