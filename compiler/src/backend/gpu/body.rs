//! Kernel IR instructions as statements of a C-like GPU language.

use super::dialect::Dialect;
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
    pub value: &'a dyn Fn(V) -> String,
    /// The expression reading column `col` of slot `slot` (in the column's device type).
    pub load: &'a dyn Fn(u8, u32) -> String,
    /// The expression reading parameter `p` in a device type (`F32`, `I32` or `F64`).
    pub param: &'a dyn Fn(u32, Scalar) -> String,
}

/// The value of instruction `v` (not an effect), as an expression.
pub fn expr(d: &dyn Dialect, k: &Kernel, col_ty: &dyn Fn(u8, u32) -> Scalar, v: V, n: &Names) -> String {
    let inst = &k.insts[v as usize];
    let ty = reg(inst.ty);
    let val = |a: V| (n.value)(a);
    let arg_ty = |a: V| reg(k.insts[a as usize].ty);
    match inst.op {
        Op::Const(c) => constant(d, ty, c),
        Op::Param(p) => match ty {
            Scalar::Bool => format!("({} != {})", (n.param)(p, Scalar::F32), d.float(0.0, Scalar::F32)),
            Scalar::F64 => (n.param)(p, Scalar::F64),
            Scalar::I32 => (n.param)(p, Scalar::I32),
            _ => (n.param)(p, Scalar::F32),
        },
        Op::Load { slot, col } => {
            let x = (n.load)(slot, col);
            let cs = device_scalar(col_ty(slot, col));
            if ty == Scalar::Bool {
                format!("({x} != {})", d.int(0))
            } else if cs != ty {
                convert(d, cs, ty, &x)
            } else {
                x
            }
        }
        Op::Un(op, a) => {
            let x = val(a);
            match op {
                UnOp::Floor if !ty.is_float() => x,
                op => d.unary(op, ty, &x),
            }
        }
        Op::Bin(op, a, b) => {
            let (x, y) = (val(a), val(b));
            let float = arg_ty(a).is_float();
            match op {
                BinOp::Add => format!("({x} + {y})"),
                BinOp::Sub => format!("({x} - {y})"),
                BinOp::Mul => format!("({x} * {y})"),
                BinOp::Div if float => format!("({x} / {y})"),
                BinOp::Rem if float => d.fmod(&x, &y),
                BinOp::Div | BinOp::Rem => {
                    // Integer division by zero gives zero, as on every other backend.
                    let z = d.int(0);
                    let safe = d.select(&format!("({y} == {z})"), &d.int(1), &y);
                    let sym = if op == BinOp::Div { "/" } else { "%" };
                    d.select(&format!("({y} == {z})"), &z, &format!("({x} {sym} {safe})"))
                }
                BinOp::Pow => d.pow(&x, &y),
                BinOp::Min => format!("min({x}, {y})"),
                BinOp::Max => format!("max({x}, {y})"),
                BinOp::Eq => format!("({x} == {y})"),
                BinOp::Ne => format!("({x} != {y})"),
                BinOp::Lt => format!("({x} < {y})"),
                BinOp::Le => format!("({x} <= {y})"),
                BinOp::Gt => format!("({x} > {y})"),
                BinOp::Ge => format!("({x} >= {y})"),
                BinOp::And => format!("({x} {} {y})", d.and()),
                BinOp::Or => format!("({x} {} {y})", d.or()),
            }
        }
        Op::Select(c, a, b) => d.select(&val(c), &val(a), &val(b)),
        Op::Cast(a) => convert(d, arg_ty(a), ty, &val(a)),
        _ => format!("/* %{v} has no GPU form */"),
    }
}

/// Whether an instruction can be evaluated in a GPU kernel.
pub fn supported(op: &Op) -> bool {
    !matches!(op, Op::Index | Op::Count | Op::Rand { .. } | Op::Input(_))
}

pub fn constant(d: &dyn Dialect, ty: Scalar, c: f64) -> String {
    match ty {
        Scalar::Bool => d.bool(c != 0.0),
        Scalar::I32 => d.int(c as i64),
        s => d.float(c, s),
    }
}

/// `x` of type `from` as type `to` (register types).
pub fn convert(d: &dyn Dialect, from: Scalar, to: Scalar, x: &str) -> String {
    if from == to {
        return x.to_string();
    }
    match (from, to) {
        (Scalar::Bool, t) => d.select(x, &constant(d, t, 1.0), &constant(d, t, 0.0)),
        (f, Scalar::Bool) => format!("({x} != {})", constant(d, f, 0.0)),
        (_, t) => d.cast(t, x),
    }
}
