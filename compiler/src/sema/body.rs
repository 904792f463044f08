//! Checking expressions and statements into HIR. Calls to `fn`s and potentials are inlined here,
//! each checked against the agents and values of its call site.

use super::check::{is_comparison, settle, Callable, Checker};
use super::hir::*;
use super::scope::{Binding, BodyCx, Mode};
use super::types::{Scalar, Ty, BOOL, F32, I32};
use crate::diag::Diagnostic;
use crate::source::Span;
use crate::syntax::ast::{self, BinOp, UnOp};

fn err(span: Span) -> HExpr {
    HExpr { kind: HKind::Lit(0.0), ty: Ty::Error, span }
}

fn lit(v: f64, ty: Ty, span: Span) -> HExpr {
    HExpr { kind: HKind::Lit(v), ty, span }
}

/// Combines two numeric scalar types as arithmetic does: literals adapt, concrete types must match.
fn unify_scalar(a: &Ty, b: &Ty) -> Option<Ty> {
    match (a, b) {
        (Ty::Error, _) | (_, Ty::Error) => Some(Ty::Error),
        (Ty::IntLit, Ty::IntLit) => Some(Ty::IntLit),
        (Ty::IntLit | Ty::FloatLit, Ty::IntLit | Ty::FloatLit) => Some(Ty::FloatLit),
        (Ty::IntLit, Ty::Scalar(s)) | (Ty::Scalar(s), Ty::IntLit) if *s != Scalar::Bool => Some(Ty::Scalar(*s)),
        (Ty::FloatLit, Ty::Scalar(s)) | (Ty::Scalar(s), Ty::FloatLit) if s.is_float() => Some(Ty::Scalar(*s)),
        (Ty::Scalar(x), Ty::Scalar(y)) if x == y && *x != Scalar::Bool => Some(Ty::Scalar(*x)),
        _ => None,
    }
}

fn is_vec(t: &Ty) -> bool {
    matches!(t, Ty::Vec(..))
}

const MATH1: &[(&str, Builtin)] = &[
    ("sqrt", Builtin::Sqrt),
    ("rsqrt", Builtin::Rsqrt),
    ("abs", Builtin::Abs),
    ("exp", Builtin::Exp),
    ("log", Builtin::Log),
    ("sin", Builtin::Sin),
    ("cos", Builtin::Cos),
    ("tanh", Builtin::Tanh),
    ("floor", Builtin::Floor),
];

const BUILTIN_NAMES: &[&str] = &[
    "sqrt",
    "rsqrt",
    "abs",
    "exp",
    "log",
    "sin",
    "cos",
    "tanh",
    "floor",
    "pow",
    "min",
    "max",
    "clamp",
    "select",
    "dot",
    "cross",
    "length",
    "length2",
    "normalize",
    "distance",
    "distance2",
    "reflect",
    "transpose",
    "vec2",
    "vec3",
    "vec4",
    "mat2",
    "mat3",
    "mat4",
    "force",
    "transfer",
    "rand_uniform",
    "rand_normal",
    "rand_in_sphere",
    "rand_in_box",
];

impl<'a> Checker<'a> {
    pub fn block(&mut self, cx: &mut BodyCx, b: &ast::Block) -> HBlock {
        cx.push();
        let mut stmts = Vec::new();
        for s in &b.stmts {
            self.stmt(cx, s, &mut stmts);
        }
        let tail = b.tail.as_ref().map(|t| self.expr(cx, t));
        cx.pop();
        HBlock { stmts, tail }
    }

    fn stmt(&mut self, cx: &mut BodyCx, s: &ast::Stmt, out: &mut Vec<HStmt>) {
        match s {
            ast::Stmt::Let { pat, ty, value, .. } => {
                let mut v = self.expr(cx, value);
                let declared = ty.as_ref().map(|t| self.resolve_type(t));
                if let Some(t) = &declared {
                    if !v.ty.fits(t) {
                        self.error(
                            Diagnostic::error(
                                "E0203",
                                value.span,
                                format!(
                                    "mismatched types: expected `{}`, found `{}`",
                                    self.ty_name(t),
                                    self.ty_name(&v.ty)
                                ),
                            )
                            .with_hint("convert with `as`"),
                        );
                    }
                    settle(&mut v, t);
                }
                let ty = declared.unwrap_or_else(|| v.ty.settled());
                settle(&mut v, &ty);
                match pat {
                    ast::Pattern::Name(n) => {
                        let l = cx.declare(&n.name, ty);
                        out.push(HStmt::Let { locals: vec![l], value: v });
                    }
                    ast::Pattern::Tuple(names, span) => {
                        let parts = match &ty {
                            Ty::Tuple(ts) if ts.len() == names.len() => ts.clone(),
                            Ty::Error => vec![Ty::Error; names.len()],
                            t => {
                                self.error(Diagnostic::error(
                                    "E0203",
                                    *span,
                                    format!(
                                        "this pattern takes a tuple of {} values, found `{}`",
                                        names.len(),
                                        self.ty_name(t)
                                    ),
                                ));
                                vec![Ty::Error; names.len()]
                            }
                        };
                        let locals = names.iter().zip(parts).map(|(n, t)| cx.declare(&n.name, t)).collect();
                        out.push(HStmt::Let { locals, value: v });
                    }
                }
            }
            ast::Stmt::Assign { target, op, value, span } => self.assign(cx, target, *op, value, *span, out),
            ast::Stmt::If { cond, then, els, span } => {
                let c = self.condition(cx, cond);
                let then = self.block(cx, then);
                let els = els.as_ref().map_or(HBlock { stmts: Vec::new(), tail: None }, |e| self.block(cx, e));
                out.push(HStmt::If { cond: c, then, els, span: *span });
            }
            ast::Stmt::Return(e, span) => {
                self.expr(cx, e);
                self.error(
                    Diagnostic::error("E0210", *span, "`return` may only end a function body")
                        .with_hint("make the value the last expression of the body, without `;`"),
                );
            }
            ast::Stmt::Expr(e) => self.expr_stmt(cx, e, out),
            ast::Stmt::Error(_) => {}
        }
    }

    fn expr_stmt(&mut self, cx: &mut BodyCx, e: &ast::Expr, out: &mut Vec<HStmt>) {
        if let ast::ExprKind::Name(n) = &e.kind {
            if n == "forces" && cx.mode == Mode::Integrator {
                out.push(HStmt::Forces(e.span));
                return;
            }
        }
        if let ast::ExprKind::Call { callee, args } = &e.kind {
            if matches!(&callee.kind, ast::ExprKind::Name(n) if n == "transfer") {
                self.transfer(cx, args, e.span, out);
                return;
            }
        }
        let h = self.expr(cx, e);
        if !h.ty.is_error() {
            self.error(
                Diagnostic::error("E0213", e.span, "this expression's value is not used")
                    .with_hint("assign it (`a.force += …;`) or bind it (`let x = …;`)"),
            );
        }
    }

    /// `transfer(amount, from: a.x, to: b.x)` moves `amount` of a scalar field between agents.
    fn transfer(&mut self, cx: &mut BodyCx, args: &[ast::Arg], span: Span, out: &mut Vec<HStmt>) {
        let named = |k: &str| args.iter().find(|a| a.name.as_ref().is_some_and(|n| n.name == k)).map(|a| &a.value);
        let amount = args.iter().find(|a| a.name.is_none()).map(|a| &a.value);
        let (Some(amount), Some(from), Some(to)) = (amount, named("from"), named("to")) else {
            self.error(
                Diagnostic::error("E0204", span, "`transfer` takes an amount, `from:` and `to:`")
                    .with_hint("write `transfer(x, from: a.info, to: b.info);`"),
            );
            return;
        };
        // The amount is computed once, before either side changes.
        let mut v = self.expr(cx, amount);
        let ty = v.ty.settled();
        settle(&mut v, &ty);
        let l = cx.new_local("transfer", ty.clone());
        out.push(HStmt::Let { locals: vec![l], value: v });
        let local = HExpr { kind: HKind::Local(l), ty, span: amount.span };
        self.assign_value(cx, from, ast::AssignOp::Sub, local.clone(), amount.span, span, out);
        self.assign_value(cx, to, ast::AssignOp::Add, local, amount.span, span, out);
    }

    fn condition(&mut self, cx: &mut BodyCx, e: &ast::Expr) -> HExpr {
        let c = self.expr(cx, e);
        if !c.ty.is_bool() && !c.ty.is_error() {
            self.error(
                Diagnostic::error(
                    "E0203",
                    e.span,
                    format!("a condition must be `bool`, found `{}`", self.ty_name(&c.ty)),
                )
                .with_hint("compare with `<`, `==`, …"),
            );
        }
        c
    }

    /// Resolves the target of an assignment to a place and an optional vector lane.
    fn place(&mut self, cx: &mut BodyCx, target: &ast::Expr) -> Option<(Place, Option<usize>, Ty, Span)> {
        let agent_field = matches!(&target.kind, ast::ExprKind::Field(inner, _)
            if matches!(&inner.kind, ast::ExprKind::Name(n) if matches!(cx.lookup(n), Some(Binding::Agent(..)))));
        let (base, lane) = match &target.kind {
            ast::ExprKind::Field(inner, f) if lane_index(&f.name).is_some() && !agent_field => {
                let inner_place = self.place_base(cx, inner);
                match inner_place {
                    Some((p, Ty::Vec(s, n), span)) => {
                        let l = lane_index(&f.name)?;
                        if l >= n as usize {
                            self.error(Diagnostic::error(
                                "E0201",
                                f.span,
                                format!("`vec{n}` has no lane `{}`", f.name),
                            ));
                            return None;
                        }
                        return Some((p, Some(l), Ty::Scalar(s), span));
                    }
                    _ => (self.place_base(cx, target)?, None),
                }
            }
            _ => (self.place_base(cx, target)?, None),
        };
        Some((base.0, lane, base.1, base.2))
    }

    fn place_base(&mut self, cx: &mut BodyCx, target: &ast::Expr) -> Option<(Place, Ty, Span)> {
        match &target.kind {
            ast::ExprKind::Name(n) => match cx.lookup(n).cloned() {
                Some(Binding::Local(l)) => Some((Place::Local(l), cx.locals[l].ty.clone(), target.span)),
                Some(Binding::Field(slot, f)) => self.field_place(cx, slot, f, target.span),
                _ => {
                    self.error(
                        Diagnostic::error("E0212", target.span, format!("cannot assign to `{n}`"))
                            .with_hint("assign to a local (`let`) or an agent field (`a.velocity = …`)"),
                    );
                    None
                }
            },
            ast::ExprKind::Field(inner, f) => {
                if let ast::ExprKind::Name(n) = &inner.kind {
                    if let Some(Binding::Agent(slot, agent)) = cx.lookup(n).cloned() {
                        let Some(fid) = self.agents[agent].field(&f.name) else {
                            self.unknown_field(agent, f);
                            return None;
                        };
                        return self.field_place(cx, slot, fid, target.span);
                    }
                }
                self.error(
                    Diagnostic::error("E0212", target.span, "cannot assign to this expression")
                        .with_hint("assign to a local or an agent field such as `a.velocity`"),
                );
                None
            }
            _ => {
                self.error(
                    Diagnostic::error("E0212", target.span, "cannot assign to this expression")
                        .with_hint("assign to a local or an agent field such as `a.velocity`"),
                );
                None
            }
        }
    }

    fn field_place(&mut self, cx: &BodyCx, slot: Slot, f: FieldId, span: Span) -> Option<(Place, Ty, Span)> {
        let agent = cx.slots[slot as usize];
        let field = &self.agents[agent].fields[f];
        let ty = field.ty.clone();
        match field.kind {
            FieldKind::Property => {
                let d = Diagnostic::error(
                    "E0300",
                    span,
                    format!(
                        "property `{}` of `{}` is invariant and cannot be written",
                        field.name, self.agents[agent].name
                    ),
                )
                .with_label("written here")
                .with_note(field.span, "declared as `property` here")
                .with_hint("declare it `state` if it is meant to change");
                self.error(d);
                None
            }
            FieldKind::Derive => {
                let d = Diagnostic::error(
                    "E0301",
                    span,
                    format!("`{}` is a derived value and cannot be written", field.name),
                )
                .with_note(field.span, "declared as `derive` here");
                self.error(d);
                None
            }
            _ if matches!(cx.mode, Mode::Function | Mode::Potential | Mode::Law | Mode::Const) => {
                self.error(
                    Diagnostic::error("E0209", span, "agent fields are written only by interactions and integrators")
                        .with_hint("return the new value and assign it in the interaction"),
                );
                None
            }
            _ => Some((Place::Field { slot, field: f }, ty, span)),
        }
    }

    fn assign(
        &mut self,
        cx: &mut BodyCx,
        target: &ast::Expr,
        op: ast::AssignOp,
        value: &ast::Expr,
        span: Span,
        out: &mut Vec<HStmt>,
    ) {
        let v = self.expr(cx, value);
        self.assign_value(cx, target, op, v, value.span, span, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn assign_value(
        &mut self,
        cx: &mut BodyCx,
        target: &ast::Expr,
        op: ast::AssignOp,
        mut v: HExpr,
        value_span: Span,
        span: Span,
        out: &mut Vec<HStmt>,
    ) {
        let Some((place, lane, ty, _)) = self.place(cx, target) else { return };
        if let Place::Field { slot, field } = &place {
            let agent = cx.slots[*slot as usize];
            let f = &self.agents[agent].fields[*field];
            if f.kind == FieldKind::Accum
                && !matches!(op, ast::AssignOp::Add | ast::AssignOp::Sub)
                && cx.mode == Mode::Interaction
            {
                let d = Diagnostic::error(
                    "E0302",
                    span,
                    format!("accumulator `{}` may only be added to (`+=`) or subtracted from (`-=`)", f.name),
                )
                .with_note(f.span, "declared as `accum` here")
                .with_hint("accumulators sum contributions from many interactions");
                self.error(d);
                return;
            }
        }
        let ok = match op {
            ast::AssignOp::Set | ast::AssignOp::Add | ast::AssignOp::Sub => v.ty.fits(&ty),
            ast::AssignOp::Mul | ast::AssignOp::Div => v.ty.fits(&ty) || (is_vec(&ty) && v.ty.is_float_scalar()),
        };
        if !ok {
            self.error(
                Diagnostic::error(
                    "E0203",
                    value_span,
                    format!("mismatched types: `{}` cannot take a `{}`", self.ty_name(&ty), self.ty_name(&v.ty)),
                )
                .with_hint("convert with `as`, or build a vector with `vec3(…)`"),
            );
            return;
        }
        let want = if v.ty.is_float_scalar() && is_vec(&ty) { Ty::Scalar(ty.elem()) } else { ty };
        settle(&mut v, &want);
        out.push(HStmt::Assign { place, lane, op, value: v, span });
    }

    pub fn unknown_field(&mut self, agent: usize, f: &ast::Ident) {
        let a = &self.agents[agent];
        let known: Vec<&str> = a.fields.iter().map(|x| x.name.as_str()).collect();
        let d = Diagnostic::error("E0201", f.span, format!("agent `{}` has no field `{}`", a.name, f.name))
            .with_note(a.span, "agent declared here")
            .with_hint(format!("its fields are: {}", known.join(", ")));
        self.error(d);
    }

    pub fn expr(&mut self, cx: &mut BodyCx, e: &ast::Expr) -> HExpr {
        let span = e.span;
        match &e.kind {
            ast::ExprKind::Number { text, integer, suffix } => {
                let value: f64 = match text.parse() {
                    Ok(v) => v,
                    Err(_) => {
                        self.error(Diagnostic::error("E0004", span, format!("malformed number `{text}`")));
                        return err(span);
                    }
                };
                let ty = match suffix.as_deref() {
                    Some(s) => match Scalar::from_name(s) {
                        Some(sc) => Ty::Scalar(sc),
                        None => Ty::Error,
                    },
                    None if *integer => Ty::IntLit,
                    None => Ty::FloatLit,
                };
                if !value.is_finite() {
                    self.error(Diagnostic::error(
                        "E0004",
                        span,
                        format!("the number `{text}` is too large to represent"),
                    ));
                    return err(span);
                }
                if matches!(ty, Ty::Scalar(s) if s.is_int()) && value.fract() != 0.0 {
                    self.error(Diagnostic::error("E0004", span, "an integer literal cannot have a fraction"));
                }
                lit(value, ty, span)
            }
            ast::ExprKind::Bool(b) => lit(if *b { 1.0 } else { 0.0 }, BOOL, span),
            ast::ExprKind::Str(_) => {
                self.error(Diagnostic::error(
                    "E0203",
                    span,
                    "strings are only file names in `spawn … from`, `load(…)` and `onnx(…)`",
                ));
                err(span)
            }
            ast::ExprKind::Name(n) => self.name(cx, n, span),
            ast::ExprKind::Field(inner, f) => self.field(cx, inner, f, span),
            ast::ExprKind::Call { callee, args } => self.call(cx, callee, args, span),
            ast::ExprKind::Index(inner, _) => {
                let h = self.expr(cx, inner);
                if !h.ty.is_error() {
                    self.error(
                        Diagnostic::error("E0206", span, format!("`{}` cannot be indexed", self.ty_name(&h.ty)))
                            .with_hint("read vector lanes with `.x`, `.y`, `.z`, `.w`"),
                    );
                }
                err(span)
            }
            ast::ExprKind::Unary(op, x) => {
                let mut h = self.expr(cx, x);
                let ok = match op {
                    UnOp::Neg => h.ty.is_numeric_scalar() || matches!(h.ty, Ty::Vec(..) | Ty::Mat(_)),
                    UnOp::Not => h.ty.is_bool(),
                };
                if !ok && !h.ty.is_error() {
                    let sym = if *op == UnOp::Neg { "-" } else { "!" };
                    self.error(Diagnostic::error(
                        "E0206",
                        span,
                        format!("`{sym}` cannot be applied to `{}`", self.ty_name(&h.ty)),
                    ));
                    return err(span);
                }
                let ty = h.ty.clone();
                if *op == UnOp::Neg && matches!(h.kind, HKind::Lit(_)) && !ty.is_error() {
                    if let HKind::Lit(v) = &mut h.kind {
                        *v = -*v;
                    }
                    h.span = span;
                    return h;
                }
                HExpr { kind: HKind::Unary(*op, Box::new(h)), ty, span }
            }
            ast::ExprKind::Binary(op, a, b) => {
                let l = self.expr(cx, a);
                let r = self.expr(cx, b);
                self.binary(*op, l, r, span)
            }
            ast::ExprKind::Cast(x, t) => {
                let h = self.expr(cx, x);
                let ty = self.resolve_type(t);
                // Scalars convert; vectors convert lane by lane to a vector of the same length.
                let ok = (h.ty.is_numeric_scalar() || h.ty.is_bool()) && matches!(ty, Ty::Scalar(_))
                    || matches!((&h.ty, &ty), (Ty::Vec(a, n), Ty::Vec(b, m)) if n == m && a.is_float() && b.is_float());
                if !ok && !h.ty.is_error() && !ty.is_error() {
                    self.error(
                        Diagnostic::error(
                            "E0206",
                            span,
                            format!("cannot convert `{}` to `{}` with `as`", self.ty_name(&h.ty), self.ty_name(&ty)),
                        )
                        .with_hint("`as` converts between scalar types, and between float vectors of one length"),
                    );
                    return err(span);
                }
                HExpr { kind: HKind::Cast(Box::new(h)), ty, span }
            }
            ast::ExprKind::Tuple(xs) => {
                let hs: Vec<HExpr> = xs
                    .iter()
                    .map(|x| {
                        let mut h = self.expr(cx, x);
                        let t = h.ty.settled();
                        settle(&mut h, &t);
                        h
                    })
                    .collect();
                let ty = Ty::Tuple(hs.iter().map(|h| h.ty.clone()).collect());
                HExpr { kind: HKind::Tuple(hs), ty, span }
            }
            ast::ExprKind::If { cond, then, els } => {
                let c = self.condition(cx, cond);
                let t = self.block(cx, then);
                let f = self.block(cx, els);
                let (Some(tv), Some(fv)) = (&t.tail, &f.tail) else {
                    self.error(Diagnostic::error(
                        "E0214",
                        span,
                        "both branches of an `if` used as a value must end with a value",
                    ));
                    return err(span);
                };
                let ty = match unify_scalar(&tv.ty, &fv.ty) {
                    Some(t) => t,
                    None if tv.ty == fv.ty => tv.ty.clone(),
                    None => {
                        self.error(Diagnostic::error(
                            "E0203",
                            span,
                            format!(
                                "the branches have different types: `{}` and `{}`",
                                self.ty_name(&tv.ty),
                                self.ty_name(&fv.ty)
                            ),
                        ));
                        return err(span);
                    }
                };
                let mk = |b: HBlock, ty: &Ty| HExpr { kind: HKind::Block(Box::new(b)), ty: ty.clone(), span };
                HExpr {
                    kind: HKind::If { cond: Box::new(c), then: Box::new(mk(t, &ty)), els: Box::new(mk(f, &ty)) },
                    ty,
                    span,
                }
            }
            ast::ExprKind::Block(b) => {
                let h = self.block(cx, b);
                let Some(t) = &h.tail else {
                    self.error(
                        Diagnostic::error("E0214", span, "this block has no value")
                            .with_hint("end it with an expression, without `;`"),
                    );
                    return err(span);
                };
                let ty = t.ty.clone();
                HExpr { kind: HKind::Block(Box::new(h)), ty, span }
            }
            ast::ExprKind::Quant { q, binders, body } => self.quant(cx, *q, binders, body, span),
            ast::ExprKind::Error => err(span),
        }
    }

    fn quant(
        &mut self,
        cx: &mut BodyCx,
        q: ast::Quantifier,
        binders: &[ast::ParamDecl],
        body: &ast::Expr,
        span: Span,
    ) -> HExpr {
        if cx.mode != Mode::Law {
            self.error(Diagnostic::error("E0209", span, "`sum(…)` and `pairs(…)` are only allowed in `conserve` laws"));
            return err(span);
        }
        if !cx.slots.is_empty() {
            self.error(
                Diagnostic::error("E0600", span, "sums over agents cannot be nested")
                    .with_hint("write the law as a sum of terms: `sum(b: Body) … + pairs(a: Body, b: Body) …`"),
            );
            return err(span);
        }
        let want = if q == ast::Quantifier::Sum { 1 } else { 2 };
        if binders.len() != want {
            let what = if want == 1 {
                "`sum` binds one agent: `sum(b: Body)`"
            } else {
                "`pairs` binds two agents: `pairs(a: Body, b: Body)`"
            };
            self.error(Diagnostic::error("E0204", span, what.to_string()));
            return err(span);
        }
        let mut agents = Vec::new();
        cx.push();
        for b in binders {
            match self.resolve_type(&b.ty) {
                Ty::Agent(a) => {
                    let slot = cx.add_slot(a);
                    cx.bind(&b.name.name, Binding::Agent(slot, a));
                    agents.push(a);
                }
                Ty::Error => {}
                t => {
                    let n = self.ty_name(&t);
                    self.error(Diagnostic::error("E0207", b.ty.span(), format!("a sum runs over agents, not `{n}`")));
                }
            }
        }
        let ok = agents.len() == want;
        let mut h = if ok { self.expr(cx, body) } else { err(span) };
        cx.pop();
        cx.slots.clear();
        if !ok {
            return err(span);
        }
        let ty = h.ty.settled();
        settle(&mut h, &ty);
        if !(ty.is_float_scalar() || is_vec(&ty) || ty.is_error()) {
            self.error(Diagnostic::error(
                "E0203",
                body.span,
                format!("a sum adds floats or vectors, not `{}`", self.ty_name(&ty)),
            ));
            return err(span);
        }
        let q = if q == ast::Quantifier::Sum { Quant::Sum } else { Quant::Pairs };
        HExpr { kind: HKind::Quant { q, agents, body: Box::new(h) }, ty, span }
    }

    fn name(&mut self, cx: &mut BodyCx, n: &str, span: Span) -> HExpr {
        match cx.lookup(n).cloned() {
            Some(Binding::Local(l)) => return HExpr { kind: HKind::Local(l), ty: cx.locals[l].ty.clone(), span },
            Some(Binding::Agent(slot, a)) => return HExpr { kind: HKind::AgentRef(slot), ty: Ty::Agent(a), span },
            Some(Binding::Field(slot, f)) => return self.field_value(cx, slot, f, span),
            None => {}
        }
        // A stdlib body sees the user's constants first, so `const G` in the system changes gravity.
        if let Some(&c) = self.const_names.get(n) {
            let v = self.consts[c].value.clone();
            return const_expr(&v, span);
        }
        if let Some(&p) = self.param_names.get(n) {
            if cx.mode == Mode::Const {
                return self.not_constant(n, span);
            }
            let ty = self.params[p].ty.clone();
            return HExpr { kind: HKind::Param(p), ty, span };
        }
        if let Some(m) = cx.module {
            if let Some(v) = self.module_consts.get(m).and_then(|t| t.get(n)) {
                return const_expr(&v.clone(), span);
            }
        }
        for table in self.module_consts.iter().enumerate().filter(|(i, _)| self.modules[*i].prelude).map(|(_, t)| t) {
            if let Some(v) = table.get(n) {
                return const_expr(&v.clone(), span);
            }
        }
        match n {
            "index" | "count" if cx.mode == Mode::Init => {
                let kind = if n == "index" { HKind::SpawnIndex } else { HKind::SpawnCount };
                return HExpr { kind, ty: I32, span };
            }
            "index" | "count" => {
                self.error(Diagnostic::error("E0209", span, format!("`{n}` is only available in `init`")));
                return err(span);
            }
            _ => {}
        }
        if self.model_names.contains_key(n) || self.callables.contains_key(n) || BUILTIN_NAMES.contains(&n) {
            self.error(Diagnostic::error("E0206", span, format!("`{n}` is a function; call it with arguments")));
            return err(span);
        }
        let mut d = Diagnostic::error("E0200", span, format!("unknown name `{n}`"));
        if let Some(best) = self.suggest(cx, n) {
            d = d.with_hint(format!("did you mean `{best}`?"));
        } else if self.agent_names.contains_key(n) {
            d = d.with_hint(format!("`{n}` is an agent type; bind an agent of it, e.g. `(a: {n})`"));
        }
        self.error(d);
        err(span)
    }

    fn not_constant(&mut self, n: &str, span: Span) -> HExpr {
        self.error(
            Diagnostic::error("E0211", span, format!("`{n}` is a runtime `param`, not a constant"))
                .with_hint("use a `const` here"),
        );
        err(span)
    }

    fn suggest(&self, cx: &BodyCx, n: &str) -> Option<String> {
        let mut names: Vec<String> = cx.scopes.iter().flat_map(|s| s.keys().cloned()).collect();
        names.extend(self.const_names.keys().cloned());
        names.extend(self.param_names.keys().cloned());
        // Ties go to the first name in alphabetical order, so the hint does not depend on hashing.
        names
            .into_iter()
            .filter(|c| edit_distance(c, n) <= 2 && c.len() > 1)
            .min_by_key(|c| (edit_distance(c, n), c.clone()))
    }

    pub fn derive_use(&mut self, cx: &mut BodyCx, slot: Slot, agent: usize, field: FieldId, span: Span) -> HExpr {
        if cx.deriving.contains(&(agent, field)) {
            let f = &self.agents[agent].fields[field];
            let d = Diagnostic::error("E0208", f.span, format!("derive field `{}` depends on itself", f.name));
            self.error(d);
            return err(span);
        }
        let Some(e) = self.derive_ast.get(&(agent, field)).copied() else { return err(span) };
        cx.deriving.push((agent, field));
        let saved = std::mem::replace(&mut cx.scopes, vec![Default::default()]);
        let module = cx.module.take();
        for (i, f) in self.agents[agent].fields.iter().enumerate() {
            cx.bind(&f.name, Binding::Field(slot, i));
        }
        let mut h = self.expr(cx, e);
        cx.scopes = saved;
        cx.module = module;
        cx.deriving.pop();
        let ty = self.agents[agent].fields[field].ty.clone();
        settle(&mut h, &ty);
        h.span = span;
        h
    }

    fn field_value(&mut self, cx: &mut BodyCx, slot: Slot, f: FieldId, span: Span) -> HExpr {
        let agent = cx.slots[slot as usize];
        let field = &self.agents[agent].fields[f];
        if field.kind == FieldKind::Derive {
            return self.derive_use(cx, slot, agent, f, span);
        }
        HExpr { kind: HKind::Field { slot, field: f }, ty: field.ty.clone(), span }
    }

    fn field(&mut self, cx: &mut BodyCx, inner: &ast::Expr, f: &ast::Ident, span: Span) -> HExpr {
        let h = self.expr(cx, inner);
        match &h.ty {
            Ty::Agent(agent) => {
                let HKind::AgentRef(slot) = h.kind else { return err(span) };
                let agent = *agent;
                match self.agents[agent].field(&f.name) {
                    Some(fid) => self.field_value(cx, slot, fid, span),
                    None => {
                        self.unknown_field(agent, f);
                        err(span)
                    }
                }
            }
            Ty::Vec(s, n) => {
                let lanes: Option<Vec<usize>> = f.name.chars().map(|c| lane_index(&c.to_string())).collect();
                match lanes {
                    Some(ls) if ls.iter().all(|&l| l < *n as usize) && (1..=4).contains(&ls.len()) => {
                        let s = *s;
                        if ls.len() == 1 {
                            return HExpr { kind: HKind::Get(Box::new(h), ls[0]), ty: Ty::Scalar(s), span };
                        }
                        let parts = ls
                            .iter()
                            .map(|&l| HExpr { kind: HKind::Get(Box::new(h.clone()), l), ty: Ty::Scalar(s), span })
                            .collect();
                        HExpr { kind: HKind::Call(Builtin::Construct, parts), ty: Ty::Vec(s, ls.len() as u32), span }
                    }
                    _ => {
                        self.error(
                            Diagnostic::error(
                                "E0201",
                                f.span,
                                format!("`{}` has no lane `{}`", self.ty_name(&h.ty), f.name),
                            )
                            .with_hint("lanes are x, y, z, w (and swizzles such as `.xy`)"),
                        );
                        err(span)
                    }
                }
            }
            Ty::Error => err(span),
            t => {
                self.error(Diagnostic::error(
                    "E0201",
                    f.span,
                    format!("`{}` has no field `{}`", self.ty_name(t), f.name),
                ));
                err(span)
            }
        }
    }

    pub fn binary(&mut self, op: BinOp, mut l: HExpr, mut r: HExpr, span: Span) -> HExpr {
        if l.ty.is_error() || r.ty.is_error() {
            return err(span);
        }
        let ty = match op {
            BinOp::And | BinOp::Or => (l.ty.is_bool() && r.ty.is_bool()).then_some(BOOL),
            BinOp::Eq | BinOp::Ne if l.ty.is_bool() && r.ty.is_bool() => Some(BOOL),
            _ if is_comparison(op) => unify_scalar(&l.ty, &r.ty).map(|t| {
                let t = if t == Ty::IntLit || t == Ty::FloatLit { F32 } else { t };
                settle(&mut l, &t);
                settle(&mut r, &t);
                BOOL
            }),
            BinOp::MatMul => match (&l.ty, &r.ty) {
                (Ty::Mat(n), Ty::Vec(Scalar::F32, m)) if n == m => Some(Ty::vec(*n)),
                (Ty::Mat(n), Ty::Mat(m)) if n == m => Some(Ty::Mat(*n)),
                (Ty::Tensor(s, d), Ty::Vec(_, k)) if d.len() == 2 && d[1] == *k => {
                    Some(Ty::Vec(if s.is_float() { Scalar::F32 } else { *s }, d[0]))
                }
                (Ty::Tensor(_, d), Ty::Tensor(s, e)) if d.len() == 2 && e.len() == 2 && d[1] == e[0] => {
                    Some(Ty::Tensor(*s, vec![d[0], e[1]]))
                }
                _ => None,
            },
            _ => match (&l.ty, &r.ty) {
                (a, b) if a.is_numeric_scalar() && b.is_numeric_scalar() => {
                    let t = unify_scalar(a, b);
                    if let Some(t @ Ty::Scalar(_)) = &t {
                        settle(&mut l, t);
                        settle(&mut r, t);
                    }
                    t
                }
                (Ty::Vec(s, n), Ty::Vec(s2, m)) if n == m && s == s2 && op != BinOp::Rem => Some(l.ty.clone()),
                (Ty::Mat(n), Ty::Mat(m)) if n == m && matches!(op, BinOp::Add | BinOp::Sub) => Some(l.ty.clone()),
                (Ty::Vec(..) | Ty::Mat(_), s) if s.is_float_scalar() && matches!(op, BinOp::Mul | BinOp::Div) => {
                    settle(&mut r, &F32);
                    Some(l.ty.clone())
                }
                (s, Ty::Vec(..) | Ty::Mat(_)) if s.is_float_scalar() && op == BinOp::Mul => {
                    settle(&mut l, &F32);
                    Some(r.ty.clone())
                }
                _ => None,
            },
        };
        match ty {
            Some(ty) => HExpr { kind: HKind::Binary(op, Box::new(l), Box::new(r)), ty, span },
            None => {
                let hint = if l.ty.is_numeric_scalar() && r.ty.is_numeric_scalar() {
                    "convert one side with `as`, e.g. `x as f64`"
                } else if op == BinOp::Mul && matches!(l.ty, Ty::Mat(_)) {
                    "multiply matrices and vectors with `@`"
                } else {
                    "vectors combine lane by lane with vectors of the same size, and scale by scalars"
                };
                self.error(
                    Diagnostic::error(
                        "E0203",
                        span,
                        format!(
                            "mismatched types: `{}` {} `{}`",
                            self.ty_name(&l.ty),
                            op.symbol(),
                            self.ty_name(&r.ty)
                        ),
                    )
                    .with_label(format!("`{}` is not defined for these types", op.symbol()))
                    .with_hint(hint),
                );
                err(span)
            }
        }
    }

    fn arity(&mut self, name: &str, want: &str, got: usize, span: Span) -> HExpr {
        self.error(Diagnostic::error("E0204", span, format!("`{name}` takes {want} argument(s), found {got}")));
        err(span)
    }

    fn call(&mut self, cx: &mut BodyCx, callee: &ast::Expr, args: &[ast::Arg], span: Span) -> HExpr {
        let ast::ExprKind::Name(name) = &callee.kind else {
            self.expr(cx, callee);
            self.error(Diagnostic::error("E0205", callee.span, "only named functions can be called"));
            return err(span);
        };
        if let Some(c) = self.callables.get(name).copied() {
            let hs: Vec<HExpr> = args.iter().map(|a| self.expr(cx, &a.value)).collect();
            if let Some(a) = args.iter().find(|a| a.name.is_some()) {
                self.error(Diagnostic::error("E0204", a.value.span, format!("`{name}` takes positional arguments")));
            }
            return self.inline_call(cx, c, hs, span);
        }
        if let Some(&m) = self.model_names.get(name) {
            let hs: Vec<HExpr> = args.iter().map(|a| self.expr(cx, &a.value)).collect();
            let model = &self.models[m];
            let (inputs, outputs) = match (&model.mlp, &model.hosted) {
                (Some(mlp), _) => (mlp.inputs, mlp.outputs),
                (None, Some(h)) => (h.inputs, h.outputs),
                (None, None) => return HExpr { kind: HKind::Opaque("model", hs), ty: Ty::vec(3), span },
            };
            if hs.iter().any(|h| h.ty.is_error()) {
                return err(span);
            }
            // The arguments, concatenated, are the input vector.
            let mut hs = hs;
            let mut given = 0;
            for h in &mut hs {
                match h.ty.clone() {
                    t if t.is_float_scalar() => {
                        settle(h, &F32);
                        given += 1;
                    }
                    Ty::Vec(s, n) if s.is_float() => given += n,
                    t => {
                        self.error(Diagnostic::error(
                            "E0204",
                            h.span,
                            format!("a model takes float scalars and vectors, not {t}"),
                        ));
                        return err(span);
                    }
                }
            }
            if given != inputs {
                self.error(
                    Diagnostic::error("E0204", span, format!("model `{name}` takes {inputs} inputs, found {given}"))
                        .with_hint("its arguments are concatenated into one vector"),
                );
                return err(span);
            }
            let ty = if outputs == 1 { F32 } else { Ty::Vec(Scalar::F32, outputs) };
            return HExpr { kind: HKind::ModelCall(m, hs), ty, span };
        }
        match name.as_str() {
            "force" => return self.force(cx, args, span),
            "transfer" => {
                self.error(
                    Diagnostic::error("E0209", span, "`transfer(…)` is a statement of its own")
                        .with_hint("write `transfer(x, from: a.info, to: b.info);`"),
                );
                return err(span);
            }
            "load" | "onnx" | "mlp" => {
                self.error(Diagnostic::error(
                    "E0209",
                    span,
                    format!("`{name}(…)` may only give the value of a `param` or `model`"),
                ));
                return err(span);
            }
            _ => {}
        }
        let mut hs: Vec<HExpr> = args.iter().map(|a| self.expr(cx, &a.value)).collect();
        if let Some(a) = args.iter().find(|a| a.name.is_some()) {
            self.error(Diagnostic::error("E0204", a.value.span, format!("`{name}` takes positional arguments")));
            return err(span);
        }
        if hs.iter().any(|h| h.ty.is_error()) {
            return err(span);
        }
        let n = hs.len();
        if let Some((_, b)) = MATH1.iter().find(|(m, _)| m == name) {
            if n != 1 {
                return self.arity(name, "1", n, span);
            }
            return self.math(name, *b, hs, span);
        }
        match name.as_str() {
            "pow" | "min" | "max" => {
                if n != 2 {
                    return self.arity(name, "2", n, span);
                }
                let b = match name.as_str() {
                    "pow" => Builtin::Pow,
                    "min" => Builtin::Min,
                    _ => Builtin::Max,
                };
                self.math(name, b, hs, span)
            }
            "clamp" => {
                if n != 3 {
                    return self.arity(name, "3", n, span);
                }
                self.math(name, Builtin::Clamp, hs, span)
            }
            "select" => {
                if n != 3 {
                    return self.arity(name, "3", n, span);
                }
                if !hs[0].ty.is_bool() {
                    self.error(Diagnostic::error(
                        "E0203",
                        hs[0].span,
                        format!("`select`'s first argument is a `bool` condition, found `{}`", self.ty_name(&hs[0].ty)),
                    ));
                    return err(span);
                }
                let (a, b) = (hs[1].ty.clone(), hs[2].ty.clone());
                let ty = unify_scalar(&a, &b).or_else(|| (a == b).then(|| a.clone()));
                match ty {
                    Some(t) => {
                        // Two literals stay a literal, so the context can still give them a type.
                        let t = if matches!(t, Ty::IntLit | Ty::FloatLit) { t } else { t.settled() };
                        settle(&mut hs[1], &t);
                        settle(&mut hs[2], &t);
                        HExpr { kind: HKind::Call(Builtin::Select, hs), ty: t, span }
                    }
                    None => {
                        self.error(Diagnostic::error(
                            "E0203",
                            span,
                            format!(
                                "`select`'s two values differ in type: `{}` and `{}`",
                                self.ty_name(&a),
                                self.ty_name(&b)
                            ),
                        ));
                        err(span)
                    }
                }
            }
            "dot" | "distance" | "distance2" | "cross" | "reflect" => {
                if n != 2 {
                    return self.arity(name, "2", n, span);
                }
                let same_vec = is_vec(&hs[0].ty) && hs[0].ty == hs[1].ty;
                if !same_vec || (name == "cross" && hs[0].ty != Ty::vec(3)) {
                    let want = if name == "cross" { "two `vec3`" } else { "two vectors of the same size" };
                    self.error(Diagnostic::error(
                        "E0203",
                        span,
                        format!(
                            "`{name}` takes {want}, found `{}` and `{}`",
                            self.ty_name(&hs[0].ty),
                            self.ty_name(&hs[1].ty)
                        ),
                    ));
                    return err(span);
                }
                let (b, ty) = match name.as_str() {
                    "dot" => (Builtin::Dot, F32),
                    "distance" => (Builtin::Distance, F32),
                    "distance2" => (Builtin::Distance2, F32),
                    "cross" => (Builtin::Cross, Ty::vec(3)),
                    _ => (Builtin::Reflect, hs[0].ty.clone()),
                };
                HExpr { kind: HKind::Call(b, hs), ty, span }
            }
            "length" | "length2" | "normalize" => {
                if n != 1 {
                    return self.arity(name, "1", n, span);
                }
                if !is_vec(&hs[0].ty) {
                    self.error(Diagnostic::error(
                        "E0203",
                        span,
                        format!("`{name}` takes a vector, found `{}`", self.ty_name(&hs[0].ty)),
                    ));
                    return err(span);
                }
                let (b, ty) = match name.as_str() {
                    "length" => (Builtin::Length, F32),
                    "length2" => (Builtin::Length2, F32),
                    _ => (Builtin::Normalize, hs[0].ty.clone()),
                };
                HExpr { kind: HKind::Call(b, hs), ty, span }
            }
            "transpose" => {
                if n != 1 {
                    return self.arity(name, "1", n, span);
                }
                if !matches!(hs[0].ty, Ty::Mat(_)) {
                    self.error(Diagnostic::error(
                        "E0203",
                        span,
                        format!("`transpose` takes a matrix, found `{}`", self.ty_name(&hs[0].ty)),
                    ));
                    return err(span);
                }
                let ty = hs[0].ty.clone();
                HExpr { kind: HKind::Call(Builtin::Transpose, hs), ty, span }
            }
            "vec2" | "vec3" | "vec4" | "mat2" | "mat3" | "mat4" => {
                let size: u32 = name[3..].parse().unwrap_or(3);
                let ty = if name.starts_with("vec") { Ty::vec(size) } else { Ty::Mat(size) };
                let mut lanes = 0;
                for h in hs.iter_mut() {
                    match &h.ty {
                        t if t.is_numeric_scalar() => {
                            settle(h, &F32);
                            lanes += 1;
                        }
                        Ty::Vec(Scalar::F32, k) if name.starts_with("vec") => lanes += *k as usize,
                        Ty::Vec(Scalar::F32, k) if *k == size => lanes += size as usize,
                        t => {
                            let t = self.ty_name(t);
                            self.error(Diagnostic::error(
                                "E0203",
                                h.span,
                                format!("`{name}` is built from f32 scalars or vectors, found `{t}`"),
                            ));
                            return err(span);
                        }
                    }
                    if !matches!(h.ty, Ty::Scalar(Scalar::F32) | Ty::Vec(..)) {
                        self.error(
                            Diagnostic::error(
                                "E0203",
                                h.span,
                                format!("`{name}` takes f32 values, found `{}`", self.ty_name(&h.ty)),
                            )
                            .with_hint("convert with `as f32`"),
                        );
                        return err(span);
                    }
                }
                let want = ty.lanes();
                if !(lanes == want || (n == 1 && lanes == 1)) {
                    self.error(Diagnostic::error(
                        "E0204",
                        span,
                        format!("`{name}` needs 1 or {want} values, found {lanes}"),
                    ));
                    return err(span);
                }
                HExpr { kind: HKind::Call(Builtin::Construct, hs), ty, span }
            }
            "rand_uniform" | "rand_normal" | "rand_in_sphere" | "rand_in_box" => self.rand(cx, name, hs, span),
            _ => {
                let mut d = Diagnostic::error("E0205", callee.span, format!("unknown function `{name}`"));
                let mut names: Vec<String> = BUILTIN_NAMES.iter().map(|s| s.to_string()).collect();
                names.extend(self.callables.keys().cloned());
                if let Some(best) =
                    names.iter().filter(|c| edit_distance(c, name) <= 2).min_by_key(|c| edit_distance(c, name))
                {
                    d = d.with_hint(format!("did you mean `{best}`?"));
                } else if name == "gravity" || name == "lennard_jones" || name == "coulomb" || name == "harmonic" {
                    d = d.with_hint(format!("import it: `use std::potentials::{name};`"));
                }
                self.error(d);
                err(span)
            }
        }
    }

    fn math(&mut self, name: &str, b: Builtin, mut hs: Vec<HExpr>, span: Span) -> HExpr {
        let first = hs[0].ty.clone();
        let mut ty = first.clone();
        for h in &hs[1..] {
            ty = match unify_scalar(&ty, &h.ty) {
                Some(t) => t,
                None if ty == h.ty => ty,
                None if is_vec(&ty)
                    && h.ty.is_float_scalar()
                    && matches!(b, Builtin::Pow | Builtin::Min | Builtin::Max | Builtin::Clamp) =>
                {
                    ty
                }
                None => {
                    self.error(Diagnostic::error(
                        "E0203",
                        span,
                        format!(
                            "`{name}`'s arguments differ in type: `{}` and `{}`",
                            self.ty_name(&ty),
                            self.ty_name(&h.ty)
                        ),
                    ));
                    return err(span);
                }
            };
        }
        let ty = ty.settled();
        let ok = match &ty {
            Ty::Scalar(s) => {
                s.is_float()
                    || matches!(b, Builtin::Abs | Builtin::Min | Builtin::Max | Builtin::Clamp) && *s != Scalar::Bool
            }
            Ty::Vec(..) => true,
            _ => false,
        };
        if !ok {
            self.error(Diagnostic::error(
                "E0203",
                span,
                format!("`{name}` is not defined for `{}`", self.ty_name(&ty)),
            ));
            return err(span);
        }
        let elem = Ty::Scalar(ty.elem());
        for h in hs.iter_mut() {
            let t = if is_vec(&h.ty) { ty.clone() } else { elem.clone() };
            settle(h, &t);
        }
        HExpr { kind: HKind::Call(b, hs), ty, span }
    }

    fn rand(&mut self, cx: &BodyCx, name: &str, mut hs: Vec<HExpr>, span: Span) -> HExpr {
        if cx.mode != Mode::Init {
            self.error(
                Diagnostic::error("E0209", span, format!("`{name}` is only available in `init`"))
                    .with_hint("random numbers seed the initial state; the step is deterministic"),
            );
            return err(span);
        }
        let (f, want, ty) = match name {
            "rand_uniform" => (RandFn::Uniform, 2, F32),
            "rand_normal" => (RandFn::Normal, 2, F32),
            "rand_in_sphere" => (RandFn::InSphere, 1, Ty::vec(3)),
            _ => (RandFn::InBox, 2, hs.first().map_or(F32, |h| h.ty.settled())),
        };
        if hs.len() != want {
            return self.arity(name, &want.to_string(), hs.len(), span);
        }
        for h in hs.iter_mut() {
            let ok = if f == RandFn::InBox { h.ty.settled() == ty } else { h.ty.is_float_scalar() };
            if !ok {
                self.error(Diagnostic::error(
                    "E0203",
                    h.span,
                    format!(
                        "`{name}` takes {}, found `{}`",
                        if f == RandFn::InBox { "two corners of the same type" } else { "float scalars" },
                        self.ty_name(&h.ty)
                    ),
                ));
                return err(span);
            }
            settle(h, &ty.settled());
        }
        if !(ty.is_float_scalar() || is_vec(&ty)) {
            self.error(Diagnostic::error(
                "E0203",
                span,
                format!("`{name}` makes floats or vectors, not `{}`", self.ty_name(&ty)),
            ));
            return err(span);
        }
        HExpr { kind: HKind::Rand(f, hs), ty, span }
    }

    fn force(&mut self, cx: &mut BodyCx, args: &[ast::Arg], span: Span) -> HExpr {
        let potential = args.first().and_then(|a| match &a.value.kind {
            ast::ExprKind::Name(n) => self.callables.get(n).copied().filter(|c| c.potential),
            _ => None,
        });
        let Some(p) = potential else {
            let at = args.first().map_or(span, |a| a.value.span);
            let mut d = Diagnostic::error("E0207", at, "`force`'s first argument must name a potential")
                .with_hint("write `force(gravity, a, b)` with a `potential` in scope");
            if let Some(ast::Arg { value: ast::Expr { kind: ast::ExprKind::Name(n), .. }, .. }) = args.first() {
                if ["gravity", "lennard_jones", "coulomb", "harmonic"].contains(&n.as_str()) {
                    d = d.with_hint(format!("import it: `use std::potentials::{n};`"));
                }
            }
            self.error(d);
            return err(span);
        };
        let hs: Vec<HExpr> = args[1..].iter().map(|a| self.expr(cx, &a.value)).collect();
        let Some(HExpr { kind: HKind::AgentRef(wrt), ty: Ty::Agent(agent), .. }) = hs.first().cloned() else {
            if !hs.first().is_some_and(|h| h.ty.is_error()) {
                self.error(Diagnostic::error(
                    "E0207",
                    args.get(1).map_or(span, |a| a.value.span),
                    "`force(U, a, b)` takes the agent the force acts on second",
                ));
            }
            return err(span);
        };
        let Some(position) = self.agents[agent].field("position") else {
            self.error(Diagnostic::error(
                "E0201",
                span,
                format!(
                    "`force` is the gradient with respect to `position`, and `{}` has none",
                    self.agents[agent].name
                ),
            ));
            return err(span);
        };
        let ty = self.agents[agent].fields[position].ty.clone();
        let energy = self.inline_call(cx, p, hs, span);
        if energy.ty.is_error() {
            return err(span);
        }
        HExpr { kind: HKind::Force { energy: Box::new(energy), wrt, position }, ty, span }
    }

    /// Inlines a call to a `fn` or `potential`: arguments become locals, agents stay slots.
    pub fn inline_call(&mut self, cx: &mut BodyCx, c: Callable<'a>, args: Vec<HExpr>, span: Span) -> HExpr {
        let d = c.decl;
        if cx.inlining.contains(&d.name.name) {
            self.error(
                Diagnostic::error("E0208", span, format!("`{}` calls itself; recursion is not supported", d.name.name))
                    .with_note(d.name.span, "defined here"),
            );
            return err(span);
        }
        if args.len() != d.params.len() {
            let d2 = Diagnostic::error(
                "E0204",
                span,
                format!("`{}` takes {} argument(s), found {}", d.name.name, d.params.len(), args.len()),
            )
            .with_note(d.name.span, "defined here");
            self.error(d2);
            return err(span);
        }
        if args.iter().any(|a| a.ty.is_error()) {
            return err(span);
        }
        let mut stmts = Vec::new();
        let mut bindings = Vec::new();
        for (p, mut a) in d.params.iter().zip(args) {
            let want = match &p.ty {
                ast::TypeExpr::AnyAgent(_) => None,
                t => Some(self.resolve_type(t)),
            };
            match (&want, &a.kind, &a.ty) {
                (None, HKind::AgentRef(slot), Ty::Agent(ag)) => {
                    bindings.push((p.name.name.clone(), Binding::Agent(*slot, *ag)))
                }
                (Some(Ty::Agent(w)), HKind::AgentRef(slot), Ty::Agent(ag)) if w == ag => {
                    bindings.push((p.name.name.clone(), Binding::Agent(*slot, *ag)))
                }
                (Some(w), _, t) if !matches!(w, Ty::Agent(_)) && !matches!(t, Ty::Agent(_)) && t.fits(w) => {
                    settle(&mut a, w);
                    let l = cx.new_local(&p.name.name, w.clone());
                    stmts.push(HStmt::Let { locals: vec![l], value: a });
                    bindings.push((p.name.name.clone(), Binding::Local(l)));
                }
                (w, _, t) => {
                    let want = w.as_ref().map_or("an agent".to_string(), |w| format!("`{}`", self.ty_name(w)));
                    let dd = Diagnostic::error(
                        "E0203",
                        a.span,
                        format!(
                            "argument `{}` of `{}` must be {want}, found `{}`",
                            p.name.name,
                            d.name.name,
                            self.ty_name(t)
                        ),
                    )
                    .with_note(p.name.span, "parameter declared here");
                    self.error(dd);
                    return err(span);
                }
            }
        }
        let saved = std::mem::replace(&mut cx.scopes, vec![Default::default()]);
        let module = std::mem::replace(&mut cx.module, c.module);
        let mode = std::mem::replace(&mut cx.mode, if c.potential { Mode::Potential } else { Mode::Function });
        for (n, b) in bindings {
            cx.bind(&n, b);
        }
        cx.inlining.push(d.name.name.clone());
        let body = self.fn_body(cx, &d.body);
        cx.inlining.pop();
        cx.scopes = saved;
        cx.module = module;
        cx.mode = mode;
        let Some(body) = body else { return err(span) };
        stmts.extend(body.stmts);
        let mut tail = body.tail;
        let ret = d.ret.as_ref().map(|t| self.resolve_type(t));
        match (&ret, &mut tail) {
            (Some(r), Some(t)) => {
                if !t.ty.fits(r) {
                    let dd = Diagnostic::error(
                        "E0203",
                        t.span,
                        format!(
                            "`{}` returns `{}`, but this value is `{}`",
                            d.name.name,
                            self.ty_name(r),
                            self.ty_name(&t.ty)
                        ),
                    )
                    .with_note(d.name.span, "function defined here");
                    self.error(dd);
                    return err(span);
                }
                settle(t, r);
            }
            (Some(_), None) => {
                self.error(
                    Diagnostic::error("E0214", d.body.span, format!("`{}` must end with its value", d.name.name))
                        .with_hint("make the last expression of the body its value, without `;`"),
                );
                return err(span);
            }
            (None, Some(t)) => {
                let t = t.ty.settled();
                self.error(
                    Diagnostic::error(
                        "E0214",
                        d.name.span,
                        format!("`{}` returns a value but declares no type", d.name.name),
                    )
                    .with_hint(format!("add `-> {}`", self.ty_name(&t))),
                );
                return err(span);
            }
            (None, None) => {
                self.error(Diagnostic::error(
                    "E0214",
                    d.name.span,
                    format!("`{}` returns nothing; functions compute values", d.name.name),
                ));
                return err(span);
            }
        }
        let tail = tail.unwrap_or_else(|| err(span));
        let ty = tail.ty.clone();
        HExpr { kind: HKind::Block(Box::new(HBlock { stmts, tail: Some(tail) })), ty, span }
    }

    /// A function body: a trailing `return x;` is its value.
    fn fn_body(&mut self, cx: &mut BodyCx, b: &ast::Block) -> Option<HBlock> {
        if b.tail.is_none() {
            if let Some(ast::Stmt::Return(e, _)) = b.stmts.last() {
                let mut b2 = b.clone();
                b2.stmts.pop();
                b2.tail = Some(Box::new(e.clone()));
                return Some(self.block(cx, &b2));
            }
        }
        Some(self.block(cx, b))
    }
}

fn lane_index(s: &str) -> Option<usize> {
    match s {
        "x" => Some(0),
        "y" => Some(1),
        "z" => Some(2),
        "w" => Some(3),
        _ => None,
    }
}

/// A constant's value as an expression: a literal, or a vector built from literals.
pub fn const_expr(v: &ConstValue, span: Span) -> HExpr {
    match &v.ty {
        Ty::Scalar(_) | Ty::IntLit | Ty::FloatLit => lit(v.lanes[0], v.ty.clone(), span),
        ty => {
            let s = Ty::Scalar(ty.elem());
            let parts = v.lanes.iter().map(|&x| lit(x, s.clone(), span)).collect();
            HExpr { kind: HKind::Call(Builtin::Construct, parts), ty: ty.clone(), span }
        }
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
