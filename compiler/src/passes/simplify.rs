//! Simplification: constant folding, algebraic identities (including the rsqrt forms forces
//! need), common-subexpression elimination and dead-code elimination. Rewrites may emit new
//! instructions, which go through the same folding and CSE.

use crate::ir::interp::{eval_bin, eval_cast, eval_un};
use crate::ir::{BinOp, Inst, Kernel, Op, Scalar, UnOp, V};
use std::collections::HashMap;

enum Rewrite {
    Alias(V),
    Emit(Op),
}

struct Simp {
    out: Vec<Inst>,
    seen: HashMap<String, V>,
}

/// A hashable key for CSE: the op with its float made comparable.
fn key(inst: &Inst) -> Option<String> {
    if inst.op.is_effect() {
        return None;
    }
    Some(match &inst.op {
        Op::Const(x) => format!("{:?}c{}", inst.ty, x.to_bits()),
        op => format!("{:?}{:?}", inst.ty, op),
    })
}

impl Simp {
    fn konst_of(&self, v: V) -> Option<f64> {
        match self.out[v as usize].op {
            Op::Const(x) => Some(x),
            _ => None,
        }
    }

    fn op_of(&self, v: V) -> &Op {
        &self.out[v as usize].op
    }

    /// Adds an instruction after simplifying it; returns the value that stands for it.
    fn push(&mut self, ty: Scalar, op: Op) -> V {
        match self.rewrite(ty, op) {
            Rewrite::Alias(v) => v,
            Rewrite::Emit(op) => {
                let inst = Inst { ty, op };
                match key(&inst) {
                    Some(k) => {
                        if let Some(&v) = self.seen.get(&k) {
                            return v;
                        }
                        self.out.push(inst);
                        let v = (self.out.len() - 1) as V;
                        self.seen.insert(k, v);
                        v
                    }
                    None => {
                        self.out.push(inst);
                        (self.out.len() - 1) as V
                    }
                }
            }
        }
    }

    fn konst(&mut self, ty: Scalar, x: f64) -> V {
        self.push(ty, Op::Const(x))
    }

    /// Splits a value into a constant factor and the rest: `c·z`, `−z`, or `1·v`.
    fn split(&self, v: V) -> (f64, Option<V>) {
        match *self.op_of(v) {
            Op::Const(c) => (c, None),
            Op::Un(UnOp::Neg, z) => (-1.0, Some(z)),
            Op::Bin(BinOp::Mul, p, q) => match self.konst_of(p) {
                Some(c) => (c, Some(q)),
                None => (1.0, Some(v)),
            },
            _ => (1.0, Some(v)),
        }
    }

    /// A float product with its constant factors gathered in front: `2·(k·(−½·r))` is `−(k·r)`.
    fn product(&mut self, ty: Scalar, x: V, y: V) -> Rewrite {
        let ((cx, rx), (cy, ry)) = (self.split(x), self.split(y));
        let c = cx * cy;
        let rest = match (rx, ry) {
            (None, None) => return Rewrite::Emit(Op::Const(c)),
            (Some(a), None) | (None, Some(a)) => a,
            (Some(a), Some(b)) => {
                if c == 1.0 && (a.min(b), a.max(b)) == (x.min(y), x.max(y)) {
                    return Rewrite::Emit(Op::Bin(BinOp::Mul, a.min(b), a.max(b)));
                }
                self.push(ty, Op::Bin(BinOp::Mul, a.min(b), a.max(b)))
            }
        };
        if c == 1.0 {
            return Rewrite::Alias(rest);
        }
        if c == -1.0 {
            return Rewrite::Alias(self.push(ty, Op::Un(UnOp::Neg, rest)));
        }
        let k = self.konst(ty, c);
        if (x, y) == (k, rest) || (y, x) == (k, rest) {
            return Rewrite::Emit(Op::Bin(BinOp::Mul, k, rest));
        }
        Rewrite::Alias(self.push(ty, Op::Bin(BinOp::Mul, k, rest)))
    }

    fn rewrite(&mut self, ty: Scalar, op: Op) -> Rewrite {
        use Rewrite::*;
        let float = ty.is_float();
        match op {
            Op::Un(u, a) => {
                if let Some(x) = self.konst_of(a) {
                    return Emit(Op::Const(eval_un(u, ty, x)));
                }
                if u == UnOp::Neg {
                    match *self.op_of(a) {
                        // −(−x) = x
                        Op::Un(UnOp::Neg, inner) => return Alias(inner),
                        // −(c·x) = (−c)·x
                        Op::Bin(BinOp::Mul, p, q) if float && self.konst_of(p).is_some() => {
                            let c = self.konst(ty, -self.konst_of(p).unwrap_or(0.0));
                            return Alias(self.push(ty, Op::Bin(BinOp::Mul, c, q)));
                        }
                        _ => {}
                    }
                }
                Emit(op)
            }
            Op::Bin(b, x, y) => {
                let (kx, ky) = (self.konst_of(x), self.konst_of(y));
                if let (Some(p), Some(q)) = (kx, ky) {
                    return Emit(Op::Const(eval_bin(b, ty, p, q)));
                }
                let neg_of = |s: &Self, v: V| match *s.op_of(v) {
                    Op::Un(UnOp::Neg, inner) => Some(inner),
                    _ => None,
                };
                match b {
                    BinOp::Add => {
                        if kx == Some(0.0) {
                            return Alias(y);
                        }
                        if ky == Some(0.0) {
                            return Alias(x);
                        }
                        if let Some(inner) = neg_of(self, y) {
                            return Alias(self.push(ty, Op::Bin(BinOp::Sub, x, inner)));
                        }
                        if let Some(inner) = neg_of(self, x) {
                            return Alias(self.push(ty, Op::Bin(BinOp::Sub, y, inner)));
                        }
                        if x == y && float {
                            let two = self.konst(ty, 2.0);
                            return Alias(self.push(ty, Op::Bin(BinOp::Mul, two, x)));
                        }
                    }
                    BinOp::Sub => {
                        if ky == Some(0.0) {
                            return Alias(x);
                        }
                        if kx == Some(0.0) && float {
                            return Alias(self.push(ty, Op::Un(UnOp::Neg, y)));
                        }
                        if let Some(inner) = neg_of(self, y) {
                            return Alias(self.push(ty, Op::Bin(BinOp::Add, x, inner)));
                        }
                        // −y − y = −2·y
                        if float && neg_of(self, x) == Some(y) {
                            let k = self.konst(ty, -2.0);
                            return Alias(self.push(ty, Op::Bin(BinOp::Mul, k, y)));
                        }
                    }
                    BinOp::Mul if float => return self.product(ty, x, y),
                    BinOp::Mul => {
                        if kx == Some(1.0) {
                            return Alias(y);
                        }
                        if ky == Some(1.0) {
                            return Alias(x);
                        }
                    }
                    BinOp::Div => {
                        if ky == Some(1.0) {
                            return Alias(x);
                        }
                        // x / √y = x · rsqrt(y): one multiply instead of a divide.
                        if let Op::Un(UnOp::Sqrt, inner) = *self.op_of(y) {
                            if float {
                                let r = self.push(ty, Op::Un(UnOp::Rsqrt, inner));
                                return Alias(self.push(ty, Op::Bin(BinOp::Mul, x.min(r), x.max(r))));
                            }
                        }
                    }
                    _ => {}
                }
                if b.is_commutative() && x > y {
                    return Alias(self.push(ty, Op::Bin(b, y, x)));
                }
                Emit(op)
            }
            Op::Select(c, a, b2) => {
                if a == b2 {
                    return Alias(a);
                }
                match self.konst_of(c) {
                    Some(x) if x != 0.0 => Alias(a),
                    Some(_) => Alias(b2),
                    None => Emit(op),
                }
            }
            Op::Cast(a) => {
                if let Some(x) = self.konst_of(a) {
                    return Emit(Op::Const(eval_cast(ty, x)));
                }
                if self.out[a as usize].ty == ty {
                    return Alias(a);
                }
                Emit(op)
            }
            // A check that holds at compile time needs no run-time test.
            Op::Check { cond, .. } if self.konst_of(cond).is_some_and(|x| x != 0.0) => Alias(cond),
            op => Emit(op),
        }
    }
}

pub fn simplify(mut k: Kernel) -> Kernel {
    let mut s = Simp { out: Vec::with_capacity(k.insts.len()), seen: HashMap::new() };
    let mut map: Vec<V> = Vec::with_capacity(k.insts.len());
    for inst in &k.insts {
        let mut op = inst.op.clone();
        op.map_args(|a| map[a as usize]);
        let v = s.push(inst.ty, op);
        map.push(v);
    }
    let out = s.out;
    let guard = k.guard.map(|g| map[g as usize]);
    // Dead-code elimination: keep effects, the guard, and what they read.
    let mut live = vec![false; out.len()];
    for (i, inst) in out.iter().enumerate() {
        if inst.op.is_effect() {
            live[i] = true;
        }
    }
    if let Some(g) = guard {
        live[g as usize] = true;
    }
    for i in (0..out.len()).rev() {
        if live[i] {
            for a in out[i].op.args() {
                live[a as usize] = true;
            }
        }
    }
    let mut renum = vec![0 as V; out.len()];
    let mut compact = Vec::new();
    for (i, mut inst) in out.into_iter().enumerate() {
        if !live[i] {
            continue;
        }
        inst.op.map_args(|a| renum[a as usize]);
        renum[i] = compact.len() as V;
        compact.push(inst);
    }
    k.guard = guard.map(|g| renum[g as usize]);
    k.insts = compact;
    k
}
