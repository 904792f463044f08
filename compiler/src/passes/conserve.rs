//! Conservation proofs over the kernel IR (rules 2–5 of the language contract; rule 1, invariant
//! properties, is enforced where fields are written, in the checker).
//!
//! Every law is a combination of sums: `sum(x: A) E(x)` terms and `pairs(a, b) U(a, b)` terms.
//! - A *linear* law (each sum term affine in the agents' state, no pair terms: momentum, a
//!   transferred scalar) must be unchanged by every non-external interaction, counting both the
//!   fields it writes directly and, through each integrator, the forces it accumulates.
//! - Any other law is treated as an *energy*: its kinetic part must be ½·m·|v|² for each
//!   integrated agent type, every force a non-external interaction applies must be −∇ of one of
//!   the law's potentials (or do no work), the integrators must be symplectic, and impulses must
//!   keep the law's per-agent terms exactly.
//!
//! Equalities are decided on the canonical form of `canon`; a `select` is decided branch by branch.

use super::canon::{CResult, Canon, Leaf, Poly, Undecided, View};
use crate::diag::Diagnostic;
use crate::ir::{Integration, Kernel, KernelId, Law, Module, Op, Pattern, V};
use crate::lower::body::Builder;
use crate::source::{SourceMap, Span};
use aiic_runtime::FieldKind;
use std::collections::{BTreeSet, HashMap};

/// How an obligation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Proved(String),
    Exempt(String),
    Assumed,
    Failed(String),
}

/// One thing a law needs, and how it was discharged (`aiic check --explain`).
#[derive(Debug, Clone, PartialEq)]
pub struct Obligation {
    pub law: String,
    pub subject: String,
    pub claim: String,
    pub outcome: Outcome,
}

#[derive(Debug, Default)]
pub struct Report {
    /// Per law: its kind, then its obligations.
    pub laws: Vec<(String, String, Vec<Obligation>)>,
    pub diags: Vec<Diagnostic>,
}

/// A law as a combination of its terms, lane by lane: `lane l = Σ coeff × term[t].lane[j]`.
struct Terms {
    per_lane: Vec<Vec<(KernelId, usize, f64)>>,
}

fn term_kind(m: &Module, t: KernelId) -> (bool, Vec<usize>) {
    match &m.kernels[t].pattern {
        Pattern::AllPairs { a, b } => (true, vec![*a, *b]),
        p => (false, p.slots()),
    }
}

fn reduce_value(k: &Kernel, out: u32) -> Option<V> {
    k.insts.iter().find_map(|i| match i.op {
        Op::Reduce { out: o, value } if o == out => Some(value),
        _ => None,
    })
}

/// Leaves of slot 0 renamed to `slot`, or to the given forms.
fn slot_loads(
    k: &Kernel,
    c: &mut Canon,
    from: u8,
    to: u8,
    after: &HashMap<(u8, u32), Poly>,
) -> HashMap<(u8, u32), Poly> {
    let mut loads = HashMap::new();
    for inst in &k.insts {
        if let Op::Load { slot, col } = inst.op {
            if slot == from {
                let p = after.get(&(to, col)).cloned().unwrap_or_else(|| c.leaf(Leaf::Load { slot: to, col }));
                loads.insert((slot, col), p);
            }
        }
    }
    loads
}

struct Prover<'a> {
    m: &'a Module,
    sources: &'a SourceMap,
    c: Canon,
}

/// The effect of a kernel on one agent slot: for each written column, its value afterwards.
fn after_values(c: &mut Canon, view: &mut View, slot: u8) -> CResult<HashMap<(u8, u32), Poly>> {
    let mut out = HashMap::new();
    let k = view.kernel;
    for inst in &k.insts {
        match inst.op {
            Op::Store { slot: s, col, value } if s == slot => {
                out.insert((s, col), view.value(c, value)?);
            }
            Op::Accum { slot: s, col, value } if s == slot => {
                let d = view.value(c, value)?;
                let base = c.leaf(Leaf::Load { slot: s, col });
                out.insert((s, col), c.add(&base, &d)?);
            }
            _ => {}
        }
    }
    Ok(out)
}

fn written_values(k: &Kernel) -> Vec<V> {
    k.insts
        .iter()
        .filter_map(|i| match i.op {
            Op::Store { value, .. } | Op::Accum { value, .. } => Some(value),
            _ => None,
        })
        .collect()
}

/// All ways to fix the selects that `roots` depend on (at most 2^6; beyond that they stay opaque).
fn cases(k: &Kernel, roots: &[V]) -> Vec<HashMap<V, bool>> {
    let view = View::new(k);
    let sel = view.selects(roots);
    if sel.is_empty() || sel.len() > 6 {
        return vec![HashMap::new()];
    }
    (0..1u32 << sel.len()).map(|bits| sel.iter().enumerate().map(|(i, &v)| (v, bits >> i & 1 == 1)).collect()).collect()
}

impl<'a> Prover<'a> {
    fn kernel(&self, k: KernelId) -> &'a Kernel {
        &self.m.kernels[k]
    }

    fn column_kind(&self, agent: usize, col: u32) -> FieldKind {
        let mut at = 0;
        for f in &self.m.agents[agent].fields {
            at += f.lanes.len() as u32;
            if col < at {
                return f.kind;
            }
        }
        FieldKind::Scratch
    }

    fn column_name(&self, agent: usize, col: u32) -> String {
        self.m.agents[agent].fields.iter().flat_map(|f| f.lanes.iter()).nth(col as usize).cloned().unwrap_or_default()
    }

    fn terms(&mut self, law: &Law) -> Option<Terms> {
        let comb = self.kernel(law.combine);
        let mut inputs = Vec::new();
        for &t in &law.terms {
            for j in 0..self.kernel(t).outputs / 2 {
                inputs.push((t, j as usize));
            }
        }
        let mut per_lane = Vec::new();
        for l in 0..law.lanes {
            let v = reduce_value(comb, l)?;
            let mut view = View::new(comb);
            let p = view.value(&mut self.c, v).ok()?;
            let mut lane = Vec::new();
            for (mono, coeff) in &p.terms {
                match mono.len() {
                    0 => {}
                    1 => {
                        let (&atom, &e) = mono.iter().next()?;
                        let idx = (0..inputs.len()).find(|&i| {
                            let leaf = self.c.leaf(Leaf::Input(i as u32));
                            leaf.terms.keys().next().is_some_and(|m| m.contains_key(&atom))
                        })?;
                        if e != 1 {
                            return None;
                        }
                        lane.push((inputs[idx].0, inputs[idx].1, *coeff));
                    }
                    _ => return None,
                }
            }
            per_lane.push(lane);
        }
        Some(Terms { per_lane })
    }

    /// The law's per-agent terms for an agent of type `agent` in `slot`, given the values of its
    /// written columns (`after`; other columns read as they are).
    fn sum_terms(
        &mut self,
        terms: &Terms,
        lane: usize,
        agent: usize,
        slot: u8,
        after: &HashMap<(u8, u32), Poly>,
    ) -> CResult<Poly> {
        let mut total = Poly::default();
        for &(t, j, coeff) in &terms.per_lane[lane] {
            let (pairs, agents) = term_kind(self.m, t);
            if pairs || agents[0] != agent {
                continue;
            }
            let k = self.kernel(t);
            let mut view = View::new(k);
            view.loads = slot_loads(k, &mut self.c, 0, slot, after);
            let Some(v) = reduce_value(k, 2 * j as u32) else { continue };
            let e = view.value(&mut self.c, v)?;
            total = self.c.add(&total, &e.scale(coeff))?;
        }
        Ok(total)
    }

    fn is_linear(&mut self, law: &Law, terms: &Terms) -> CResult<bool> {
        for &t in &law.terms {
            if term_kind(self.m, t).0 {
                return Ok(false);
            }
        }
        for (lane, parts) in terms.per_lane.iter().enumerate() {
            for &(t, _, _) in parts {
                let agent = term_kind(self.m, t).1[0];
                let k = self.kernel(t);
                // f affine in the state s  ⇔  f(2s) − 2 f(s) + f(0) = 0.
                let state: Vec<u32> = k
                    .insts
                    .iter()
                    .filter_map(|i| match i.op {
                        Op::Load { col, .. } if self.column_kind(agent, col) != FieldKind::Property => Some(col),
                        _ => None,
                    })
                    .collect();
                let with = |scale: f64, me: &mut Self| -> CResult<Poly> {
                    let after: HashMap<(u8, u32), Poly> = state
                        .iter()
                        .map(|&col| ((0u8, col), me.c.leaf(Leaf::Load { slot: 0, col }).scale(scale)))
                        .collect();
                    me.sum_terms(terms, lane, agent, 0, &after)
                };
                let (f2, f1, f0) = (with(2.0, self)?, with(1.0, self)?, with(0.0, self)?);
                let d = f2.sub(&f1.scale(2.0))?.add(&f0)?;
                if !self.c.equal(&d, &Poly::default())? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Σ over the kernel's slots of the change of the law's per-agent terms, for one lane and
    /// one fixing of its selects.
    fn direct_change(&mut self, terms: &Terms, lane: usize, k: &Kernel, branches: &HashMap<V, bool>) -> CResult<Poly> {
        let slots = k.pattern.slots();
        let mut total = Poly::default();
        for (s, &agent) in slots.iter().enumerate() {
            let mut view = View::new(k);
            view.branches = branches.clone();
            let after = after_values(&mut self.c, &mut view, s as u8)?;
            let e1 = self.sum_terms(terms, lane, agent, s as u8, &after)?;
            let e0 = self.sum_terms(terms, lane, agent, s as u8, &HashMap::new())?;
            total = self.c.add(&total, &e1.sub(&e0)?)?;
        }
        Ok(total)
    }

    fn touches(&self, terms: &Terms, k: &Kernel) -> bool {
        let slots = k.pattern.slots();
        let written: BTreeSet<(usize, u32)> = k
            .insts
            .iter()
            .filter_map(|i| match i.op {
                Op::Store { slot, col, .. } | Op::Accum { slot, col, .. } => Some((slots[slot as usize], col)),
                _ => None,
            })
            .collect();
        terms.per_lane.iter().flatten().any(|&(t, _, _)| {
            let (_, agents) = term_kind(self.m, t);
            self.kernel(t).insts.iter().any(|i| match i.op {
                Op::Load { slot, col } => written.contains(&(agents[slot as usize], col)),
                _ => false,
            })
        })
    }

    fn write_span(&self, k: &Kernel, slot: u8) -> Option<Span> {
        k.write_spans.iter().rfind(|(s, _, _)| *s == slot).map(|(_, _, sp)| Span::from(*sp))
    }

    fn source_of(&self, span: Span) -> String {
        let text = &self.sources.get(span.file).text;
        text.get(span.start..span.end).unwrap_or("").trim_end_matches(';').to_string()
    }

    /// A hint for an antisymmetry that fails by the sign of one side.
    fn sign_hint(&mut self, k: &Kernel, check: &mut dyn FnMut(&mut Self, &Kernel) -> CResult<bool>) -> Option<String> {
        for slot in [1u8, 0] {
            // Negate the slot's accumulated changes and see whether the law then holds.
            let mut flipped = k.clone();
            let mut b = Builder::new();
            b.insts = flipped.insts.clone();
            let mut fixes = Vec::new();
            for (i, inst) in flipped.insts.iter().enumerate() {
                if let Op::Accum { slot: s, value, col } = inst.op {
                    if s == slot {
                        let n = b.un(crate::ir::UnOp::Neg, value);
                        fixes.push((i, col, n));
                    }
                }
            }
            for (i, col, n) in &fixes {
                b.insts[*i].op = Op::Accum { slot, col: *col, value: *n };
            }
            flipped.insts = b.insts;
            if fixes.is_empty() {
                continue;
            }
            if check(self, &flipped).unwrap_or(false) {
                let span = self.write_span(k, slot)?;
                let stmt = self.source_of(span);
                let fixed = if stmt.contains("+=") {
                    stmt.replacen("+=", "-=", 1)
                } else if stmt.contains("-=") {
                    stmt.replacen("-=", "+=", 1)
                } else {
                    return Some(format!("the update of `{}` has the wrong sign", ["a", "b"][slot as usize]));
                };
                return Some(format!("`{stmt}` should be `{fixed}`"));
            }
        }
        None
    }

    fn holds_in_all_cases(
        &mut self,
        k: &Kernel,
        mut f: impl FnMut(&mut Self, &HashMap<V, bool>) -> CResult<Poly>,
    ) -> CResult<bool> {
        for case in cases(k, &written_values(k)) {
            let p = f(self, &case)?;
            if !self.c.equal(&p, &Poly::default())? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Per phase of each integration of `agent`: the coefficient of each accumulator column
    /// (seen from `slot`) in the change of the law, and whether nothing else changes it.
    fn integrator_weights(
        &mut self,
        terms: &Terms,
        lane: usize,
        it: &Integration,
        slot: u8,
    ) -> CResult<Vec<(HashMap<u32, Poly>, bool)>> {
        let mut out = Vec::new();
        for &p in &it.phases {
            let k = self.kernel(p);
            let mut view = View::new(k);
            view.loads = slot_loads(k, &mut self.c, 0, slot, &HashMap::new());
            let mut after = after_values(&mut self.c, &mut view, 0)?;
            after = after.into_iter().map(|((_, col), v)| ((slot, col), v)).collect();
            let e1 = self.sum_terms(terms, lane, it.agent, slot, &after)?;
            let e0 = self.sum_terms(terms, lane, it.agent, slot, &HashMap::new())?;
            let d = e1.sub(&e0)?;
            let mut weights = HashMap::new();
            let mut rest = d.clone();
            let accums: Vec<u32> = (0..self.m.agents[it.agent].column_count() as u32)
                .filter(|&c| self.column_kind(it.agent, c) == FieldKind::Accum)
                .collect();
            for col in accums {
                let leaf = self.c.leaf(Leaf::Load { slot, col });
                let atom = *leaf.terms.keys().next().and_then(|m| m.keys().next()).unwrap_or(&u32::MAX);
                let mut w = Poly::default();
                for (mono, coeff) in &d.terms {
                    if mono.get(&atom) == Some(&1) {
                        let mut m2 = mono.clone();
                        m2.remove(&atom);
                        w = w.add(&Poly { terms: [(m2, *coeff)].into_iter().collect() })?;
                    }
                }
                if !w.is_zero() {
                    let contrib = self.c.mul(&w, &leaf)?;
                    rest = rest.sub(&contrib)?;
                    weights.insert(col, w);
                }
            }
            let clean = self.c.equal(&rest, &Poly::default())?;
            out.push((weights, clean));
        }
        Ok(out)
    }

    fn prove_linear(
        &mut self,
        law: &Law,
        terms: &Terms,
        obligations: &mut Vec<Obligation>,
        diags: &mut Vec<Diagnostic>,
    ) -> CResult<()> {
        let lanes = terms.per_lane.len();
        for info in &self.m.interactions {
            let k = self.kernel(info.kernel);
            let subject = format!("interaction `{}`", info.name);
            if !self.touches(terms, k) {
                continue;
            }
            if info.external {
                obligations.push(Obligation {
                    law: law.name.clone(),
                    subject,
                    claim: "changes the law directly".into(),
                    outcome: Outcome::Exempt("declared `external`".into()),
                });
                continue;
            }
            let mut ok = true;
            for lane in 0..lanes {
                ok &= self.holds_in_all_cases(k, |me, case| me.direct_change(terms, lane, k, case))?;
            }
            let claim = "the law's net change over the agents it writes is zero".to_string();
            if ok {
                obligations.push(Obligation {
                    law: law.name.clone(),
                    subject,
                    claim,
                    outcome: Outcome::Proved("the changes cancel symbolically".into()),
                });
            } else {
                obligations.push(Obligation {
                    law: law.name.clone(),
                    subject,
                    claim,
                    outcome: Outcome::Failed("the changes do not cancel".into()),
                });
                let hint = self.sign_hint(k, &mut |me, kk| {
                    let mut all = true;
                    for lane in 0..lanes {
                        all &= me.holds_in_all_cases(kk, |me2, case| me2.direct_change(terms, lane, kk, case))?;
                    }
                    Ok(all)
                });
                diags.push(self.failure(
                    "E0610",
                    law,
                    info.span,
                    k,
                    format!("interaction `{}` changes `{}`: the updates it makes do not cancel", info.name, law.name),
                    hint,
                ));
            }
        }
        // Forces act through the integrators: weight each accumulated force by how the integrator
        // turns it into a change of the law.
        let integrations: Vec<&Integration> = self.m.integrations.iter().collect();
        for it in &integrations {
            if !terms.per_lane.iter().flatten().any(|&(t, _, _)| term_kind(self.m, t).1.contains(&it.agent)) {
                continue;
            }
            let subject = format!("integrator `{}` on `{}`", it.integrator, self.m.agents[it.agent].name);
            let mut clean = true;
            for lane in 0..lanes {
                let weights = self.integrator_weights(terms, lane, it, 0)?;
                clean &= weights.iter().all(|(_, c)| *c);
                if weights.iter().any(|(_, clean)| !clean) {
                    obligations.push(Obligation {
                        law: law.name.clone(),
                        subject: format!("integrator `{}` on `{}`", it.integrator, self.m.agents[it.agent].name),
                        claim: "changes the law only through forces".into(),
                        outcome: Outcome::Failed("the integrator changes it by itself".into()),
                    });
                    diags.push(
                        Diagnostic::error("E0616", law.span, format!("`{}` is not conserved by `{}`: the integrator changes it even without forces", law.name, it.integrator))
                            .with_note(it.span, "integrated here")
                            .with_hint("a linear law may depend on velocities and invariant properties, not on positions; or mark it `assume`"),
                    );
                    return Ok(());
                }
            }
            if clean {
                obligations.push(Obligation {
                    law: law.name.clone(),
                    subject,
                    claim: "changes the law only through forces".into(),
                    outcome: Outcome::Proved("its update is linear in the accumulated forces".into()),
                });
            }
        }
        for info in &self.m.interactions {
            let k = self.kernel(info.kernel);
            let slots = k.pattern.slots();
            let users: Vec<&&Integration> = integrations.iter().filter(|it| it.forces.contains(&info.kernel)).collect();
            if users.is_empty() {
                continue;
            }
            let writes_accum = k.insts.iter().any(|i| match i.op {
                Op::Accum { slot, col, .. } | Op::Store { slot, col, .. } => {
                    self.column_kind(slots[slot as usize], col) == FieldKind::Accum
                }
                _ => false,
            });
            if !writes_accum {
                continue;
            }
            let subject = format!("interaction `{}` (forces)", info.name);
            let users_owned: Vec<Integration> = users.iter().map(|i| (**i).clone()).collect();
            let (relevant, ok) = self.forces_cancel(terms, k, &users_owned)?;
            if !relevant {
                continue;
            }
            if info.external {
                obligations.push(Obligation {
                    law: law.name.clone(),
                    subject,
                    claim: "its forces sum to zero".into(),
                    outcome: Outcome::Exempt("declared `external`".into()),
                });
                continue;
            }
            if ok {
                obligations.push(Obligation {
                    law: law.name.clone(),
                    subject,
                    claim: "its forces sum to zero".into(),
                    outcome: Outcome::Proved("the forces on its agents cancel (action = reaction)".into()),
                });
            } else {
                obligations.push(Obligation {
                    law: law.name.clone(),
                    subject,
                    claim: "its forces sum to zero".into(),
                    outcome: Outcome::Failed("they do not cancel".into()),
                });
                let users2 = users_owned.clone();
                let hint = self.sign_hint(k, &mut |me, kk| Ok(me.forces_cancel(terms, kk, &users2)?.1));
                let hint = hint.or_else(|| {
                    Some("an interaction that is not closed (a field, a drag) must be marked `external`".into())
                });
                diags.push(self.failure(
                    "E0610",
                    law,
                    info.span,
                    k,
                    format!("the forces of interaction `{}` do not cancel, so `{}` changes", info.name, law.name),
                    hint,
                ));
            }
        }
        Ok(())
    }

    /// Whether the forces a kernel accumulates, weighted by how each integrator phase turns them
    /// into a change of the law, cancel; and whether any weight applies at all.
    fn forces_cancel(&mut self, terms: &Terms, k: &Kernel, users: &[Integration]) -> CResult<(bool, bool)> {
        let slots = k.pattern.slots();
        let mut relevant = false;
        for lane in 0..terms.per_lane.len() {
            let phases = users.iter().map(|it| it.phases.len()).max().unwrap_or(0);
            for p in 0..phases {
                let mut total = Poly::default();
                for (s, &agent) in slots.iter().enumerate() {
                    let Some(it) = users.iter().find(|it| it.agent == agent) else { continue };
                    let w = self.integrator_weights(terms, lane, it, s as u8)?;
                    let Some((weights, _)) = w.get(p) else { continue };
                    let mut view = View::new(k);
                    let after = after_values(&mut self.c, &mut view, s as u8)?;
                    for (col, wp) in weights {
                        relevant = true;
                        let base = self.c.leaf(Leaf::Load { slot: s as u8, col: *col });
                        let new = after.get(&(s as u8, *col)).cloned().unwrap_or_else(|| base.clone());
                        let term = self.c.mul(wp, &new.sub(&base)?)?;
                        total = self.c.add(&total, &term)?;
                    }
                }
                if !self.c.equal(&total, &Poly::default())? {
                    return Ok((relevant, false));
                }
            }
        }
        Ok((relevant, true))
    }

    fn failure(
        &self,
        code: &'static str,
        law: &Law,
        interaction: crate::ir::SrcSpan,
        k: &Kernel,
        message: String,
        hint: Option<String>,
    ) -> Diagnostic {
        let mut spans: Vec<Span> = k.write_spans.iter().map(|(_, _, s)| Span::from(*s)).collect();
        spans.dedup();
        let primary = spans.last().copied().unwrap_or(interaction.into());
        let mut d = Diagnostic::error(code, primary, message)
            .with_label("this update")
            .with_note(law.span, format!("law `{}` declared here", law.name));
        for s in spans.iter().rev().skip(1) {
            d = d.with_note(*s, "and this one");
        }
        d = d.with_note(interaction, "in this interaction");
        match hint {
            Some(h) => d.with_hint(h),
            None => d.with_hint(format!(
                "make the interaction conserve `{}`, mark it `external`, or write `conserve … assume;`",
                law.name
            )),
        }
    }

    /// −∂U/∂x for the position lanes `x` of each slot of a law term, seen in `k`'s slot order.
    fn potential_gradient(
        &mut self,
        term: KernelId,
        lane: usize,
        slot_map: &[u8],
        x: &[Vec<u32>],
    ) -> CResult<Vec<Vec<Poly>>> {
        let t = self.kernel(term);
        let Some(u) = reduce_value(t, 2 * lane as u32) else { return Ok(Vec::new()) };
        let mut b = Builder::new();
        b.insts = t.insts.clone();
        let mut wrt = Vec::new();
        let mut shape = Vec::new();
        for (ts, cols) in x.iter().enumerate() {
            shape.push(cols.len());
            for &col in cols {
                let load = t.insts.iter().position(|i| i.op == Op::Load { slot: ts as u8, col });
                wrt.push(load.map(|l| l as V));
            }
        }
        let present: Vec<V> = wrt.iter().flatten().copied().collect();
        let grads = crate::passes::force::gradient(&mut b, 0, u, &present);
        let g_kernel = Kernel { insts: b.insts, ..t.clone() };
        let mut view = View::new(&g_kernel);
        // The law's slot `ts` is the kernel's slot `slot_map[ts]`.
        for inst in &g_kernel.insts {
            if let Op::Load { slot, col } = inst.op {
                let leaf = self.c.leaf(Leaf::Load { slot: slot_map[slot as usize], col });
                view.loads.insert((slot, col), leaf);
            }
        }
        let mut out = Vec::new();
        let mut it = grads.into_iter();
        let mut wrt_iter = wrt.iter();
        for n in shape {
            let mut lanes = Vec::new();
            for _ in 0..n {
                let g = match wrt_iter.next() {
                    Some(Some(_)) => match it.next() {
                        Some(g) => view.value(&mut self.c, g)?.scale(-1.0),
                        None => Poly::default(),
                    },
                    _ => Poly::default(),
                };
                lanes.push(g);
            }
            out.push(lanes);
        }
        Ok(out)
    }

    /// Whether the law's velocity-dependent part for the integrated agent type is ½·m·|v|².
    fn kinetic_matches(&mut self, terms: &Terms, it: &Integration, v: &[u32], mcol: &[u32]) -> CResult<bool> {
        let zero: HashMap<(u8, u32), Poly> = v.iter().map(|&c| ((0u8, c), Poly::default())).collect();
        let full = self.sum_terms(terms, 0, it.agent, 0, &HashMap::new())?;
        let still = self.sum_terms(terms, 0, it.agent, 0, &zero)?;
        let kinetic = full.sub(&still)?;
        let mass = self.c.leaf(Leaf::Load { slot: 0, col: mcol[0] });
        let mut v2 = Poly::default();
        for &c in v {
            let l = self.c.leaf(Leaf::Load { slot: 0, col: c });
            let sq = self.c.mul(&l, &l)?;
            v2 = self.c.add(&v2, &sq)?;
        }
        let want = self.c.mul(&mass, &v2)?.scale(0.5);
        self.c.equal(&kinetic, &want)
    }

    /// An energy has pair potentials, or the kinetic form ½·m·|v|² for some integrated agent
    /// type, or moves only by impulses (no integrator moves its agents).
    fn is_energy(&mut self, law: &Law, terms: &Terms) -> CResult<bool> {
        if law.terms.iter().any(|&t| term_kind(self.m, t).0) || terms.per_lane.len() != 1 {
            return Ok(terms.per_lane.len() == 1);
        }
        let in_law: BTreeSet<usize> =
            terms.per_lane.iter().flatten().flat_map(|&(t, _, _)| term_kind(self.m, t).1).collect();
        let its: Vec<Integration> =
            self.m.integrations.iter().filter(|it| in_law.contains(&it.agent)).cloned().collect();
        if its.is_empty() {
            return Ok(true);
        }
        for it in &its {
            if let (Some(v), Some(m)) = (it.role("v"), it.role("m")) {
                if self.kinetic_matches(terms, it, v, m)? {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Whether a pair potential is zero wherever a neighbour kernel's guard excludes a pair: the
    /// potential must be `select(d < c, U, 0)` (d the distance or its square) with its cutoff
    /// inside the kernel's constant radius.
    fn vanishes_beyond(
        &mut self,
        term: KernelId,
        k: &Kernel,
        map: &[u8],
        x: &[Vec<u32>],
    ) -> CResult<Result<(), String>> {
        // The kernel's guard is `d² < r²`, with a constant `r²` when the radius is constant.
        let radius2 = k.guard.and_then(|g| match k.insts[g as usize].op {
            Op::Bin(crate::ir::BinOp::Lt, _, r) => match k.insts[r as usize].op {
                Op::Const(c) => Some(c),
                _ => None,
            },
            _ => None,
        });
        let Some(radius2) = radius2 else { return Ok(Err("the radius depends on the agents".into())) };
        let t = self.kernel(term);
        let Some(mut v) = reduce_value(t, 0) else { return Ok(Err("it has no value".into())) };
        while let Op::Cast(inner) = t.insts[v as usize].op {
            v = inner;
        }
        let Op::Select(cond, _, zero) = t.insts[v as usize].op else { return Ok(Err("it has no cutoff".into())) };
        if !matches!(t.insts[zero as usize].op, Op::Const(z) if z == 0.0) {
            return Ok(Err("it is not zero beyond its cutoff".into()));
        }
        let (lhs, cut) = match t.insts[cond as usize].op {
            Op::Bin(crate::ir::BinOp::Lt | crate::ir::BinOp::Le, l, r) => match t.insts[r as usize].op {
                Op::Const(c) => (l, c),
                _ => return Ok(Err("its cutoff is not a constant".into())),
            },
            _ => return Ok(Err("its cutoff is not a comparison of the distance".into())),
        };
        let mut view = View::new(t);
        for inst in &t.insts {
            if let Op::Load { slot, col } = inst.op {
                let leaf = self.c.leaf(Leaf::Load { slot: map[slot as usize], col });
                view.loads.insert((slot, col), leaf);
            }
        }
        let d = view.value(&mut self.c, lhs)?;
        let mut d2 = Poly::default();
        for (&ca, &cb) in x[0].iter().zip(x.get(1).map_or(&[][..], Vec::as_slice)) {
            let a = self.c.leaf(Leaf::Load { slot: map[0], col: ca });
            let b = self.c.leaf(Leaf::Load { slot: map[1], col: cb });
            let diff = a.sub(&b)?;
            let sq = self.c.mul(&diff, &diff)?;
            d2 = self.c.add(&d2, &sq)?;
        }
        let dist = self.c.sqrt(&d2);
        let squared = self.c.equal(&d, &d2)? && cut <= radius2 * (1.0 + 1e-12);
        let plain = self.c.equal(&d, &dist)? && cut * cut <= radius2 * (1.0 + 1e-12);
        if squared || plain {
            Ok(Ok(()))
        } else {
            Ok(Err(format!("its cutoff is not a distance within the radius {}", radius2.sqrt())))
        }
    }

    fn prove_energy(
        &mut self,
        law: &Law,
        terms: &Terms,
        obligations: &mut Vec<Obligation>,
        diags: &mut Vec<Diagnostic>,
    ) -> CResult<()> {
        let in_law: BTreeSet<usize> =
            terms.per_lane.iter().flatten().flat_map(|&(t, _, _)| term_kind(self.m, t).1).collect();
        let integrations: Vec<Integration> =
            self.m.integrations.iter().filter(|it| in_law.contains(&it.agent)).cloned().collect();
        let name = law.name.clone();
        for it in &integrations {
            let subject = format!("integrator `{}` on `{}`", it.integrator, self.m.agents[it.agent].name);
            if it.symplectic {
                obligations.push(Obligation {
                    law: name.clone(),
                    subject: subject.clone(),
                    claim: "is symplectic".into(),
                    outcome: Outcome::Proved("declared @symplectic in the standard library".into()),
                });
            } else {
                obligations.push(Obligation {
                    law: name.clone(),
                    subject: subject.clone(),
                    claim: "is symplectic".into(),
                    outcome: Outcome::Failed("it is not".into()),
                });
                diags.push(
                    Diagnostic::error(
                        "E0612",
                        it.span,
                        format!("`{}` is not symplectic, so it does not conserve `{}`", it.integrator, law.name),
                    )
                    .with_note(law.span, format!("law `{}` declared here", law.name))
                    .with_hint(format!(
                        "{} is not symplectic; use velocity_verlet (or leapfrog, symplectic_euler)",
                        it.integrator
                    )),
                );
            }
            // Kinetic part: the law's terms must grow with velocity as ½ m |v|².
            let (Some(v), Some(mcol)) = (it.role("v"), it.role("m")) else {
                obligations.push(Obligation {
                    law: name.clone(),
                    subject,
                    claim: "kinetic energy is ½·m·|v|²".into(),
                    outcome: Outcome::Failed("the integrator names no `v` and `m`".into()),
                });
                diags.push(
                    Diagnostic::error(
                        "E0615",
                        law.span,
                        format!("cannot relate `{}` to the motion `{}` integrates", law.name, it.integrator),
                    )
                    .with_hint("write `conserve … assume;` to measure it at run time only"),
                );
                continue;
            };
            let (vname, mname) = (self.column_name(it.agent, v[0]), self.column_name(it.agent, mcol[0]));
            let vname = vname.split('.').next().unwrap_or("").to_string();
            if self.kinetic_matches(terms, it, v, mcol)? {
                obligations.push(Obligation {
                    law: name.clone(),
                    subject,
                    claim: format!("kinetic part is ½·{mname}·|{vname}|²"),
                    outcome: Outcome::Proved("matches the integrator's mass and velocity".into()),
                });
            } else {
                obligations.push(Obligation {
                    law: name.clone(),
                    subject,
                    claim: format!("kinetic part is ½·{mname}·|{vname}|²"),
                    outcome: Outcome::Failed("it is not".into()),
                });
                diags.push(
                    Diagnostic::error(
                        "E0613",
                        law.span,
                        format!(
                            "the kinetic part of `{}` for `{}` is not ½·{mname}·|{vname}|²",
                            law.name, self.m.agents[it.agent].name
                        ),
                    )
                    .with_note(
                        it.span,
                        format!("`{}` moves `{}` with mass `{mname}`", it.integrator, self.m.agents[it.agent].name),
                    )
                    .with_hint(format!("include `0.5 * {mname} * dot({vname}, {vname})` for every integrated agent")),
                );
            }
        }
        // Forces must come from the law's potentials, each potential's force applied exactly once.
        let mut claims: HashMap<KernelId, Vec<(String, crate::ir::SrcSpan)>> = HashMap::new();
        for info in &self.m.interactions.clone() {
            let k = self.kernel(info.kernel);
            let users: Vec<&Integration> = integrations.iter().filter(|it| it.forces.contains(&info.kernel)).collect();
            if users.is_empty() {
                continue;
            }
            let slots = k.pattern.slots();
            let mut deltas: Vec<Vec<Poly>> = Vec::new();
            let mut xs: Vec<Vec<u32>> = Vec::new();
            let mut vs: Vec<Vec<u32>> = Vec::new();
            let mut any = false;
            for (s, &agent) in slots.iter().enumerate() {
                let it = users.iter().find(|it| it.agent == agent);
                let (f, x, v) = match it {
                    Some(it) => (
                        it.role("f").unwrap_or(&[]).to_vec(),
                        it.role("x").unwrap_or(&[]).to_vec(),
                        it.role("v").unwrap_or(&[]).to_vec(),
                    ),
                    None => (Vec::new(), Vec::new(), Vec::new()),
                };
                let mut view = View::new(k);
                let after = after_values(&mut self.c, &mut view, s as u8)?;
                let mut lanes = Vec::new();
                for &col in &f {
                    let base = self.c.leaf(Leaf::Load { slot: s as u8, col });
                    let d = after.get(&(s as u8, col)).map(|p| p.sub(&base)).transpose()?.unwrap_or_default();
                    any |= !d.is_zero();
                    lanes.push(d);
                }
                deltas.push(lanes);
                xs.push(x);
                vs.push(v);
            }
            if !any {
                continue;
            }
            let subject = format!("interaction `{}` (forces)", info.name);
            let claim = "applies −∇ of a potential in the law".to_string();
            if info.external {
                obligations.push(Obligation {
                    law: name.clone(),
                    subject,
                    claim,
                    outcome: Outcome::Exempt("declared `external`".into()),
                });
                continue;
            }
            let mut proved = None;
            for &t in &law.terms {
                let (pairs, agents) = term_kind(self.m, t);
                if pairs != k.pattern.is_pairwise() {
                    continue;
                }
                let coeff = terms.per_lane[0].iter().find(|(tt, _, _)| *tt == t).map_or(0.0, |x| x.2);
                if coeff == 0.0 {
                    continue;
                }
                let maps: Vec<Vec<u8>> = if agents == slots {
                    vec![(0..slots.len() as u8).collect()]
                } else if agents.len() == 2 && agents[0] == slots[1] && agents[1] == slots[0] {
                    vec![vec![1, 0]]
                } else {
                    continue;
                };
                for map in maps {
                    let x_in_law: Vec<Vec<u32>> = map.iter().map(|&s| xs[s as usize].clone()).collect();
                    let grad = self.potential_gradient(t, 0, &map, &x_in_law)?;
                    let mut all = true;
                    for (ts, &s) in map.iter().enumerate() {
                        for (lane, d) in deltas[s as usize].iter().enumerate() {
                            let g = grad.get(ts).and_then(|g| g.get(lane)).cloned().unwrap_or_default().scale(coeff);
                            all &= self.c.equal(d, &g)?;
                        }
                    }
                    if all {
                        claims.entry(t).or_default().push((info.name.clone(), info.span));
                        if let Pattern::Neighbors { .. } = k.pattern {
                            if let Err(why) = self.vanishes_beyond(t, k, &map, &x_in_law)? {
                                obligations.push(Obligation {
                                    law: name.clone(),
                                    subject: subject.clone(),
                                    claim: "the potential is zero beyond the `within` radius".into(),
                                    outcome: Outcome::Failed(why.clone()),
                                });
                                diags.push(self.failure(
                                    "E0615",
                                    law,
                                    info.span,
                                    k,
                                    format!("`{}` applies its force only within a radius, but the law's potential does not vanish beyond it ({why})", info.name),
                                    Some("cut the potential off at the radius: `select(distance(a.position, b.position) < R, U, 0.0)`, with R no larger than the `within` radius".into()),
                                ));
                            }
                        }
                        let names: Vec<&str> = agents.iter().map(|&a| self.m.agents[a].name.as_str()).collect();
                        proved = Some(format!("equals −∇ of the law's `pairs({})` potential", names.join(", ")));
                        if !pairs {
                            proved = Some(format!("equals −∇ of the law's `sum({})` term", names.join(", ")));
                        }
                    }
                }
                if proved.is_some() {
                    break;
                }
            }
            if proved.is_none() {
                // A force perpendicular to the velocity does no work.
                let mut power = Poly::default();
                for (s, lanes) in deltas.iter().enumerate() {
                    for (lane, d) in lanes.iter().enumerate() {
                        if let Some(&vc) = vs[s].get(lane) {
                            let vel = self.c.leaf(Leaf::Load { slot: s as u8, col: vc });
                            let p = self.c.mul(d, &vel)?;
                            power = self.c.add(&power, &p)?;
                        }
                    }
                }
                if self.c.equal(&power, &Poly::default())? {
                    proved = Some("does no work (the force is perpendicular to the velocity)".into());
                }
            }
            match proved {
                Some(how) => {
                    obligations.push(Obligation { law: name.clone(), subject, claim, outcome: Outcome::Proved(how) })
                }
                None => {
                    obligations.push(Obligation {
                        law: name.clone(),
                        subject,
                        claim,
                        outcome: Outcome::Failed("no potential of the law gives this force".into()),
                    });
                    diags.push(self.failure(
                        "E0611",
                        law,
                        info.span,
                        k,
                        format!("the force of interaction `{}` is not −∇ of a potential in `{}`", info.name, law.name),
                        Some("apply `force(U, a, b)` of a potential `U` that appears in the law as `pairs(a, b) U(a, b)`, add it to the law, or mark the interaction `external`".to_string()),
                    ));
                }
            }
        }
        for (t, who) in &claims {
            if who.len() > 1 {
                let names: Vec<&str> = who.iter().map(|(n, _)| n.as_str()).collect();
                diags.push(
                    Diagnostic::error(
                        "E0611",
                        who[1].1,
                        format!(
                            "the force of one potential of `{}` is applied by {} interactions: {}",
                            law.name,
                            who.len(),
                            names.join(", ")
                        ),
                    )
                    .with_note(who[0].1, "also applied here")
                    .with_note(law.span, format!("law `{}` declared here", law.name))
                    .with_hint("apply each potential's force once per force pass"),
                );
                obligations.push(Obligation {
                    law: name.clone(),
                    subject: format!("potential `{}`", self.kernel(*t).name),
                    claim: "its force is applied once".into(),
                    outcome: Outcome::Failed(format!("applied by {}", names.join(", "))),
                });
            }
        }
        if !integrations.is_empty() {
            for &t in &law.terms {
                if claims.contains_key(&t) {
                    continue;
                }
                // A potential that depends on positions changes as the integrator moves agents;
                // some interaction must apply its force.
                let (pairs, agents) = term_kind(self.m, t);
                let moved = agents.iter().all(|a| integrations.iter().any(|it| it.agent == *a));
                if !moved {
                    continue;
                }
                let x: Vec<Vec<u32>> = agents
                    .iter()
                    .map(|a| {
                        integrations
                            .iter()
                            .find(|it| it.agent == *a)
                            .and_then(|it| it.role("x"))
                            .unwrap_or(&[])
                            .to_vec()
                    })
                    .collect();
                let map: Vec<u8> = (0..agents.len() as u8).collect();
                let grad = self.potential_gradient(t, 0, &map, &x)?;
                if grad.iter().flatten().any(|g| !g.is_zero()) {
                    let what = if pairs { "pair potential" } else { "per-agent potential" };
                    diags.push(
                        Diagnostic::error(
                            "E0611",
                            law.span,
                            format!("no interaction applies the force of the {what} in `{}`", law.name),
                        )
                        .with_hint(
                            "apply `force(U, a, b)` of it in the integrator's force pass, or remove it from the law",
                        ),
                    );
                    obligations.push(Obligation {
                        law: name.clone(),
                        subject: format!("term `{}`", self.kernel(t).name),
                        claim: "its force is applied".into(),
                        outcome: Outcome::Failed("no interaction applies it".into()),
                    });
                }
            }
        }
        // Impulses and other direct writes must keep the law's per-agent terms exactly.
        let pair_cols: BTreeSet<(usize, u32)> = law
            .terms
            .iter()
            .filter(|&&t| term_kind(self.m, t).0)
            .flat_map(|&t| {
                let agents = term_kind(self.m, t).1;
                self.kernel(t)
                    .insts
                    .iter()
                    .filter_map(move |i| match i.op {
                        Op::Load { slot, col } => Some((agents[slot as usize], col)),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        for info in &self.m.interactions.clone() {
            let k = self.kernel(info.kernel);
            let slots = k.pattern.slots();
            let writes_state = k.insts.iter().any(|i| match i.op {
                Op::Store { slot, col, .. } | Op::Accum { slot, col, .. } => {
                    self.column_kind(slots[slot as usize], col) == FieldKind::State
                }
                _ => false,
            });
            if !writes_state || !self.touches(terms, k) {
                continue;
            }
            let subject = format!("interaction `{}`", info.name);
            let claim = "keeps the law's per-agent terms exactly".to_string();
            if info.external {
                obligations.push(Obligation {
                    law: name.clone(),
                    subject,
                    claim,
                    outcome: Outcome::Exempt("declared `external`".into()),
                });
                continue;
            }
            let moves_potential = k.insts.iter().any(|i| match i.op {
                Op::Store { slot, col, .. } | Op::Accum { slot, col, .. } => {
                    pair_cols.contains(&(slots[slot as usize], col))
                }
                _ => false,
            });
            if moves_potential {
                obligations.push(Obligation {
                    law: name.clone(),
                    subject,
                    claim,
                    outcome: Outcome::Failed("it changes what the law's potentials read".into()),
                });
                diags.push(self.failure(
                    "E0615",
                    law,
                    info.span,
                    k,
                    format!("interaction `{}` changes fields the potentials of `{}` read, outside the integrator; the compiler cannot decide the effect", info.name, law.name),
                    Some("move agents only through an integrator, mark the interaction `external`, or write `conserve … assume;`".into()),
                ));
                continue;
            }
            let ok = self.holds_in_all_cases(k, |me, case| me.direct_change(terms, 0, k, case))?;
            if ok && k.pattern.is_pairwise() {
                // Proved for one pair; an agent in several contacts in one step gets the sum of
                // the impulses (the language's rule), which keeps linear laws but not energies.
                obligations.push(Obligation {
                    law: name.clone(),
                    subject,
                    claim,
                    outcome: Outcome::Proved("for each pair alone; simultaneous contacts of one agent sum their impulses, so the law holds only approximately and its tolerance is checked at run time".into()),
                });
                diags.push(
                    Diagnostic::warning("W0003", info.span, format!("`{}` keeps `{}` for each pair alone", info.name, law.name))
                        .with_note(law.span, format!("law `{}` declared here", law.name))
                        .with_hint("when one agent touches several others in a step their impulses are summed, which changes the energy slightly; give the law a tolerance (or `assume`), or use a smaller time step"),
                );
            } else if ok {
                obligations.push(Obligation {
                    law: name.clone(),
                    subject,
                    claim,
                    outcome: Outcome::Proved("the per-agent terms after equal those before, in every branch".into()),
                });
            } else {
                obligations.push(Obligation {
                    law: name.clone(),
                    subject,
                    claim,
                    outcome: Outcome::Failed("they change".into()),
                });
                diags.push(self.failure(
                    "E0614",
                    law,
                    info.span,
                    k,
                    format!("interaction `{}` changes `{}`: the new values do not keep it", info.name, law.name),
                    Some("use an impulse that conserves it (e.g. `elastic_collision`), mark the interaction `external`, or write `conserve … assume;`".into()),
                ));
            }
        }
        Ok(())
    }
}

/// Runs every proof; laws marked `assume` get none.
pub fn prove(m: &Module, sources: &SourceMap) -> Report {
    let mut report = Report::default();
    let mut pv = Prover { m, sources, c: Canon::new() };
    for law in &m.laws {
        let mut obligations = Vec::new();
        if law.assume {
            report.laws.push((
                law.name.clone(),
                "assumed: measured at run time only".into(),
                vec![Obligation {
                    law: law.name.clone(),
                    subject: "the law".into(),
                    claim: "holds".into(),
                    outcome: Outcome::Assumed,
                }],
            ));
            continue;
        }
        let Some(terms) = pv.terms(law) else {
            report.diags.push(
                Diagnostic::error(
                    "E0617",
                    law.span,
                    format!("`{}` combines its sums non-linearly, which the compiler cannot decide", law.name),
                )
                .with_hint("write the law as a sum of `sum(…)` and `pairs(…)` terms, or mark it `assume`"),
            );
            report.laws.push((law.name.clone(), "undecided".into(), Vec::new()));
            continue;
        };
        let mut diags = Vec::new();
        let kind = pv.is_linear(law, &terms).and_then(|linear| Ok((linear, !linear && pv.is_energy(law, &terms)?)));
        let result = match kind {
            Ok((true, _)) => {
                pv.prove_linear(law, &terms, &mut obligations, &mut diags).map(|_| "linear (a sum of per-agent state)")
            }
            Ok((false, true)) => pv
                .prove_energy(law, &terms, &mut obligations, &mut diags)
                .map(|_| "energy (kinetic part and potentials)"),
            Ok((false, false)) => {
                report.diags.push(
                    Diagnostic::error("E0618", law.span, format!("cannot decide `{}`: it is neither linear in the agents' state nor an energy", law.name))
                        .with_hint("laws the compiler proves are sums of per-agent state (momentum, transferred scalars) and energies (½·m·|v|² plus potentials); write `conserve … assume;` to measure this one at run time"),
                );
                report.laws.push((law.name.clone(), "undecided".into(), Vec::new()));
                continue;
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(kind) => {
                report.laws.push((law.name.clone(), kind.into(), obligations));
                report.diags.extend(diags);
            }
            Err(Undecided::TooLarge) => {
                report.diags.push(
                    Diagnostic::error("E0615", law.span, format!("the proof of `{}` grew too large to decide", law.name))
                        .with_hint("simplify the interactions involved, or write `conserve … assume;` to measure the law at run time only"),
                );
                report.laws.push((law.name.clone(), "undecided".into(), obligations));
            }
        }
    }
    report
}

/// The `--explain` text: each law's obligations and how each was discharged.
pub fn explain(report: &Report) -> String {
    let mut s = String::new();
    for (law, kind, obligations) in &report.laws {
        s.push_str(&format!("law `{law}`: {kind}\n"));
        if obligations.is_empty() {
            s.push_str("  no interaction or integrator changes it\n");
        }
        for o in obligations {
            let (mark, how) = match &o.outcome {
                Outcome::Proved(h) => ("proved", h.clone()),
                Outcome::Exempt(h) => ("exempt", h.clone()),
                Outcome::Assumed => ("assumed", "checked at run time only".to_string()),
                Outcome::Failed(h) => ("FAILED", h.clone()),
            };
            s.push_str(&format!("  [{mark}] {}: {} — {how}\n", o.subject, o.claim));
        }
    }
    s
}
