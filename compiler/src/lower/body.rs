//! Lowering of HIR bodies into scalar SSA: vectors become lanes, `if` becomes `select`, and
//! writes to agent fields are tracked per column until the kernel's final stores.

use crate::ir::{self, Dist, Inst, Op, Scalar, V};
use crate::sema::hir::*;
use crate::sema::types::Ty;
use crate::syntax::ast;
use std::collections::HashMap;

/// Why a body could not be lowered; becomes a diagnostic at the caller.
#[derive(Debug, Clone)]
pub struct LowerError {
    pub span: crate::source::Span,
    pub message: String,
    /// The diagnostic code: E0700 (nothing runs this yet) unless said otherwise.
    pub code: &'static str,
}

pub type LResult<T> = Result<T, LowerError>;

/// How a column has changed since the kernel began.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Delta {
    /// Only `+=`/`-=` so far: the sum of the increments (None: nothing yet).
    Sum(Option<V>),
    /// Assigned: the change is `cur - base`.
    Unknown,
}

#[derive(Debug, Clone, Copy)]
pub struct ColState {
    pub cur: V,
    pub delta: Delta,
}

/// Where the lowering of one kernel body finds the program's facts.
pub struct Ctx<'p> {
    pub program: Option<&'p Program>,
    /// First column of each field, per agent type.
    pub field_cols: Vec<Vec<u32>>,
    /// First uniform lane of each param.
    pub param_lanes: Vec<u32>,
    /// Agent type of each slot.
    pub slots: Vec<usize>,
    pub locals: &'p [Local],
}

pub struct Builder {
    pub insts: Vec<Inst>,
    pub messages: Vec<String>,
    pub outputs: u32,
    next_stream: u32,
    consts: HashMap<(u64, Scalar), V>,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    pub fn new() -> Self {
        Builder { insts: Vec::new(), messages: Vec::new(), outputs: 0, next_stream: 0, consts: HashMap::new() }
    }

    pub fn emit(&mut self, ty: Scalar, op: Op) -> V {
        self.insts.push(Inst { ty, op });
        (self.insts.len() - 1) as V
    }

    pub fn ty(&self, v: V) -> Scalar {
        self.insts[v as usize].ty
    }

    pub fn konst(&mut self, x: f64, ty: Scalar) -> V {
        if let Some(&v) = self.consts.get(&(x.to_bits(), ty)) {
            return v;
        }
        let v = self.emit(ty, Op::Const(x));
        self.consts.insert((x.to_bits(), ty), v);
        v
    }

    fn const_of(&self, v: V) -> Option<f64> {
        match self.insts[v as usize].op {
            Op::Const(x) => Some(x),
            _ => None,
        }
    }

    pub fn un(&mut self, op: ir::UnOp, a: V) -> V {
        let ty = if op == ir::UnOp::Not { Scalar::Bool } else { self.ty(a) };
        // Constants fold as they are built, so that force derivation sees `1/r²`, not `(1·1)/r²`.
        if let Some(x) = self.const_of(a) {
            return self.konst(crate::ir::interp::eval_un(op, ty, x), ty);
        }
        self.emit(ty, Op::Un(op, a))
    }

    pub fn bin(&mut self, op: ir::BinOp, a: V, b: V) -> V {
        let ty =
            if op.is_comparison() || matches!(op, ir::BinOp::And | ir::BinOp::Or) { Scalar::Bool } else { self.ty(a) };
        if let (Some(x), Some(y)) = (self.const_of(a), self.const_of(b)) {
            return self.konst(crate::ir::interp::eval_bin(op, ty, x, y), ty);
        }
        // x / √y is built as x · rsqrt(y) from the start, so that derived forces differentiate
        // rsqrt (−½·r³) instead of a quotient of roots.
        if op == ir::BinOp::Div && ty.is_float() {
            if let Op::Un(ir::UnOp::Sqrt, inner) = self.insts[b as usize].op {
                let r = self.un(ir::UnOp::Rsqrt, inner);
                return self.emit(ty, Op::Bin(ir::BinOp::Mul, a, r));
            }
        }
        self.emit(ty, Op::Bin(op, a, b))
    }

    pub fn add(&mut self, a: V, b: V) -> V {
        self.bin(ir::BinOp::Add, a, b)
    }
    pub fn sub(&mut self, a: V, b: V) -> V {
        self.bin(ir::BinOp::Sub, a, b)
    }
    pub fn mul(&mut self, a: V, b: V) -> V {
        self.bin(ir::BinOp::Mul, a, b)
    }
    /// `v` as a value of type `ty`: itself if it is one already, else converted.
    pub fn convert(&mut self, v: V, ty: Scalar) -> V {
        if self.ty(v) == ty {
            v
        } else {
            self.emit(ty, Op::Cast(v))
        }
    }
    pub fn select(&mut self, c: V, a: V, b: V) -> V {
        let ty = self.ty(a);
        self.emit(ty, Op::Select(c, a, b))
    }

    pub fn sum(&mut self, xs: &[V]) -> V {
        let mut acc = xs[0];
        for &x in &xs[1..] {
            acc = self.add(acc, x);
        }
        acc
    }

    pub fn dot(&mut self, a: &[V], b: &[V]) -> V {
        let prods: Vec<V> = a.iter().zip(b).map(|(&x, &y)| self.mul(x, y)).collect();
        self.sum(&prods)
    }

    pub fn stream(&mut self) -> u32 {
        self.next_stream += 1;
        self.next_stream - 1
    }

    pub fn message(&mut self, m: String) -> u32 {
        self.messages.push(m);
        (self.messages.len() - 1) as u32
    }
}

/// The per-kernel state of locals and agent columns.
#[derive(Clone, Default)]
pub struct Env {
    pub locals: HashMap<LocalId, Vec<V>>,
    pub base: HashMap<(u8, u32), V>,
    pub cols: HashMap<(u8, u32), ColState>,
    /// Columns in first-write order, so stores come out in a stable order.
    pub written: Vec<(u8, u32)>,
    /// The statement that last wrote each column.
    pub spans: HashMap<(u8, u32), crate::source::Span>,
}

fn scalar_of(t: &Ty) -> Scalar {
    t.settled().elem()
}

fn lane_types(t: &Ty) -> Vec<Ty> {
    match t {
        Ty::Tuple(ts) => ts.clone(),
        t => vec![t.clone()],
    }
}

pub struct Lower<'c, 'p> {
    pub cx: &'c Ctx<'p>,
    pub b: Builder,
    pub env: Env,
    /// Set for the body of a kernel with a tensor plan: its one assignment takes this many
    /// [`Op::Tensor`] lanes as its value instead of lowering the model call.
    pub tensor_lanes: Option<usize>,
    /// Set for the body of an `each` kernel, where hosted models may be called.
    pub hosting: Option<Hosting>,
}

/// The hosted-model calls of an `each` kernel (see `ir::Sched::Model`): each one's outputs are
/// new scratch columns of the agent type, from `next_col` on, which the kernel reads.
pub struct Hosting {
    pub next_col: u32,
    pub calls: Vec<HostedCall>,
}

#[derive(Clone, PartialEq)]
pub struct HostedCall {
    pub model: usize,
    pub inputs: Vec<u32>,
    pub outputs: Vec<u32>,
}

impl<'c, 'p> Lower<'c, 'p> {
    pub fn new(cx: &'c Ctx<'p>) -> Self {
        Lower { cx, b: Builder::new(), env: Env::default(), tensor_lanes: None, hosting: None }
    }

    fn fail<T>(&self, span: crate::source::Span, message: impl Into<String>) -> LResult<T> {
        Err(LowerError { span, message: message.into(), code: "E0700" })
    }

    fn program(&self, span: crate::source::Span) -> LResult<&'p Program> {
        match self.cx.program {
            Some(p) => Ok(p),
            None => self.fail(span, "depends on agents or parameters"),
        }
    }

    fn column(&self, slot: Slot, field: FieldId, lane: usize) -> u32 {
        let agent = self.cx.slots[slot as usize];
        self.cx.field_cols[agent][field] + lane as u32
    }

    fn field_lanes(&self, slot: Slot, field: FieldId) -> (usize, Scalar) {
        let p = self.cx.program.expect("fields exist only with a program");
        let f = &p.agents[self.cx.slots[slot as usize]].fields[field];
        (f.ty.lanes(), scalar_of(&f.ty))
    }

    fn base(&mut self, slot: u8, col: u32, ty: Scalar) -> V {
        if let Some(&v) = self.env.base.get(&(slot, col)) {
            return v;
        }
        let v = self.b.emit(ty, Op::Load { slot, col });
        self.env.base.insert((slot, col), v);
        v
    }

    pub fn read_col(&mut self, slot: u8, col: u32, ty: Scalar) -> V {
        match self.env.cols.get(&(slot, col)) {
            Some(s) => s.cur,
            None => self.base(slot, col, ty),
        }
    }

    fn read_field(&mut self, slot: Slot, field: FieldId) -> Vec<V> {
        let (lanes, ty) = self.field_lanes(slot, field);
        (0..lanes).map(|l| self.read_col(slot, self.column(slot, field, l), ty)).collect()
    }

    fn write_col(&mut self, slot: u8, col: u32, ty: Scalar, op: ast::AssignOp, value: V) {
        let cur = self.read_col(slot, col, ty);
        let prev = self.env.cols.get(&(slot, col)).map_or(Delta::Sum(None), |s| s.delta);
        let state = match op {
            ast::AssignOp::Add | ast::AssignOp::Sub => {
                let inc = if op == ast::AssignOp::Sub { self.b.un(ir::UnOp::Neg, value) } else { value };
                let cur = self.b.add(cur, inc);
                let delta = match prev {
                    Delta::Sum(None) => Delta::Sum(Some(inc)),
                    Delta::Sum(Some(d)) => Delta::Sum(Some(self.b.add(d, inc))),
                    Delta::Unknown => Delta::Unknown,
                };
                ColState { cur, delta }
            }
            ast::AssignOp::Set => ColState { cur: value, delta: Delta::Unknown },
            ast::AssignOp::Mul => ColState { cur: self.b.mul(cur, value), delta: Delta::Unknown },
            ast::AssignOp::Div => ColState { cur: self.b.bin(ir::BinOp::Div, cur, value), delta: Delta::Unknown },
        };
        if !self.env.written.contains(&(slot, col)) {
            self.env.written.push((slot, col));
        }
        self.env.cols.insert((slot, col), state);
    }

    /// The change of a written column since the kernel began: what pair kernels accumulate.
    pub fn delta(&mut self, slot: u8, col: u32, ty: Scalar) -> Option<V> {
        let s = *self.env.cols.get(&(slot, col))?;
        match s.delta {
            Delta::Sum(None) => None,
            Delta::Sum(Some(d)) => Some(d),
            Delta::Unknown => {
                let base = self.base(slot, col, ty);
                Some(self.b.sub(s.cur, base))
            }
        }
    }

    pub fn block(&mut self, blk: &HBlock) -> LResult<Option<Vec<V>>> {
        for s in &blk.stmts {
            self.stmt(s)?;
        }
        blk.tail.as_ref().map(|t| self.expr(t)).transpose()
    }

    pub fn stmt(&mut self, s: &HStmt) -> LResult<()> {
        match s {
            HStmt::Let { locals, value } => {
                let lanes = self.expr(value)?;
                let mut at = 0;
                for &l in locals {
                    let n = self.cx.locals[l].ty.lanes();
                    self.env.locals.insert(l, lanes[at..at + n].to_vec());
                    at += n;
                }
                Ok(())
            }
            HStmt::Assign { place, lane, op, value, span } => {
                self.assign(place, *lane, *op, value)?;
                if let Place::Field { slot, field } = place {
                    let (n, _) = self.field_lanes(*slot, *field);
                    for i in 0..n {
                        let col = self.column(*slot, *field, i);
                        self.env.spans.insert((*slot, col), *span);
                    }
                }
                Ok(())
            }
            HStmt::If { cond, then, els, .. } => {
                let c = self.expr(cond)?[0];
                self.branches(c, then, els)?;
                Ok(())
            }
            HStmt::Forces(span) => self.fail(*span, "`forces;` must stand at the top level of an integrator body"),
        }
    }

    fn assign(&mut self, place: &Place, lane: Option<usize>, op: ast::AssignOp, value: &HExpr) -> LResult<()> {
        let v = match self.tensor_lanes.take() {
            Some(n) => (0..n as u32).map(|j| self.b.emit(Scalar::F32, Op::Tensor(j))).collect(),
            None => self.expr(value)?,
        };
        match place {
            Place::Local(l) => {
                let cur = self.env.locals.get(l).cloned().unwrap_or_default();
                let lanes: Vec<usize> = match lane {
                    Some(i) => vec![i],
                    None => (0..cur.len()).collect(),
                };
                let mut new = cur.clone();
                for (k, &i) in lanes.iter().enumerate() {
                    let rhs = if v.len() == 1 { v[0] } else { v[k] };
                    new[i] = match op {
                        ast::AssignOp::Set => rhs,
                        ast::AssignOp::Add => self.b.add(cur[i], rhs),
                        ast::AssignOp::Sub => self.b.sub(cur[i], rhs),
                        ast::AssignOp::Mul => self.b.mul(cur[i], rhs),
                        ast::AssignOp::Div => self.b.bin(ir::BinOp::Div, cur[i], rhs),
                    };
                }
                self.env.locals.insert(*l, new);
            }
            Place::Field { slot, field } => {
                let (n, ty) = self.field_lanes(*slot, *field);
                let lanes: Vec<usize> = match lane {
                    Some(i) => vec![i],
                    None => (0..n).collect(),
                };
                for (k, &i) in lanes.iter().enumerate() {
                    let rhs = if v.len() == 1 { v[0] } else { v[k] };
                    let col = self.column(*slot, *field, i);
                    self.write_col(*slot, col, ty, op, rhs);
                }
            }
        }
        Ok(())
    }

    /// Lowers both branches of an `if` and merges what they changed with `select`.
    fn branches(&mut self, c: V, then: &HBlock, els: &HBlock) -> LResult<Option<Vec<V>>> {
        let before = self.env.clone();
        let tv = self.block(then)?;
        let after_then = std::mem::replace(&mut self.env, before.clone());
        let ev = self.block(els)?;
        let after_else = std::mem::replace(&mut self.env, before);
        // Loads made in either branch are valid everywhere: there is no control flow.
        self.env.base = after_then.base.clone();
        self.env.base.extend(after_else.base.iter().map(|(k, v)| (*k, *v)));
        self.env.spans = after_then.spans.clone();
        self.env.spans.extend(after_else.spans.iter().map(|(k, v)| (*k, *v)));
        let mut locals: Vec<LocalId> = after_then.locals.keys().chain(after_else.locals.keys()).copied().collect();
        locals.sort_unstable();
        locals.dedup();
        for l in locals {
            let (Some(t), Some(e)) = (after_then.locals.get(&l), after_else.locals.get(&l)) else { continue };
            let merged: Vec<V> =
                t.iter().zip(e).map(|(&a, &b)| if a == b { a } else { self.b.select(c, a, b) }).collect();
            self.env.locals.insert(l, merged);
        }
        let mut cols: Vec<(u8, u32)> = after_then.written.clone();
        for k in &after_else.written {
            if !cols.contains(k) {
                cols.push(*k);
            }
        }
        for key in cols {
            let ty = self.b.ty(after_then.cols.get(&key).or(after_else.cols.get(&key)).map(|s| s.cur).unwrap_or(0));
            let side = |env: &Env, me: &mut Self| -> ColState {
                env.cols
                    .get(&key)
                    .copied()
                    .unwrap_or_else(|| ColState { cur: me.read_col(key.0, key.1, ty), delta: Delta::Sum(None) })
            };
            let a = side(&after_then, self);
            let b = side(&after_else, self);
            let cur = if a.cur == b.cur { a.cur } else { self.b.select(c, a.cur, b.cur) };
            let delta = match (a.delta, b.delta) {
                (Delta::Sum(x), Delta::Sum(y)) => {
                    let zero = self.b.konst(0.0, ty);
                    let (x, y) = (x.unwrap_or(zero), y.unwrap_or(zero));
                    Delta::Sum(Some(if x == y { x } else { self.b.select(c, x, y) }))
                }
                _ => Delta::Unknown,
            };
            if !self.env.written.contains(&key) {
                self.env.written.push(key);
            }
            self.env.cols.insert(key, ColState { cur, delta });
        }
        match (tv, ev) {
            (Some(a), Some(b)) => {
                Ok(Some(a.iter().zip(&b).map(|(&x, &y)| if x == y { x } else { self.b.select(c, x, y) }).collect()))
            }
            _ => Ok(None),
        }
    }

    pub fn expr(&mut self, e: &HExpr) -> LResult<Vec<V>> {
        let ty = scalar_of(&e.ty);
        Ok(match &e.kind {
            HKind::Lit(x) => vec![self.b.konst(*x, ty)],
            HKind::Param(p) => self.param_lanes(*p, e.span)?,
            HKind::Local(l) => match self.env.locals.get(l) {
                Some(v) => v.clone(),
                None => return self.fail(e.span, "local used before it has a value"),
            },
            HKind::Field { slot, field } => {
                self.program(e.span)?;
                self.read_field(*slot, *field)
            }
            HKind::Unary(op, x) => {
                let xs = self.expr(x)?;
                let op = if *op == ast::UnOp::Neg { ir::UnOp::Neg } else { ir::UnOp::Not };
                xs.iter().map(|&v| self.b.un(op, v)).collect()
            }
            HKind::Binary(op, a, b) => self.binary(*op, a, b)?,
            HKind::Call(f, args) => self.call(*f, args, &e.ty)?,
            HKind::Cast(x) => {
                let xs = self.expr(x)?;
                xs.iter().map(|&v| self.b.emit(ty, Op::Cast(v))).collect()
            }
            HKind::Get(x, i) => {
                let xs = self.expr(x)?;
                let (start, n) = match &x.ty {
                    Ty::Tuple(ts) => (ts[..*i].iter().map(Ty::lanes).sum(), ts[*i].lanes()),
                    _ => (*i, 1),
                };
                xs[start..start + n].to_vec()
            }
            HKind::Tuple(xs) => {
                let mut out = Vec::new();
                for x in xs {
                    out.extend(self.expr(x)?);
                }
                out
            }
            HKind::If { cond, then, els } => {
                let c = self.expr(cond)?[0];
                let wrap = |x: &HExpr| match &x.kind {
                    HKind::Block(b) => (**b).clone(),
                    _ => HBlock { stmts: Vec::new(), tail: Some(x.clone()) },
                };
                match self.branches(c, &wrap(then), &wrap(els))? {
                    Some(v) => v,
                    None => return self.fail(e.span, "both branches must give a value"),
                }
            }
            HKind::Block(b) => match self.block(b)? {
                Some(v) => v,
                None => return self.fail(e.span, "this block has no value"),
            },
            HKind::Force { energy, wrt, position } => {
                let xs = self.read_field(*wrt, *position);
                let start = self.b.insts.len();
                let u = self.expr(energy)?[0];
                let grad = crate::passes::force::gradient(&mut self.b, start, u, &xs);
                grad.iter().map(|&g| self.b.un(ir::UnOp::Neg, g)).collect()
            }
            HKind::Rand(f, args) => self.rand(*f, args, &e.ty)?,
            HKind::SpawnIndex => vec![self.b.emit(Scalar::I32, Op::Index)],
            HKind::SpawnCount => vec![self.b.emit(Scalar::I32, Op::Count)],
            HKind::Quant { .. } => return self.fail(e.span, "a sum over agents may only appear in a `conserve` law"),
            HKind::Opaque("model", _) => {
                return self.fail(
                    e.span,
                    "this model cannot run: its ONNX file was not found when the program was checked (the path is relative to the source file)",
                )
            }
            HKind::Opaque(what, _) => return self.fail(e.span, format!("this {what} cannot run yet")),
            HKind::AgentRef(_) => return self.fail(e.span, "an agent is not a value"),
            HKind::ModelCall(m, args) => self.mlp(*m, args, e.span)?,
        })
    }

    fn binary(&mut self, op: ast::BinOp, a: &HExpr, b: &HExpr) -> LResult<Vec<V>> {
        use ast::BinOp as B;
        let x = self.expr(a)?;
        let y = self.expr(b)?;
        if op == B::MatMul {
            return Ok(self.matmul(&a.ty, &x, &y));
        }
        let irop = match op {
            B::Add => ir::BinOp::Add,
            B::Sub => ir::BinOp::Sub,
            B::Mul => ir::BinOp::Mul,
            B::Div => ir::BinOp::Div,
            B::Rem => ir::BinOp::Rem,
            B::Eq => ir::BinOp::Eq,
            B::Ne => ir::BinOp::Ne,
            B::Lt => ir::BinOp::Lt,
            B::Le => ir::BinOp::Le,
            B::Gt => ir::BinOp::Gt,
            B::Ge => ir::BinOp::Ge,
            B::And => ir::BinOp::And,
            B::Or => ir::BinOp::Or,
            B::MatMul => unreachable!("handled above"),
        };
        // Scalars broadcast over vector and matrix lanes.
        let n = x.len().max(y.len());
        Ok((0..n)
            .map(|i| {
                let l = if x.len() == 1 { x[0] } else { x[i] };
                let r = if y.len() == 1 { y[0] } else { y[i] };
                self.b.bin(irop, l, r)
            })
            .collect())
    }

    /// Matrices are column-major: lane `c * n + r` is row `r` of column `c`.
    fn matmul(&mut self, lt: &Ty, x: &[V], y: &[V]) -> Vec<V> {
        if let Ty::Tensor(_, dims) = lt {
            return self.tensor_product(dims, x, y);
        }
        let Ty::Mat(n) = lt else { return Vec::new() };
        let n = *n as usize;
        let cols = y.len() / n;
        let mut out = Vec::new();
        for j in 0..cols {
            for r in 0..n {
                let terms: Vec<V> = (0..n).map(|k| self.b.mul(x[k * n + r], y[j * n + k])).collect();
                out.push(self.b.sum(&terms));
            }
        }
        out
    }

    /// The lanes of a parameter, or E0216 for a tensor whose file was not found.
    fn param_lanes(&mut self, p: usize, span: crate::source::Span) -> LResult<Vec<V>> {
        let prog = self.program(span)?;
        let prm = &prog.params[p];
        if prm.default.is_none() {
            let file = prm.source.as_ref().map_or(String::new(), |f| f.display().to_string());
            return Err(LowerError {
                span,
                message: format!("tensor parameter `{}` has no values: {file} was not found", prm.name),
                code: "E0216",
            });
        }
        let (start, n, ty) = (self.cx.param_lanes[p], prm.ty.lanes() as u32, prm.ty.elem());
        Ok((0..n).map(|i| self.b.emit(ty, Op::Param(start + i))).collect())
    }

    /// An `mlp` model on its arguments (concatenated, in f32): `h = W @ h + b` per layer, the
    /// activation after every layer but the last.
    fn mlp(&mut self, model: usize, args: &[HExpr], span: crate::source::Span) -> LResult<Vec<V>> {
        let prog = self.program(span)?;
        if prog.models[model].hosted.is_some() {
            return self.hosted(model, args, span);
        }
        let Some(mlp) = prog.models[model].mlp.clone() else {
            return self.fail(span, "this model cannot run yet");
        };
        let mut h = Vec::new();
        for a in args {
            for v in self.expr(a)? {
                h.push(self.b.convert(v, Scalar::F32));
            }
        }
        let last = mlp.layers.len().saturating_sub(1);
        for (k, &(w, b)) in mlp.layers.iter().enumerate() {
            let dims = match &prog.params[w].ty {
                Ty::Tensor(_, d) => d.clone(),
                _ => return self.fail(span, "a layer's weight is not a matrix"),
            };
            let wl = self.param_lanes(w, span)?;
            let bl = self.param_lanes(b, span)?;
            let z = self.tensor_product(&dims, &wl, &h);
            h = z
                .iter()
                .zip(&bl)
                .map(|(&z, &b)| {
                    let b = self.b.convert(b, Scalar::F32);
                    self.b.add(z, b)
                })
                .collect();
            if k != last {
                h = h.iter().map(|&x| self.activation(mlp.act, x)).collect();
            }
        }
        Ok(h)
    }

    /// A hosted model's call: its value is read from the scratch columns the model's run before
    /// the kernel fills, over all the agents at once, from the fields given as arguments.
    fn hosted(&mut self, model: usize, args: &[HExpr], span: crate::source::Span) -> LResult<Vec<V>> {
        let prog = self.program(span)?;
        let (name, width) = (&prog.models[model].name, prog.models[model].hosted.as_ref().map_or(0, |h| h.outputs));
        if self.hosting.is_none() {
            return self.fail(
                span,
                format!("model `{name}` runs as it is, over all the agents of a type at once: call it from an `each` interaction"),
            );
        }
        let mut inputs = Vec::new();
        for a in args {
            let HKind::Field { slot: 0, field } = a.kind else {
                return self.fail(
                    a.span,
                    format!("model `{name}` runs as it is, before the interaction: its arguments must be the agent's own fields (`{name}(p.position, p.velocity)`); keep other values in a field first"),
                );
            };
            let (lanes, _) = self.field_lanes(0, field);
            for l in 0..lanes {
                let col = self.column(0, field, l);
                if self.env.cols.contains_key(&(0, col)) {
                    return self.fail(
                        a.span,
                        format!("model `{name}` reads the agent's fields as they were before the interaction: call it before assigning to them"),
                    );
                }
                inputs.push(col);
            }
        }
        let hosting = self.hosting.as_mut().expect("checked above");
        let outputs = match hosting.calls.iter().find(|c| c.model == model && c.inputs == inputs) {
            Some(c) => c.outputs.clone(),
            None => {
                let outputs: Vec<u32> = (hosting.next_col..hosting.next_col + width).collect();
                hosting.next_col += width;
                hosting.calls.push(HostedCall { model, inputs, outputs: outputs.clone() });
                outputs
            }
        };
        Ok(outputs.iter().map(|&c| self.base(0, c, Scalar::F32)).collect())
    }

    fn activation(&mut self, act: crate::sema::hir::Activation, x: V) -> V {
        use crate::sema::hir::Activation as A;
        let konst = |me: &mut Self, c: f64| me.b.konst(c, Scalar::F32);
        let sigmoid = |me: &mut Self, x: V| {
            let minus = me.b.un(ir::UnOp::Neg, x);
            let e = me.b.un(ir::UnOp::Exp, minus);
            let one = konst(me, 1.0);
            let d = me.b.add(one, e);
            me.b.bin(ir::BinOp::Div, one, d)
        };
        match act {
            A::Tanh => self.b.un(ir::UnOp::Tanh, x),
            A::Relu => {
                let zero = konst(self, 0.0);
                self.b.bin(ir::BinOp::Max, x, zero)
            }
            A::Sigmoid => sigmoid(self, x),
            A::Silu => {
                let s = sigmoid(self, x);
                self.b.mul(x, s)
            }
            A::Gelu => {
                let (half, c, k) =
                    (konst(self, 0.5), konst(self, (2.0 / std::f64::consts::PI).sqrt()), konst(self, 0.044715));
                let x2 = self.b.mul(x, x);
                let x3 = self.b.mul(x2, x);
                let kx3 = self.b.mul(k, x3);
                let inner = self.b.add(x, kx3);
                let arg = self.b.mul(c, inner);
                let t = self.b.un(ir::UnOp::Tanh, arg);
                let one = konst(self, 1.0);
                let onet = self.b.add(one, t);
                let hx = self.b.mul(half, x);
                self.b.mul(hx, onet)
            }
        }
    }

    /// `W @ y` for a row-major `[rows, inner]` tensor `W` (lanes `x`) and a vector or a row-major
    /// `[inner, cols]` tensor `y`, computed in `y`'s element type (narrower tensor elements are
    /// widened first, as every executor computes them).
    fn tensor_product(&mut self, dims: &[u32], x: &[V], y: &[V]) -> Vec<V> {
        let (rows, inner) = (dims[0] as usize, dims[1] as usize);
        let cols = y.len() / inner.max(1);
        let want = y.first().map_or(Scalar::F32, |&v| self.b.ty(v));
        let w: Vec<V> = x.iter().map(|&v| self.b.convert(v, want)).collect();
        let mut out = Vec::with_capacity(rows * cols);
        for i in 0..rows {
            for j in 0..cols {
                let terms: Vec<V> = (0..inner).map(|t| self.b.mul(w[i * inner + t], y[t * cols + j])).collect();
                out.push(self.b.sum(&terms));
            }
        }
        out
    }

    fn call(&mut self, f: Builtin, args: &[HExpr], ty: &Ty) -> LResult<Vec<V>> {
        let mut xs = Vec::new();
        for a in args {
            xs.push(self.expr(a)?);
        }
        let lanes = ty.lanes();
        let bc = |v: &Vec<V>, i: usize| if v.len() == 1 { v[0] } else { v[i] };
        let un =
            |op| move |me: &mut Self, xs: &Vec<Vec<V>>| -> Vec<V> { xs[0].iter().map(|&v| me.b.un(op, v)).collect() };
        Ok(match f {
            Builtin::Sqrt => un(ir::UnOp::Sqrt)(self, &xs),
            Builtin::Rsqrt => un(ir::UnOp::Rsqrt)(self, &xs),
            Builtin::Abs => un(ir::UnOp::Abs)(self, &xs),
            Builtin::Exp => un(ir::UnOp::Exp)(self, &xs),
            Builtin::Log => un(ir::UnOp::Log)(self, &xs),
            Builtin::Sin => un(ir::UnOp::Sin)(self, &xs),
            Builtin::Cos => un(ir::UnOp::Cos)(self, &xs),
            Builtin::Tanh => un(ir::UnOp::Tanh)(self, &xs),
            Builtin::Floor => un(ir::UnOp::Floor)(self, &xs),
            Builtin::Pow | Builtin::Min | Builtin::Max => {
                let op = match f {
                    Builtin::Pow => ir::BinOp::Pow,
                    Builtin::Min => ir::BinOp::Min,
                    _ => ir::BinOp::Max,
                };
                (0..lanes).map(|i| self.b.bin(op, bc(&xs[0], i), bc(&xs[1], i))).collect()
            }
            Builtin::Clamp => (0..lanes)
                .map(|i| {
                    let lo = self.b.bin(ir::BinOp::Max, bc(&xs[0], i), bc(&xs[1], i));
                    self.b.bin(ir::BinOp::Min, lo, bc(&xs[2], i))
                })
                .collect(),
            Builtin::Select => (0..lanes).map(|i| self.b.select(xs[0][0], bc(&xs[1], i), bc(&xs[2], i))).collect(),
            Builtin::Dot => vec![self.b.dot(&xs[0], &xs[1])],
            Builtin::Length2 => vec![self.b.dot(&xs[0], &xs[0])],
            Builtin::Length => {
                let d = self.b.dot(&xs[0], &xs[0]);
                vec![self.b.un(ir::UnOp::Sqrt, d)]
            }
            Builtin::Normalize => {
                let d = self.b.dot(&xs[0], &xs[0]);
                let r = self.b.un(ir::UnOp::Rsqrt, d);
                xs[0].iter().map(|&v| self.b.mul(v, r)).collect()
            }
            Builtin::Distance | Builtin::Distance2 => {
                let diff: Vec<V> = xs[0].iter().zip(&xs[1]).map(|(&a, &b)| self.b.sub(a, b)).collect();
                let d = self.b.dot(&diff, &diff);
                vec![if f == Builtin::Distance { self.b.un(ir::UnOp::Sqrt, d) } else { d }]
            }
            Builtin::Cross => {
                let (a, b) = (&xs[0], &xs[1]);
                let mut out = Vec::new();
                for (i, j) in [(1, 2), (2, 0), (0, 1)] {
                    let p = self.b.mul(a[i], b[j]);
                    let q = self.b.mul(a[j], b[i]);
                    out.push(self.b.sub(p, q));
                }
                out
            }
            Builtin::Reflect => {
                let d = self.b.dot(&xs[0], &xs[1]);
                let two = self.b.konst(2.0, Scalar::F32);
                let k = self.b.mul(two, d);
                xs[0]
                    .iter()
                    .zip(&xs[1])
                    .map(|(&v, &n)| {
                        let t = self.b.mul(k, n);
                        self.b.sub(v, t)
                    })
                    .collect()
            }
            Builtin::Transpose => {
                let n = (xs[0].len() as f64).sqrt() as usize;
                (0..n * n).map(|i| xs[0][(i % n) * n + i / n]).collect()
            }
            Builtin::Construct => {
                let flat: Vec<V> = xs.concat();
                if flat.len() == lanes {
                    flat
                } else if let Ty::Mat(n) = ty {
                    let n = *n as usize;
                    let zero = self.b.konst(0.0, Scalar::F32);
                    (0..n * n).map(|i| if i % n == i / n { flat[0] } else { zero }).collect()
                } else {
                    vec![flat[0]; lanes]
                }
            }
        })
    }

    fn rand(&mut self, f: RandFn, args: &[HExpr], ty: &Ty) -> LResult<Vec<V>> {
        let mut xs = Vec::new();
        for a in args {
            xs.push(self.expr(a)?);
        }
        let draw = |me: &mut Self, dist| {
            let stream = me.b.stream();
            me.b.emit(Scalar::F32, Op::Rand { dist, stream })
        };
        Ok(match f {
            RandFn::Uniform | RandFn::InBox => (0..ty.lanes())
                .map(|i| {
                    let (lo, hi) = (xs[0][i.min(xs[0].len() - 1)], xs[1][i.min(xs[1].len() - 1)]);
                    let u = draw(self, Dist::Uniform);
                    let w = self.b.sub(hi, lo);
                    let s = self.b.mul(w, u);
                    self.b.add(lo, s)
                })
                .collect(),
            RandFn::Normal => {
                let z = draw(self, Dist::Normal);
                let s = self.b.mul(xs[1][0], z);
                vec![self.b.add(xs[0][0], s)]
            }
            RandFn::InSphere => {
                // Direction from three normals (isotropic), radius r * u^(1/3) (uniform in volume).
                let n: Vec<V> = (0..3).map(|_| draw(self, Dist::Normal)).collect();
                let u = draw(self, Dist::Uniform);
                let d = self.b.dot(&n, &n);
                let inv = self.b.un(ir::UnOp::Rsqrt, d);
                let third = self.b.konst(1.0 / 3.0, Scalar::F32);
                let root = self.b.bin(ir::BinOp::Pow, u, third);
                let rad = self.b.mul(xs[0][0], root);
                let k = self.b.mul(rad, inv);
                n.iter().map(|&c| self.b.mul(c, k)).collect()
            }
        })
    }
}

/// Splits a value's lanes by the types of a tuple's elements.
pub fn split_lanes(ty: &Ty, lanes: &[V]) -> Vec<Vec<V>> {
    let mut out = Vec::new();
    let mut at = 0;
    for t in lane_types(ty) {
        let n = t.lanes();
        out.push(lanes[at..at + n].to_vec());
        at += n;
    }
    out
}
