//! HIR → kernel IR: one kernel per interaction, per integrator phase and agent type, per spawn
//! and per law term, plus the schedule that runs them.

pub mod body;
pub mod tensor;

use crate::diag::Diagnostic;
use crate::ir::{self, InitOp, Kernel, KernelId, Module, Op, Pattern, Scalar, Sched, Uniform, V};
use crate::sema::hir::*;
use crate::sema::types::Ty;
use aiic_runtime::{AgentSchema, FieldKind as RtKind, FieldSchema};
use body::{Builder, Ctx, LResult, Lower, LowerError};
use std::collections::{BTreeMap, BTreeSet};

fn lane_names(name: &str, ty: &Ty) -> Vec<String> {
    match ty {
        Ty::Vec(_, n) if *n <= 4 => ["x", "y", "z", "w"][..*n as usize].iter().map(|l| format!("{name}.{l}")).collect(),
        Ty::Mat(n) => (0..n * n).map(|i| format!("{name}.c{}r{}", i / n, i % n)).collect(),
        t if t.lanes() == 1 => vec![name.to_string()],
        t => (0..t.lanes()).map(|i| format!("{name}.{i}")).collect(),
    }
}

fn to_diag(e: LowerError) -> Diagnostic {
    Diagnostic::error(e.code, e.span, e.message)
}

/// Evaluates a constant expression by lowering it and running the interpreter: one evaluator
/// for constants and kernels alike.
pub fn eval_const(e: &HExpr, locals: &[Local]) -> Result<Vec<f64>, String> {
    let cx = Ctx { program: None, field_cols: Vec::new(), param_lanes: Vec::new(), slots: Vec::new(), locals };
    let mut lw = Lower::new(&cx);
    let lanes = lw.expr(e).map_err(|e| e.message)?;
    let kernel = finish_uniform(lw.b, &lanes, "const");
    ir::interp::eval_uniform(&kernel, &[], &[]).map_err(|e| e.to_string())
}

fn finish_uniform(mut b: Builder, lanes: &[V], name: &str) -> Kernel {
    for (i, &v) in lanes.iter().enumerate() {
        b.emit(Scalar::F64, Op::Reduce { out: i as u32, value: v });
    }
    Kernel {
        name: name.to_string(),
        pattern: Pattern::Uniform,
        insts: b.insts,
        guard: None,
        outputs: lanes.len() as u32,
        messages: b.messages,
        write_spans: Vec::new(),
        tensor: None,
    }
}

struct ModuleLower<'p> {
    p: &'p Program,
    agents: Vec<AgentSchema>,
    column_types: Vec<Vec<Scalar>>,
    field_cols: Vec<Vec<u32>>,
    param_lanes: Vec<u32>,
    kernels: Vec<Kernel>,
    diags: Vec<Diagnostic>,
    /// Per kernel that calls hosted models, their runs, which go before it in any schedule.
    hosted_runs: BTreeMap<KernelId, Vec<Sched>>,
}

impl<'p> ModuleLower<'p> {
    fn ctx(&self, slots: Vec<usize>, locals: &'p [Local]) -> Ctx<'p> {
        Ctx {
            program: Some(self.p),
            field_cols: self.field_cols.clone(),
            param_lanes: self.param_lanes.clone(),
            slots,
            locals,
        }
    }

    fn push(&mut self, k: Kernel) -> KernelId {
        if cfg!(debug_assertions) {
            if let Err(e) = ir::verify::verify(&k) {
                panic!("IR verifier failed on kernel `{}` after lowering: {e}", k.name);
            }
        }
        let k = crate::passes::simplify::simplify(k);
        self.kernels.push(k);
        self.kernels.len() - 1
    }

    /// Adds a per-agent scratch column an integrator keeps across force passes.
    fn scratch(&mut self, agent: usize, name: &str, ty: Scalar) -> u32 {
        let col = self.agents[agent].column_count() as u32;
        self.agents[agent].fields.push(FieldSchema {
            name: name.to_string(),
            kind: RtKind::Scratch,
            lanes: vec![name.to_string()],
            integral: false,
        });
        self.column_types[agent].push(ty);
        col
    }

    fn final_effects(lw: &mut Lower, pairwise: bool) {
        let written = lw.env.written.clone();
        for (slot, col) in written {
            let ty = lw.b.ty(lw.env.cols[&(slot, col)].cur);
            if pairwise {
                if let Some(d) = lw.delta(slot, col, ty) {
                    lw.b.emit(ty, Op::Accum { slot, col, value: d });
                }
            } else {
                let cur = lw.env.cols[&(slot, col)].cur;
                lw.b.emit(ty, Op::Store { slot, col, value: cur });
            }
        }
    }

    fn interaction(&mut self, it: &'p Interaction) -> Option<KernelId> {
        let cx = self.ctx(it.agents.clone(), &it.locals);
        let mut lw = Lower::new(&cx);
        if matches!(it.kind, InteractionKind::Each) {
            let next_col = self.agents[it.agents[0]].column_count() as u32;
            lw.hosting = Some(body::Hosting { next_col, calls: Vec::new() });
        }
        let tensor = tensor::plan(self.p, it, &self.field_cols, &self.param_lanes);
        lw.tensor_lanes = tensor.as_ref().map(|t| t.outputs.len());
        let (pattern, pairwise) = match &it.kind {
            InteractionKind::Each => (Pattern::Map { agent: it.agents[0] }, false),
            InteractionKind::Pairs => (Pattern::AllPairs { a: it.agents[0], b: it.agents[1] }, true),
            InteractionKind::Within { bound, .. } => {
                (Pattern::Neighbors { a: it.agents[0], b: it.agents[1], bound: *bound }, true)
            }
        };
        let mut guard = None;
        let result: LResult<()> = (|| {
            if let InteractionKind::Within { radius, bound } = &it.kind {
                let r = lw.expr(radius)?[0];
                let pos_a = self.p.agents[it.agents[0]].field("position").unwrap_or(0);
                let pos_b = self.p.agents[it.agents[1]].field("position").unwrap_or(0);
                let pa = lw.expr(&HExpr {
                    kind: HKind::Field { slot: 0, field: pos_a },
                    ty: self.p.agents[it.agents[0]].fields[pos_a].ty.clone(),
                    span: it.span,
                })?;
                let pb = lw.expr(&HExpr {
                    kind: HKind::Field { slot: 1, field: pos_b },
                    ty: self.p.agents[it.agents[1]].fields[pos_b].ty.clone(),
                    span: it.span,
                })?;
                let diff: Vec<V> = pa.iter().zip(&pb).map(|(&a, &b)| lw.b.sub(a, b)).collect();
                let d2 = lw.b.dot(&diff, &diff);
                let r2 = lw.b.mul(r, r);
                guard = Some(lw.b.bin(ir::BinOp::Lt, d2, r2));
                let bound_v = lw.b.konst(*bound, lw.b.ty(r));
                let ok = lw.b.bin(ir::BinOp::Le, r, bound_v);
                let msg = lw.b.message(format!(
                    "interaction `{}`: the radius exceeds its bound `max: {bound}`; raise the bound",
                    it.name
                ));
                lw.b.emit(Scalar::Bool, Op::Check { cond: ok, msg });
            }
            lw.block(&it.body)?;
            Ok(())
        })();
        if let Err(e) = result {
            self.diags.push(to_diag(e).with_note(it.span, format!("in interaction `{}`", it.name)));
            return None;
        }
        Self::final_effects(&mut lw, pairwise);
        let write_spans = spans_of(&lw.env);
        let calls = lw.hosting.map(|h| h.calls).unwrap_or_default();
        let b = lw.b;
        let agent = it.agents[0];
        let runs: Vec<Sched> = calls
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                for (l, &col) in c.outputs.iter().enumerate() {
                    // Named for the kernel and the call: every column has a name of its own.
                    let name = format!("{}.{}{i}.{l}", it.name, self.p.models[c.model].name);
                    let made = self.scratch(agent, &name, Scalar::F32);
                    debug_assert_eq!(made, col, "hosted outputs are the next columns");
                }
                let model = self.p.models[..c.model].iter().filter(|m| m.hosted.is_some()).count();
                Sched::Model { agent, model, inputs: c.inputs, outputs: c.outputs }
            })
            .collect();
        let id = self.kernels.len();
        if !runs.is_empty() {
            self.hosted_runs.insert(id, runs);
        }
        Some(self.push(Kernel {
            name: it.name.clone(),
            pattern,
            insts: b.insts,
            guard,
            outputs: 0,
            messages: b.messages,
            write_spans,
            tensor,
        }))
    }

    /// Lowers one integrator use into one kernel per phase (phases are separated by `forces;`).
    fn integrator(&mut self, u: &'p IntegratorUse) -> Vec<KernelId> {
        let mut phases: Vec<Vec<&HStmt>> = vec![Vec::new()];
        for s in &u.body.stmts {
            match s {
                HStmt::Forces(_) => phases.push(Vec::new()),
                s => phases.last_mut().map(|p| p.push(s)).unwrap_or(()),
            }
        }
        // Locals that a later phase reads live in scratch columns across the force pass.
        let mut scratch: BTreeMap<LocalId, Vec<u32>> = BTreeMap::new();
        let mut defined: BTreeSet<LocalId> = BTreeSet::new();
        // `let`s whose value does not depend on the agent (parameters, constants) are recomputed
        // in each phase instead of stored.
        let mut uniform_lets: Vec<&HStmt> = Vec::new();
        let mut ids = Vec::new();
        for (k, phase) in phases.iter().enumerate() {
            let later: BTreeSet<LocalId> =
                phases[k + 1..].iter().flat_map(|p| p.iter().flat_map(|s| stmt_locals(s))).collect();
            let cx = self.ctx(vec![u.agent], &u.locals);
            let mut lw = Lower::new(&cx);
            for (l, cols) in &scratch {
                let ty = u.locals[*l].ty.elem();
                let vals = cols.iter().map(|&c| lw.read_col(0, c, ty)).collect();
                lw.env.locals.insert(*l, vals);
            }
            let mut result = Ok(());
            for s in &uniform_lets {
                result = result.and_then(|_| lw.stmt(s));
            }
            for s in phase {
                result = lw.stmt(s);
                if result.is_err() {
                    break;
                }
                if let HStmt::Let { locals, .. } = s {
                    let uniform = locals
                        .iter()
                        .all(|l| lw.env.locals.get(l).is_some_and(|vs| vs.iter().all(|&v| is_uniform(&lw.b.insts, v))));
                    if uniform {
                        uniform_lets.push(s);
                    } else {
                        defined.extend(locals.iter().copied());
                    }
                }
            }
            if let Err(e) = result {
                self.diags.push(to_diag(e).with_note(
                    u.body.stmts.first().map_or(Default::default(), stmt_span),
                    format!("in integrator `{}`", u.integrator),
                ));
                return Vec::new();
            }
            Self::final_effects(&mut lw, false);
            let to_keep: Vec<LocalId> =
                defined.iter().copied().filter(|l| later.contains(l) && !scratch.contains_key(l)).collect();
            for l in to_keep {
                let Some(vals) = lw.env.locals.get(&l).cloned() else { continue };
                let ty = u.locals[l].ty.elem();
                let mut cols = Vec::new();
                for (i, v) in vals.iter().enumerate() {
                    let name = format!(
                        "{}.{}{}",
                        u.integrator,
                        u.locals[l].name,
                        if vals.len() > 1 { format!(".{i}") } else { String::new() }
                    );
                    let col = self.scratch(u.agent, &name, ty);
                    lw.b.emit(ty, Op::Store { slot: 0, col, value: *v });
                    cols.push(col);
                }
                scratch.insert(l, cols);
            }
            let write_spans = spans_of(&lw.env);
            let b = lw.b;
            let name = format!("{}.{}.{}", u.integrator, self.p.agents[u.agent].name, k);
            let pattern = Pattern::Integrate { agent: u.agent, integrator: u.integrator.clone(), phase: k };
            ids.push(self.push(Kernel {
                name,
                pattern,
                insts: b.insts,
                guard: None,
                outputs: 0,
                messages: b.messages,
                write_spans,
                tensor: None,
            }));
        }
        ids
    }

    /// Accumulator columns a kernel writes: they are zeroed before the pass that runs it.
    fn zeros(&self, kernels: &[KernelId]) -> Vec<Sched> {
        let mut by_agent: BTreeMap<usize, BTreeSet<u32>> = BTreeMap::new();
        for &k in kernels {
            let kernel = &self.kernels[k];
            let slots = kernel.pattern.slots();
            for inst in &kernel.insts {
                if let Op::Accum { slot, col, .. } | Op::Store { slot, col, .. } = inst.op {
                    let agent = slots[slot as usize];
                    if self.column_kind(agent, col) == RtKind::Accum {
                        // Zero the whole field, all lanes, even if only one lane is written.
                        by_agent.entry(agent).or_default().extend(self.field_columns(agent, col));
                    }
                }
            }
        }
        by_agent.into_iter().map(|(agent, cols)| Sched::Zero { agent, cols: cols.into_iter().collect() }).collect()
    }

    fn column_kind(&self, agent: usize, col: u32) -> RtKind {
        let mut at = 0;
        for f in &self.agents[agent].fields {
            at += f.lanes.len() as u32;
            if col < at {
                return f.kind;
            }
        }
        RtKind::Scratch
    }

    fn field_columns(&self, agent: usize, col: u32) -> Vec<u32> {
        let mut at = 0;
        for f in &self.agents[agent].fields {
            let n = f.lanes.len() as u32;
            if col < at + n {
                return (at..at + n).collect();
            }
            at += n;
        }
        vec![col]
    }

    fn spawn(&mut self, s: &'p Spawn) -> Option<KernelId> {
        let cx = self.ctx(vec![s.agent], &s.locals);
        let mut lw = Lower::new(&cx);
        let result: LResult<()> = (|| {
            for st in &s.prelude {
                lw.stmt(st)?;
            }
            for f in &s.fields {
                let vals = lw.expr(&f.value)?;
                let first = self.field_cols[s.agent][f.field];
                let ty = self.p.agents[s.agent].fields[f.field].ty.elem();
                let n = self.p.agents[s.agent].fields[f.field].ty.lanes();
                for i in 0..n {
                    let v = if vals.len() == 1 { vals[0] } else { vals[i] };
                    let v = lw.b.convert(v, ty);
                    lw.b.emit(ty, Op::Store { slot: 0, col: first + i as u32, value: v });
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            self.diags.push(to_diag(e));
            return None;
        }
        let b = lw.b;
        let name = format!("spawn.{}", self.p.agents[s.agent].name);
        Some(self.push(Kernel {
            name,
            pattern: Pattern::Spawn { agent: s.agent },
            insts: b.insts,
            guard: None,
            outputs: 0,
            messages: b.messages,
            write_spans: Vec::new(),
            tensor: None,
        }))
    }

    fn law(&mut self, law: &'p Law) -> Option<ir::Law> {
        let mut terms = Vec::new();
        let mut inputs = 0u32;
        let cx = self.ctx(Vec::new(), &law.locals);
        let mut comb = Lower::new(&cx);
        let lanes = match self.law_expr(&mut comb, &law.value, law, &mut terms, &mut inputs) {
            Ok(l) => l,
            Err(e) => {
                self.diags.push(to_diag(e));
                return None;
            }
        };
        let combine = finish_uniform(comb.b, &lanes, &format!("law.{}", law.name));
        let combine = self.push(combine);
        Some(ir::Law {
            span: law.span.into(),
            name: law.name.clone(),
            lanes: lanes.len() as u32,
            terms,
            combine,
            tolerance: law.tolerance,
            assume: law.assume,
            measure: Vec::new(),
        })
    }

    /// Lowers the law's outer expression; each `sum`/`pairs` becomes a reduction kernel whose
    /// results enter the combiner as inputs.
    fn law_expr(
        &mut self,
        comb: &mut Lower,
        e: &'p HExpr,
        law: &'p Law,
        terms: &mut Vec<KernelId>,
        inputs: &mut u32,
    ) -> LResult<Vec<V>> {
        match &e.kind {
            HKind::Quant { q, agents, body } => {
                let slots = if *q == Quant::Sum { vec![agents[0]] } else { vec![agents[0], agents[1]] };
                let cx = self.ctx(slots, &law.locals);
                let mut lw = Lower::new(&cx);
                let vals = lw.expr(body)?;
                for (l, &v) in vals.iter().enumerate() {
                    let v64 = lw.b.emit(Scalar::F64, Op::Cast(v));
                    lw.b.emit(Scalar::F64, Op::Reduce { out: 2 * l as u32, value: v64 });
                    let a = lw.b.un(ir::UnOp::Abs, v64);
                    lw.b.emit(Scalar::F64, Op::Reduce { out: 2 * l as u32 + 1, value: a });
                }
                let pattern = match q {
                    Quant::Sum => Pattern::Map { agent: agents[0] },
                    Quant::Pairs => Pattern::AllPairs { a: agents[0], b: agents[1] },
                };
                let b = lw.b;
                let name = format!("law.{}.{}", law.name, terms.len());
                let k = self.push(Kernel {
                    name,
                    pattern,
                    insts: b.insts,
                    guard: None,
                    outputs: 2 * vals.len() as u32,
                    messages: b.messages,
                    write_spans: Vec::new(),
                    tensor: None,
                });
                terms.push(k);
                let out = (0..vals.len()).map(|_| {
                    *inputs += 1;
                    comb.b.emit(Scalar::F64, Op::Input(*inputs - 1))
                });
                Ok(out.collect())
            }
            HKind::Binary(op, a, b) => {
                let x = self.law_expr(comb, a, law, terms, inputs)?;
                let y = self.law_expr(comb, b, law, terms, inputs)?;
                let irop = match op {
                    crate::syntax::ast::BinOp::Add => ir::BinOp::Add,
                    crate::syntax::ast::BinOp::Sub => ir::BinOp::Sub,
                    crate::syntax::ast::BinOp::Mul => ir::BinOp::Mul,
                    crate::syntax::ast::BinOp::Div => ir::BinOp::Div,
                    _ => {
                        return Err(LowerError {
                            span: e.span,
                            message: "a law combines its sums with + - * /".into(),
                            code: "E0700",
                        })
                    }
                };
                let n = x.len().max(y.len());
                Ok((0..n)
                    .map(|i| comb.b.bin(irop, x[if x.len() == 1 { 0 } else { i }], y[if y.len() == 1 { 0 } else { i }]))
                    .collect())
            }
            HKind::Block(b) if b.stmts.is_empty() && b.tail.is_some() => match &b.tail {
                Some(t) => self.law_expr(comb, t, law, terms, inputs),
                None => comb.expr(e),
            },
            HKind::Unary(crate::syntax::ast::UnOp::Neg, a) => {
                let x = self.law_expr(comb, a, law, terms, inputs)?;
                Ok(x.iter().map(|&v| comb.b.un(ir::UnOp::Neg, v)).collect())
            }
            _ => comb.expr(e),
        }
    }
}

/// Whether a value depends on no agent: only constants and parameters feed it.
fn is_uniform(insts: &[ir::Inst], v: V) -> bool {
    let inst = &insts[v as usize];
    match inst.op {
        Op::Const(_) | Op::Param(_) => true,
        Op::Load { .. } | Op::Index | Op::Count | Op::Rand { .. } | Op::Input(_) => false,
        ref op => op.args().iter().all(|&a| is_uniform(insts, a)),
    }
}

fn spans_of(env: &body::Env) -> Vec<(u8, u32, ir::SrcSpan)> {
    let mut v: Vec<(u8, u32, ir::SrcSpan)> = env.spans.iter().map(|(&(s, c), &sp)| (s, c, sp.into())).collect();
    v.sort_by_key(|x| (x.0, x.1));
    v
}

fn stmt_span(s: &HStmt) -> crate::source::Span {
    match s {
        HStmt::Assign { span, .. } | HStmt::If { span, .. } | HStmt::Forces(span) => *span,
        HStmt::Let { value, .. } => value.span,
    }
}

/// Every local a statement reads or assigns.
fn stmt_locals(s: &HStmt) -> Vec<LocalId> {
    let mut out = Vec::new();
    s.walk(&mut |n| match n {
        Node::Stmt(HStmt::Assign { place: Place::Local(l), .. }) => out.push(*l),
        Node::Expr(HExpr { kind: HKind::Local(l), .. }) => out.push(*l),
        _ => {}
    });
    out
}

/// Lowers a checked program to a kernel IR module.
pub fn lower_program(p: &Program) -> Result<Module, Vec<Diagnostic>> {
    let mut agents = Vec::new();
    let mut column_types = Vec::new();
    let mut field_cols = Vec::new();
    for a in &p.agents {
        let mut fields = Vec::new();
        let mut types = Vec::new();
        let mut cols = Vec::new();
        let mut at = 0u32;
        for f in &a.fields {
            cols.push(at);
            if f.kind == FieldKind::Derive {
                continue;
            }
            let kind = match f.kind {
                FieldKind::Property => RtKind::Property,
                FieldKind::State => RtKind::State,
                _ => RtKind::Accum,
            };
            let lanes = lane_names(&f.name, &f.ty);
            at += lanes.len() as u32;
            types.extend(std::iter::repeat_n(f.ty.elem(), lanes.len()));
            let integral = !f.ty.elem().is_float();
            fields.push(FieldSchema { name: f.name.clone(), kind, lanes, integral });
        }
        agents.push(AgentSchema { name: a.name.clone(), fields });
        column_types.push(types);
        field_cols.push(cols);
    }
    // Scalar and vector parameters are lanes first, tensors' elements after all of them.
    let mut uniforms = Vec::new();
    let mut param_lanes = vec![0u32; p.params.len()];
    for (i, prm) in p.params.iter().enumerate() {
        param_lanes[i] = uniforms.len() as u32;
        if let (Some(v), false) = (&prm.default, matches!(prm.ty, Ty::Tensor(..))) {
            for (name, x) in lane_names(&prm.name, &prm.ty).into_iter().zip(&v.lanes) {
                uniforms.push(Uniform { name, param: prm.name.clone(), ty: prm.ty.elem(), value: *x });
            }
        }
    }
    let mut tensors = Vec::new();
    let mut lane = uniforms.len() as u32;
    for (i, prm) in p.params.iter().enumerate() {
        if let (Some(v), Ty::Tensor(_, dims)) = (&prm.default, &prm.ty) {
            param_lanes[i] = lane;
            lane += v.lanes.len() as u32;
            tensors.push(ir::TensorParam {
                param: prm.name.clone(),
                ty: prm.ty.elem(),
                shape: dims.clone(),
                lane: param_lanes[i],
                values: v.lanes.clone(),
            });
        }
    }
    let mut ml = ModuleLower {
        p,
        agents,
        column_types,
        field_cols,
        param_lanes,
        kernels: Vec::new(),
        diags: Vec::new(),
        hosted_runs: BTreeMap::new(),
    };

    // Only interactions the step runs become kernels; the checker warns about the others.
    let used: BTreeSet<InteractionId> = p
        .step
        .iter()
        .flat_map(|s| match s {
            StepItem::Run(i, _) => vec![*i],
            StepItem::Integrate { forces, .. } => forces.clone(),
        })
        .collect();
    let interaction_kernels: Vec<Option<KernelId>> = p
        .interactions
        .iter()
        .enumerate()
        .map(|(i, it)| if used.contains(&i) { ml.interaction(it) } else { None })
        .collect();
    let mut prime = Vec::new();
    let mut step = Vec::new();
    let interactions: Vec<ir::InteractionInfo> = p
        .interactions
        .iter()
        .zip(&interaction_kernels)
        .filter_map(|(it, k)| {
            k.map(|kernel| ir::InteractionInfo {
                name: it.name.clone(),
                kernel,
                external: it.external,
                span: it.span.into(),
            })
        })
        .collect();
    let mut integrations = Vec::new();
    for item in &p.step {
        match item {
            StepItem::Run(i, _) => {
                if let Some(k) = interaction_kernels[*i] {
                    step.extend(ml.zeros(&[k]));
                    step.push(Sched::Run(k));
                }
            }
            StepItem::Integrate { uses, forces, span } => {
                let force_kernels: Vec<KernelId> = forces.iter().filter_map(|i| interaction_kernels[*i]).collect();
                let mut pass = ml.zeros(&force_kernels);
                pass.extend(force_kernels.iter().map(|&k| Sched::Run(k)));
                let phases: Vec<Vec<KernelId>> = uses.iter().map(|u| ml.integrator(u)).collect();
                for (u, ph) in uses.iter().zip(&phases) {
                    integrations.push(ir::Integration {
                        integrator: u.integrator.clone(),
                        symplectic: u.symplectic,
                        agent: u.agent,
                        roles: u
                            .roles
                            .iter()
                            .map(|(alias, f)| {
                                let first = ml.field_cols[u.agent][*f];
                                let n = p.agents[u.agent].fields[*f].ty.lanes() as u32;
                                (alias.clone(), (first..first + n).collect())
                            })
                            .collect(),
                        phases: ph.clone(),
                        forces: force_kernels.clone(),
                        span: (*span).into(),
                    });
                }
                let n = phases.iter().map(Vec::len).max().unwrap_or(0);
                prime.extend(pass.iter().cloned());
                for k in 0..n {
                    if k > 0 {
                        step.extend(pass.iter().cloned());
                    }
                    step.extend(phases.iter().filter_map(|p| p.get(k)).map(|&id| Sched::Run(id)));
                }
            }
        }
    }
    let mut init = Vec::new();
    for s in &p.spawns {
        let Some(kernel) = ml.spawn(s) else { continue };
        init.push(match &s.from {
            Some(path) => InitOp::File { agent: s.agent, path: path.clone(), kernel },
            None => InitOp::Spawn { agent: s.agent, kernel, count: s.count },
        });
    }
    let laws: Vec<ir::Law> = p.laws.iter().filter_map(|l| ml.law(l)).collect();
    if !ml.diags.is_empty() {
        return Err(ml.diags);
    }
    let with_hosted = |list: Vec<Sched>| -> Vec<Sched> {
        let mut out = Vec::with_capacity(list.len());
        for s in list {
            if let Sched::Run(k) = s {
                out.extend(ml.hosted_runs.get(&k).into_iter().flatten().cloned());
            }
            out.push(s);
        }
        out
    };
    let (prime, step) = (with_hosted(prime), with_hosted(step));
    let hosted = p
        .models
        .iter()
        .filter_map(|m| {
            let h = m.hosted.as_ref()?;
            Some(ir::HostedModel {
                name: m.name.clone(),
                file: h.file.clone(),
                reason: h.reason.clone(),
                inputs: h.inputs,
                outputs: h.outputs,
                batch: h.batch,
                bytes: h.bytes.clone(),
            })
        })
        .collect();
    Ok(Module {
        name: p.name.clone(),
        agents: ml.agents,
        column_types: ml.column_types,
        uniforms,
        tensors,
        kernels: ml.kernels,
        init,
        prime,
        step,
        laws,
        interactions,
        integrations,
        hosted,
    })
}
