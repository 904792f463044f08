//! The matrix work of an `each` kernel ([`TensorPlan`]) on the CPU: sixteen agents per step in
//! four `f32x4` vectors, so that each weight, read and splatted once, feeds four independent
//! accumulators; each layer is a loop over its outputs, [`TILE`] at a time so that each input
//! vector loaded feeds as many outputs, around a loop over its inputs, with the activations in
//! a stack buffer. The fully unrolled scalar form of a model keeps thousands of weights live across
//! the agent loop and spills them; these loops read each weight where it is used, and the code
//! stays the size of the input and output lists however wide the layers are.

use super::cpu::Em;
use crate::ir::{Activation, Op, Pattern, Scalar, TensorPlan};
use aiic_runtime::cpu::abi;
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, StackSlotData, StackSlotKind, Value};

/// The plan of a map kernel the loops can run: every input and output a column the CPU stores
/// as f32 (f16 and bf16 are widened), and no run-time checks. The loops find the columns in the
/// column table themselves.
pub fn plan(em: &Em) -> Option<TensorPlan> {
    let k = em.k;
    let t = k.tensor.clone()?;
    let f32_col = |c: &u32| matches!(em.col_scalar(0, *c), Scalar::F32 | Scalar::F16 | Scalar::BF16);
    let ok = matches!(k.pattern, Pattern::Map { .. })
        && t.inputs.iter().chain(&t.outputs).all(f32_col)
        && !k.insts.iter().any(|i| matches!(i.op, Op::Check { .. }));
    ok.then_some(t)
}

const FLAGS: fn() -> MemFlagsData = || MemFlagsData::new().with_notrap();

/// Vectors of four agents per step.
const GROUPS: usize = 4;
/// Agents per step.
pub const AGENTS: i64 = abi::TENSOR_AGENTS;
const _: () = assert!(AGENTS == abi::LANES * GROUPS as i64);
/// Bytes of one row (every agent's value of one feature) of the activation buffers.
const ROW: i64 = 4 * AGENTS;
/// Outputs computed together: 2 × 4 accumulators, 4 inputs and a weight stay in the sixteen
/// vector registers of x86-64 and AArch64's thirty-two.
const TILE: u32 = 2;

/// Computes the plan for the [`AGENTS`] agents from `iv` and stores its outputs.
pub fn block(em: &mut Em, t: &TensorPlan, iv: Value) -> Result<(), String> {
    let widest = t.layers.iter().map(|l| l.rows.max(l.cols)).max().unwrap_or(1);
    let bytes = widest * ROW as u32;
    let bufs = [0, 1].map(|_| em.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, bytes, 4)));
    let addr = |em: &mut Em, slot| em.b.ins().stack_addr(types::I64, slot, 0);
    let (mut src, mut dst) = (addr(em, bufs[0]), addr(em, bufs[1]));
    // Column addresses come from the table per run of consecutive columns, inside loops: a
    // field of thousands of lanes is one loop, not thousands of live addresses.
    let cols = em.b.ins().load(types::I64, FLAGS(), em.ctx, abi::COLS_A);
    for (at, first, n) in runs(&t.inputs, |_| false) {
        counted(em, n as i64, |em, kv| {
            let a = column_at(em, cols, first, kv, iv);
            let row = em.b.ins().iadd_imm_s(kv, at as i64);
            let row = em.addr(src, row, ROW);
            for g in 0..GROUPS as i32 {
                let x = em.b.ins().load(types::F32X4, FLAGS(), a, g * 16);
                em.b.ins().store(FLAGS(), x, row, g * 16);
            }
            Ok(())
        })?;
    }
    let last = t.layers.len() - 1;
    for (li, l) in t.layers.iter().enumerate() {
        let act = if li < last { t.act } else { Activation::Identity };
        // for r in 0..rows, TILE at a time: dst[r] = act(row r)
        let layer = |em: &mut Em, rv: Value, n: u32| -> Result<(), String> {
            let zs = rows(em, l, rv, n, src)?;
            let at = em.addr(dst, rv, ROW);
            for (j, groups) in zs.into_iter().enumerate() {
                for (g, z) in groups.into_iter().enumerate() {
                    let y = activation(em, act, z);
                    em.b.ins().store(FLAGS(), y, at, j as i32 * ROW as i32 + g as i32 * 16);
                }
            }
            Ok(())
        };
        counted(em, (l.rows / TILE) as i64, |em, tv| {
            let rv = em.b.ins().imul_imm_s(tv, TILE as i64);
            layer(em, rv, TILE)
        })?;
        for r in l.rows / TILE * TILE..l.rows {
            let rv = em.b.ins().iconst(types::I64, r as i64);
            layer(em, rv, 1)?;
        }
        std::mem::swap(&mut src, &mut dst);
    }
    let comps = em.b.ins().load(types::I64, FLAGS(), em.ctx, abi::COMP);
    let compensated: Vec<u32> = em.comps.keys().copied().collect();
    for (at, first, n) in runs(&t.outputs, |c| compensated.contains(&c)) {
        let comp = compensated.contains(&first);
        counted(em, n as i64, |em, kv| {
            let row = em.b.ins().iadd_imm_s(kv, at as i64);
            let row = em.addr(src, row, ROW);
            let a = column_at(em, cols, first, kv, iv);
            let c = comp.then(|| column_at(em, comps, first, kv, iv));
            for g in 0..GROUPS as i32 {
                let y = em.b.ins().load(types::F32X4, FLAGS(), row, g * 16);
                store(em, t, a, c, g * 16, y);
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Runs of consecutive columns in `cols` that agree on `split`: (position in `cols`, first
/// column, length).
fn runs(cols: &[u32], split: impl Fn(u32) -> bool) -> Vec<(usize, u32, u32)> {
    let mut out: Vec<(usize, u32, u32)> = Vec::new();
    for (i, &c) in cols.iter().enumerate() {
        match out.last_mut() {
            Some((_, first, n)) if *first + *n == c && split(*first) == split(c) => *n += 1,
            _ => out.push((i, c, 1)),
        }
    }
    out
}

/// The address of agent `iv` in column `first + k` of the column table `table`.
fn column_at(em: &mut Em, table: Value, first: u32, k: Value, iv: Value) -> Value {
    let col = em.b.ins().iadd_imm_s(k, first as i64);
    let entry = em.addr(table, col, 8);
    let base = em.b.ins().load(types::I64, FLAGS(), entry, 0);
    em.addr(base, iv, 4)
}

/// Outputs `r .. r + n` of layer `l` for the agents of a step, per output one vector per group:
/// Σ W[r, c]·h[c] in order, then the bias.
fn rows(em: &mut Em, l: &crate::ir::TensorLayer, r: Value, n: u32, h: Value) -> Result<Vec<Vec<Value>>, String> {
    let accs: Vec<Vec<_>> = (0..n).map(|_| (0..GROUPS).map(|_| em.b.declare_var(types::F32X4)).collect()).collect();
    let zero_f = em.b.ins().f32const(0.0);
    let zero_v = em.b.ins().splat(types::F32X4, zero_f);
    for &acc in accs.iter().flatten() {
        em.b.def_var(acc, zero_v);
    }
    // The weights of row r start at lane `weight + r·cols` of the f32 uniforms.
    let first = em.b.ins().imul_imm_s(r, l.cols as i64);
    let first = em.b.ins().iadd_imm_s(first, l.weight as i64);
    let first = em.b.ins().imul_imm_s(first, 4);
    let wrow = em.b.ins().iadd(em.uniforms_f32, first);
    counted(em, l.cols as i64, |em, cv| {
        let wa = em.b.ins().imul_imm_s(cv, 4);
        let wa = em.b.ins().iadd(wrow, wa);
        let ha = em.b.ins().imul_imm_s(cv, ROW);
        let ha = em.b.ins().iadd(h, ha);
        let xs: Vec<Value> = (0..GROUPS as i32).map(|g| em.b.ins().load(types::F32X4, FLAGS(), ha, g * 16)).collect();
        for (j, row) in accs.iter().enumerate() {
            let w = em.b.ins().load(types::F32, FLAGS(), wa, (j as u32 * l.cols * 4) as i32);
            let w = em.b.ins().splat(types::F32X4, w);
            for (&acc, &x) in row.iter().zip(&xs) {
                let p = em.b.ins().fmul(w, x);
                let a = em.b.use_var(acc);
                let a = em.b.ins().fadd(a, p);
                em.b.def_var(acc, a);
            }
        }
        Ok(())
    })?;
    // The biases of rows r.. start at lane `bias + r`.
    let biases = l.bias.map(|b| {
        let ba = em.b.ins().imul_imm_s(r, 4);
        (b, em.b.ins().iadd(em.uniforms_f32, ba))
    });
    let mut out = Vec::new();
    for (j, row) in accs.into_iter().enumerate() {
        let bias = match biases {
            Some((b, ba)) => {
                let bv = em.b.ins().load(types::F32, FLAGS(), ba, (b + j as u32) as i32 * 4);
                Some(em.b.ins().splat(types::F32X4, bv))
            }
            None => None,
        };
        out.push(
            row.into_iter()
                .map(|acc| {
                    let z = em.b.use_var(acc);
                    match bias {
                        Some(b) => em.b.ins().fadd(z, b),
                        None => z,
                    }
                })
                .collect(),
        );
    }
    Ok(out)
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

fn splat(em: &mut Em, c: f32) -> Value {
    let s = em.b.ins().f32const(c);
    em.b.ins().splat(types::F32X4, s)
}

/// `a + x·(c[0] + x·(c[1] + …))`, by Horner's rule, `c` from the highest power down.
fn horner(em: &mut Em, x: Value, coefficients: &[f64]) -> Value {
    let mut p = splat(em, coefficients[0] as f32);
    for &c in &coefficients[1..] {
        let px = em.b.ins().fmul(p, x);
        let c = splat(em, c as f32);
        p = em.b.ins().fadd(px, c);
    }
    p
}

/// eʸ of four values, within 2 ulp of f32: y = n·ln 2 + r with |r| ≤ ½ ln 2 (ln 2 in two parts,
/// so that r is exact), eʳ by its Taylor series to r⁷ (truncation under 10⁻⁸), and 2ⁿ made from
/// its exponent bits. y is clamped to where eʸ and 2ⁿ are normal floats; NaN stays NaN. Called
/// per lane through libm instead, the activations took five sixths of an MLP's time.
fn exp(em: &mut Em, y: Value) -> Value {
    let (lo, hi) = (splat(em, -87.0), splat(em, 88.0));
    let y = em.b.ins().fmax(y, lo);
    let y = em.b.ins().fmin(y, hi);
    // Adding 1.5·2²³ rounds y/ln 2 to an integer held in the low bits of the sum.
    let magic = splat(em, 12_582_912.0);
    let inv_ln2 = splat(em, std::f64::consts::LOG2_E as f32);
    let t = em.b.ins().fmul(y, inv_ln2);
    let t = em.b.ins().fadd(t, magic);
    let n = em.b.ins().fsub(t, magic);
    let (ln2_hi, ln2_lo) = (splat(em, 0.693_359_4), splat(em, -2.121_944_4e-4));
    let r = em.b.ins().fmul(n, ln2_hi);
    let r = em.b.ins().fsub(y, r);
    let r2 = em.b.ins().fmul(n, ln2_lo);
    let r = em.b.ins().fsub(r, r2);
    let taylor = [1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0];
    let p = horner(em, r, &taylor);
    let (ti, mi) = (em.reinterpret(types::I32X4, t), em.reinterpret(types::I32X4, magic));
    let bits = em.b.ins().isub(ti, mi);
    let bias = em.b.ins().iconst(types::I32, 127);
    let bias = em.b.ins().splat(types::I32X4, bias);
    let bits = em.b.ins().iadd(bits, bias);
    let bits = em.b.ins().ishl_imm_u(bits, 23);
    let scale = em.reinterpret(types::F32X4, bits);
    em.b.ins().fmul(p, scale)
}

/// tanh of four values: for |x| < ¼ its odd Taylor series to x⁹ (truncation under 10⁻⁸ of the
/// value), elsewhere (1 − e)/(1 + e) with e = e^(−2|x|), where 1 − e ≥ 0.39 loses no digits;
/// |x| is clamped at 9, past which tanh is 1 in f32. The sign is x's.
fn tanh(em: &mut Em, x: Value) -> Value {
    let a = em.b.ins().fabs(x);
    let nine = splat(em, 9.0);
    let a = em.b.ins().fmin(a, nine);
    let a2 = em.b.ins().fmul(a, a);
    let series = horner(em, a2, &[62.0 / 2835.0, -17.0 / 315.0, 2.0 / 15.0, -1.0 / 3.0, 1.0]);
    let small = em.b.ins().fmul(a, series);
    let m2 = splat(em, -2.0);
    let y = em.b.ins().fmul(a, m2);
    let e = exp(em, y);
    let one = splat(em, 1.0);
    let num = em.b.ins().fsub(one, e);
    let den = em.b.ins().fadd(one, e);
    let big = em.b.ins().fdiv(num, den);
    let quarter = splat(em, 0.25);
    let is_small = em.b.ins().fcmp(FloatCC::LessThan, a, quarter);
    let is_small = em.reinterpret(types::F32X4, is_small);
    let t = em.b.ins().bitselect(is_small, small, big);
    let sign = em.b.ins().iconst(types::I32, i32::MIN as i64);
    let sign = em.b.ins().splat(types::I32X4, sign);
    let sign = em.reinterpret(types::F32X4, sign);
    em.b.ins().bitselect(sign, x, t)
}

/// The activations as the scalar lowering computes them (`lower::body::activation`).
fn activation(em: &mut Em, act: Activation, x: Value) -> Value {
    let sigmoid = |em: &mut Em, x: Value| {
        let minus = em.b.ins().fneg(x);
        let e = exp(em, minus);
        let one = splat(em, 1.0);
        let d = em.b.ins().fadd(one, e);
        em.b.ins().fdiv(one, d)
    };
    match act {
        Activation::Identity => x,
        Activation::Tanh => tanh(em, x),
        Activation::Relu => {
            let zero = splat(em, 0.0);
            em.b.ins().fmax(x, zero)
        }
        Activation::Sigmoid => sigmoid(em, x),
        Activation::Silu => {
            let s = sigmoid(em, x);
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
            let t = tanh(em, arg);
            let onet = em.b.ins().fadd(one, t);
            let hx = em.b.ins().fmul(half, x);
            em.b.ins().fmul(hx, onet)
        }
    }
}

/// Writes four agents' output `y` at `a + off`: replacing the value, or for `+=` adding to it
/// (with Kahan's update where the column has a compensation at `comp + off`).
fn store(em: &mut Em, t: &TensorPlan, a: Value, comp: Option<Value>, off: i32, y: Value) {
    let a = em.b.ins().iadd_imm_s(a, off as i64);
    let comp = comp.map(|c| em.b.ins().iadd_imm_s(c, off as i64));
    let x = match (t.accumulate, comp) {
        (true, Some(c)) => {
            let old = em.b.ins().load(types::F32X4, FLAGS(), a, 0);
            super::cpu::compensated_add_at(em, c, old, y, true)
        }
        (true, None) => {
            let old = em.b.ins().load(types::F32X4, FLAGS(), a, 0);
            em.b.ins().fadd(old, y)
        }
        (false, c) => {
            if let Some(c) = c {
                super::cpu::reset_comp_at(em, c, true);
            }
            y
        }
    };
    em.b.ins().store(FLAGS(), x, a, 0);
}
