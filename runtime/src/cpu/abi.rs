//! The calling convention between generated CPU kernels and the executor. The compiler emits
//! code against it and the runtime calls that code, so both read these constants.
//!
//! Every kernel takes a pointer to a [`Ctx`] first. Map-like kernels then take `(begin, end)`:
//! the agents they update. All-pairs kernels take `(i_begin, i_end, j_begin, j_end)`: a tile of
//! rows and columns (for pairs of one agent type, only `j > i` is visited). Neighbour kernels take
//! `(pairs, count)`: a list of `(i, j)` index pairs as two `u32`s each.

/// Byte offsets of the fields of [`Ctx`].
pub const COLS_A: i32 = 0;
pub const COLS_B: i32 = 8;
pub const DELTA_A: i32 = 16;
pub const DELTA_B: i32 = 24;
pub const UNIFORMS: i32 = 32;
pub const FAIL: i32 = 40;
pub const COMP: i32 = 48;
pub const UNIFORMS_F32: i32 = 56;

/// Agents processed per SIMD step.
pub const LANES: i64 = 4;

/// Agents a tensor kernel computes per step (four vectors). Every column is allocated to a
/// multiple of it and every thread's range starts at one, so that a tensor kernel runs whole
/// steps to the end of its range, past the last agent into the padding, and needs no scalar
/// copy of the model for the remainder (which cost seconds of compile time for a modest MLP).
pub const TENSOR_AGENTS: i64 = 4 * LANES;

/// What a kernel reads and writes.
#[repr(C)]
pub struct Ctx {
    /// Base pointer of each column of the first agent type.
    pub cols_a: *const *mut u8,
    /// Base pointer of each column of the second agent type (pair kernels).
    pub cols_b: *const *mut u8,
    /// Pair kernels: base pointer, per column, of the changes accumulated for the first agent type.
    pub delta_a: *const *mut u8,
    pub delta_b: *const *mut u8,
    /// The run-time parameters, as f64.
    pub uniforms: *const f64,
    /// Set to 1 + the message index of the first failed check.
    pub fail: *mut i32,
    /// Agent kernels: per column, the compensation of its compensated updates (or null).
    pub comp: *const *mut u8,
    /// The run-time parameters rounded to f32, which tensor loops read: half the bytes of a
    /// large matrix, and no conversion per use.
    pub uniforms_f32: *const f32,
}

/// Every (agent type, column) some kernel updates with compensation; other stores to these
/// columns reset the compensation.
pub fn compensated_columns(m: &crate::ir::Module) -> Vec<(usize, u32)> {
    let mut out = Vec::new();
    for k in &m.kernels {
        if let Some(&agent) = k.pattern.slots().first() {
            for (col, _, _) in compensated_stores(m, k) {
                if !out.contains(&(agent, col)) {
                    out.push((agent, col));
                }
            }
        }
    }
    out
}

/// Columns an agent kernel updates as `x + increment` in f32: the executor keeps the
/// rounding error of each such update (Kahan's compensated summation), so positions and
/// velocities do not random-walk by an ulp per step over a long run.
pub fn compensated_stores(m: &crate::ir::Module, k: &crate::ir::Kernel) -> Vec<(u32, u32, u32)> {
    use crate::ir::{BinOp, Op, Pattern, Scalar};
    let agent = match k.pattern {
        Pattern::Integrate { agent, .. } | Pattern::Map { agent } => agent,
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    for inst in &k.insts {
        let Op::Store { slot: 0, col, value } = inst.op else { continue };
        // Nor wide fields (one device buffer each): a compensation a lane would double the
        // memory and traffic of the large vectors GEMMs move.
        if m.column_types[agent][col as usize] != Scalar::F32
            || matches!(crate::gpu::home(m, agent, col).0, crate::gpu::Buf::Field { .. })
        {
            continue;
        }
        if let Op::Bin(BinOp::Add, p, q) = k.insts[value as usize].op {
            let is_self = |v: u32| k.insts[v as usize].op == Op::Load { slot: 0, col };
            if is_self(p) {
                out.push((col, p, q));
            } else if is_self(q) {
                out.push((col, q, p));
            }
        }
    }
    out
}

/// Math functions kernels call, by index: the compiler refers to them as `u0:INDEX`, and the
/// runtime declares them first, in this order, so that the indices name the same functions.
pub const LIBM: &[(&str, bool, usize)] = &[
    ("aiic_expf", false, 1),
    ("aiic_logf", false, 1),
    ("aiic_sinf", false, 1),
    ("aiic_cosf", false, 1),
    ("aiic_tanhf", false, 1),
    ("aiic_powf", false, 2),
    ("aiic_fmodf", false, 2),
    ("aiic_exp", true, 1),
    ("aiic_log", true, 1),
    ("aiic_sin", true, 1),
    ("aiic_cos", true, 1),
    ("aiic_tanh", true, 1),
    ("aiic_pow", true, 2),
    ("aiic_fmod", true, 2),
];

/// Index in [`LIBM`] of a math function on f32 (`wide = false`) or f64.
pub fn libm_index(base: &str, wide: bool) -> Option<u32> {
    let name = if wide { format!("aiic_{base}") } else { format!("aiic_{base}f") };
    LIBM.iter().position(|(n, w, _)| *n == name && *w == wide).map(|i| i as u32)
}

/// The size in bytes of a column element of each scalar type (f16 and bf16 are stored as f32).
pub fn column_bytes(s: crate::ir::Scalar) -> i64 {
    match s {
        crate::ir::Scalar::F64 => 8,
        _ => 4,
    }
}
