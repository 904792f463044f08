//! Force derivation: `force(U, a, b)` is −∇ₐU, computed by symbolic reverse-mode
//! differentiation of the instructions that compute U. The result is new IR, which the
//! simplifier then cleans (constant folding, CSE), so it costs about what a hand-written force does.

use crate::ir::{BinOp, Op, Scalar, UnOp, V};
use crate::lower::body::Builder;
use std::collections::HashMap;

fn acc(b: &mut Builder, adj: &mut HashMap<V, V>, v: V, g: V) {
    let new = match adj.get(&v) {
        Some(&old) => b.add(old, g),
        None => g,
    };
    adj.insert(v, new);
}

/// ∂u/∂x for each x in `wrt`, where `u` was computed by the instructions from `start` on.
/// Values defined before `start` (other than `wrt`) are constants of the differentiation.
pub fn gradient(b: &mut Builder, start: usize, u: V, wrt: &[V]) -> Vec<V> {
    let ty = b.ty(u);
    let mut adj: HashMap<V, V> = HashMap::new();
    let one = b.konst(1.0, ty);
    adj.insert(u, one);
    let mut v = u as usize;
    while v >= start {
        let vv = v as V;
        if let Some(&g) = adj.get(&vv) {
            let inst = b.insts[v].clone();
            let t = inst.ty;
            match inst.op {
                Op::Bin(op, x, y) => match op {
                    BinOp::Add => {
                        acc(b, &mut adj, x, g);
                        acc(b, &mut adj, y, g);
                    }
                    BinOp::Sub => {
                        acc(b, &mut adj, x, g);
                        let n = b.un(UnOp::Neg, g);
                        acc(b, &mut adj, y, n);
                    }
                    // d(x·x) = 2x dx: one product for both factors.
                    BinOp::Mul if x == y => {
                        let two = b.add(g, g);
                        let gx = b.mul(two, x);
                        acc(b, &mut adj, x, gx);
                    }
                    BinOp::Mul => {
                        let gx = b.mul(g, y);
                        acc(b, &mut adj, x, gx);
                        let gy = b.mul(g, x);
                        acc(b, &mut adj, y, gy);
                    }
                    // d(c/y) = −(c/y)²/c dy: no second division for reciprocals such as 1/r².
                    BinOp::Div if matches!(b.insts[x as usize].op, Op::Const(c) if c != 0.0) => {
                        let Op::Const(c) = b.insts[x as usize].op else { unreachable!() };
                        let inv = b.konst(1.0 / c, t);
                        let v2 = b.mul(vv, vv);
                        let k = b.mul(v2, inv);
                        let n = b.un(UnOp::Neg, g);
                        let gy = b.mul(n, k);
                        acc(b, &mut adj, y, gy);
                    }
                    BinOp::Div => {
                        // d(x/y) = dx/y - (x/y) dy/y
                        let gx = b.bin(BinOp::Div, g, y);
                        acc(b, &mut adj, x, gx);
                        let q = b.mul(gx, vv);
                        let gy = b.un(UnOp::Neg, q);
                        acc(b, &mut adj, y, gy);
                    }
                    BinOp::Pow => {
                        let onec = b.konst(1.0, t);
                        let e1 = b.sub(y, onec);
                        let p = b.bin(BinOp::Pow, x, e1);
                        let k = b.mul(y, p);
                        let gx = b.mul(g, k);
                        acc(b, &mut adj, x, gx);
                        let l = b.un(UnOp::Log, x);
                        let k2 = b.mul(vv, l);
                        let gy = b.mul(g, k2);
                        acc(b, &mut adj, y, gy);
                    }
                    BinOp::Min | BinOp::Max => {
                        let cmp = if op == BinOp::Min { BinOp::Lt } else { BinOp::Gt };
                        let c = b.bin(cmp, x, y);
                        let zero = b.konst(0.0, t);
                        let gx = b.select(c, g, zero);
                        acc(b, &mut adj, x, gx);
                        let gy = b.select(c, zero, g);
                        acc(b, &mut adj, y, gy);
                    }
                    // Comparisons, logic and the remainder's jumps carry no gradient.
                    _ => {}
                },
                Op::Un(op, x) => {
                    let d = match op {
                        UnOp::Neg => Some(b.un(UnOp::Neg, g)),
                        UnOp::Sqrt => {
                            // d sqrt(x) = 1 / (2 sqrt(x))
                            let half = b.konst(0.5, t);
                            let k = b.bin(BinOp::Div, half, vv);
                            Some(b.mul(g, k))
                        }
                        UnOp::Rsqrt => {
                            // d x^(-1/2) = -1/2 x^(-3/2) = -1/2 r^3
                            let r2 = b.mul(vv, vv);
                            let r3 = b.mul(r2, vv);
                            let mh = b.konst(-0.5, t);
                            let k = b.mul(mh, r3);
                            Some(b.mul(g, k))
                        }
                        UnOp::Exp => Some(b.mul(g, vv)),
                        UnOp::Log => Some(b.bin(BinOp::Div, g, x)),
                        UnOp::Sin => {
                            let c = b.un(UnOp::Cos, x);
                            Some(b.mul(g, c))
                        }
                        UnOp::Cos => {
                            let s = b.un(UnOp::Sin, x);
                            let n = b.un(UnOp::Neg, s);
                            Some(b.mul(g, n))
                        }
                        UnOp::Tanh => {
                            let onec = b.konst(1.0, t);
                            let sq = b.mul(vv, vv);
                            let k = b.sub(onec, sq);
                            Some(b.mul(g, k))
                        }
                        UnOp::Abs => {
                            let zero = b.konst(0.0, t);
                            let c = b.bin(BinOp::Lt, x, zero);
                            let n = b.un(UnOp::Neg, g);
                            Some(b.select(c, n, g))
                        }
                        UnOp::Floor | UnOp::Not => None,
                    };
                    if let Some(d) = d {
                        acc(b, &mut adj, x, d);
                    }
                }
                Op::Select(c, x, y) => {
                    let zero = b.konst(0.0, t);
                    let gx = b.select(c, g, zero);
                    acc(b, &mut adj, x, gx);
                    let gy = b.select(c, zero, g);
                    acc(b, &mut adj, y, gy);
                }
                Op::Cast(x) if b.ty(x) != Scalar::Bool && !b.ty(x).is_int() => acc(b, &mut adj, x, g),
                _ => {}
            }
        }
        if v == 0 {
            break;
        }
        v -= 1;
    }
    wrt.iter()
        .map(|x| match adj.get(x) {
            Some(&g) => g,
            None => b.konst(0.0, ty),
        })
        .collect()
}
