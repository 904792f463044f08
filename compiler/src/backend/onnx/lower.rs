//! One kernel of the IR as an ONNX graph: every instruction a node over whole columns.
//!
//! - A map or integrator kernel works on columns `[N]` of its agents; constants and parameters
//!   are scalars that broadcast.
//! - A pair kernel works on a block of rows: values of its first agent are `[B, 1]`, of its
//!   second `[1, M]`, of both `[B, M]`. Where both agents are of one type, each unordered pair
//!   counts once: the pairs whose row index is below their column index. An accumulation is
//!   masked by that and by the kernel's guard, then summed over the columns (first agent) or the
//!   rows (second agent).
//! - A neighbour kernel gathers both agents' columns at the candidate pairs the executor found
//!   (`[P]`); its accumulations are per pair, masked by the guard, and the executor adds them up.
//!
//! Values compute in f32 (f32, f16 and bf16 columns, as the GPU kernels do), f64, i32 (i32 and
//! u32) or bool; integer division and remainder by zero give zero, as the interpreter's do.

use super::graph::{Attr, Dim, Elem, Graph, Val};
use aiic_runtime::cpu::abi::{compensated_columns, compensated_stores};
use aiic_runtime::ir::{Activation, BinOp, Kernel, Module, Op, Pattern, Scalar, TensorPlan, UnOp};
use aiic_runtime::onnx::pb;
use aiic_runtime::onnx::plan::{feed_name, sink_name, Feed, Form, OnnxKernel, Sink};
use std::collections::HashMap;

/// The element type a scalar type computes in.
pub fn elem(s: Scalar) -> Elem {
    match s {
        Scalar::F32 | Scalar::F16 | Scalar::BF16 => Elem::F32,
        Scalar::F64 => Elem::F64,
        Scalar::I32 | Scalar::U32 => Elem::I32,
        Scalar::Bool => Elem::Bool,
    }
}

/// The element type a column is stored in on the host (as the CPU executor stores it).
pub fn storage(s: Scalar) -> Elem {
    match s {
        Scalar::F64 => Elem::F64,
        Scalar::I32 | Scalar::U32 | Scalar::Bool => Elem::I32,
        _ => Elem::F32,
    }
}

/// How a value spreads over the kernel's agents, so that stores and accumulations can be
/// broadcast to whole columns.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Extent {
    /// The same for every agent or pair.
    Scalar,
    /// Varies with the agents (`[N]`, `[B, 1]`, `[1, M]`, `[B, M]` or `[P]`).
    Varies,
}

struct Lower<'a> {
    m: &'a Module,
    k: &'a Kernel,
    form: Form,
    g: Graph,
    feeds: Vec<Feed>,
    sinks: Vec<Sink>,
    /// Graph values of the kernel's instructions.
    vals: HashMap<u32, (Val, Extent)>,
    /// Inputs made so far, by feed.
    inputs: HashMap<Feed, Val>,
    /// The model's output `[*, outputs]`, for `Tensor` lanes.
    tensor: Option<Val>,
    /// The mask of pairs a pair or neighbour kernel counts (`None`: every one), and how it
    /// spreads. A pair kernel's is always a whole block, `[B, M]`.
    mask: Option<(Val, Extent)>,
}

/// The ONNX graph of kernel `kid` of `m` at `opset`, and how it is wired; an error where the
/// kernel has an instruction no graph expresses (a spawn's random numbers, a law's sums).
pub fn lower(m: &Module, kid: usize, opset: i64) -> Result<(OnnxKernel, pb::ModelProto), String> {
    let k = &m.kernels[kid];
    let form = match k.pattern {
        Pattern::Map { agent } | Pattern::Integrate { agent, .. } => Form::Map { agent },
        Pattern::AllPairs { a, b } => Form::Pairs { a, b },
        Pattern::Neighbors { a, b, bound } => Form::Neighbors { a, b, bound },
        _ => return Err(format!("kernel `{}` is no step kernel", k.name)),
    };
    let mut l = Lower {
        m,
        k,
        form,
        g: Graph::default(),
        feeds: Vec::new(),
        sinks: Vec::new(),
        vals: HashMap::new(),
        inputs: HashMap::new(),
        tensor: None,
        mask: None,
    };
    l.pair_mask();
    for (i, inst) in k.insts.iter().enumerate() {
        l.inst(i as u32, &inst.op, inst.ty)?;
        if k.guard == Some(i as u32) {
            l.guard(i as u32);
        }
    }
    let model = l.g.finish(&k.name, opset);
    Ok((OnnxKernel { kernel: kid, name: k.name.clone(), form: l.form, feeds: l.feeds, sinks: l.sinks }, model))
}

impl Lower<'_> {
    /// The agent type of slot `slot`.
    fn agent(&self, slot: u8) -> usize {
        match self.form {
            Form::Map { agent } => agent,
            Form::Pairs { a, b } | Form::Neighbors { a, b, .. } => {
                if slot == 0 {
                    a
                } else {
                    b
                }
            }
        }
    }

    /// The graph input of `feed`, made on first use.
    fn feed(&mut self, feed: Feed) -> Val {
        if let Some(v) = self.inputs.get(&feed) {
            return v.clone();
        }
        let name = feed_name(&feed);
        let v = match feed {
            Feed::Col { slot, col } => {
                let e = storage(self.m.column_types[self.agent(slot)][col as usize]);
                let dim = match (&self.form, slot) {
                    (Form::Map { .. }, _) => Dim::Named("N"),
                    (Form::Pairs { .. }, 0) => Dim::Named("B"),
                    (Form::Pairs { .. }, _) => Dim::Named("M"),
                    (Form::Neighbors { .. }, 0) => Dim::Named("NA"),
                    (Form::Neighbors { .. }, _) => Dim::Named("NB"),
                };
                self.g.input(&name, e, &[dim])
            }
            Feed::Comp { .. } => self.g.input(&name, Elem::F32, &[Dim::Named("N")]),
            Feed::ParamsF32 => self.g.input(&name, Elem::F32, &[Dim::Named("L")]),
            Feed::ParamsF64 => self.g.input(&name, Elem::F64, &[Dim::Named("L")]),
            Feed::Rows => self.g.input(&name, Elem::I64, &[Dim::Named("B")]),
            Feed::Cols => self.g.input(&name, Elem::I64, &[Dim::Named("M")]),
            Feed::First | Feed::Second => self.g.input(&name, Elem::I64, &[Dim::Named("P")]),
        };
        self.feeds.push(feed);
        self.inputs.insert(feed, v.clone());
        v
    }

    /// Column `col` of slot `slot` as the kernel sees it: `[N]`, `[B, 1]`, `[1, M]` or `[P]`.
    fn column(&mut self, slot: u8, col: u32) -> Val {
        let v = self.feed(Feed::Col { slot, col });
        match self.form {
            Form::Map { .. } => v,
            Form::Pairs { .. } => {
                let axis = self.g.ints(&[if slot == 0 { 1 } else { 0 }]);
                self.g.op("Unsqueeze", &[&v, &axis])
            }
            Form::Neighbors { .. } => {
                let at = self.feed(if slot == 0 { Feed::First } else { Feed::Second });
                self.g.node("Gather", &[&v, &at], vec![("axis", Attr::Int(0))], v.elem)
            }
        }
    }

    /// The mask of a pair kernel's block, `[B, M]`: where both agents are of one type, each
    /// unordered pair counts once (its row index below its column index); else every pair.
    fn pair_mask(&mut self) {
        if let Form::Pairs { a, b } = self.form {
            let (rows, cols) = (self.feed(Feed::Rows), self.feed(Feed::Cols));
            let (ax1, ax0) = (self.g.ints(&[1]), self.g.ints(&[0]));
            let (mut r, mut c) = (self.g.op("Unsqueeze", &[&rows, &ax1]), self.g.op("Unsqueeze", &[&cols, &ax0]));
            if a != b {
                // 0 < 1 everywhere: the whole block.
                let (zero, one) = (self.g.scalar(Elem::I64, 0.0), self.g.scalar(Elem::I64, 1.0));
                r = self.g.op("Mul", &[&r, &zero]);
                let c1 = self.g.op("Mul", &[&c, &zero]);
                c = self.g.op("Add", &[&c1, &one]);
            }
            self.mask = Some((self.g.node("Less", &[&r, &c], Vec::new(), Elem::Bool), Extent::Varies));
        }
    }

    /// Narrows the mask to the pairs where the kernel's guard, value `g`, holds.
    fn guard(&mut self, g: u32) {
        let (v, x) = self.val(g);
        let t = self.truth(&v);
        self.mask = Some(match self.mask.take() {
            Some((m, xm)) => {
                let both = if xm == Extent::Varies || x == Extent::Varies { Extent::Varies } else { Extent::Scalar };
                (self.g.op("And", &[&m, &t]), both)
            }
            None => (t, x),
        });
    }

    fn val(&self, v: u32) -> (Val, Extent) {
        self.vals[&v].clone()
    }

    /// `v` as a truth value: nonzero is true.
    fn truth(&mut self, v: &Val) -> Val {
        if v.elem == Elem::Bool {
            return v.clone();
        }
        let zero = self.g.scalar(v.elem, 0.0);
        let eq = self.g.node("Equal", &[v, &zero], Vec::new(), Elem::Bool);
        self.g.op("Not", &[&eq])
    }

    /// `v` as element type `e`, truth values as truth values.
    fn to(&mut self, v: &Val, e: Elem) -> Val {
        if e == Elem::Bool {
            self.truth(v)
        } else {
            self.g.cast(v, e)
        }
    }

    fn inst(&mut self, i: u32, op: &Op, ty: Scalar) -> Result<(), String> {
        let e = elem(ty);
        let combine = |xs: &[Extent]| if xs.contains(&Extent::Varies) { Extent::Varies } else { Extent::Scalar };
        let out: (Val, Extent) = match *op {
            Op::Const(c) => (self.g.scalar(e, c), Extent::Scalar),
            Op::Param(lane) => {
                let (feed, pe) =
                    if e == Elem::F64 { (Feed::ParamsF64, Elem::F64) } else { (Feed::ParamsF32, Elem::F32) };
                let params = self.feed(feed);
                let at = self.g.scalar(Elem::I64, lane as f64);
                let p = self.g.node("Gather", &[&params, &at], vec![("axis", Attr::Int(0))], pe);
                (self.to(&p, e), Extent::Scalar)
            }
            Op::Load { slot, col } => {
                let c = self.column(slot, col);
                (self.to(&c, e), Extent::Varies)
            }
            Op::Un(u, a) => {
                let (a, x) = self.val(a);
                (self.unary(u, &a, e), x)
            }
            Op::Bin(b, p, q) => {
                let ((p, xp), (q, xq)) = (self.val(p), self.val(q));
                (self.binary(b, &p, &q, e), combine(&[xp, xq]))
            }
            Op::Select(c, a, b) => {
                let ((c, xc), (a, xa), (b, xb)) = (self.val(c), self.val(a), self.val(b));
                let c = self.truth(&c);
                let (a, b) = (self.to(&a, e), self.to(&b, e));
                (self.g.node("Where", &[&c, &a, &b], Vec::new(), e), combine(&[xc, xa, xb]))
            }
            Op::Cast(a) => {
                let (a, x) = self.val(a);
                (self.to(&a, e), x)
            }
            Op::Tensor(lane) => {
                let y = match &self.tensor {
                    Some(y) => y.clone(),
                    None => {
                        let plan = self.k.tensor.clone().ok_or("a tensor lane without a plan")?;
                        let y = self.model(&plan)?;
                        self.tensor = Some(y.clone());
                        y
                    }
                };
                let at = self.g.scalar(Elem::I64, lane as f64);
                let v = self.g.node("Gather", &[&y, &at], vec![("axis", Attr::Int(0))], Elem::F32);
                (self.to(&v, e), Extent::Varies)
            }
            Op::Store { slot, col, value } => {
                self.store(slot, col, value)?;
                return Ok(());
            }
            Op::Accum { slot, col, value } => {
                self.accum(slot, col, value)?;
                return Ok(());
            }
            Op::Check { cond, msg } => {
                self.check(cond, msg);
                return Ok(());
            }
            Op::Index | Op::Count | Op::Rand { .. } | Op::Input(_) | Op::Reduce { .. } => {
                return Err(format!("kernel `{}` has an instruction only spawns and laws have", self.k.name))
            }
        };
        self.vals.insert(i, out);
        Ok(())
    }

    fn unary(&mut self, u: UnOp, a: &Val, e: Elem) -> Val {
        match u {
            UnOp::Not => {
                let t = self.truth(a);
                let n = self.g.op("Not", &[&t]);
                return self.to(&n, e);
            }
            UnOp::Neg => {
                let a = self.to(a, e);
                return self.g.op("Neg", &[&a]);
            }
            // tract's Abs takes no f64: the same as a selection.
            UnOp::Abs if e == Elem::F64 => {
                let a = self.to(a, e);
                let zero = self.g.scalar(e, 0.0);
                let negative = self.g.node("Less", &[&a, &zero], Vec::new(), Elem::Bool);
                let minus = self.g.op("Neg", &[&a]);
                return self.g.node("Where", &[&negative, &minus, &a], Vec::new(), e);
            }
            UnOp::Abs => {
                let a = self.to(a, e);
                return self.g.op("Abs", &[&a]);
            }
            UnOp::Floor if e == Elem::I32 => return self.to(a, e),
            _ => {}
        }
        // Integers compute these in f64 and truncate, as the interpreter does.
        let fe = if e.is_float() { e } else { Elem::F64 };
        let x = self.to(a, fe);
        let y = match u {
            UnOp::Rsqrt => {
                let s = self.g.op("Sqrt", &[&x]);
                self.g.op("Reciprocal", &[&s])
            }
            _ => {
                let name = match u {
                    UnOp::Sqrt => "Sqrt",
                    UnOp::Exp => "Exp",
                    UnOp::Log => "Log",
                    UnOp::Sin => "Sin",
                    UnOp::Cos => "Cos",
                    UnOp::Tanh => "Tanh",
                    _ => "Floor",
                };
                self.g.op(name, &[&x])
            }
        };
        self.to(&y, e)
    }

    /// The element type both operands of a comparison meet in.
    fn common(p: Elem, q: Elem) -> Elem {
        if p == Elem::F64 || q == Elem::F64 {
            Elem::F64
        } else if p.is_float() || q.is_float() {
            Elem::F32
        } else if p == Elem::Bool && q == Elem::Bool {
            Elem::Bool
        } else {
            Elem::I32
        }
    }

    fn binary(&mut self, b: BinOp, p: &Val, q: &Val, e: Elem) -> Val {
        if b.is_comparison() {
            let mut c = Self::common(p.elem, q.elem);
            // Only equality takes truth values.
            if c == Elem::Bool && !matches!(b, BinOp::Eq | BinOp::Ne) {
                c = Elem::I32;
            }
            let (p, q) = (self.to(p, c), self.to(q, c));
            let name = match b {
                BinOp::Eq | BinOp::Ne => "Equal",
                BinOp::Lt => "Less",
                BinOp::Le => "LessOrEqual",
                BinOp::Gt => "Greater",
                _ => "GreaterOrEqual",
            };
            let r = self.g.node(name, &[&p, &q], Vec::new(), Elem::Bool);
            let r = if b == BinOp::Ne { self.g.op("Not", &[&r]) } else { r };
            return self.to(&r, e);
        }
        if matches!(b, BinOp::And | BinOp::Or) {
            let (p, q) = (self.truth(p), self.truth(q));
            let r = self.g.op(if b == BinOp::And { "And" } else { "Or" }, &[&p, &q]);
            return self.to(&r, e);
        }
        // Arithmetic on booleans computes in i32.
        let ce = if e == Elem::Bool { Elem::I32 } else { e };
        let (p, q) = (self.g.cast(p, ce), self.g.cast(q, ce));
        let r = match b {
            BinOp::Add => self.g.op("Add", &[&p, &q]),
            BinOp::Sub => self.g.op("Sub", &[&p, &q]),
            BinOp::Mul => self.g.op("Mul", &[&p, &q]),
            BinOp::Min => self.g.op("Min", &[&p, &q]),
            BinOp::Max => self.g.op("Max", &[&p, &q]),
            BinOp::Div if ce.is_float() => self.g.op("Div", &[&p, &q]),
            BinOp::Rem if ce.is_float() => self.g.node("Mod", &[&p, &q], vec![("fmod", Attr::Int(1))], ce),
            BinOp::Div | BinOp::Rem => {
                // By zero: zero.
                let (zero, one) = (self.g.scalar(ce, 0.0), self.g.scalar(ce, 1.0));
                let by_zero = self.g.node("Equal", &[&q, &zero], Vec::new(), Elem::Bool);
                let safe = self.g.node("Where", &[&by_zero, &one, &q], Vec::new(), ce);
                let r = if b == BinOp::Div {
                    self.g.op("Div", &[&p, &safe])
                } else {
                    self.g.node("Mod", &[&p, &safe], vec![("fmod", Attr::Int(1))], ce)
                };
                self.g.node("Where", &[&by_zero, &zero, &r], Vec::new(), ce)
            }
            _ => {
                // Pow: integers in f64, truncated.
                let fe = if ce.is_float() { ce } else { Elem::F64 };
                let (p, q) = (self.g.cast(&p, fe), self.g.cast(&q, fe));
                let r = self.g.op("Pow", &[&p, &q]);
                self.g.cast(&r, ce)
            }
        };
        self.to(&r, e)
    }

    /// The value `v` spread to a whole column of the map kernel's agents, where it is the same
    /// for all of them.
    fn whole(&mut self, v: &Val, x: Extent, like: &Val) -> Val {
        if x == Extent::Varies {
            return v.clone();
        }
        let shape = self.g.node("Shape", &[like], Vec::new(), Elem::I64);
        self.g.op("Expand", &[v, &shape])
    }

    fn store(&mut self, slot: u8, col: u32, value: u32) -> Result<(), String> {
        let Form::Map { agent } = self.form else {
            return Err(format!("kernel `{}` stores from a pair", self.k.name));
        };
        let e = storage(self.m.column_types[agent][col as usize]);
        let old = self.feed(Feed::Col { slot, col });
        let kahan = compensated_stores(self.m, self.k).into_iter().find(|s| s.0 == col);
        let compensated = compensated_columns(self.m).contains(&(agent, col));
        let (stored, comp) = match kahan {
            // Kahan's update of `x + inc`: y = inc − c, t = x + y, c' = (t − x) − y.
            Some((_, x, inc)) => {
                let ((x, _), (inc, _)) = (self.val(x), self.val(inc));
                let c = self.feed(Feed::Comp { col });
                let (x, inc) = (self.g.cast(&x, Elem::F32), self.g.cast(&inc, Elem::F32));
                let y = self.g.op("Sub", &[&inc, &c]);
                let t = self.g.op("Add", &[&x, &y]);
                let d = self.g.op("Sub", &[&t, &x]);
                (t, Some(self.g.op("Sub", &[&d, &y])))
            }
            None => {
                let (v, x) = self.val(value);
                let v = self.to(&v, e);
                let v = self.whole(&v, x, &old);
                // Any other store to a compensated column starts it afresh.
                let comp = compensated.then(|| {
                    let shape = self.g.node("Shape", &[&old], Vec::new(), Elem::I64);
                    self.g.node("ConstantOfShape", &[&shape], Vec::new(), Elem::F32)
                });
                (v, comp)
            }
        };
        let sink = Sink::Store { col };
        self.g.output(&stored, &sink_name(&sink), &[Dim::Named("N")]);
        self.sinks.push(sink);
        if let Some(c) = comp {
            let sink = Sink::Comp { col };
            self.g.output(&c, &sink_name(&sink), &[Dim::Named("N")]);
            self.sinks.push(sink);
        }
        Ok(())
    }

    fn accum(&mut self, slot: u8, col: u32, value: u32) -> Result<(), String> {
        let e = storage(self.m.column_types[self.agent(slot)][col as usize]);
        let (v, x) = self.val(value);
        let v = self.to(&v, e);
        let zero = self.g.scalar(e, 0.0);
        let sink = Sink::Accum { slot, col };
        match self.form {
            Form::Map { .. } => return Err(format!("kernel `{}` accumulates from one agent", self.k.name)),
            Form::Pairs { .. } => {
                // The whole block [B, M] (the mask is one), masked, then summed over the other
                // agent.
                let (mask, _) = self.mask.clone().ok_or("a pair kernel without its block")?;
                let full = self.g.node("Where", &[&mask, &v, &zero], Vec::new(), e);
                let axis = self.g.ints(&[if slot == 0 { 1 } else { 0 }]);
                let sum = self.g.node("ReduceSum", &[&full, &axis], vec![("keepdims", Attr::Int(0))], e);
                let dim = if slot == 0 { "B" } else { "M" };
                self.g.output(&sum, &sink_name(&sink), &[Dim::Named(dim)]);
            }
            Form::Neighbors { .. } => {
                let (per_pair, x) = match self.mask.clone() {
                    Some((mask, xm)) => {
                        let both =
                            if xm == Extent::Varies || x == Extent::Varies { Extent::Varies } else { Extent::Scalar };
                        (self.g.node("Where", &[&mask, &v, &zero], Vec::new(), e), both)
                    }
                    None => (v, x),
                };
                let first = self.feed(Feed::First);
                let per_pair = self.whole(&per_pair, x, &first);
                self.g.output(&per_pair, &sink_name(&sink), &[Dim::Named("P")]);
            }
        }
        self.sinks.push(sink);
        Ok(())
    }

    fn check(&mut self, cond: u32, msg: u32) {
        let (c, _) = self.val(cond);
        let c = self.truth(&c);
        let mut failed = self.g.op("Not", &[&c]);
        if let Some((mask, _)) = self.mask.clone() {
            failed = self.g.op("And", &[&failed, &mask]);
        }
        let failed = self.g.cast(&failed, Elem::I32);
        let any = self.g.node("ReduceMax", &[&failed], vec![("keepdims", Attr::Int(0))], Elem::I32);
        let sink = Sink::Check { msg };
        self.g.output(&any, &sink_name(&sink), &[]);
        self.sinks.push(sink);
    }

    /// The model of a tensor plan over the map kernel's agents: `[outputs, N]` in f32. The
    /// features run down the rows, the agents along them: the input columns stacked end to end
    /// are already `[inputs, N]`, each layer is the weights as stored times them plus the bias,
    /// and each output lane is a row. (Agents down the rows would need a copy to interleave the
    /// columns, which costs more than the model's products at these widths.)
    fn model(&mut self, plan: &TensorPlan) -> Result<Val, String> {
        let cols: Vec<Val> = plan
            .inputs
            .iter()
            .map(|&c| {
                let v = self.feed(Feed::Col { slot: 0, col: c });
                self.g.cast(&v, Elem::F32)
            })
            .collect();
        let refs: Vec<&Val> = cols.iter().collect();
        let shape = self.g.ints(&[plan.inputs.len() as i64, -1]);
        self.g.region = Some(aiic_runtime::onnx::compile::MODEL_REGION);
        let stacked = self.g.node("Concat", &refs, vec![("axis", Attr::Int(0))], Elem::F32);
        let mut h = self.g.op("Reshape", &[&stacked, &shape]);
        let last = plan.layers.len() - 1;
        for (li, l) in plan.layers.iter().enumerate() {
            let (rows, cols) = (l.rows as usize, l.cols as usize);
            let w = self.m.tensor_lanes(l.weight, rows * cols).ok_or("a layer's weights are missing")?;
            let w = self.g.floats(&[rows as i64, cols as i64], w.iter().map(|&x| x as f32).collect());
            let bias = match l.bias {
                Some(b) => self.m.tensor_lanes(b, rows).ok_or("a layer's biases are missing")?.to_vec(),
                None => vec![0.0; rows],
            };
            let bias = self.g.floats(&[rows as i64, 1], bias.iter().map(|&x| x as f32).collect());
            // MatMul then Add rather than Gemm: tract types an f16 Gemm's output f32, and ONNX
            // Runtime fuses the pair into one Gemm anyway.
            h = self.g.op("MatMul", &[&w, &h]);
            h = self.g.op("Add", &[&h, &bias]);
            if li != last {
                h = self.activation(plan.act, &h);
            }
        }
        self.g.region = None;
        Ok(h)
    }

    fn activation(&mut self, act: Activation, x: &Val) -> Val {
        let sigmoid = |g: &mut Graph, x: &Val| g.op("Sigmoid", &[x]);
        match act {
            Activation::Identity => x.clone(),
            Activation::Tanh => self.g.op("Tanh", &[x]),
            Activation::Relu => self.g.op("Relu", &[x]),
            Activation::Sigmoid => sigmoid(&mut self.g, x),
            Activation::Silu => {
                let s = sigmoid(&mut self.g, x);
                self.g.op("Mul", &[x, &s])
            }
            Activation::Gelu => {
                // 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))), the interpreter's approximation.
                let c = self.g.scalar(Elem::F32, (2.0 / std::f64::consts::PI).sqrt());
                let k = self.g.scalar(Elem::F32, 0.044715);
                let (half, one) = (self.g.scalar(Elem::F32, 0.5), self.g.scalar(Elem::F32, 1.0));
                let x2 = self.g.op("Mul", &[x, x]);
                let x3 = self.g.op("Mul", &[&x2, x]);
                let t = self.g.op("Mul", &[&k, &x3]);
                let t = self.g.op("Add", &[x, &t]);
                let t = self.g.op("Mul", &[&c, &t]);
                let t = self.g.op("Tanh", &[&t]);
                let t = self.g.op("Add", &[&one, &t]);
                let hx = self.g.op("Mul", &[&half, x]);
                self.g.op("Mul", &[&hx, &t])
            }
        }
    }
}
