//! The matrix work of an `each` kernel ([`TensorPlan`]) on the CPU: sixteen agents per step in
//! four `f32x4` vectors, so that each weight, read and splatted once, feeds four independent
//! accumulators; each layer is a loop over its outputs around a loop over its inputs, with the
//! activations in a stack buffer. The fully unrolled scalar form of a model keeps thousands of weights live across
//! the agent loop and spills them; these loops read each weight where it is used, and the code
//! stays the size of the input and output lists however wide the layers are.

use super::cpu::Em;
use crate::ir::{Activation, Op, Pattern, Scalar, TensorPlan};
use aiic_runtime::cpu::abi;
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, StackSlotData, StackSlotKind, Value};

/// The plan of a map kernel the loops can run: every input and output an f32 column the kernel
/// already binds, and no run-time checks.
pub fn plan(em: &Em) -> Option<TensorPlan> {
    let k = em.k;
    let t = k.tensor.clone()?;
    let f32_col = |c: &u32| em.col_scalar(0, *c) == Scalar::F32 && em.cols.contains_key(&(0, *c));
    let ok = matches!(k.pattern, Pattern::Map { .. })
        && t.inputs.iter().chain(&t.outputs).all(f32_col)
        && !k.insts.iter().any(|i| matches!(i.op, Op::Check { .. }));
    ok.then_some(t)
}

const FLAGS: fn() -> MemFlagsData = || MemFlagsData::new().with_notrap();

/// Vectors of four agents per step.
const GROUPS: usize = 4;
/// Agents per step.
pub const AGENTS: i64 = abi::LANES * GROUPS as i64;
/// Bytes of one row (every agent's value of one feature) of the activation buffers.
const ROW: i64 = 4 * AGENTS;

/// Computes the plan for the [`AGENTS`] agents from `iv` and stores its outputs.
pub fn block(em: &mut Em, t: &TensorPlan, iv: Value) -> Result<(), String> {
    let widest = t.layers.iter().map(|l| l.rows.max(l.cols)).max().unwrap_or(1);
    let bytes = widest * ROW as u32;
    let bufs = [0, 1].map(|_| em.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, bytes, 4)));
    let addr = |em: &mut Em, slot| em.b.ins().stack_addr(types::I64, slot, 0);
    let (mut src, mut dst) = (addr(em, bufs[0]), addr(em, bufs[1]));
    for (k, &col) in t.inputs.iter().enumerate() {
        let base = em.cols[&(0, col)];
        let a = em.addr(base, iv, 4);
        for g in 0..GROUPS as i32 {
            let x = em.b.ins().load(types::F32X4, FLAGS(), a, g * 16);
            em.b.ins().store(FLAGS(), x, src, k as i32 * ROW as i32 + g * 16);
        }
    }
    let last = t.layers.len() - 1;
    for (li, l) in t.layers.iter().enumerate() {
        if li < last {
            // for r in 0..rows: dst[r] = act(row r)
            counted(em, l.rows as i64, |em, rv| {
                let zs = row(em, l, rv, src)?;
                let at = em.b.ins().imul_imm_s(rv, ROW);
                let at = em.b.ins().iadd(dst, at);
                for (g, z) in zs.into_iter().enumerate() {
                    let y = activation(em, t.act, z)?;
                    em.b.ins().store(FLAGS(), y, at, g as i32 * 16);
                }
                Ok(())
            })?;
            std::mem::swap(&mut src, &mut dst);
        } else {
            for (r, &col) in t.outputs.iter().enumerate() {
                let rv = em.b.ins().iconst(types::I64, r as i64);
                let ys = row(em, l, rv, src)?;
                for (g, y) in ys.into_iter().enumerate() {
                    let at = em.b.ins().iadd_imm_s(iv, g as i64 * abi::LANES);
                    store(em, t, col, at, y);
                }
            }
        }
    }
    Ok(())
}

/// Output `r` of layer `l` for the agents of a step, one vector per group: Σ W[r, c]·h[c] in
/// order, then the bias.
fn row(em: &mut Em, l: &crate::ir::TensorLayer, r: Value, h: Value) -> Result<Vec<Value>, String> {
    let accs: Vec<_> = (0..GROUPS).map(|_| em.b.declare_var(types::F32X4)).collect();
    let zero_f = em.b.ins().f32const(0.0);
    let zero_v = em.b.ins().splat(types::F32X4, zero_f);
    for &acc in &accs {
        em.b.def_var(acc, zero_v);
    }
    // The weights of row r start at lane `weight + r·cols` of the f64 uniforms.
    let first = em.b.ins().imul_imm_s(r, l.cols as i64);
    let first = em.b.ins().iadd_imm_s(first, l.weight as i64);
    let first = em.b.ins().imul_imm_s(first, 8);
    let wrow = em.b.ins().iadd(em.uniforms, first);
    counted(em, l.cols as i64, |em, cv| {
        let wa = em.b.ins().imul_imm_s(cv, 8);
        let wa = em.b.ins().iadd(wrow, wa);
        let w = em.b.ins().load(types::F64, FLAGS(), wa, 0);
        let w = em.b.ins().fdemote(types::F32, w);
        let w = em.b.ins().splat(types::F32X4, w);
        let ha = em.b.ins().imul_imm_s(cv, ROW);
        let ha = em.b.ins().iadd(h, ha);
        for (g, &acc) in accs.iter().enumerate() {
            let x = em.b.ins().load(types::F32X4, FLAGS(), ha, g as i32 * 16);
            let p = em.b.ins().fmul(w, x);
            let a = em.b.use_var(acc);
            let a = em.b.ins().fadd(a, p);
            em.b.def_var(acc, a);
        }
        Ok(())
    })?;
    let bias = match l.bias {
        Some(b) => {
            let ba = em.b.ins().imul_imm_s(r, 8);
            let ba = em.b.ins().iadd(em.uniforms, ba);
            let bv = em.b.ins().load(types::F64, FLAGS(), ba, b as i32 * 8);
            let bv = em.b.ins().fdemote(types::F32, bv);
            Some(em.b.ins().splat(types::F32X4, bv))
        }
        None => None,
    };
    Ok(accs
        .into_iter()
        .map(|acc| {
            let z = em.b.use_var(acc);
            match bias {
                Some(b) => em.b.ins().fadd(z, b),
                None => z,
            }
        })
        .collect())
}

/// `for i in 0..n { body(i) }`, emitted as a loop.
fn counted(em: &mut Em, n: i64, body: impl FnOnce(&mut Em, Value) -> Result<(), String>) -> Result<(), String> {
    let i = em.b.declare_var(types::I64);
    let zero = em.b.ins().iconst(types::I64, 0);
    em.b.def_var(i, zero);
    let limit = em.b.ins().iconst(types::I64, n);
    let (head, inside, out) = (em.b.create_block(), em.b.create_block(), em.b.create_block());
    em.b.ins().jump(head, &[]);
    let at = super::cpu::enter_loop(em, head, i, limit, inside, out);
    body(em, at)?;
    let next = em.b.ins().iadd_imm_s(at, 1);
    em.b.def_var(i, next);
    em.b.ins().jump(head, &[]);
    em.b.seal_block(head);
    em.b.switch_to_block(out);
    em.b.seal_block(out);
    Ok(())
}

/// Applies a lane-wise libm function to four values.
fn per_lane(em: &mut Em, name: &str, x: Value) -> Result<Value, String> {
    let mut out = x;
    for lane in 0..4u8 {
        let v = em.b.ins().extractlane(x, lane);
        let y = em.libm_call(name, false, &[v])?;
        out = em.b.ins().insertlane(out, y, lane);
    }
    Ok(out)
}

/// The activations as the scalar lowering computes them (`lower::body::activation`).
fn activation(em: &mut Em, act: Activation, x: Value) -> Result<Value, String> {
    let splat = |em: &mut Em, c: f32| {
        let s = em.b.ins().f32const(c);
        em.b.ins().splat(types::F32X4, s)
    };
    let sigmoid = |em: &mut Em, x: Value| -> Result<Value, String> {
        let minus = em.b.ins().fneg(x);
        let e = per_lane(em, "exp", minus)?;
        let one = splat(em, 1.0);
        let d = em.b.ins().fadd(one, e);
        Ok(em.b.ins().fdiv(one, d))
    };
    Ok(match act {
        Activation::Identity => x,
        Activation::Tanh => per_lane(em, "tanh", x)?,
        Activation::Relu => {
            let zero = splat(em, 0.0);
            em.b.ins().fmax(x, zero)
        }
        Activation::Sigmoid => sigmoid(em, x)?,
        Activation::Silu => {
            let s = sigmoid(em, x)?;
            em.b.ins().fmul(x, s)
        }
        Activation::Gelu => {
            let (half, c, k, one) = (
                splat(em, 0.5),
                splat(em, (2.0 / std::f64::consts::PI).sqrt() as f32),
                splat(em, 0.044715),
                splat(em, 1.0),
            );
            let x2 = em.b.ins().fmul(x, x);
            let x3 = em.b.ins().fmul(x2, x);
            let kx3 = em.b.ins().fmul(k, x3);
            let inner = em.b.ins().fadd(x, kx3);
            let arg = em.b.ins().fmul(c, inner);
            let t = per_lane(em, "tanh", arg)?;
            let onet = em.b.ins().fadd(one, t);
            let hx = em.b.ins().fmul(half, x);
            em.b.ins().fmul(hx, onet)
        }
    })
}

/// Stores output `y` of four agents to column `col`, added to its value for `+=` (with the
/// column's compensation where it has one).
fn store(em: &mut Em, t: &TensorPlan, col: u32, iv: Value, y: Value) {
    let base = em.cols[&(0, col)];
    let a = em.addr(base, iv, 4);
    let x = if t.accumulate {
        let old = em.b.ins().load(types::F32X4, FLAGS(), a, 0);
        if em.comps.contains_key(&col) {
            super::cpu::compensated_add(em, col, iv, old, y, true)
        } else {
            em.b.ins().fadd(old, y)
        }
    } else {
        super::cpu::reset_comp(em, col, iv, true);
        y
    };
    em.b.ins().store(FLAGS(), x, a, 0);
}
