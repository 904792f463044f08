//! C-like GPU languages (WGSL for SPIR-V, OpenCL C): how each spells types, literals, calls and
//! the kernel's frame. `print_kernel` writes a device kernel in any of them.

use super::ast::{Binding, Bo, Kernel, Shared, E, S};
use aiic_runtime::ir::{Scalar, UnOp};

pub trait Dialect {
    /// The type of a device scalar in registers (`Bool` included).
    fn ty(&self, s: Scalar) -> &'static str;
    fn float(&self, x: f64, s: Scalar) -> String;
    fn int(&self, x: i64) -> String;
    fn uint(&self, x: u64) -> String;
    fn let_(&self, name: &str, s: Scalar, e: &str) -> String;
    fn var(&self, name: &str, s: Scalar, e: &str) -> String;
    /// A thread-local array.
    fn array(&self, name: &str, s: Scalar, len: usize) -> String;
    fn select(&self, cond: &str, t: &str, f: &str) -> String;
    fn cast(&self, to: Scalar, x: &str) -> String;
    /// A math function's name (`Neg` and `Not` are operators).
    fn math(&self, op: UnOp, s: Scalar, x: &str) -> String;
    fn pow(&self, x: &str, y: &str) -> String;
    fn fmod(&self, x: &str, y: &str) -> String;
    fn atomic_add(&self, buf: &str, idx: &str, v: &str) -> String;
    fn atomic_load(&self, buf: &str, idx: &str) -> String;
    fn atomic_store(&self, buf: &str, idx: &str, v: &str) -> String;
    fn barrier(&self) -> &'static str;
    /// The workgroup size as the kernel spells it.
    fn wg(&self) -> String;
    fn vec4(&self, parts: &[String]) -> String;
    /// The kernel's frame: its entry point, bindings, workgroup arrays, and a body that uses
    /// `gid`, `lid`, `grp`.
    fn frame(&self, name: &str, entry: &str, bindings: &[Binding], shared: &[Shared], body: &str) -> String;
}

pub fn print_kernel(d: &dyn Dialect, k: &Kernel, entry: &str) -> String {
    let mut body = String::new();
    stmts(d, &k.body, 0, &mut body);
    d.frame(&k.name, entry, &k.bindings, &k.shared, &body)
}

fn stmts(d: &dyn Dialect, list: &[S], depth: usize, out: &mut String) {
    for s in list {
        stmt(d, s, depth, out);
    }
}

fn stmt(d: &dyn Dialect, s: &S, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    let e = |x: &E| expr(d, x);
    match s {
        S::Let(n, t, x) => *out += &format!("{pad}{}\n", d.let_(n, *t, &e(x))),
        S::Var(n, t, x) => *out += &format!("{pad}{}\n", d.var(n, *t, &e(x))),
        S::Set(n, x) => *out += &format!("{pad}{n} = {};\n", e(x)),
        S::Store(b, i, x) | S::ShStore(b, i, x) | S::ArrStore(b, i, x) => {
            *out += &format!("{pad}{b}[{}] = {};\n", e(i), e(x))
        }
        S::AtomicStore(b, i, x) => *out += &format!("{pad}{}\n", d.atomic_store(b, &e(i), &e(x))),
        S::Array(n, s, len) => *out += &format!("{pad}{}\n", d.array(n, *s, *len)),
        S::If(c, t, f) => {
            *out += &format!("{pad}if {} {{\n", cond(d, c));
            stmts(d, t, depth + 1, out);
            if f.is_empty() {
                *out += &format!("{pad}}}\n");
            } else {
                *out += &format!("{pad}}} else {{\n");
                stmts(d, f, depth + 1, out);
                *out += &format!("{pad}}}\n");
            }
        }
        S::While(c, b) => {
            *out += &format!("{pad}while {} {{\n", cond(d, c));
            stmts(d, b, depth + 1, out);
            *out += &format!("{pad}}}\n");
        }
        S::Block(b) => {
            *out += &format!("{pad}{{\n");
            stmts(d, b, depth + 1, out);
            *out += &format!("{pad}}}\n");
        }
        S::Barrier => *out += &format!("{pad}{}\n", d.barrier()),
    }
}

/// A condition in parentheses (binary operations print their own).
fn cond(d: &dyn Dialect, x: &E) -> String {
    match x {
        E::Bin(op, ..) if !matches!(op, Bo::Min | Bo::Max | Bo::Pow | Bo::FMod) => expr(d, x),
        _ => format!("({})", expr(d, x)),
    }
}

pub fn expr(d: &dyn Dialect, x: &E) -> String {
    let e = |x: &E| expr(d, x);
    match x {
        E::F(v, s) => d.float(*v, *s),
        E::I(v) => d.int(*v),
        E::U(v) => d.uint(*v),
        E::B(b) => if *b { "true" } else { "false" }.into(),
        E::Wg => d.wg(),
        E::Gid => "gid".into(),
        E::Lid => "lid".into(),
        E::Grp => "grp".into(),
        E::Var(n) => n.clone(),
        E::Un(UnOp::Neg, _, a) => format!("(-{})", e(a)),
        E::Un(UnOp::Not, _, a) => format!("(!{})", e(a)),
        E::Un(op, s, a) => d.math(*op, *s, &e(a)),
        E::Bin(op, a, b) => {
            let (x, y) = (e(a), e(b));
            let sym = match op {
                Bo::Add => "+",
                Bo::Sub => "-",
                Bo::Mul => "*",
                Bo::Div => "/",
                Bo::Rem => "%",
                Bo::Eq => "==",
                Bo::Ne => "!=",
                Bo::Lt => "<",
                Bo::Le => "<=",
                Bo::Gt => ">",
                Bo::Ge => ">=",
                Bo::And => "&&",
                Bo::Or => "||",
                Bo::BitAnd => "&",
                Bo::BitXor => "^",
                Bo::Min => return format!("min({x}, {y})"),
                Bo::Max => return format!("max({x}, {y})"),
                Bo::Pow => return d.pow(&x, &y),
                Bo::FMod => return d.fmod(&x, &y),
            };
            format!("({x} {sym} {y})")
        }
        E::Sel(c, t, f) => d.select(&e(c), &e(t), &e(f)),
        E::Cast(s, a) => d.cast(*s, &e(a)),
        E::Ld(b, i) | E::Arr(b, _, i) => format!("{b}[{}]", e(i)),
        E::Sh(n, i, None) => format!("{n}[{}]", e(i)),
        E::Sh(n, i, Some(l)) => format!("{n}[{}].{}", e(i), ["x", "y", "z", "w"][*l as usize & 3]),
        E::AtomicAdd(b, i, v) => d.atomic_add(b, &e(i), &e(v)),
        E::AtomicLoad(b, i) => d.atomic_load(b, &e(i)),
        E::Vec4(parts) => d.vec4(&parts.iter().map(e).collect::<Vec<_>>()),
    }
}
