//! A module's step as device kernels in a C-like GPU language: the plan the executors follow and
//! the source of each kernel.
//!
//! - Map and integrator kernels: one thread per agent.
//! - All pairs: one thread per agent gathers over its partners, which the workgroup stages
//!   through workgroup-shared tiles of `wg()` agents. Tiles wholly above or below the
//!   workgroup's own agents need no per-pair test; only the diagonal and the last tile do.
//! - Neighbours: a uniform grid hashed into buckets, built on the device each pass by a
//!   counting sort (count, scan, scatter); a thread visits the buckets of its cell and the cells
//!   around it, each bucket once.
//! - A pair kernel that reads a column it also adds to writes its changes to a delta buffer, added
//!   by a second kernel once every thread has read the old values (Jacobi semantics).

use super::body::{self, depends_on, needed, reg, Names};
use super::dialect::{Binding, Dialect, Shared};
use aiic_runtime::cpu::abi::{compensated_columns, compensated_stores};
use aiic_runtime::gpu::{device_scalar, Buf, DeviceKernel, GpuOp, GpuPlan, GridSpec, Launch, TILE_UNROLL};
use aiic_runtime::ir::{Kernel, Module, Op, Pattern, Scalar, Sched, V};
use std::collections::HashMap;

/// The plan of a module's step and the source text of each of its device kernels.
pub struct GpuCode {
    pub plan: GpuPlan,
    pub texts: Vec<String>,
}

pub fn generate(m: &Module, d: &dyn Dialect) -> Result<GpuCode, String> {
    let plan = GpuPlan { kernels: Vec::new(), grids: Vec::new(), step: Vec::new(), prime: Vec::new() };
    let mut g = Gen { m, d, plan, texts: Vec::new() };
    let mut done: HashMap<usize, Vec<GpuOp>> = HashMap::new();
    let mut lists = [Vec::new(), Vec::new()];
    for (list, out) in [&m.step, &m.prime].into_iter().zip(lists.iter_mut()) {
        for s in list {
            match s {
                Sched::Zero { agent, cols } => {
                    out.extend(cols.iter().map(|&col| GpuOp::Zero(Buf::Col { agent: *agent, col })));
                }
                Sched::Run(k) => {
                    if !done.contains_key(k) {
                        let ops = g.kernel(*k)?;
                        done.insert(*k, ops);
                    }
                    out.extend(done[k].iter().cloned());
                }
            }
        }
    }
    let [step, prime] = lists;
    g.plan.step = step;
    g.plan.prime = prime;
    Ok(GpuCode { plan: g.plan, texts: g.texts })
}

struct Gen<'a> {
    m: &'a Module,
    d: &'a dyn Dialect,
    plan: GpuPlan,
    texts: Vec<String>,
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
            Buf::Comp { agent, col } => (format!("comp_{}", &col_name(self.m, agent, col)[2..]), Scalar::F32, false),
            Buf::Delta { agent, col } => {
                (format!("delta_{}", &col_name(self.m, agent, col)[2..]), self.col_ty(agent, col), false)
            }
            Buf::Sizes => ("sizes".into(), Scalar::U32, false),
            Buf::ParamsF32 => ("params_f".into(), Scalar::F32, false),
            Buf::ParamsI32 => ("params_i".into(), Scalar::I32, false),
            Buf::ParamsF64 => ("params_d".into(), Scalar::F64, false),
            Buf::Fail => ("fail".into(), Scalar::U32, false),
            Buf::GridCell { grid } => (format!("grid{grid}_cell"), Scalar::U32, false),
            Buf::GridCount { grid } => (format!("grid{grid}_count"), Scalar::U32, true),
            Buf::GridStart { grid } => (format!("grid{grid}_start"), Scalar::U32, false),
            Buf::GridSorted { grid } => (format!("grid{grid}_sorted"), Scalar::U32, false),
        };
        self.list.push((b, Binding { name: name.clone(), elem, atomic, read_only: !write }));
        name
    }

    fn col_ty(&self, agent: usize, col: u32) -> Scalar {
        device_scalar(self.m.column_types[agent][col as usize])
    }
}

/// A column's name in generated code: `c_Body_position_x`.
fn col_name(m: &Module, agent: usize, col: u32) -> String {
    let schema = &m.agents[agent];
    let lane = schema.fields.iter().flat_map(|f| f.lanes.iter()).nth(col as usize).cloned().unwrap_or(col.to_string());
    let raw = format!("c_{}_{}", schema.name, lane);
    raw.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

/// Hashes integer cell coordinates into one of `nb` (a power of two) buckets.
fn hash(d: &dyn Dialect, cells: &[String], nb: &str) -> String {
    const PRIMES: [u64; 3] = [73_856_093, 19_349_663, 83_492_791];
    let terms: Vec<String> =
        cells.iter().zip(PRIMES).map(|(c, p)| format!("({} * {})", d.cast(Scalar::U32, c), d.uint(p))).collect();
    format!("(({}) & ({nb} - {}))", terms.join(" ^ "), d.uint(1))
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
    fn push(
        &mut self,
        name: String,
        source: Option<usize>,
        b: Binds,
        launch: Launch,
        shared: &[Shared],
        body: &str,
    ) -> usize {
        let bindings: Vec<Binding> = b.list.iter().map(|(_, bd)| Binding { name: bd.name.clone(), ..*bd }).collect();
        let text = self.d.kernel(&name, &bindings, shared, body);
        let shared_bytes = shared.iter().map(Shared::bytes).sum();
        let bindings = b.list.iter().map(|(x, _)| *x).collect();
        self.plan.kernels.push(DeviceKernel { name, source, bindings, launch, shared_bytes });
        self.texts.push(text);
        self.plan.kernels.len() - 1
    }

    fn kernel(&mut self, kid: usize) -> Result<Vec<GpuOp>, String> {
        let k = &self.m.kernels[kid];
        if let Some(inst) = k.insts.iter().find(|i| !body::supported(&i.op)) {
            return Err(format!("kernel `{}` uses `{:?}`, which runs only on the host", k.name, inst.op));
        }
        if k.outputs != 0 {
            return Err(format!("kernel `{}` is a reduction, which runs on the host", k.name));
        }
        match k.pattern.clone() {
            Pattern::Map { agent } | Pattern::Integrate { agent, .. } => Ok(vec![GpuOp::Launch(self.map(kid, agent))]),
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

    fn fail_code(&self, msg: u32) -> String {
        self.d.uint(((self.plan.kernels.len() as u64) << 16 | msg as u64) + 1)
    }

    /// One thread per agent; loads and stores its own agent only.
    fn map(&mut self, kid: usize, agent: usize) -> usize {
        let (m, d) = (self.m, self.d);
        let k = &m.kernels[kid];
        let mut b = Binds::new(m);
        let mut out = String::new();
        let sizes = b.get(Buf::Sizes, false);
        out += &d.let_("n", Scalar::U32, &format!("{sizes}[{}]", d.uint(agent as u64)));
        out += "\n";
        out += "if (gid < n) {\n";
        let i = "gid";
        let fail_code: Vec<String> = (0..k.messages.len() as u32).map(|msg| self.fail_code(msg)).collect();
        let lines = {
            let bref = std::cell::RefCell::new(&mut b);
            let value = |v: V| format!("v{v}");
            let load = |_s: u8, col: u32| {
                let name = bref.borrow_mut().get(Buf::Col { agent, col }, false);
                format!("{name}[{i}]")
            };
            let param = |p: u32, s: Scalar| param_expr(&mut bref.borrow_mut(), d, p, s);
            let names = Names { value: &value, load: &load, param: &param };
            let col_ty = |_s: u8, col: u32| m.column_types[agent][col as usize];
            let mut lines = Vec::new();
            let roots: Vec<V> =
                k.insts.iter().enumerate().filter(|(_, x)| x.op.is_effect()).map(|(v, _)| v as V).collect();
            let need = needed(k, &roots);
            for (v, inst) in k.insts.iter().enumerate() {
                if need[v] && !inst.op.is_effect() {
                    lines.push(d.let_(&value(v as V), reg(inst.ty), &body::expr(d, k, &col_ty, v as V, &names)));
                }
            }
            lines
        };
        for l in lines {
            out += &format!("  {l}\n");
        }
        let comp_cols: Vec<u32> =
            compensated_columns(m).into_iter().filter(|(a, _)| *a == agent).map(|(_, c)| c).collect();
        let comp = compensated_stores(m, k);
        for inst in &k.insts {
            match inst.op {
                Op::Check { cond, msg } => {
                    let f = b.get(Buf::Fail, true);
                    out += &format!("  if (!(v{cond})) {{ {f}[0] = {}; }}\n", fail_code[msg as usize]);
                }
                Op::Store { col, value, .. } => {
                    let target = b.get(Buf::Col { agent, col }, true);
                    let cs = device_scalar(m.column_types[agent][col as usize]);
                    if let Some((_, old, inc)) = comp.iter().find(|(c, _, _)| *c == col) {
                        // Kahan's compensated update, as on the CPU.
                        let cb = b.get(Buf::Comp { agent, col }, true);
                        out += &format!("  {{\n    {}\n", d.let_("y", Scalar::F32, &format!("v{inc} - {cb}[{i}]")));
                        out += &format!("    {}\n", d.let_("t", Scalar::F32, &format!("v{old} + y")));
                        out += &format!("    {cb}[{i}] = (t - v{old}) - y;\n    {target}[{i}] = t;\n  }}\n");
                    } else {
                        let x = body::convert(d, reg(k.insts[value as usize].ty), cs, &format!("v{value}"));
                        out += &format!("  {target}[{i}] = {x};\n");
                        if comp_cols.contains(&col) {
                            let cb = b.get(Buf::Comp { agent, col }, true);
                            out += &format!("  {cb}[{i}] = {};\n", d.float(0.0, Scalar::F32));
                        }
                    }
                }
                _ => {}
            }
        }
        out += "}\n";
        self.push(k.name.clone(), Some(kid), b, Launch::Agents { agent }, &[], &out)
    }

    /// A uniform grid over agents of type `agent`, rebuilt before each use: returns its index and
    /// the operations that build it.
    fn grid(&mut self, agent: usize, cell: f64) -> Result<(usize, Vec<GpuOp>), String> {
        let (m, d) = (self.m, self.d);
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
        let pos: Vec<u32> = (start..start + f.lanes.len() as u32).collect();
        let spec = GridSpec { agent, pos: pos.clone(), cell };
        let grid = match self.plan.grids.iter().position(|g| *g == spec) {
            Some(g) => g,
            None => {
                self.plan.grids.push(spec);
                self.plan.grids.len() - 1
            }
        };
        let nslot = m.agents.len() + grid;
        let name = format!("grid{grid}_{}", schema.name);

        // Count: each agent's bucket, and how many agents each bucket holds.
        let mut b = Binds::new(m);
        let sizes = b.get(Buf::Sizes, false);
        let mut out = d.let_("n", Scalar::U32, &format!("{sizes}[{}]", d.uint(agent as u64))) + "\n";
        out += &(d.let_("nb", Scalar::U32, &format!("{sizes}[{}]", d.uint(nslot as u64))) + "\n");
        out += "if (gid < n) {\n";
        let cells = self.cell_coords(&mut b, agent, &pos, cell, "gid", &mut out);
        let cellb = b.get(Buf::GridCell { grid }, true);
        let count = b.get(Buf::GridCount { grid }, true);
        out += &format!("  {}\n", d.let_("h", Scalar::U32, &hash(d, &cells, "nb")));
        out += &format!("  {cellb}[gid] = h;\n  {};\n}}\n", d.atomic_add(&count, "h", &d.uint(1)));
        let count_k = self.push(format!("{name}_count"), None, b, Launch::Agents { agent }, &[], &out);

        // Scan: one workgroup; each thread sums a run of buckets, thread 0 scans the sums.
        let mut b = Binds::new(m);
        let sizes = b.get(Buf::Sizes, false);
        let count = b.get(Buf::GridCount { grid }, true);
        let startb = b.get(Buf::GridStart { grid }, true);
        let u = |x: u64| d.uint(x);
        let wg = d.wg();
        let mut out = String::new();
        out += &(d.let_("n", Scalar::U32, &format!("{sizes}[{}]", u(agent as u64))) + "\n");
        out += &(d.let_("nb", Scalar::U32, &format!("{sizes}[{}]", u(nslot as u64))) + "\n");
        out += &(d.let_("per", Scalar::U32, &format!("(nb + {wg} - {}) / {wg}", u(1))) + "\n");
        out += &(d.let_("lo", Scalar::U32, "min(lid * per, nb)") + "\n");
        out += &(d.let_("hi", Scalar::U32, "min(lo + per, nb)") + "\n");
        out += &(d.var("s", Scalar::U32, &u(0)) + "\n");
        out += &(d.var("x", Scalar::U32, "lo") + "\n");
        out += &format!("while (x < hi) {{ s = s + {}; x = x + {}; }}\n", d.atomic_load(&count, "x"), u(1));
        out += &format!("part[lid] = s;\n{}\n", d.barrier());
        out += &format!("if (lid == {}) {{\n", u(0));
        out += &format!("  {}\n  {}\n", d.var("run", Scalar::U32, &u(0)), d.var("q", Scalar::U32, &u(0)));
        out += &format!("  while (q < {wg}) {{\n    {}\n", d.let_("c", Scalar::U32, "part[q]"));
        out += &format!("    part[q] = run;\n    run = run + c;\n    q = q + {};\n  }}\n", u(1));
        out += &format!("  {startb}[nb] = n;\n}}\n{}\n", d.barrier());
        out += &(d.var("run2", Scalar::U32, "part[lid]") + "\n");
        out += "x = lo;\n";
        out += &format!("while (x < hi) {{\n  {}\n", d.let_("c", Scalar::U32, &d.atomic_load(&count, "x")));
        out += &format!("  {startb}[x] = run2;\n  {}\n", d.atomic_store(&count, "x", "run2"));
        out += &format!("  run2 = run2 + c;\n  x = x + {};\n}}\n", u(1));
        let part = Shared { name: "part".into(), elem: Scalar::U32, lanes: 1 };
        let scan_k = self.push(format!("{name}_scan"), None, b, Launch::Single, &[part], &out);

        // Scatter: each agent takes the next place of its bucket.
        let mut b = Binds::new(m);
        let sizes = b.get(Buf::Sizes, false);
        let cellb = b.get(Buf::GridCell { grid }, false);
        let count = b.get(Buf::GridCount { grid }, true);
        let sorted = b.get(Buf::GridSorted { grid }, true);
        let mut out = d.let_("n", Scalar::U32, &format!("{sizes}[{}]", u(agent as u64))) + "\n";
        out += "if (gid < n) {\n";
        out += &format!("  {}\n", d.let_("at", Scalar::U32, &d.atomic_add(&count, &format!("{cellb}[gid]"), &u(1))));
        out += &format!("  {sorted}[at] = gid;\n}}\n");
        let scatter_k = self.push(format!("{name}_scatter"), None, b, Launch::Agents { agent }, &[], &out);
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

    /// Declares the integer cell coordinates of agent `idx` and returns their names.
    fn cell_coords(
        &self,
        b: &mut Binds,
        agent: usize,
        pos: &[u32],
        cell: f64,
        idx: &str,
        out: &mut String,
    ) -> Vec<String> {
        let d = self.d;
        let inv = d.float(1.0 / cell, Scalar::F32);
        pos.iter()
            .enumerate()
            .map(|(n, &col)| {
                let name = b.get(Buf::Col { agent, col }, false);
                let cs = b.col_ty(agent, col);
                let x = body::convert(d, cs, Scalar::F32, &format!("{name}[{idx}]"));
                let cname = format!("cell{n}");
                *out += &format!(
                    "  {}\n",
                    d.let_(&cname, Scalar::I32, &d.cast(Scalar::I32, &format!("floor({x} * {inv})")))
                );
                cname
            })
            .collect()
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
        // Delta buffers where the kernel reads a column it adds to.
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
        let via_delta = accums.iter().any(|x| loads.contains(x));
        let mut ops = Vec::new();
        let mut sides_of_kernels: Vec<Vec<Side>> = Vec::new();
        if a == b {
            let sides: Vec<Side> = [0u8, 1].into_iter().filter(|&s| has(s)).map(|own| Side { own }).collect();
            if !sides.is_empty() {
                sides_of_kernels.push(sides);
            }
        } else {
            for own in [0u8, 1] {
                if has(own) {
                    sides_of_kernels.push(vec![Side { own }]);
                }
            }
        }
        for sides in sides_of_kernels {
            let own_agent = agents[sides[0].own as usize];
            let par_agent = agents[sides[0].partner() as usize];
            let grid = grids.map(|(ga, gb)| if sides[0].own == 0 { gb } else { ga });
            let dk = self.gather(kid, &sides, own_agent, par_agent, a == b, grid, via_delta);
            ops.push(GpuOp::Launch(dk));
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
        let d = self.d;
        let mut b = Binds::new(self.m);
        let sizes = b.get(Buf::Sizes, false);
        let mut out = d.let_("n", Scalar::U32, &format!("{sizes}[{}]", d.uint(agent as u64))) + "\n";
        out += "if (gid < n) {\n";
        let mut seen = Vec::new();
        for &col in cols {
            if seen.contains(&col) {
                continue;
            }
            seen.push(col);
            let c = b.get(Buf::Col { agent, col }, true);
            let dl = b.get(Buf::Delta { agent, col }, false);
            out += &format!("  {c}[gid] = {c}[gid] + {dl}[gid];\n");
        }
        out += "}\n";
        let name = format!("{}_apply_{}", self.m.kernels[kid].name, self.m.agents[agent].name);
        self.push(name, Some(kid), b, Launch::Agents { agent }, &[], &out)
    }

    #[allow(clippy::too_many_arguments)]
    fn gather(
        &mut self,
        kid: usize,
        sides: &[Side],
        own_agent: usize,
        par_agent: usize,
        same: bool,
        grid: Option<usize>,
        via_delta: bool,
    ) -> usize {
        let (m, d) = (self.m, self.d);
        let k: &Kernel = &m.kernels[kid];
        let agents_of = |slot: u8| if slot == sides[0].own { own_agent } else { par_agent };
        let u = |x: u64| d.uint(x);
        let fail_codes: Vec<String> = (0..k.messages.len() as u32).map(|msg| self.fail_code(msg)).collect();
        let mut b = Binds::new(m);
        let sizes = b.get(Buf::Sizes, false);
        let wg = d.wg();
        let mut out = String::new();
        out += &(d.let_("n_own", Scalar::U32, &format!("{sizes}[{}]", u(own_agent as u64))) + "\n");
        out += &(d.let_("n_par", Scalar::U32, &format!("{sizes}[{}]", u(par_agent as u64))) + "\n");
        out += &(d.let_("i", Scalar::U32, "gid") + "\n");
        out += &(d.let_("ic", Scalar::U32, &format!("min(i, n_own - {})", u(1))) + "\n");
        out += &(d.let_("live", Scalar::Bool, "i < n_own") + "\n");

        // Per side: which instructions it needs, and which of those vary with the partner.
        struct Plan {
            side: Side,
            need: Vec<bool>,
            vary: Vec<bool>,
            terms: Vec<Term>,
            checks: bool,
        }
        let plans: Vec<Plan> = sides
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
                let checks = side.own == sides[0].own;
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
                Plan { side, need: needed(k, &roots), vary, terms, checks }
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
        let tiled = grid.is_none();
        // Partner columns in workgroup tiles: f32 columns four to a vector, so that one wide
        // read of the tile serves four of them; other types one to an array.
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
        let tile_load = |col: u32| -> String {
            let t = tile_cols.iter().position(|g| g.contains(&col)).unwrap_or(0);
            let s = &shared[t];
            if s.lanes == 4 {
                let lane = ["x", "y", "z", "w"][tile_cols[t].iter().position(|c| *c == col).unwrap_or(0)];
                format!("{}[kk].{lane}", s.name)
            } else {
                format!("{}[kk]", s.name)
            }
        };
        let col_ty = |slot: u8, col: u32| m.column_types[agents_of(slot)][col as usize];
        let bref = std::cell::RefCell::new(&mut b);

        // Values that do not depend on the partner, once per thread.
        let mut hoisted = String::new();
        for p in &plans {
            let s = p.side.own;
            let value = |v: V| format!("h{s}_{v}");
            let load = |_slot: u8, col: u32| {
                format!("{}[ic]", bref.borrow_mut().get(Buf::Col { agent: own_agent, col }, false))
            };
            let param = |pi: u32, sc: Scalar| param_expr(&mut bref.borrow_mut(), d, pi, sc);
            let names = Names { value: &value, load: &load, param: &param };
            for (v, inst) in k.insts.iter().enumerate() {
                if p.need[v] && !p.vary[v] && !inst.op.is_effect() {
                    hoisted +=
                        &(d.let_(&value(v as V), reg(inst.ty), &body::expr(d, k, &col_ty, v as V, &names)) + "\n");
                }
            }
        }
        out += &hoisted;
        // A sum per side and column; a factor every pair of a sum shares is applied once, at
        // the end (`fac`).
        let mut acc_cols: Vec<u32> = Vec::new();
        for p in &plans {
            let s = p.side.own;
            for t in &p.terms {
                if !acc_cols.contains(&t.col) {
                    acc_cols.push(t.col);
                }
                let cs = device_scalar(col_ty(s, t.col));
                out += &(d.var(&format!("acc{s}_{}", t.col), cs, &body::constant(d, cs, 0.0)) + "\n");
                if let Some(f) = &t.factors {
                    let prod = product(&f.inv.iter().map(|v| format!("h{s}_{v}")).collect::<Vec<_>>());
                    let prod = if f.negate { format!("(-{prod})") } else { prod };
                    out += &(d.let_(&format!("fac{s}_{}", t.col), cs, &prod) + "\n");
                }
            }
        }

        // The body of one pair, for side `p`, with the partner at index `jj`.
        let instance = |p: &Plan, bref: &std::cell::RefCell<&mut Binds>| -> String {
            let s = p.side.own;
            let value = |v: V| if p.vary[v as usize] { format!("v{v}") } else { format!("h{s}_{v}") };
            let load = |_slot: u8, col: u32| {
                if tiled {
                    tile_load(col)
                } else {
                    format!("{}[jj]", bref.borrow_mut().get(Buf::Col { agent: par_agent, col }, false))
                }
            };
            let param = |pi: u32, sc: Scalar| param_expr(&mut bref.borrow_mut(), d, pi, sc);
            let names = Names { value: &value, load: &load, param: &param };
            let mut t = String::from("{\n");
            for (v, inst) in k.insts.iter().enumerate() {
                if p.need[v] && p.vary[v] && !inst.op.is_effect() {
                    t += &format!(
                        "  {}\n",
                        d.let_(&value(v as V), reg(inst.ty), &body::expr(d, k, &col_ty, v as V, &names))
                    );
                }
            }
            let mut eff = String::new();
            // Partner-dependent factors every factored sum of the side shares, multiplied once.
            let factored: Vec<&Factors> = p.terms.iter().filter_map(|t| t.factors.as_ref()).collect();
            let distinct = factored.iter().all(|f| f.var.iter().enumerate().all(|(n, v)| !f.var[..n].contains(v)));
            let common: Vec<V> = match factored.split_first() {
                Some((first, rest)) if !rest.is_empty() && distinct => {
                    first.var.iter().copied().filter(|v| rest.iter().all(|f| f.var.contains(v))).collect()
                }
                _ => Vec::new(),
            };
            if common.len() > 1 {
                let ty = reg(k.insts[common[0] as usize].ty);
                eff += &format!(
                    "  {}\n",
                    d.let_(&format!("cm{s}"), ty, &product(&common.iter().map(|v| value(*v)).collect::<Vec<_>>()))
                );
            }
            for t in &p.terms {
                let cs = device_scalar(col_ty(s, t.col));
                let x = match &t.factors {
                    Some(f) => {
                        let mut parts: Vec<String> = Vec::new();
                        if common.len() > 1 {
                            parts.push(format!("cm{s}"));
                        }
                        let shared = if common.len() > 1 { common.as_slice() } else { &[] };
                        parts.extend(f.var.iter().filter(|v| !shared.contains(v)).map(|v| value(*v)));
                        product(&parts)
                    }
                    None => body::convert(d, reg(k.insts[t.value as usize].ty), cs, &value(t.value)),
                };
                eff += &format!("  acc{s}_{c} = acc{s}_{c} + {x};\n", c = t.col);
            }
            if p.checks {
                for inst in &k.insts {
                    if let Op::Check { cond, msg } = inst.op {
                        let f = bref.borrow_mut().get(Buf::Fail, true);
                        eff += &format!(
                            "  if (live && !({})) {{ {f}[0] = {}; }}\n",
                            value(cond),
                            fail_codes[msg as usize]
                        );
                    }
                }
            }
            match k.guard {
                Some(g) => t += &format!("  if ({}) {{\n{eff}  }}\n", value(g)),
                None => t += &eff,
            }
            t + "}\n"
        };
        let by_own = |own: u8| plans.iter().find(|p| p.side.own == own);
        // Same type: the thread holds slot 0 when its partner's index is higher.
        let visit_masked = |bref: &std::cell::RefCell<&mut Binds>| -> String {
            if same {
                let mut t = String::new();
                if let Some(p) = by_own(0) {
                    t += &format!("if (jj > i) {}", instance(p, bref));
                }
                if let Some(p) = by_own(1) {
                    if !t.is_empty() {
                        t = t.trim_end().to_string() + " else ";
                    }
                    t += &format!("if (jj < i) {}", instance(p, bref));
                }
                t
            } else {
                instance(&plans[0], bref)
            }
        };

        if tiled {
            out += &(d.var("base", Scalar::U32, &u(0)) + "\n");
            out += &format!("while (base < n_par) {{\n  {}\n", d.let_("j", Scalar::U32, "base + lid"));
            out += &format!("  {}\n  if (j < n_par) {{\n", d.barrier());
            for (t, cols) in shared.iter().zip(&tile_cols) {
                let mut src: Vec<String> = cols
                    .iter()
                    .map(|&col| format!("{}[j]", bref.borrow_mut().get(Buf::Col { agent: par_agent, col }, false)))
                    .collect();
                let value = if t.lanes == 4 {
                    src.resize(4, d.float(0.0, Scalar::F32));
                    d.vec4(&[src[0].clone(), src[1].clone(), src[2].clone(), src[3].clone()])
                } else {
                    src.remove(0)
                };
                out += &format!("    {}[lid] = {value};\n", t.name);
            }
            out += &format!("  }}\n  {}\n", d.barrier());
            // Whole tiles run `TILE_UNROLL` partners per trip; the last tile tests each.
            let kloop = |inner: &str, masked: bool| -> String {
                if masked {
                    let mut t = format!("{}\nwhile (kk < {wg}) {{\n", d.var("kk", Scalar::U32, &u(0)));
                    t += &format!("  {}\n", d.let_("jj", Scalar::U32, "base + kk"));
                    t += &format!("  if (jj < n_par) {{\n{}  }}\n", indent(inner, 4));
                    return t + &format!("  kk = kk + {};\n}}\n", u(1));
                }
                let mut t = format!("{}\nwhile (kq < {wg}) {{\n", d.var("kq", Scalar::U32, &u(0)));
                for r in 0..TILE_UNROLL {
                    t += &format!("  {{\n    {}\n", d.let_("kk", Scalar::U32, &format!("kq + {}", u(r as u64))));
                    t += &format!("    {}\n", d.let_("jj", Scalar::U32, "base + kk"));
                    t += &indent(inner, 4);
                    t += "  }\n";
                }
                t + &format!("  kq = kq + {};\n}}\n", u(TILE_UNROLL as u64))
            };
            let full = format!("base + {wg} <= n_par");
            if same {
                out += &format!("  {}\n", d.let_("blk", Scalar::U32, &format!("grp * {wg}")));
                out += &format!("  if ({full} && base != blk) {{\n");
                let above = by_own(0).map(|p| instance(p, &bref)).unwrap_or_default();
                let below = by_own(1).map(|p| instance(p, &bref)).unwrap_or_default();
                out += &format!(
                    "    if (base > blk) {{\n{}    }} else {{\n{}    }}\n",
                    indent(&kloop(&above, false), 6),
                    indent(&kloop(&below, false), 6)
                );
                out += &format!("  }} else {{\n{}  }}\n", indent(&kloop(&visit_masked(&bref), true), 4));
            } else {
                let inner = instance(&plans[0], &bref);
                out += &format!(
                    "  if ({full}) {{\n{}  }} else {{\n{}  }}\n",
                    indent(&kloop(&inner, false), 4),
                    indent(&kloop(&inner, true), 4)
                );
            }
            out += &format!("  base = base + {wg};\n}}\n");
        } else {
            let grid = grid.unwrap_or(0);
            let spec = self.plan.grids[grid].clone();
            let nslot = m.agents.len() + grid;
            out += &(d.let_("nb", Scalar::U32, &format!("{sizes}[{}]", u(nslot as u64))) + "\n");
            let own_pos: Vec<u32> = {
                let schema = &m.agents[own_agent];
                let (fi, f) = schema.field("position").expect("checked when the grid was made");
                let s0 = schema.column_offsets()[fi] as u32;
                (s0..s0 + f.lanes.len() as u32).collect()
            };
            let mut cells_txt = String::new();
            let cells = self.cell_coords(&mut bref.borrow_mut(), own_agent, &own_pos, spec.cell, "ic", &mut cells_txt);
            out += &cells_txt.lines().map(|l| l.trim_start().to_string() + "\n").collect::<String>();
            // The 3^dims cells around the agent's own; neighbouring cells may share a bucket,
            // and each bucket is visited once.
            let dims = cells.len() as u32;
            let cells_n = 3u64.pow(dims);
            out += &(d.var_array_u32("hs", cells_n as usize) + "\n");
            out += &(d.var("nh", Scalar::U32, &u(0)) + "\n");
            out += &(d.var("o", Scalar::U32, &u(0)) + "\n");
            out += &format!("while (o < {}) {{\n", u(cells_n));
            let coords: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(n, c)| {
                    let digit = format!("((o / {}) % {})", u(3u64.pow(n as u32)), u(3));
                    format!("({c} + {} - {})", d.cast(Scalar::I32, &digit), d.int(1))
                })
                .collect();
            out += &format!("  {}\n", d.let_("h", Scalar::U32, &hash(d, &coords, "nb")));
            out +=
                &format!("  {}\n  {}\n", d.var("fresh", Scalar::Bool, &d.bool(true)), d.var("r", Scalar::U32, &u(0)));
            out += &format!(
                "  while (r < nh) {{\n    if (hs[r] == h) {{ fresh = {}; }}\n    r = r + {};\n  }}\n",
                d.bool(false),
                u(1)
            );
            out += &format!("  if (fresh) {{\n    hs[nh] = h;\n    nh = nh + {};\n  }}\n", u(1));
            out += &format!("  o = o + {};\n}}\n", u(1));
            let start = bref.borrow_mut().get(Buf::GridStart { grid }, false);
            let sorted = bref.borrow_mut().get(Buf::GridSorted { grid }, false);
            out += &(d.var("q", Scalar::U32, &u(0)) + "\n");
            out += &format!("while (q < nh) {{\n  {}\n", d.var("at", Scalar::U32, &format!("{start}[hs[q]]")));
            out += &format!("  {}\n", d.let_("end", Scalar::U32, &format!("{start}[hs[q] + {}]", u(1))));
            out += &format!("  while (at < end) {{\n    {}\n", d.let_("jj", Scalar::U32, &format!("{sorted}[at]")));
            out += &indent(&visit_masked(&bref), 4);
            out += &format!("    at = at + {};\n  }}\n  q = q + {};\n}}\n", u(1), u(1));
        }

        // Write the thread's sums.
        out += "if (live) {\n";
        for col in &acc_cols {
            let sums: Vec<String> = plans
                .iter()
                .flat_map(|p| p.terms.iter().map(move |t| (p.side.own, t)))
                .filter(|(_, t)| t.col == *col)
                .map(|(s, t)| match t.factors {
                    Some(_) => format!("fac{s}_{col} * acc{s}_{col}"),
                    None => format!("acc{s}_{col}"),
                })
                .collect();
            let total = sums.join(" + ");
            if via_delta {
                let dl = bref.borrow_mut().get(Buf::Delta { agent: own_agent, col: *col }, true);
                out += &format!("  {dl}[i] = {total};\n");
            } else {
                let c = bref.borrow_mut().get(Buf::Col { agent: own_agent, col: *col }, true);
                out += &format!("  {c}[i] = {c}[i] + ({total});\n");
            }
        }
        out += "}\n";
        let suffix = if same { String::new() } else { format!("_{}", m.agents[own_agent].name) };
        self.push(format!("{}{suffix}", k.name), Some(kid), b, Launch::Agents { agent: own_agent }, &shared, &out)
    }
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

/// `a * b * …` of expressions, left to right.
fn product(parts: &[String]) -> String {
    match parts {
        [] => "1.0".into(),
        [one] => one.clone(),
        _ => format!("({})", parts.join(" * ")),
    }
}

fn param_expr(b: &mut Binds, d: &dyn Dialect, p: u32, s: Scalar) -> String {
    let buf = match s {
        Scalar::F64 => Buf::ParamsF64,
        Scalar::I32 => Buf::ParamsI32,
        _ => Buf::ParamsF32,
    };
    format!("{}[{}]", b.get(buf, false), d.uint(p as u64))
}

fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines().map(|l| if l.is_empty() { "\n".to_string() } else { format!("{pad}{l}\n") }).collect()
}
