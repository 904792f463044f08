//! PTX for one dense f16 layer over lane-major agents, as a tensor-core GEMM:
//! `y[o*S + i] = (accumulate ? y[o*S + i] : 0) + bias[o] + Σ_k W[o*Kp + k] · x[k*S + i]`,
//! i.e. D (M = outputs × N = agents) = A (W, K contiguous) · B (x, N contiguous), f32 accumulate.
//!
//! Two variants, chosen by [`GemmArch`]:
//! - `MmaSync` (sm_80+): block tile 128×128×32, 8 warps as 2 (M) × 4 (N), each warp 64×32 =
//!   4×4 `mma.m16n8k16`. Operands go global → shared by `cp.async.cg` (16 B, zero-fill form for
//!   rows past `cols` and agents past `n`) through a 4-stage ring, so three tiles are in flight
//!   while one is multiplied; shared → registers by `ldmatrix` (`.trans` for B, which is
//!   N-major). A rows are 64 B and B rows 256 B, so unswizzled the 8 rows one `ldmatrix` phase
//!   reads would hit the same banks; the 16-byte chunk index is XORed with row bits (A:
//!   `(row>>1)&3`, B: `row&7`), which spreads both the `cp.async` writes and the `ldmatrix`
//!   reads of any 8 rows over all 32 banks. 64 KiB of dynamic shared memory.
//! - `Wgmma` (sm_90a): block tile 128×256×64, two warpgroups each issuing `wgmma.m64n256k16`
//!   (128 f32 accumulators a thread). Shared tiles use the 128-byte swizzle the tensor cores
//!   decode from the descriptor: A K-major (a 128 B row per output, 8-row groups 1024 B apart),
//!   B MN-major with imm-trans-b (64-agent × 8-k atoms; LBO steps 64 agents, SBO 8 k rows). The
//!   same threads stage tiles with `cp.async` (a TMA tensor map would need the host), each
//!   chunk written at its swizzled place, then `fence.proxy.async` makes them visible to the
//!   tensor cores. 4 stages of 48 KiB; `wgmma.wait_group 1` keeps one k-tile's products in
//!   flight while the next loads are issued, and a barrier after it frees the oldest stage.
//!
//! The epilogue adds bias (and y when accumulating, its loads issued in batches of 4 pairs before
//! the stores, which could alias them) and stores f32 pairs straight from the accumulators.
//! Only outputs `o < rows` and agents `i < n` are stored. W and bias are zero-padded by the
//! host to [`padded`], so W loads need no bounds checks; the grid is [`grid`].

use std::fmt::Write;

macro_rules! e {
    ($s:expr, $($t:tt)*) => {{
        let _ = writeln!($s, $($t)*);
    }};
}

// MmaSync tiles.
const MS_TM: u32 = 128;
const MS_TN: u32 = 128;
const MS_TK: u32 = 32;
const MS_STAGES: u32 = 4;
const MS_THREADS: u32 = 256;
/// Bytes of one stage: A (128 rows × 64 B) then B (32 rows × 256 B).
const MS_A_BYTES: u32 = MS_TM * MS_TK * 2;
const MS_STAGE: u32 = MS_A_BYTES + MS_TK * MS_TN * 2;

// Wgmma tiles.
const WG_TM: u32 = 128;
const WG_TN: u32 = 256;
const WG_TK: u32 = 64;
const WG_STAGES: u32 = 4;
const WG_THREADS: u32 = 256;
const WG_A_BYTES: u32 = WG_TM * WG_TK * 2;
const WG_STAGE: u32 = WG_A_BYTES + WG_TK * WG_TN * 2;
/// M-tiles per group of the block order (see `common_regs`): the blocks resident at once share
/// W and x tiles in L2. On an H100, 8 against the plain order (1): 515 → 547 TFLOP/s at 8,192
/// agents, 411 → 564 at 16,384 (bench/RESULTS.md).
const RASTER: u32 = 8;
/// The 128-byte swizzle repeats every 1024 B and is decoded from absolute shared addresses,
/// so the kernel rounds its base up to 1024 and asks for that much slack.
const WG_ALIGN: u32 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemmArch {
    /// `mma.sync` + `ldmatrix`, `.target sm_80` (also assembles for sm_90).
    MmaSync,
    /// `wgmma.mma_async`, `.target sm_90a`.
    Wgmma,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GemmSpec {
    pub rows: u32,
    pub cols: u32,
    pub accumulate: bool,
    pub arch: GemmArch,
    /// The agent type, whose count is `sizes[agent]`.
    pub agent: u32,
}

/// What a GEMM device kernel is: the layer, or the f16 copy of its input field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GemmCode {
    /// The whole PTX module of the layer's kernel ([`gemm_ptx`]).
    Layer(String),
    /// `half[l · x_stride(n) + i] = f16(field[l · n + i])`: a thread per agent and lane.
    Copy { agent: u32 },
}

/// Threads of a block of the copy kernel, and agents each converts: a thread writes one
/// 16-byte chunk of eight f16 values.
const COPY_BLOCK: u32 = 256;
const COPY_AGENTS: u32 = 8;

/// The launch of the copy kernel: a block per `COPY_BLOCK × COPY_AGENTS` agents of each of
/// `lanes` lanes.
pub fn copy_tiles(lanes: u32) -> aiic_runtime::gpu::Tiles {
    aiic_runtime::gpu::Tiles { agents: COPY_BLOCK * COPY_AGENTS, y: lanes, block: COPY_BLOCK, shared: 0 }
}

/// The PTX of a GEMM device kernel with entry `entry`, to go into the module of the other
/// kernels (`sm_80`): the module's own header is dropped and its dynamic workgroup memory
/// renamed per entry.
pub fn lower(g: &GemmCode, entry: &str) -> String {
    match g {
        GemmCode::Layer(text) => {
            let body: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with(".version") && !l.starts_with(".target") && !l.starts_with(".address_size"))
                .collect();
            body.join("\n").replace("smem", &format!("smem_{entry}")) + "\n"
        }
        GemmCode::Copy { agent } => copy_ptx(entry, *agent),
    }
}

/// The copy kernel: block (x, y) converts agents `2048x ..` of lane y, eight a thread (zeros
/// past the count), stored as one 16-byte chunk: every lane of the copy starts 256-byte aligned.
fn copy_ptx(entry: &str, agent: u32) -> String {
    let mut s = String::new();
    e!(s, ".visible .entry {entry}(\n\t.param .u64 src,\n\t.param .u64 dst,\n\t.param .u64 sizes\n)");
    e!(s, ".maxntid {COPY_BLOCK}, 1, 1\n{{");
    e!(s, "\t.reg .pred %p<2>;\n\t.reg .b32 %r<8>;\n\t.reg .b64 %rd<8>;\n\t.reg .f32 %f<8>;\n\t.reg .b32 %h<4>;");
    e!(s, "\tld.param.u64 %rd0, [src];\n\tld.param.u64 %rd1, [dst];\n\tld.param.u64 %rd2, [sizes];");
    e!(s, "\tcvta.to.global.u64 %rd0, %rd0;\n\tcvta.to.global.u64 %rd1, %rd1;\n\tcvta.to.global.u64 %rd2, %rd2;");
    e!(s, "\tld.global.u32 %r0, [%rd2+{}];", 4 * agent);
    e!(s, "\tadd.u32 %r1, %r0, {};\n\tand.b32 %r1, %r1, {};", X_STRIDE - 1, !(X_STRIDE - 1));
    e!(s, "\tmov.u32 %r2, %ctaid.x;\n\tmov.u32 %r3, %tid.x;\n\tmad.lo.u32 %r2, %r2, {COPY_BLOCK}, %r3;");
    e!(s, "\tshl.b32 %r2, %r2, 3;\n\tsetp.ge.u32 %p0, %r2, %r0;\n\t@%p0 bra DONE;\n\tmov.u32 %r4, %ctaid.y;");
    e!(s, "\tcvt.u64.u32 %rd3, %r2;\n\tmul.wide.u32 %rd4, %r4, %r0;\n\tadd.u64 %rd4, %rd4, %rd3;");
    e!(s, "\tshl.b64 %rd4, %rd4, 2;\n\tadd.u64 %rd4, %rd0, %rd4;");
    for a in 0..COPY_AGENTS {
        e!(s, "\tmov.f32 %f{a}, 0f00000000;\n\tadd.u32 %r5, %r2, {a};\n\tsetp.lt.u32 %p1, %r5, %r0;");
        e!(s, "\t@%p1 ld.global.nc.f32 %f{a}, [%rd4+{}];", 4 * a);
    }
    for h in 0..COPY_AGENTS / 2 {
        e!(s, "\tcvt.rn.f16x2.f32 %h{h}, %f{}, %f{};", 2 * h + 1, 2 * h);
    }
    e!(s, "\tmul.wide.u32 %rd5, %r4, %r1;\n\tadd.u64 %rd5, %rd5, %rd3;\n\tshl.b64 %rd5, %rd5, 1;");
    e!(s, "\tadd.u64 %rd5, %rd1, %rd5;\n\tst.global.v4.b32 [%rd5], {{%h0, %h1, %h2, %h3}};");
    e!(s, "DONE:\n\tret;\n}}");
    s
}

/// Agents a lane of the f16 copy of x holds: the count rounded up to this (the copy kernel
/// writes it so, the GEMM reads it so).
const X_STRIDE: u32 = aiic_runtime::gpu::X_STRIDE as u32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GemmPtx {
    /// A whole PTX module with one `.entry`.
    pub text: String,
    /// Threads of a block (x only).
    pub block: u32,
    pub tile_m: u32,
    pub tile_n: u32,
    pub tile_k: u32,
    /// Dynamic shared bytes the launch must pass (and allow with
    /// `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES`); 0 if static.
    pub dynamic_shared: u32,
}

/// Mp and Kp of the host's padding of W (`[Mp][Kp]`, zeros past `rows`/`cols`) and bias
/// (`[Mp]`): `aiic_runtime::gpu::gemm_padding`, M to the M tile of both variants, K to a
/// multiple of both K tiles, so that the executor's one copy of W serves either.
pub fn padded(p: &GemmPtx, spec: &GemmSpec) -> (u32, u32) {
    let (mp, kp) = aiic_runtime::gpu::gemm_padding(spec.rows, spec.cols);
    debug_assert!(mp.is_multiple_of(p.tile_m) && kp.is_multiple_of(p.tile_k));
    (mp, kp)
}

/// The launch of the kernel: `ceil(n / tile_n)` × `Mp / tile_m` blocks for `n` agents. The
/// kernel may renumber the blocks itself (groups of `RASTER` M-tiles) for L2 reuse; the launch
/// only has to cover this shape.
pub fn tiles(p: &GemmPtx, spec: &GemmSpec) -> aiic_runtime::gpu::Tiles {
    let (mp, _) = padded(p, spec);
    aiic_runtime::gpu::Tiles { agents: p.tile_n, y: mp / p.tile_m, block: p.block, shared: p.dynamic_shared }
}

/// The kernel for `spec`, its entry named `name`.
pub fn gemm_ptx(spec: &GemmSpec, name: &str) -> GemmPtx {
    assert!(spec.rows > 0 && spec.cols > 0, "gemm_ptx: empty layer {}x{}", spec.rows, spec.cols);
    match spec.arch {
        GemmArch::MmaSync => mma_sync(spec, name),
        GemmArch::Wgmma => wgmma(spec, name),
    }
}

fn header(s: &mut String, target: &str, name: &str, align: u32) {
    e!(s, "//\n// Generated by aiic (backend/gpu/gemm.rs)\n//\n.version 8.0\n.target {target}\n.address_size 64\n");
    e!(s, ".extern .shared .align {align} .b8 smem[];\n");
    e!(s, ".visible .entry {name}(");
    e!(s, "\t.param .u64 x,\n\t.param .u64 w,\n\t.param .u64 bias,\n\t.param .u64 y,\n\t.param .u64 sizes\n)");
}

/// Loads of the parameters and thread indices every variant shares.
fn common_regs(s: &mut String, tm_log: u32, tn_log: u32, agent: u32) {
    e!(s, "\t.reg .pred %p<8>;\n\t.reg .b32 %t<16>;\n\t.reg .b64 %q<8>;");
    e!(s, "\t.reg .b64 %gx, %gw, %gb, %gy, %gs;\n\t.reg .b32 %n, %s, %sy, %th, %lane, %warp, %g, %tq, %m0, %n0, %sb;");
    e!(s, "\tld.param.u64 %gx, [x];\n\tld.param.u64 %gw, [w];\n\tld.param.u64 %gb, [bias];\n\tld.param.u64 %gy, [y];");
    e!(s, "\tcvta.to.global.u64 %gx, %gx;\n\tcvta.to.global.u64 %gw, %gw;");
    e!(s, "\tcvta.to.global.u64 %gb, %gb;\n\tcvta.to.global.u64 %gy, %gy;");
    // n from the agent counts; x (the f16 copy) has `stride(n)` agents a lane, y exactly n.
    e!(s, "\tld.param.u64 %gs, [sizes];\n\tcvta.to.global.u64 %gs, %gs;\n\tld.global.u32 %n, [%gs+{}];", 4 * agent);
    e!(s, "\tadd.u32 %s, %n, {};\n\tand.b32 %s, %s, {};\n\tmov.u32 %sy, %n;", X_STRIDE - 1, !(X_STRIDE - 1));
    e!(
        s,
        "\t.reg .pred %yeven, %yodd;\n\tand.b32 %t0, %sy, 1;\n\tsetp.eq.u32 %yeven, %t0, 0;\n\tnot.pred %yodd, %yeven;"
    );
    e!(s, "\tmov.u32 %th, %tid.x;\n\tand.b32 %lane, %th, 31;\n\tshr.u32 %warp, %th, 5;");
    e!(s, "\tshr.u32 %g, %lane, 2;\n\tand.b32 %tq, %lane, 3;");
    // Blocks run in groups of RASTER M-tiles, agents outer within a group, so the blocks
    // resident at once share W and x tiles in L2; the launch grid keeps its plain shape.
    e!(s, "\tmov.u32 %t0, %ctaid.x;\n\tmov.u32 %t1, %ctaid.y;\n\tmov.u32 %t2, %nctaid.x;\n\tmov.u32 %t3, %nctaid.y;");
    e!(s, "\tmad.lo.u32 %t0, %t1, %t2, %t0;\n\tmul.lo.u32 %t5, %t2, {RASTER};\n\tdiv.u32 %t6, %t0, %t5;\n\trem.u32 %t0, %t0, %t5;");
    e!(s, "\tmul.lo.u32 %t6, %t6, {RASTER};\n\tsub.u32 %t7, %t3, %t6;\n\tmin.u32 %t7, %t7, {RASTER};");
    e!(s, "\trem.u32 %t1, %t0, %t7;\n\tadd.u32 %t1, %t1, %t6;\n\tdiv.u32 %t0, %t0, %t7;");
    e!(s, "\tshl.b32 %n0, %t0, {tn_log};\n\tshl.b32 %m0, %t1, {tm_log};");
    e!(s, "\tmov.u32 %sb, smem;");
}

/// Per-thread setup of one B chunk column: `%pb` = &x[krow*S + n0 + col*8], `%nbB` = bytes of
/// that 8-agent chunk that lie below `n` (cp.async zero-fills the rest).
fn b_source(s: &mut String, krow: &str, col8: &str) {
    e!(s, "\tshl.b32 %t0, {col8}, 3;\n\tadd.u32 %t0, %n0, %t0;");
    e!(s, "\tsub.s32 %t1, %n, %t0;\n\tmax.s32 %t1, %t1, 0;\n\tmin.s32 %t1, %t1, 8;\n\tshl.b32 %nbB, %t1, 1;");
    e!(s, "\tmul.wide.u32 %q0, {krow}, %s;\n\tcvt.u64.u32 %q1, %t0;\n\tadd.u64 %q0, %q0, %q1;");
    e!(s, "\tshl.b64 %q0, %q0, 1;\n\tadd.u64 %pb, %gx, %q0;");
}

/// One pair of accumulators for agents c, c+1 of an output row: register names, `ptr` the
/// address of y[r*S + c] (register + immediate), `pr` the row predicate (used if rows are
/// checked), `both` (c+1 < n), `one` (c < n <= c+1), `ld` (c < n).
struct Pair {
    v0: String,
    v1: String,
    bias: &'static str,
    /// y[r*S + c] as a register and a byte offset.
    base: String,
    off: u32,
    pr: &'static str,
    both: String,
    one: String,
    ld: String,
}

/// Largest batch [`Epi::flush`] takes: its loads of y are all issued before the first store,
/// since a store to y could alias a later load and would otherwise serialize each latency.
const EPI_BATCH: usize = 4;

struct Epi {
    rows_check: bool,
    accumulate: bool,
}

impl Epi {
    fn flush(&self, s: &mut String, pairs: &[Pair]) {
        for batch in pairs.chunks(EPI_BATCH) {
            self.batch(s, batch);
        }
    }

    fn batch(&self, s: &mut String, pairs: &[Pair]) {
        let mut preds = Vec::new();
        for (k, p) in pairs.iter().enumerate() {
            if self.rows_check {
                e!(s, "\tand.pred %eb{k}, {}, {};\n\tand.pred %eo{k}, {}, {};", p.both, p.pr, p.one, p.pr);
                e!(s, "\tand.pred %el{k}, {}, {};", p.ld, p.pr);
                preds.push((format!("%eb{k}"), format!("%eo{k}"), format!("%el{k}")));
            } else {
                preds.push((p.both.clone(), p.one.clone(), p.ld.clone()));
            }
        }
        // y's agent stride is the agent count: where it is even a whole pair is one 8-byte
        // access (`%ev`); otherwise, and for a last agent alone, one element at a time.
        for (k, (both, _, ld)) in preds.iter().enumerate() {
            e!(s, "\tand.pred %ev{k}, {both}, %yeven;\n\tnot.pred %p0, %ev{k};\n\tand.pred %es{k}, {ld}, %p0;");
            e!(s, "\tand.pred %et{k}, {both}, %yodd;");
        }
        if self.accumulate {
            for (k, p) in pairs.iter().enumerate() {
                let (a, b) = (2 * k, 2 * k + 1);
                e!(s, "\t@%ev{k} ld.global.v2.f32 {{%ey{a}, %ey{b}}}, [{}+{}];", p.base, p.off);
                e!(s, "\t@%es{k} ld.global.f32 %ey{a}, [{}+{}];", p.base, p.off);
                e!(s, "\t@%et{k} ld.global.f32 %ey{b}, [{}+{}];", p.base, p.off + 4);
            }
        }
        for (k, p) in pairs.iter().enumerate() {
            e!(s, "\tadd.f32 %e0, {}, {};\n\tadd.f32 %e1, {}, {};", p.v0, p.bias, p.v1, p.bias);
            if self.accumulate {
                e!(s, "\tadd.f32 %e0, %e0, %ey{};\n\tadd.f32 %e1, %e1, %ey{};", 2 * k, 2 * k + 1);
            }
            e!(s, "\t@%ev{k} st.global.v2.f32 [{}+{}], {{%e0, %e1}};", p.base, p.off);
            e!(s, "\t@%es{k} st.global.f32 [{}+{}], %e0;", p.base, p.off);
            e!(s, "\t@%et{k} st.global.f32 [{}+{}], %e1;", p.base, p.off + 4);
        }
    }

    fn regs(s: &mut String) {
        e!(
            s,
            "\t.reg .f32 %ey<{}>;\n\t.reg .pred %eb<{EPI_BATCH}>, %eo<{EPI_BATCH}>, %el<{EPI_BATCH}>, %ev<{EPI_BATCH}>, %es<{EPI_BATCH}>, %et<{EPI_BATCH}>;",
            2 * EPI_BATCH
        );
    }
}

fn mma_sync(spec: &GemmSpec, name: &str) -> GemmPtx {
    let p0 = GemmPtx {
        text: String::new(),
        block: MS_THREADS,
        tile_m: MS_TM,
        tile_n: MS_TN,
        tile_k: MS_TK,
        dynamic_shared: MS_STAGE * MS_STAGES,
    };
    let (_, kp) = padded(&p0, spec);
    let kt = kp / MS_TK;
    let kcheck = spec.cols != kp;
    let mut s = String::new();
    header(&mut s, "sm_80", name, 128);
    e!(s, ".maxntid {MS_THREADS}, 1, 1\n{{");
    e!(s, "\t.reg .f32 %acc<64>;\n\t.reg .b32 %fa<32>;\n\t.reg .b32 %fb<16>;\n\t.reg .f32 %e<4>;");
    e!(s, "\t.reg .b32 %wm, %wn, %aoff, %boff, %nbB, %kgB, %kt, %rofs, %wofs, %wa, %wb, %sz0, %sz1;");
    e!(s, "\t.reg .b32 %la0, %la1, %lb0, %lb1, %ra0, %ra1, %rb0, %rb1;");
    e!(s, "\t.reg .b64 %pa, %pb, %pb1, %sB16, %sBt, %src0, %src1;");
    common_regs(&mut s, 7, 7, spec.agent);
    e!(s, "\tand.b32 %wm, %warp, 1;\n\tshr.u32 %wn, %warp, 1;");

    // Copy roles: A chunk (row tid/4 [+64], 16 B chunk tid%4); B chunk (k row tid/16 [+16],
    // chunk tid%16). Swizzled so 8 consecutive threads fill 8 distinct 16-byte bank groups.
    e!(s, "\t// A copy: smem row*64 + ((kc ^ ((row>>1)&3))*16)");
    e!(s, "\tshr.u32 %t2, %th, 2;\n\tand.b32 %t3, %th, 3;");
    e!(s, "\tshr.u32 %t0, %t2, 1;\n\tand.b32 %t0, %t0, 3;\n\txor.b32 %t0, %t0, %t3;\n\tshl.b32 %t0, %t0, 4;");
    e!(s, "\tshl.b32 %t1, %t2, 6;\n\tadd.u32 %aoff, %t0, %t1;\n\tadd.u32 %aoff, %aoff, %sb;");
    e!(s, "\tadd.u32 %t0, %m0, %t2;\n\tmul.wide.u32 %q0, %t0, {};\n\tadd.u64 %pa, %gw, %q0;", kp * 2);
    e!(s, "\tshl.b32 %t1, %t3, 4;\n\tcvt.u64.u32 %q1, %t1;\n\tadd.u64 %pa, %pa, %q1;");
    e!(s, "\t// B copy: smem {MS_A_BYTES} + k*256 + ((nc ^ (k&7))*16)");
    e!(s, "\tshr.u32 %t2, %th, 4;\n\tand.b32 %t3, %th, 15;\n\tmov.u32 %kgB, %t2;");
    e!(s, "\tand.b32 %t0, %t2, 7;\n\txor.b32 %t0, %t0, %t3;\n\tshl.b32 %t0, %t0, 4;");
    e!(s, "\tshl.b32 %t1, %t2, 8;\n\tadd.u32 %boff, %t0, %t1;\n\tadd.u32 %boff, %boff, %sb;\n\tadd.u32 %boff, %boff, {MS_A_BYTES};");
    b_source(&mut s, "%t2", "%t3");
    e!(s, "\tmul.wide.u32 %sB16, %s, 32;\n\tmul.wide.u32 %sBt, %s, {};", MS_TK * 2);

    // ldmatrix roles. A x4: lane supplies row lane%16, k chunk lane/16 (→ a0..a3 of m16k16).
    // B x4.trans: lane supplies k row (lane&7)+8*((lane>>3)&1), n chunk lane/16 (→ b0,b1 of
    // two n8 tiles).
    e!(s, "\t// ldmatrix lane addresses");
    e!(s, "\tand.b32 %t2, %lane, 15;\n\tshl.b32 %t3, %wm, 6;\n\tadd.u32 %t2, %t2, %t3;\n\tshl.b32 %t2, %t2, 6;");
    e!(s, "\tshr.u32 %t3, %lane, 1;\n\tand.b32 %t3, %t3, 3;\n\tshr.u32 %t5, %lane, 4;");
    for ks in 0..2 {
        e!(s, "\tadd.u32 %t0, %t5, {};\n\txor.b32 %t0, %t0, %t3;\n\tshl.b32 %t0, %t0, 4;", ks * 2);
        e!(s, "\tadd.u32 %t0, %t0, %t2;\n\tadd.u32 %la{ks}, %t0, %sb;");
    }
    e!(s, "\tand.b32 %t2, %lane, 7;\n\tshr.u32 %t3, %lane, 3;\n\tand.b32 %t3, %t3, 1;\n\tshl.b32 %t3, %t3, 3;");
    e!(
        s,
        "\tadd.u32 %t3, %t3, %t2;\n\tshl.b32 %t3, %t3, 8;\n\tadd.u32 %t3, %t3, %sb;\n\tadd.u32 %t3, %t3, {MS_A_BYTES};"
    );
    e!(s, "\tshl.b32 %t6, %wn, 2;\n\tadd.u32 %t6, %t6, %t5;");
    for nj in 0..2 {
        e!(s, "\tadd.u32 %t0, %t6, {};\n\txor.b32 %t0, %t0, %t2;\n\tshl.b32 %t0, %t0, 4;", nj * 2);
        e!(s, "\tadd.u32 %lb{nj}, %t0, %t3;");
    }
    for i in 0..64 {
        e!(s, "\tmov.f32 %acc{i}, 0f00000000;");
    }

    let load = |s: &mut String| {
        e!(s, "\tadd.u32 %wa, %aoff, %wofs;\n\tadd.u32 %wb, %boff, %wofs;");
        e!(s, "\tcp.async.cg.shared.global [%wa], [%pa], 16;");
        e!(s, "\tcp.async.cg.shared.global [%wa+{}], [%pa+{}], 16;", MS_TM / 2 * MS_TK * 2, MS_TM / 2 * kp * 2);
        e!(s, "\tadd.u64 %pb1, %pb, %sB16;");
        if kcheck {
            // Rows past `cols` are not in x: read nothing (from a valid address), store zeros.
            e!(
                s,
                "\tsetp.lt.u32 %p0, %kgB, {};\n\tselp.b32 %sz0, %nbB, 0, %p0;\n\tselp.b64 %src0, %pb, %gx, %p0;",
                spec.cols
            );
            e!(s, "\tadd.u32 %t0, %kgB, 16;\n\tsetp.lt.u32 %p0, %t0, {};", spec.cols);
            e!(s, "\tselp.b32 %sz1, %nbB, 0, %p0;\n\tselp.b64 %src1, %pb1, %gx, %p0;");
            e!(s, "\tcp.async.cg.shared.global [%wb], [%src0], 16, %sz0;");
            e!(s, "\tcp.async.cg.shared.global [%wb+{}], [%src1], 16, %sz1;", 16 * MS_TN * 2);
        } else {
            e!(s, "\tcp.async.cg.shared.global [%wb], [%pb], 16, %nbB;");
            e!(s, "\tcp.async.cg.shared.global [%wb+{}], [%pb1], 16, %nbB;", 16 * MS_TN * 2);
        }
        e!(s, "\tadd.u64 %pa, %pa, {};\n\tadd.u64 %pb, %pb, %sBt;\n\tadd.u32 %kgB, %kgB, {MS_TK};", MS_TK * 2);
    };

    e!(s, "\t// prologue: tiles 0..{} in flight", MS_STAGES - 2);
    for st in 0..MS_STAGES - 1 {
        if st < kt {
            e!(s, "\tmov.u32 %wofs, {};", st * MS_STAGE);
            load(&mut s);
        }
        e!(s, "\tcp.async.commit_group;");
    }
    e!(s, "\tmov.u32 %kt, 0;\n\tmov.u32 %rofs, 0;\n\tmov.u32 %wofs, {};", (MS_STAGES - 1) * MS_STAGE);
    e!(s, "LOOP:");
    // Tile kt has landed once at most STAGES-2 newer groups are pending; the barrier also says
    // every warp is done reading the stage the next load overwrites (read in iteration kt-1).
    e!(s, "\tcp.async.wait_group {};\n\tbar.sync 0;", MS_STAGES - 2);
    e!(s, "\tadd.u32 %t0, %kt, {};\n\tsetp.ge.u32 %p0, %t0, {kt};\n\t@%p0 bra SKIP;", MS_STAGES - 1);
    load(&mut s);
    e!(s, "SKIP:\n\tcp.async.commit_group;");
    e!(s, "\tadd.u32 %ra0, %la0, %rofs;\n\tadd.u32 %ra1, %la1, %rofs;");
    e!(s, "\tadd.u32 %rb0, %lb0, %rofs;\n\tadd.u32 %rb1, %lb1, %rofs;");
    for ks in 0..2u32 {
        for mi in 0..4u32 {
            let b = ks * 16 + mi * 4;
            e!(
                s,
                "\tldmatrix.sync.aligned.m8n8.x4.shared.b16 {{%fa{}, %fa{}, %fa{}, %fa{}}}, [%ra{ks}+{}];",
                b,
                b + 1,
                b + 2,
                b + 3,
                mi * 16 * MS_TK * 2
            );
        }
        for nj in 0..2u32 {
            let b = ks * 8 + nj * 4;
            e!(
                s,
                "\tldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {{%fb{}, %fb{}, %fb{}, %fb{}}}, [%rb{nj}+{}];",
                b,
                b + 1,
                b + 2,
                b + 3,
                ks * 16 * MS_TN * 2
            );
        }
    }
    for ks in 0..2u32 {
        for mi in 0..4u32 {
            for ni in 0..4u32 {
                let c = (mi * 4 + ni) * 4;
                let a = ks * 16 + mi * 4;
                let b = ks * 8 + (ni / 2) * 4 + (ni % 2) * 2;
                e!(
                    s,
                    "\tmma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {{%acc{c}, %acc{}, %acc{}, %acc{}}}, {{%fa{a}, %fa{}, %fa{}, %fa{}}}, {{%fb{b}, %fb{}}}, {{%acc{c}, %acc{}, %acc{}, %acc{}}};",
                    c + 1, c + 2, c + 3, a + 1, a + 2, a + 3, b + 1, c + 1, c + 2, c + 3
                );
            }
        }
    }
    let ring = MS_STAGE * MS_STAGES;
    assert!(ring.is_power_of_two());
    e!(s, "\tadd.u32 %rofs, %rofs, {MS_STAGE};\n\tand.b32 %rofs, %rofs, {};", ring - 1);
    e!(s, "\tadd.u32 %wofs, %wofs, {MS_STAGE};\n\tand.b32 %wofs, %wofs, {};", ring - 1);
    e!(s, "\tadd.u32 %kt, %kt, 1;\n\tsetp.lt.u32 %p0, %kt, {kt};\n\t@%p0 bra LOOP;");
    e!(s, "\tcp.async.wait_group 0;");

    // Epilogue: accumulator (mi, ni) holds rows wm*64+mi*16+g(+8), agents wn*32+ni*8+2t(+1).
    e!(s, "\t// epilogue");
    e!(s, "\t.reg .b32 %row, %cb;\n\t.reg .b64 %yb, %ya, %s4;\n\t.reg .f32 %bv;");
    e!(s, "\tshl.b32 %row, %wm, 6;\n\tadd.u32 %row, %row, %m0;\n\tadd.u32 %row, %row, %g;");
    e!(s, "\tshl.b32 %cb, %wn, 5;\n\tadd.u32 %cb, %cb, %n0;\n\tshl.b32 %t0, %tq, 1;\n\tadd.u32 %cb, %cb, %t0;");
    e!(s, "\tmul.wide.u32 %q0, %row, %sy;\n\tcvt.u64.u32 %q1, %cb;\n\tadd.u64 %q0, %q0, %q1;\n\tshl.b64 %q0, %q0, 2;\n\tadd.u64 %yb, %gy, %q0;");
    e!(s, "\tmul.wide.u32 %s4, %sy, 4;");
    e!(s, "\t.reg .pred %pboth<4>, %pone<4>, %pld<4>;");
    for ni in 0..4u32 {
        e!(s, "\tadd.u32 %t0, %cb, {};\n\tsetp.lt.u32 %pld{ni}, %t0, %n;\n\tadd.u32 %t0, %t0, 1;\n\tsetp.lt.u32 %pboth{ni}, %t0, %n;", ni * 8);
        e!(s, "\tnot.pred %p0, %pboth{ni};\n\tand.pred %pone{ni}, %pld{ni}, %p0;");
    }
    let epi = Epi { rows_check: !spec.rows.is_multiple_of(MS_TM), accumulate: spec.accumulate };
    Epi::regs(&mut s);
    e!(s, "\t.reg .f32 %bv1;\n\t.reg .b64 %ya1;");
    for mi in 0..4u32 {
        let mut pairs = Vec::new();
        for h in 0..2u32 {
            let dr = mi * 16 + h * 8;
            let (bv, ya, pr) = if h == 0 { ("%bv", "%ya", "%p3") } else { ("%bv1", "%ya1", "%p4") };
            e!(s, "\tadd.u32 %t1, %row, {dr};");
            e!(s, "\tmul.wide.u32 %q0, %t1, 4;\n\tadd.u64 %q0, %gb, %q0;\n\tld.global.nc.f32 {bv}, [%q0];");
            if epi.rows_check {
                e!(s, "\tsetp.lt.u32 {pr}, %t1, {};", spec.rows);
            }
            e!(s, "\tmul.lo.u64 %q0, %s4, {dr};\n\tadd.u64 {ya}, %yb, %q0;");
            for ni in 0..4u32 {
                let c = (mi * 4 + ni) * 4 + h * 2;
                pairs.push(Pair {
                    v0: format!("%acc{c}"),
                    v1: format!("%acc{}", c + 1),
                    bias: bv,
                    base: ya.to_string(),
                    off: ni * 32,
                    pr,
                    both: format!("%pboth{ni}"),
                    one: format!("%pone{ni}"),
                    ld: format!("%pld{ni}"),
                });
            }
        }
        epi.flush(&mut s, &pairs);
    }
    e!(s, "\tret;\n}}");
    GemmPtx { text: s, ..p0 }
}

fn wgmma(spec: &GemmSpec, name: &str) -> GemmPtx {
    let p0 = GemmPtx {
        text: String::new(),
        block: WG_THREADS,
        tile_m: WG_TM,
        tile_n: WG_TN,
        tile_k: WG_TK,
        dynamic_shared: WG_STAGE * WG_STAGES + WG_ALIGN,
    };
    let (_, kp) = padded(&p0, spec);
    let kt = kp / WG_TK;
    let kcheck = spec.cols != kp;
    let mut s = String::new();
    header(&mut s, "sm_90a", name, 128);
    e!(s, ".maxntid {WG_THREADS}, 1, 1\n.minnctapersm 1\n{{");
    e!(s, "\t.reg .f32 %d<128>;\n\t.reg .f32 %e<4>;\n\t.reg .pred %pt;");
    e!(s, "\t.reg .b32 %wg, %wq, %aoff, %boff, %nbB, %kgB, %kt, %rofs, %wofs, %wa, %wb, %sz;");
    e!(s, "\t.reg .b32 %dhi, %sa16, %adA, %adB, %awg, %lo;\n\t.reg .b64 %descA, %descB;");
    e!(s, "\t.reg .b64 %pa, %pb, %pbi, %sB16, %sBt, %src;");
    common_regs(&mut s, 7, 8, spec.agent);
    e!(s, "\tshr.u32 %wg, %th, 7;\n\tand.b32 %wq, %warp, 3;");
    e!(s, "\tadd.u32 %sb, %sb, {};\n\tand.b32 %sb, %sb, {};", WG_ALIGN - 1, !(WG_ALIGN - 1));
    e!(s, "\tsetp.eq.u32 %pt, 0, 0;");

    // A copy: row tid/8 (+32 i), 16 B chunk c = tid%8 at row*128 + ((c ^ row%8)*16), the
    // 128-byte swizzle of a K-major tile whose rows are exactly 128 B.
    e!(s, "\tshr.u32 %t2, %th, 3;\n\tand.b32 %t3, %th, 7;");
    e!(s, "\tand.b32 %t0, %t2, 7;\n\txor.b32 %t0, %t0, %t3;\n\tshl.b32 %t0, %t0, 4;");
    e!(s, "\tshl.b32 %t1, %t2, 7;\n\tadd.u32 %aoff, %t0, %t1;\n\tadd.u32 %aoff, %aoff, %sb;");
    e!(s, "\tadd.u32 %t0, %m0, %t2;\n\tmul.wide.u32 %q0, %t0, {};\n\tadd.u64 %pa, %gw, %q0;", kp * 2);
    e!(s, "\tshl.b32 %t1, %t3, 4;\n\tcvt.u64.u32 %q1, %t1;\n\tadd.u64 %pa, %pa, %q1;");
    // B copy: k row = warp (+8 i), agent chunk j = lane (0..31): 64-agent block j/8 at
    // {A} + (j/8)*8192, then k*128 + ((j%8 ^ k%8)*16): the MN-major 128-byte swizzle atom.
    e!(s, "\tand.b32 %t3, %lane, 7;\n\txor.b32 %t0, %t3, %warp;\n\tshl.b32 %t0, %t0, 4;");
    e!(s, "\tshr.u32 %t1, %lane, 3;\n\tshl.b32 %t1, %t1, 13;\n\tadd.u32 %boff, %t0, %t1;");
    e!(s, "\tshl.b32 %t1, %warp, 7;\n\tadd.u32 %boff, %boff, %t1;\n\tadd.u32 %boff, %boff, %sb;\n\tadd.u32 %boff, %boff, {WG_A_BYTES};");
    e!(s, "\tmov.u32 %kgB, %warp;");
    b_source(&mut s, "%warp", "%lane");
    e!(s, "\tmul.wide.u32 %sB16, %s, 16;\n\tmul.wide.u32 %sBt, %s, {};", WG_TK * 2);

    // Descriptor words. lo: start>>4 | LBO>>4 << 16; hi: SBO>>4 | 128B swizzle (1 << 62).
    // A (K-major, swizzled): LBO unused (1), SBO = 1024 (8 rows of 128 B); warpgroup wg takes
    // rows 64*wg.. B (MN-major): LBO = 8192 (next 64 agents), SBO = 1024 (next 8 k rows).
    e!(s, "\tmov.u32 %dhi, {};", (1024u32 >> 4) | (1 << 30));
    e!(s, "\tshl.b32 %awg, %wg, {};\n\tadd.u32 %awg, %awg, {};", ((64 * 128u32) >> 4).trailing_zeros(), 1u32 << 16);
    for i in 0..128 {
        e!(s, "\tmov.f32 %d{i}, 0f00000000;");
    }

    let load = |s: &mut String| {
        e!(s, "\tadd.u32 %wa, %aoff, %wofs;\n\tadd.u32 %wb, %boff, %wofs;");
        for i in 0..4u32 {
            e!(s, "\tcp.async.cg.shared.global [%wa+{}], [%pa+{}], 16;", i * 32 * 128, i * 32 * kp * 2);
        }
        e!(s, "\tmov.u64 %pbi, %pb;");
        for i in 0..8u32 {
            if i > 0 {
                e!(s, "\tadd.u64 %pbi, %pbi, %sB16;");
            }
            if kcheck {
                e!(s, "\tadd.u32 %t0, %kgB, {};\n\tsetp.lt.u32 %p0, %t0, {};", i * 8, spec.cols);
                e!(s, "\tselp.b32 %sz, %nbB, 0, %p0;\n\tselp.b64 %src, %pbi, %gx, %p0;");
                e!(s, "\tcp.async.cg.shared.global [%wb+{}], [%src], 16, %sz;", i * 1024);
            } else {
                e!(s, "\tcp.async.cg.shared.global [%wb+{}], [%pbi], 16, %nbB;", i * 1024);
            }
        }
        e!(s, "\tadd.u64 %pa, %pa, {};\n\tadd.u64 %pb, %pb, %sBt;\n\tadd.u32 %kgB, %kgB, {WG_TK};", WG_TK * 2);
    };
    let ring = WG_STAGE * WG_STAGES;
    let advance = |s: &mut String, r: &str| {
        e!(s, "\tadd.u32 {r}, {r}, {WG_STAGE};\n\tsetp.eq.u32 %p1, {r}, {ring};\n\tselp.b32 {r}, 0, {r}, %p1;");
    };

    e!(s, "\t// prologue: tiles 0..{} in flight", WG_STAGES - 2);
    for st in 0..WG_STAGES - 1 {
        if st < kt {
            e!(s, "\tmov.u32 %wofs, {};", st * WG_STAGE);
            load(&mut s);
        }
        e!(s, "\tcp.async.commit_group;");
    }
    e!(s, "\tmov.u32 %kt, 0;\n\tmov.u32 %rofs, 0;\n\tmov.u32 %wofs, {};", (WG_STAGES - 1) * WG_STAGE);
    e!(s, "LOOP:");
    // cp.async writes are generic-proxy; wgmma reads through the async proxy.
    e!(s, "\tcp.async.wait_group {};\n\tfence.proxy.async.shared::cta;\n\tbar.sync 0;", WG_STAGES - 2);
    e!(s, "\tadd.u32 %t0, %sb, %rofs;\n\tshr.u32 %sa16, %t0, 4;");
    e!(s, "\tadd.u32 %adA, %sa16, %awg;\n\tadd.u32 %adB, %sa16, {};", (WG_A_BYTES >> 4) | ((8192u32 >> 4) << 16));
    e!(s, "\twgmma.fence.sync.aligned;");
    let dl: Vec<String> = (0..128).map(|i| format!("%d{i}")).collect();
    let dl = dl.join(", ");
    for ks in 0..WG_TK / 16 {
        // k16 slice: 32 B further along an A row; 16 k rows (2 KiB) further down B.
        e!(s, "\tadd.u32 %lo, %adA, {};\n\tmov.b64 %descA, {{%lo, %dhi}};", (ks * 32) >> 4);
        e!(s, "\tadd.u32 %lo, %adB, {};\n\tmov.b64 %descB, {{%lo, %dhi}};", (ks * 16 * 128) >> 4);
        e!(s, "\twgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 {{{dl}}}, %descA, %descB, %pt, 1, 1, 0, 1;");
    }
    e!(s, "\twgmma.commit_group.sync.aligned;");
    // Products of tile kt-1 are done in this warpgroup; after the barrier, in both, so its
    // stage may be overwritten while tile kt multiplies.
    e!(s, "\twgmma.wait_group.sync.aligned 1;\n\tbar.sync 0;");
    e!(s, "\tadd.u32 %t0, %kt, {};\n\tsetp.ge.u32 %p0, %t0, {kt};\n\t@%p0 bra SKIP;", WG_STAGES - 1);
    load(&mut s);
    e!(s, "SKIP:\n\tcp.async.commit_group;");
    advance(&mut s, "%rofs");
    advance(&mut s, "%wofs");
    e!(s, "\tadd.u32 %kt, %kt, 1;\n\tsetp.lt.u32 %p0, %kt, {kt};\n\t@%p0 bra LOOP;");
    e!(s, "\twgmma.wait_group.sync.aligned 0;\n\tcp.async.wait_group 0;");

    // Epilogue: d[4j+q] is row wg*64 + wq*16 + g + 8*(q/2), agent 8j + 2t + q%2.
    e!(s, "\t// epilogue");
    e!(s, "\t.reg .b32 %row, %cb;\n\t.reg .b64 %yb, %yb1;\n\t.reg .f32 %bv0, %bv1;\n\t.reg .pred %pboth, %pone, %pld;");
    e!(s, "\tshl.b32 %row, %wg, 6;\n\tshl.b32 %t0, %wq, 4;\n\tadd.u32 %row, %row, %t0;\n\tadd.u32 %row, %row, %g;\n\tadd.u32 %row, %row, %m0;");
    e!(s, "\tshl.b32 %t0, %tq, 1;\n\tadd.u32 %cb, %n0, %t0;");
    e!(s, "\tmul.wide.u32 %q0, %row, %sy;\n\tcvt.u64.u32 %q1, %cb;\n\tadd.u64 %q0, %q0, %q1;\n\tshl.b64 %q0, %q0, 2;\n\tadd.u64 %yb, %gy, %q0;");
    e!(s, "\tmul.wide.u32 %q0, %sy, 32;\n\tadd.u64 %yb1, %yb, %q0;");
    e!(s, "\tmul.wide.u32 %q0, %row, 4;\n\tadd.u64 %q0, %gb, %q0;\n\tld.global.nc.f32 %bv0, [%q0];\n\tld.global.nc.f32 %bv1, [%q0+32];");
    let rows_check = !spec.rows.is_multiple_of(WG_TM);
    if rows_check {
        e!(
            s,
            "\tsetp.lt.u32 %p2, %row, {};\n\tadd.u32 %t0, %row, 8;\n\tsetp.lt.u32 %p3, %t0, {};",
            spec.rows,
            spec.rows
        );
    }
    let epi = Epi { rows_check, accumulate: spec.accumulate };
    Epi::regs(&mut s);
    e!(s, "\t.reg .pred %qb<4>, %qo<4>, %ql<4>;");
    let mut pairs = Vec::new();
    for j in 0..32u32 {
        let q = j % 4;
        e!(s, "\tadd.u32 %t0, %cb, {};\n\tsetp.lt.u32 %ql{q}, %t0, %n;\n\tadd.u32 %t0, %t0, 1;\n\tsetp.lt.u32 %qb{q}, %t0, %n;", j * 8);
        e!(s, "\tnot.pred %p0, %qb{q};\n\tand.pred %qo{q}, %ql{q}, %p0;");
        for h in 0..2u32 {
            let c = j * 4 + h * 2;
            let (yb, bv, pr) = if h == 0 { ("%yb", "%bv0", "%p2") } else { ("%yb1", "%bv1", "%p3") };
            pairs.push(Pair {
                v0: format!("%d{c}"),
                v1: format!("%d{}", c + 1),
                bias: bv,
                base: yb.to_string(),
                off: j * 32,
                pr,
                both: format!("%qb{q}"),
                one: format!("%qo{q}"),
                ld: format!("%ql{q}"),
            });
        }
        if pairs.len() == EPI_BATCH {
            epi.flush(&mut s, &pairs);
            pairs.clear();
        }
    }
    assert!(pairs.is_empty());
    e!(s, "\tret;\n}}");
    GemmPtx { text: s, ..p0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    fn spec(rows: u32, cols: u32, accumulate: bool, arch: GemmArch) -> GemmSpec {
        GemmSpec { rows, cols, accumulate, arch, agent: 0 }
    }

    fn file_name(sp: &GemmSpec) -> String {
        let a = match sp.arch {
            GemmArch::MmaSync => "mma",
            GemmArch::Wgmma => "wgmma",
        };
        format!("gemm_{a}_{}x{}{}", sp.rows, sp.cols, if sp.accumulate { "_acc" } else { "" })
    }

    /// The sidecar `bench/gemm_ptx.py` reads next to a .ptx.
    fn write(dir: &Path, sp: &GemmSpec) -> (PathBuf, GemmPtx) {
        let stem = file_name(sp);
        let p = gemm_ptx(sp, &stem);
        let path = dir.join(format!("{stem}.ptx"));
        std::fs::write(&path, &p.text).unwrap();
        (path, p)
    }

    fn ptxas(path: &Path, arch: &str) {
        let found = Command::new("ptxas").arg("--version").output().is_ok_and(|o| o.status.success());
        if !found {
            let required = std::env::var("AIIC_TEST_REQUIRE").is_ok_and(|r| r.split(',').any(|x| x == "ptxas"));
            assert!(!required, "ptxas is required (AIIC_TEST_REQUIRE) but not on PATH");
            println!("skipping ptxas on {}: ptxas is not on PATH", path.display());
            return;
        }
        let out = Command::new("ptxas")
            .args(["-v", &format!("-arch={arch}"), "-o"])
            .arg(path.with_extension(format!("{arch}.cubin")))
            .arg(path)
            .output()
            .expect("run ptxas");
        let log = String::from_utf8_lossy(&out.stderr);
        println!("ptxas {arch} {}:\n{log}", path.display());
        assert!(out.status.success(), "ptxas failed on {}:\n{log}", path.display());
        for l in log.lines().filter(|l| l.contains("spill")) {
            assert!(l.contains(" 0 bytes spill stores, 0 bytes spill loads"), "spills: {l}");
        }
        assert!(!log.to_lowercase().contains("warning"), "ptxas warned on {}:\n{log}", path.display());
    }

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("aiic_gemm_{tag}_{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn geometry() {
        let sp = spec(100, 37, false, GemmArch::MmaSync);
        let p = gemm_ptx(&sp, "k");
        assert_eq!(padded(&p, &sp), (128, 64));
        let t = tiles(&p, &sp);
        assert_eq!((t.agents, t.y, t.block, t.shared), (128, 1, 256, 65536));
        assert_eq!(p.dynamic_shared, 65536);
        let sp = spec(1000, 300, true, GemmArch::Wgmma);
        let p = gemm_ptx(&sp, "k");
        assert_eq!(padded(&p, &sp), (1024, 320));
        let t = tiles(&p, &sp);
        assert_eq!((t.agents, t.y, t.block), (256, 8, 256));
        assert!(p.dynamic_shared <= 227 * 1024);
        assert!(p.text.contains(".target sm_90a") && p.text.contains("wgmma.mma_async"));
    }

    #[test]
    fn mma_sync_assembles() {
        let dir = scratch("mma");
        for (r, c, acc) in [(4096, 4096, false), (100, 37, true), (1, 1, false), (1000, 300, true), (128, 64, false)] {
            let (path, p) = write(&dir, &spec(r, c, acc, GemmArch::MmaSync));
            assert!(p.text.contains(".target sm_80"));
            ptxas(&path, "sm_80");
            ptxas(&path, "sm_90");
        }
    }

    #[test]
    fn wgmma_assembles() {
        let dir = scratch("wgmma");
        for (r, c, acc) in [(4096, 4096, false), (100, 37, true), (1, 1, false), (1000, 300, true), (128, 64, false)] {
            let (path, _) = write(&dir, &spec(r, c, acc, GemmArch::Wgmma));
            ptxas(&path, "sm_90a");
        }
    }
}
