//! Kernel IR instructions as device-code expressions.

use super::ast::{self, bin, cast, sel, Bo, E};
use aiic_runtime::gpu::device_scalar;
use aiic_runtime::ir::{BinOp, Kernel, Op, Scalar, UnOp, V};

/// The type an instruction's value has in registers.
pub fn reg(s: Scalar) -> Scalar {
    if s == Scalar::Bool {
        Scalar::Bool
    } else {
        device_scalar(s)
    }
}

/// The instructions `roots` depend on, themselves included.
pub fn needed(k: &Kernel, roots: &[V]) -> Vec<bool> {
    let mut need = vec![false; k.insts.len()];
    let mut stack: Vec<V> = roots.to_vec();
    while let Some(v) = stack.pop() {
        if std::mem::replace(&mut need[v as usize], true) {
            continue;
        }
        stack.extend(k.insts[v as usize].op.args());
    }
    need
}

/// Whether each instruction depends on a load from `slot`.
pub fn depends_on(k: &Kernel, slot: u8) -> Vec<bool> {
    let mut dep = vec![false; k.insts.len()];
    for (v, inst) in k.insts.iter().enumerate() {
        dep[v] = match inst.op {
            Op::Load { slot: s, .. } => s == slot,
            ref op => op.args().iter().any(|a| dep[*a as usize]),
        };
    }
    dep
}

/// Where an instance of a kernel body reads its values.
pub struct Names<'a> {
    /// The local holding instruction `v`'s value.
    pub value: &'a dyn Fn(V) -> E,
    /// Column `col` of slot `slot`, in the column's device type.
    pub load: &'a dyn Fn(u8, u32) -> E,
    /// Parameter `p` in a device type (`F32`, `I32` or `F64`).
    pub param: &'a dyn Fn(u32, Scalar) -> E,
}

/// The value of instruction `v` (not an effect).
pub fn expr(k: &Kernel, col_ty: &dyn Fn(u8, u32) -> Scalar, v: V, n: &Names) -> E {
    let inst = &k.insts[v as usize];
    let ty = reg(inst.ty);
    let val = |a: V| (n.value)(a);
    let arg_ty = |a: V| reg(k.insts[a as usize].ty);
    match inst.op {
        Op::Const(c) => constant(ty, c),
        Op::Param(p) => match ty {
            Scalar::Bool => bin(Bo::Ne, (n.param)(p, Scalar::F32), E::F(0.0, Scalar::F32)),
            Scalar::F64 => (n.param)(p, Scalar::F64),
            Scalar::I32 => (n.param)(p, Scalar::I32),
            _ => (n.param)(p, Scalar::F32),
        },
        Op::Load { slot, col } => {
            let x = (n.load)(slot, col);
            let cs = device_scalar(col_ty(slot, col));
            if ty == Scalar::Bool {
                bin(Bo::Ne, x, E::I(0))
            } else {
                convert(cs, ty, x)
            }
        }
        Op::Un(op, a) => match op {
            UnOp::Floor if !ty.is_float() => val(a),
            op => E::Un(op, ty, Box::new(val(a))),
        },
        Op::Bin(op, a, b) => {
            let (x, y) = (val(a), val(b));
            let float = arg_ty(a).is_float();
            let o = match op {
                BinOp::Add => Bo::Add,
                BinOp::Sub => Bo::Sub,
                BinOp::Mul => Bo::Mul,
                BinOp::Div if float => Bo::Div,
                BinOp::Rem if float => Bo::FMod,
                BinOp::Div | BinOp::Rem => {
                    // Integer division by zero gives zero, as on every other backend.
                    let zero = bin(Bo::Eq, y.clone(), E::I(0));
                    let safe = sel(zero.clone(), E::I(1), y);
                    let o = if op == BinOp::Div { Bo::Div } else { Bo::Rem };
                    return sel(zero, E::I(0), bin(o, x, safe));
                }
                BinOp::Pow => Bo::Pow,
                BinOp::Min => Bo::Min,
                BinOp::Max => Bo::Max,
                BinOp::Eq => Bo::Eq,
                BinOp::Ne => Bo::Ne,
                BinOp::Lt => Bo::Lt,
                BinOp::Le => Bo::Le,
                BinOp::Gt => Bo::Gt,
                BinOp::Ge => Bo::Ge,
                BinOp::And => Bo::And,
                BinOp::Or => Bo::Or,
            };
            bin(o, x, y)
        }
        Op::Select(c, a, b) => sel(val(c), val(a), val(b)),
        Op::Cast(a) => convert(arg_ty(a), ty, val(a)),
        // Effects and host-only instructions never reach here (see `supported`).
        _ => E::B(false),
    }
}

/// Whether an instruction can be evaluated in a GPU kernel.
pub fn supported(op: &Op) -> bool {
    !matches!(op, Op::Index | Op::Count | Op::Rand { .. } | Op::Input(_) | Op::Tensor(_))
}

pub fn constant(ty: Scalar, c: f64) -> E {
    match ty {
        Scalar::Bool => E::B(c != 0.0),
        Scalar::I32 => E::I(c as i64),
        Scalar::U32 => E::U(c as u64),
        s => E::F(c, s),
    }
}

/// `x` of type `from` as type `to` (register types).
pub fn convert(from: Scalar, to: Scalar, x: E) -> E {
    if from == to {
        return x;
    }
    match (from, to) {
        (Scalar::Bool, t) => sel(x, constant(t, 1.0), constant(t, 0.0)),
        (f, Scalar::Bool) => bin(Bo::Ne, x, constant(f, 0.0)),
        (_, t) => cast(t, x),
    }
}

/// `a * b * …`, left to right.
pub fn product(parts: Vec<E>) -> E {
    let mut it = parts.into_iter();
    let first = it.next().unwrap_or(E::F(1.0, Scalar::F32));
    it.fold(first, ast::mul)
}
