//! How executors measure conservation laws where the state lives.
//!
//! The interpreter measures a law by running its term kernels, which reduce into outputs. Device
//! executors cannot run reductions of arbitrary kernels cheaply, but they run map and pair
//! kernels that write columns. So each term becomes kernels that write every agent's share of
//! the term into f64 scratch columns (a pair's value goes to its first agent, once per pair),
//! and an executor only has to sum columns, which it does where they live, in f64. The term's
//! arithmetic is widened to f64, as the interpreter evaluates it, so the device values and the
//! reference differ only by summation order.
//!
//! A pair term whose value is provably zero beyond a distance (`select(r < RC, …, 0.0)`) is
//! visited over the neighbour grid instead of all pairs, on every executor and in the reference.

use crate::ir::{BinOp, Inst, Kernel, KernelId, Module, Op, Pattern, Scalar, Sched, TermPlan, UnOp, Visits, V};
use aiic_runtime::{FieldKind, FieldSchema};

/// What `--explain` says about how each law term is measured at run time.
pub fn describe(m: &Module) -> String {
    let mut out = String::new();
    for law in &m.laws {
        out += &format!("law `{}` is measured at run time where the state lives:\n", law.name);
        if law.measure.is_empty() {
            out += "  on the host, by the interpreter (a term has no device form)\n";
        }
        for (t, plan) in law.measure.iter().enumerate() {
            let agent = &m.agents[plan.agent].name;
            let how = match plan.visits {
                Visits::Agents => format!("a sum over every {agent}"),
                Visits::AllPairs => "a sum over all pairs: the term is not provably zero beyond a distance".to_string(),
                Visits::Within { radius } => {
                    format!("a sum over the pairs closer than {radius} (neighbour grid): the term is zero beyond it")
                }
            };
            out += &format!("  term {t}: {how}, in f64\n");
        }
    }
    out
}

/// Gives every law term of `m` its measuring plan (and its cutoff, where one is provable).
pub fn plan(m: &mut Module) {
    // Exact f64 copies of compensated columns, `(agent, column, copy)`, shared by every term.
    // (The kernels added here store f64 columns only, so they add no compensated column.)
    let compensated = aiic_runtime::cpu::abi::compensated_columns(m);
    let mut copies: Vec<(usize, u32, u32)> = Vec::new();
    for l in 0..m.laws.len() {
        let mut plans = Vec::new();
        for (t, &term) in m.laws[l].terms.clone().iter().enumerate() {
            if let Some(radius) = cutoff(m, term) {
                if let Pattern::AllPairs { a, b } = m.kernels[term].pattern {
                    m.kernels[term].pattern = Pattern::Neighbors { a, b, bound: radius };
                }
            }
            match term_plan(m, l, t, term, &compensated, &mut copies) {
                Some(p) => plans.push(p),
                None => {
                    plans.clear();
                    break;
                }
            }
        }
        m.laws[l].measure = plans;
    }
}

fn term_plan(
    m: &mut Module,
    law: usize,
    t: usize,
    term: KernelId,
    compensated: &[(usize, u32)],
    copies: &mut Vec<(usize, u32, u32)>,
) -> Option<TermPlan> {
    let k = &m.kernels[term];
    let (agent, visits) = match k.pattern {
        Pattern::Map { agent } => (agent, Visits::Agents),
        Pattern::AllPairs { a, .. } => (a, Visits::AllPairs),
        Pattern::Neighbors { a, bound, .. } => (a, Visits::Within { radius: bound }),
        _ => return None,
    };
    let outputs = k.outputs;
    let pairwise = k.pattern.is_pairwise();
    let slots = k.pattern.slots();
    let name = format!("law.{}.{t}", m.laws[law].name);
    let cols = scratch_columns(m, agent, &name, outputs);
    // Compensated columns the term reads are read through exact f64 copies.
    let mut exact: Vec<(usize, u32, u32)> = Vec::new();
    for inst in &m.kernels[term].insts {
        if let Op::Load { slot, col } = inst.op {
            let a = slots[slot as usize];
            if compensated.contains(&(a, col)) && !exact.iter().any(|(x, c, _)| *x == a && *c == col) {
                exact.push((a, col, 0));
            }
        }
    }
    for e in &mut exact {
        e.2 = match copies.iter().find(|c| c.0 == e.0 && c.1 == e.1) {
            Some(c) => c.2,
            None => {
                let lane = m.agents[e.0].fields.iter().flat_map(|f| f.lanes.iter()).nth(e.1 as usize).cloned();
                let copy = scratch_columns(m, e.0, &format!("exact.{}", lane.unwrap_or_default()), 1)[0];
                copies.push((e.0, e.1, copy));
                copy
            }
        };
    }
    let mut fill = widen(&m.kernels[term], &|slot, col| {
        exact.iter().find(|(a, c, _)| *a == slots[slot as usize] && *c == col).map(|e| e.2)
    });
    fill.name = format!("{name}.fill");
    fill.outputs = 0;
    write_shares(&mut fill, &cols, pairwise);
    let id = m.kernels.len();
    m.kernels.push(super::simplify::simplify(fill));
    let mut schedule = Vec::new();
    for (a, _, _) in &exact {
        if !schedule.iter().any(|s| matches!(s, Sched::Exact { agent, .. } if agent == a)) {
            let pairs = exact.iter().filter(|e| e.0 == *a).map(|e| (e.1, e.2)).collect();
            schedule.push(Sched::Exact { agent: *a, cols: pairs });
        }
    }
    schedule.extend([Sched::Zero { agent, cols: cols.clone() }, Sched::Run(id)]);
    Some(TermPlan { agent, fill: schedule, cols, visits })
}

/// Adds `outputs` f64 scratch columns to agent type `agent`: one field named `name`.
fn scratch_columns(m: &mut Module, agent: usize, name: &str, outputs: u32) -> Vec<u32> {
    let first = m.column_types[agent].len() as u32;
    let lanes: Vec<String> = match outputs {
        1 => vec![name.to_string()],
        n => (0..n).map(|o| format!("{name}.{o}")).collect(),
    };
    m.agents[agent].fields.push(FieldSchema {
        name: name.to_string(),
        kind: FieldKind::Scratch,
        lanes,
        integral: false,
    });
    m.column_types[agent].extend(std::iter::repeat_n(Scalar::F64, outputs as usize));
    (first..first + outputs).collect()
}

/// The kernel with its float arithmetic in f64: loads keep their column's type and are widened
/// once (loads of columns `exact` gives an f64 copy of read the copy), everything computed from
/// them is f64.
fn widen(k: &Kernel, exact: &dyn Fn(u8, u32) -> Option<u32>) -> Kernel {
    let float = |s: Scalar| matches!(s, Scalar::F32 | Scalar::F16 | Scalar::BF16);
    let mut insts: Vec<Inst> = Vec::with_capacity(k.insts.len() + 8);
    let mut map: Vec<V> = Vec::with_capacity(k.insts.len());
    for inst in &k.insts {
        let mut op = inst.op.clone();
        op.map_args(|a| map[a as usize]);
        let at = match op {
            Op::Load { slot, col } if float(inst.ty) && exact(slot, col).is_some() => {
                insts.push(Inst { ty: Scalar::F64, op: Op::Load { slot, col: exact(slot, col).unwrap_or(col) } });
                insts.len() as V - 1
            }
            Op::Load { .. } if float(inst.ty) => {
                insts.push(Inst { ty: inst.ty, op });
                let loaded = insts.len() as V - 1;
                insts.push(Inst { ty: Scalar::F64, op: Op::Cast(loaded) });
                insts.len() as V - 1
            }
            _ => {
                let ty = if float(inst.ty) { Scalar::F64 } else { inst.ty };
                insts.push(Inst { ty, op });
                insts.len() as V - 1
            }
        };
        map.push(at);
    }
    Kernel {
        name: k.name.clone(),
        pattern: k.pattern.clone(),
        insts,
        guard: k.guard.map(|g| map[g as usize]),
        outputs: k.outputs,
        messages: k.messages.clone(),
        write_spans: Vec::new(),
        tensor: None,
    }
}

/// Turns the kernel's reductions into writes of each agent's share: a store per column for a
/// map (several reductions into one output add up), an accumulation into the first agent for a
/// pair kernel.
fn write_shares(k: &mut Kernel, cols: &[u32], pairwise: bool) {
    let reduces: Vec<(u32, V)> = k
        .insts
        .iter()
        .filter_map(|i| match i.op {
            Op::Reduce { out, value } => Some((out, value)),
            _ => None,
        })
        .collect();
    // A reduction becomes a dead constant in place, so that no value is renumbered.
    let mut insts: Vec<Inst> = k
        .insts
        .iter()
        .map(|i| match i.op {
            Op::Reduce { .. } => Inst { ty: Scalar::F64, op: Op::Const(0.0) },
            _ => i.clone(),
        })
        .collect();
    let mut push = |insts: &mut Vec<Inst>, ty: Scalar, op: Op| {
        insts.push(Inst { ty, op });
        insts.len() as V - 1
    };
    let as_f64 = |insts: &mut Vec<Inst>, v: V, push: &mut dyn FnMut(&mut Vec<Inst>, Scalar, Op) -> V| {
        if insts[v as usize].ty == Scalar::F64 {
            v
        } else {
            push(insts, Scalar::F64, Op::Cast(v))
        }
    };
    for (o, &col) in cols.iter().enumerate() {
        let values: Vec<V> = reduces.iter().filter(|(out, _)| *out == o as u32).map(|(_, v)| *v).collect();
        if pairwise {
            for v in values {
                let v = as_f64(&mut insts, v, &mut push);
                push(&mut insts, Scalar::F64, Op::Accum { slot: 0, col, value: v });
            }
        } else {
            let mut total: Option<V> = None;
            for v in values {
                let v = as_f64(&mut insts, v, &mut push);
                total = Some(match total {
                    Some(t) => push(&mut insts, Scalar::F64, Op::Bin(BinOp::Add, t, v)),
                    None => v,
                });
            }
            let value = match total {
                Some(t) => t,
                None => push(&mut insts, Scalar::F64, Op::Const(0.0)),
            };
            push(&mut insts, Scalar::F64, Op::Store { slot: 0, col, value });
        }
    }
    // Effects last, as every executor expects: move the checks after the new values.
    let mut order: Vec<usize> = (0..insts.len()).filter(|&i| !insts[i].op.is_effect()).collect();
    order.extend((0..insts.len()).filter(|&i| insts[i].op.is_effect()));
    let mut at = vec![0 as V; order.len()];
    for (new, &old) in order.iter().enumerate() {
        at[old] = new as V;
    }
    k.insts = order
        .iter()
        .map(|&old| {
            let mut i = insts[old].clone();
            i.op.map_args(|a| at[a as usize]);
            i
        })
        .collect();
    k.guard = k.guard.map(|g| at[g as usize]);
}

/// The distance beyond which every output of pair kernel `term` is zero, if the kernel says so
/// in a form the compiler can read: each output is `select(d < R, x, 0)` (or its absolute value
/// or negation, or a sum of such), with `d` the distance (or squared distance) of the two agents'
/// positions and `R` a constant.
fn cutoff(m: &Module, term: KernelId) -> Option<f64> {
    let k = &m.kernels[term];
    let Pattern::AllPairs { a, b } = k.pattern else { return None };
    let pos = |agent: usize| -> Option<Vec<u32>> {
        let schema = &m.agents[agent];
        let (fi, f) = schema.field("position")?;
        let start = schema.column_offsets()[fi] as u32;
        Some((start..start + f.lanes.len() as u32).collect())
    };
    let (pa, pb) = (pos(a)?, pos(b)?);
    if pa.len() != pb.len() {
        return None;
    }
    let reach = Reach { k, pa, pb };
    let mut radius: f64 = 0.0;
    for inst in &k.insts {
        if let Op::Reduce { value, .. } = inst.op {
            radius = radius.max(reach.zero_beyond(value)?);
        }
    }
    (radius > 0.0 && radius.is_finite()).then_some(radius)
}

struct Reach<'k> {
    k: &'k Kernel,
    pa: Vec<u32>,
    pb: Vec<u32>,
}

impl Reach<'_> {
    fn op(&self, v: V) -> &Op {
        &self.k.insts[v as usize].op
    }

    fn constant(&self, v: V) -> Option<f64> {
        match *self.op(v) {
            Op::Const(c) => Some(c),
            Op::Cast(x) => self.constant(x),
            _ => None,
        }
    }

    /// A distance `R` such that `v` is exactly zero for pairs at least `R` apart.
    fn zero_beyond(&self, v: V) -> Option<f64> {
        if self.constant(v) == Some(0.0) {
            return Some(0.0);
        }
        match *self.op(v) {
            Op::Cast(x) | Op::Un(UnOp::Abs | UnOp::Neg, x) => self.zero_beyond(x),
            Op::Bin(BinOp::Add | BinOp::Sub, x, y) => Some(self.zero_beyond(x)?.max(self.zero_beyond(y)?)),
            Op::Select(c, _, z) if self.constant(z) == Some(0.0) => self.closer_than(c),
            _ => None,
        }
    }

    /// `R` where condition `c` holds only for pairs closer than `R`.
    fn closer_than(&self, c: V) -> Option<f64> {
        let (x, limit) = match *self.op(c) {
            Op::Bin(BinOp::Lt, x, y) => (x, self.constant(y)?),
            Op::Bin(BinOp::Gt, y, x) => (x, self.constant(y)?),
            Op::Bin(BinOp::And, p, q) => {
                return match (self.closer_than(p), self.closer_than(q)) {
                    (Some(r), Some(s)) => Some(r.min(s)),
                    (r, s) => r.or(s),
                }
            }
            _ => return None,
        };
        if let Op::Un(UnOp::Sqrt, s) = *self.op(x) {
            return self.is_distance2(s).then_some(limit);
        }
        (self.is_distance2(x) && limit > 0.0).then(|| limit.sqrt())
    }

    /// Whether `v` is the squared distance of the two agents' positions: a sum over every lane of
    /// the square of the lane's difference.
    fn is_distance2(&self, v: V) -> bool {
        let mut leaves = Vec::new();
        self.sum_leaves(v, &mut leaves);
        let mut lanes: Vec<usize> = Vec::new();
        for leaf in leaves {
            let Op::Bin(BinOp::Mul, p, q) = *self.op(leaf) else { return false };
            if p != q {
                return false;
            }
            let Op::Bin(BinOp::Sub, x, y) = *self.op(p) else { return false };
            let lane = |x: V, y: V| -> Option<usize> {
                let (Op::Load { slot: 0, col: ca }, Op::Load { slot: 1, col: cb }) = (self.op(x), self.op(y)) else {
                    return None;
                };
                let l = self.pa.iter().position(|c| c == ca)?;
                (self.pb.get(l) == Some(cb)).then_some(l)
            };
            match lane(x, y).or_else(|| lane(y, x)) {
                Some(l) if !lanes.contains(&l) => lanes.push(l),
                _ => return false,
            }
        }
        lanes.len() == self.pa.len()
    }

    fn sum_leaves(&self, v: V, out: &mut Vec<V>) {
        match *self.op(v) {
            Op::Bin(BinOp::Add, x, y) => {
                self.sum_leaves(x, out);
                self.sum_leaves(y, out);
            }
            _ => out.push(v),
        }
    }
}
