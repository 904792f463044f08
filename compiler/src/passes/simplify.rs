//! Simplification: constant folding, algebraic identities, common-subexpression elimination and
//! dead-code elimination, in one forward pass and one backward pass.

use crate::ir::interp::{eval_bin, eval_cast, eval_un};
use crate::ir::{BinOp, Inst, Kernel, Op, UnOp, V};
use std::collections::HashMap;

fn konst(insts: &[Inst], v: V) -> Option<f64> {
    match insts[v as usize].op {
        Op::Const(x) => Some(x),
        _ => None,
    }
}

/// What an instruction becomes: an existing value, or an instruction to emit.
enum Simplified {
    Alias(V),
    Emit(Op),
}

fn simplify_op(out: &[Inst], ty: crate::ir::Scalar, op: Op) -> Simplified {
    use Simplified::*;
    let k = |v| konst(out, v);
    match op {
        Op::Un(u, a) => {
            if let Some(x) = k(a) {
                return Emit(Op::Const(eval_un(u, ty, x)));
            }
            // --x = x
            if u == UnOp::Neg {
                if let Op::Un(UnOp::Neg, inner) = out[a as usize].op {
                    return Alias(inner);
                }
            }
            Emit(op)
        }
        Op::Bin(b, x, y) => {
            if let (Some(p), Some(q)) = (k(x), k(y)) {
                return Emit(Op::Const(eval_bin(b, ty, p, q)));
            }
            let float = ty.is_float();
            match (b, k(x), k(y)) {
                (BinOp::Add, Some(0.0), _) => Alias(y),
                (BinOp::Add | BinOp::Sub, _, Some(0.0)) => Alias(x),
                (BinOp::Sub, Some(z), _) if z == 0.0 && float => Emit(Op::Un(UnOp::Neg, y)),
                (BinOp::Mul, Some(1.0), _) => Alias(y),
                (BinOp::Mul | BinOp::Div, _, Some(1.0)) => Alias(x),
                (BinOp::Mul, Some(m), _) if m == -1.0 && float => Emit(Op::Un(UnOp::Neg, y)),
                (BinOp::Mul, _, Some(m)) if m == -1.0 && float => Emit(Op::Un(UnOp::Neg, x)),
                // x - (-y) = x + y
                (BinOp::Sub, _, _) if matches!(out[y as usize].op, Op::Un(UnOp::Neg, _)) => {
                    let Op::Un(_, inner) = out[y as usize].op else { unreachable!() };
                    Emit(Op::Bin(BinOp::Add, x, inner))
                }
                // x + (-y) = x - y
                (BinOp::Add, _, _) if matches!(out[y as usize].op, Op::Un(UnOp::Neg, _)) => {
                    let Op::Un(_, inner) = out[y as usize].op else { unreachable!() };
                    Emit(Op::Bin(BinOp::Sub, x, inner))
                }
                _ if b.is_commutative() && x > y => Emit(Op::Bin(b, y, x)),
                _ => Emit(op),
            }
        }
        Op::Select(c, a, b2) => {
            if a == b2 {
                return Alias(a);
            }
            match k(c) {
                Some(x) if x != 0.0 => Alias(a),
                Some(_) => Alias(b2),
                None => Emit(op),
            }
        }
        Op::Cast(a) => {
            if let Some(x) = k(a) {
                return Emit(Op::Const(eval_cast(ty, x)));
            }
            if out[a as usize].ty == ty {
                return Alias(a);
            }
            Emit(op)
        }
        // A check that holds at compile time needs no run-time test.
        Op::Check { cond, .. } if k(cond).is_some_and(|x| x != 0.0) => Alias(cond),
        op => Emit(op),
    }
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

pub fn simplify(mut k: Kernel) -> Kernel {
    let mut out: Vec<Inst> = Vec::with_capacity(k.insts.len());
    let mut map: Vec<V> = Vec::with_capacity(k.insts.len());
    let mut seen: HashMap<String, V> = HashMap::new();
    for inst in &k.insts {
        let mut op = inst.op.clone();
        op.map_args(|a| map[a as usize]);
        let v = match simplify_op(&out, inst.ty, op) {
            Simplified::Alias(v) => v,
            Simplified::Emit(op) => {
                let new = Inst { ty: inst.ty, op };
                match key(&new).and_then(|s| seen.get(&s).copied().map(Ok).or(Some(Err(s)))) {
                    Some(Ok(v)) => v,
                    Some(Err(s)) => {
                        out.push(new);
                        let v = (out.len() - 1) as V;
                        seen.insert(s, v);
                        v
                    }
                    None => {
                        out.push(new);
                        (out.len() - 1) as V
                    }
                }
            }
        };
        map.push(v);
    }
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
