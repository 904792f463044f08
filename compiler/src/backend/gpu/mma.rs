//! Tensor-core PTX for the matrix work of an `each` kernel ([`TensorPlan`]): the layers of a
//! model (or one `W @ x`) as warp-level `mma.sync.m16n8k16` products over tiles of agents, all
//! layers fused in one kernel.
//!
//! - A warp takes 16 agents per m-tile (two m-tiles when every layer is at most 64 wide) and
//!   computes (agents × features) · (features × outputs) layer after layer. A layer's f32
//!   accumulators are, lane for lane, the A operand of the next layer once bias and activation
//!   are applied and pairs are packed to f16 (or bf16): activations never leave registers.
//! - Weights are converted once per block into workgroup memory in *fragment order*: the two
//!   words a lane needs for one B operand lie next to each other, and the lanes of a warp read
//!   256 consecutive bytes, so every read is one conflict-free `ld.shared.v2` with no swizzle
//!   and no `ldmatrix`. Input widths and layer widths are padded with zero weights to the MMA
//!   shape (K to 16, hidden widths to 16, the last width to 8).
//! - Agent columns are separate buffers, and the lanes of a warp read different columns at once:
//!   a table of column addresses in workgroup memory gives each lane its own (zero past the
//!   last column, which skips the access).
//! - A block covers `block × ROWS` agents, each warp a run of tiles, so the weights are staged
//!   once per two thousand agents.

use aiic_runtime::ir::{Activation, Precision, TensorLayer, TensorPlan};
use std::fmt::Write;

/// Agents per thread of a block: the launch covers `block × ROWS` agents per block.
pub const ROWS: u32 = 8;
/// The widest padded layer input the kernel keeps in registers: 16-bit operands pack two
/// features a register, tf32 one.
pub const MAX_WIDTH: u32 = 256;
const MAX_WIDTH_TF32: u32 = 128;
/// int8 holds a layer's activations in f32 until their scale (the largest of the row) is known.
const MAX_WIDTH_INT8: u32 = 128;

/// The K of the MMA shape of a precision: `m16n8k16` for f16 and bf16, `m16n8k8` for tf32,
/// `m16n8k32` for int8.
fn mma_k(p: Precision) -> u32 {
    match p {
        Precision::Tf32 => 8,
        Precision::Int8 => 32,
        _ => 16,
    }
}

/// The widest padded layer of a precision's kernel.
fn max_width(p: Precision) -> u32 {
    match p {
        Precision::Tf32 => MAX_WIDTH_TF32,
        Precision::Int8 => MAX_WIDTH_INT8,
        _ => MAX_WIDTH,
    }
}

/// int8's permutation of a k-tile of 32 features: byte `j` of the lane's operand register
/// `half · 2 + row half` holds feature `half · 16 + (j / 2) · 8 + 2t + j % 2`, which are the
/// columns the lane's accumulators of the previous layer hold, so activations stay in
/// registers between layers as with f16. The weights are staged in the same order.
fn int8_feature(half: u32, j: u32) -> u32 {
    half * 16 + (j / 2) * 8 + j % 2
}
/// Workgroup memory the kernel may declare statically.
const MAX_SHARED: u32 = 48 * 1024;

/// What the PTX of a tensor kernel binds, as parameter indices of the entry.
#[derive(Debug, Clone, PartialEq)]
pub struct MmaKernel {
    pub plan: TensorPlan,
    /// Index of the agent count in `sizes`.
    pub agent: usize,
    pub sizes: usize,
    pub params: usize,
    pub inputs: Vec<usize>,
    pub outputs: Vec<usize>,
    /// Per output, the compensation buffer of a column the executors update with Kahan's
    /// compensated sum (`cpu::abi::compensated_stores`), as the scalar kernel does.
    pub comps: Vec<Option<usize>>,
    /// The cooperative-matrix kernel's f16 weights and f32 biases in device memory
    /// (`Buf::LayerWeights`, `Buf::LayerBiases`); the PTX kernels read `params` instead.
    pub weights: Option<usize>,
    pub biases: Option<usize>,
}

/// One layer of the plan and its geometry, padded to the MMA shape.
struct Layer<'a> {
    of: &'a TensorLayer,
    /// k-tiles of 16 inputs and n-tiles of 8 outputs.
    kt: u32,
    nt: u32,
    /// Byte offsets of its weight fragments and biases in workgroup memory.
    wfrag: u32,
    bias_at: u32,
}

fn layers(plan: &TensorPlan) -> Vec<Layer<'_>> {
    let last = plan.layers.len() - 1;
    let k = mma_k(plan.precision);
    let (mut wfrag, mut bias_at) = (0, 0);
    plan.layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let kt = l.cols.div_ceil(k);
            // A hidden width is the next layer's K: whole k-tiles.
            let nt = if i == last { l.rows.div_ceil(8) } else { k / 8 * l.rows.div_ceil(k) };
            let out = Layer { of: l, kt, nt, wfrag, bias_at };
            wfrag += kt * nt * 32 * 8;
            bias_at += nt * 8 * 4;
            out
        })
        .collect()
}

/// Why a plan cannot run on tensor cores as this generator writes them, or `None` if it can.
pub fn unsupported(plan: &TensorPlan) -> Option<String> {
    if !matches!(plan.precision, Precision::F16 | Precision::Bf16 | Precision::Tf32 | Precision::Int8) {
        return Some(format!("precision {} has no tensor-core kernel", plan.precision.name()));
    }
    let ls = layers(plan);
    let (k, max) = (mma_k(plan.precision), max_width(plan.precision));
    if let Some(l) = ls.iter().find(|l| l.kt * k > max || l.nt * 8 > max) {
        return Some(format!(
            "a layer of {}x{} is wider than {max} in {}",
            l.of.rows,
            l.of.cols,
            plan.precision.name()
        ));
    }
    let bytes: u32 = shared_bytes(&ls, plan.precision).iter().sum();
    if bytes > MAX_SHARED {
        return Some(format!("its weights need {bytes} bytes of workgroup memory"));
    }
    None
}

/// Entries of the input column table and of the output column table (compensations follow it).
fn tables(ls: &[Layer], p: Precision) -> (u32, u32) {
    (ls[0].kt * mma_k(p), ls[ls.len() - 1].nt * 8)
}

/// Bytes of the three workgroup arrays: weight fragments, biases (and, for int8, the weight
/// rows' scales after them), column tables.
fn shared_bytes(ls: &[Layer], p: Precision) -> [u32; 3] {
    let (ins, outs) = tables(ls, p);
    let scales = if p == Precision::Int8 { 2 } else { 1 };
    [ls.iter().map(|l| l.kt * l.nt * 256).sum(), scales * bias_bytes(ls), (ins + 2 * outs) * 8]
}

/// Bytes of the layers' f32 biases in workgroup memory (int8's weight-row scales follow them).
fn bias_bytes(ls: &[Layer]) -> u32 {
    ls.iter().map(|l| l.nt * 32).sum()
}

/// Register names of one class, numbered as they are taken.
#[derive(Default)]
struct Regs {
    r: u32,
    f: u32,
    rd: u32,
    p: u32,
    h: u32,
}

impl Regs {
    fn r(&mut self) -> String {
        self.r += 1;
        format!("%r{}", self.r - 1)
    }
    fn f(&mut self) -> String {
        self.f += 1;
        format!("%f{}", self.f - 1)
    }
    fn rd(&mut self) -> String {
        self.rd += 1;
        format!("%rd{}", self.rd - 1)
    }
    fn p(&mut self) -> String {
        self.p += 1;
        format!("%p{}", self.p - 1)
    }
    fn label(&mut self, what: &str) -> String {
        self.h += 1;
        format!("L{}_{what}", self.h)
    }
}

struct Out {
    regs: Regs,
    body: String,
}

impl Out {
    fn emit(&mut self, line: impl AsRef<str>) {
        self.body.push_str("    ");
        self.body.push_str(line.as_ref());
        self.body.push('\n');
    }
}

fn f32_hex(x: f32) -> String {
    format!("0f{:08X}", x.to_bits())
}

/// The PTX entry of a tensor kernel written for `block` threads per block.
pub fn lower(k: &MmaKernel, name: &str, entry: &str, bindings: usize, block: u32) -> String {
    let plan = &k.plan;
    let ls = layers(plan);
    let (ins, outs) = tables(&ls, plan.precision);
    let [wbytes, wbias_bytes, table_bytes] = shared_bytes(&ls, plan.precision);
    let kk = mma_k(plan.precision);
    let widest = ls.iter().map(|l| (l.kt * kk).max(l.nt * 8)).max().unwrap_or(0);
    // Two m-tiles share each weight fragment where the registers allow.
    let tf32 = plan.precision == Precision::Tf32;
    let mt = if widest <= if tf32 { 32 } else { 64 } { 2 } else { 1 };
    let tile = 16 * mt;
    let warps = block / 32;
    let iters = ROWS * 32 / tile;
    let bf16 = plan.precision == Precision::Bf16;
    let int8 = plan.precision == Precision::Int8;
    // int8's weight-row scales follow the biases.
    let scales = bias_bytes(&ls);
    let (pack, mma_ty) = if bf16 { ("cvt.rn.bf16x2.f32", "bf16") } else { ("cvt.rn.f16x2.f32", "f16") };
    let mma = if tf32 {
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32".to_string()
    } else if int8 {
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32".to_string()
    } else {
        format!("mma.sync.aligned.m16n8k16.row.col.f32.{mma_ty}.{mma_ty}.f32")
    };

    let mut o = Out { regs: Regs::default(), body: String::new() };
    let mut base = Vec::new();
    for n in 0..bindings {
        let r = o.regs.rd();
        o.emit(format!("ld.param.u64 {r}, [{entry}_p{n}];"));
        o.emit(format!("cvta.to.global.u64 {r}, {r};"));
        base.push(r);
    }
    let (tid, blk, t0, t1) = (o.regs.r(), o.regs.r(), o.regs.r(), o.regs.r());
    o.emit(format!("mov.u32 {tid}, %tid.x;"));
    o.emit(format!("mov.u32 {blk}, %ctaid.y;"));
    o.emit(format!("mov.u32 {t0}, %nctaid.x;"));
    o.emit(format!("mov.u32 {t1}, %ctaid.x;"));
    o.emit(format!("mad.lo.u32 {blk}, {blk}, {t0}, {t1};"));
    let (wf, bs, itab, otab) = (o.regs.r(), o.regs.r(), o.regs.r(), o.regs.r());
    o.emit(format!("mov.u32 {wf}, wfrag;"));
    o.emit(format!("mov.u32 {bs}, wbias;"));
    o.emit(format!("mov.u32 {itab}, coltab;"));
    o.emit(format!("add.u32 {otab}, {itab}, {};", ins * 8));

    // Column address tables, written by thread 0: zero past the last column.
    let first = o.regs.p();
    let skip = o.regs.label("tables");
    o.emit(format!("setp.ne.u32 {first}, {tid}, 0;"));
    o.emit(format!("@{first} bra {skip};"));
    for i in 0..ins {
        let v = k.inputs.get(i as usize).map_or("0".to_string(), |&b| base[b].clone());
        o.emit(format!("st.shared.u64 [{itab}+{}], {v};", i * 8));
    }
    for i in 0..outs {
        let v = k.outputs.get(i as usize).map_or("0".to_string(), |&b| base[b].clone());
        o.emit(format!("st.shared.u64 [{otab}+{}], {v};", i * 8));
    }
    // Compensations in a second table after the first, zero where a column has none.
    for i in 0..outs {
        let v = match k.comps.get(i as usize) {
            Some(Some(b)) => base[*b].clone(),
            _ => "0".to_string(),
        };
        o.emit(format!("st.shared.u64 [{otab}+{}], {v};", (outs + i) * 8));
    }
    o.emit(format!("{skip}:"));

    let params = &base[k.params];
    if int8 {
        weight_scales(&mut o, &ls, params, &tid, &bs, scales, block);
    }
    // Weight fragments: slot i of a layer is (k-tile, n-tile, lane) = (i / 32 / nt, i / 32 % nt, i % 32).
    for l in &ls {
        let (i, p) = (o.regs.r(), o.regs.p());
        let (top, done) = (o.regs.label("fill"), o.regs.label("filled"));
        o.emit(format!("mov.u32 {i}, {tid};"));
        o.emit(format!("{top}:"));
        o.emit(format!("setp.ge.u32 {p}, {i}, {};", l.kt * l.nt * 32));
        o.emit(format!("@{p} bra {done};"));
        let (lane, f, nt, kt, g, t, n, k0) =
            (o.regs.r(), o.regs.r(), o.regs.r(), o.regs.r(), o.regs.r(), o.regs.r(), o.regs.r(), o.regs.r());
        o.emit(format!("and.b32 {lane}, {i}, 31;"));
        o.emit(format!("shr.u32 {f}, {i}, 5;"));
        o.emit(format!("rem.u32 {nt}, {f}, {};", l.nt));
        o.emit(format!("div.u32 {kt}, {f}, {};", l.nt));
        o.emit(format!("shr.u32 {g}, {lane}, 2;"));
        o.emit(format!("and.b32 {t}, {lane}, 3;"));
        o.emit(format!("mad.lo.u32 {n}, {nt}, 8, {g};"));
        o.emit(format!("shl.b32 {k0}, {t}, 1;"));
        o.emit(format!("mad.lo.u32 {k0}, {kt}, {kk}, {k0};"));
        let rowok = o.regs.p();
        o.emit(format!("setp.lt.u32 {rowok}, {n}, {};", l.of.rows));
        let mut vals = Vec::new();
        // f16: the pairs (k0, k0 + 1) and (k0 + 8, k0 + 9). tf32: b0 is the k-tile's logical
        // row t and b1 row t + 4, which hold features 2t and 2t + 1 (see the epilogue). int8:
        // b0 and b1 are halves 0 and 1 of `int8_feature`.
        let dks: Vec<u32> = match () {
            _ if tf32 => vec![0, 1],
            _ if int8 => (0..8).map(|i| int8_feature(i / 4, i % 4)).collect(),
            _ => vec![0, 1, 8, 9],
        };
        for &dk in &dks {
            let (kk, ok, idx, v, a) = (o.regs.r(), o.regs.p(), o.regs.r(), o.regs.f(), o.regs.rd());
            o.emit(format!("add.u32 {kk}, {k0}, {dk};"));
            o.emit(format!("setp.lt.and.u32 {ok}, {kk}, {}, {rowok};", l.of.cols));
            o.emit(format!("mad.lo.u32 {idx}, {n}, {}, {kk};", l.of.cols));
            o.emit(format!("add.u32 {idx}, {idx}, {};", l.of.weight));
            o.emit(format!("mul.wide.u32 {a}, {idx}, 4;"));
            o.emit(format!("add.u64 {a}, {params}, {a};"));
            o.emit(format!("mov.f32 {v}, 0f00000000;"));
            o.emit(format!("@{ok} ld.global.nc.f32 {v}, [{a}];"));
            vals.push(v);
        }
        let (lo, hi, at) = (o.regs.r(), o.regs.r(), o.regs.r());
        if tf32 {
            o.emit(format!("cvt.rna.tf32.f32 {lo}, {};", vals[0]));
            o.emit(format!("cvt.rna.tf32.f32 {hi}, {};", vals[1]));
        } else if int8 {
            // Weight row n in units of its scale (1 for a padding row, whose weights are zero).
            let (sa, sc, inv) = (o.regs.r(), o.regs.f(), o.regs.f());
            o.emit(format!("mov.f32 {sc}, 0f3F800000;"));
            o.emit(format!("shl.b32 {sa}, {n}, 2;"));
            o.emit(format!("add.u32 {sa}, {sa}, {};", scales + l.bias_at));
            o.emit(format!("add.u32 {sa}, {sa}, {bs};"));
            o.emit(format!("@{rowok} ld.shared.f32 {sc}, [{sa}];"));
            o.emit(format!("rcp.rn.f32 {inv}, {sc};"));
            let q: Vec<String> = vals
                .iter()
                .map(|v| {
                    o.emit(format!("mul.f32 {v}, {v}, {inv};"));
                    let r = o.regs.r();
                    o.emit(format!("cvt.rni.s32.f32 {r}, {v};"));
                    r
                })
                .collect();
            pack_s8(&mut o, &lo, &q[0..4]);
            pack_s8(&mut o, &hi, &q[4..8]);
        } else {
            o.emit(format!("{pack} {lo}, {}, {};", vals[1], vals[0]));
            o.emit(format!("{pack} {hi}, {}, {};", vals[3], vals[2]));
        }
        o.emit(format!("shl.b32 {at}, {i}, 3;"));
        o.emit(format!("add.u32 {at}, {at}, {};", l.wfrag));
        o.emit(format!("add.u32 {at}, {at}, {wf};"));
        o.emit(format!("st.shared.v2.b32 [{at}], {{{lo}, {hi}}};"));
        o.emit(format!("add.u32 {i}, {i}, {block};"));
        o.emit(format!("bra {top};"));
        o.emit(format!("{done}:"));
        // Biases, zero in the padding.
        let (top, done) = (o.regs.label("bias"), o.regs.label("biased"));
        let (j, pj) = (o.regs.r(), o.regs.p());
        o.emit(format!("mov.u32 {j}, {tid};"));
        o.emit(format!("{top}:"));
        o.emit(format!("setp.ge.u32 {pj}, {j}, {};", l.nt * 8));
        o.emit(format!("@{pj} bra {done};"));
        let (v, ok, a, at) = (o.regs.f(), o.regs.p(), o.regs.rd(), o.regs.r());
        o.emit(format!("mov.f32 {v}, 0f00000000;"));
        if let Some(b) = l.of.bias {
            let idx = o.regs.r();
            o.emit(format!("setp.lt.u32 {ok}, {j}, {};", l.of.rows));
            o.emit(format!("add.u32 {idx}, {j}, {b};"));
            o.emit(format!("mul.wide.u32 {a}, {idx}, 4;"));
            o.emit(format!("add.u64 {a}, {params}, {a};"));
            o.emit(format!("@{ok} ld.global.nc.f32 {v}, [{a}];"));
        }
        o.emit(format!("shl.b32 {at}, {j}, 2;"));
        o.emit(format!("add.u32 {at}, {at}, {};", l.bias_at));
        o.emit(format!("add.u32 {at}, {at}, {bs};"));
        o.emit(format!("st.shared.f32 [{at}], {v};"));
        o.emit(format!("add.u32 {j}, {j}, {block};"));
        o.emit(format!("bra {top};"));
        o.emit(format!("{done}:"));
    }
    o.emit("bar.sync 0;");

    // Per lane: its row in a tile (g), its column pair (t), and its place in the tables.
    let (count, lane, warp, g, t2, wl, il, ol, bl) =
        (o.regs.r(), o.regs.r(), o.regs.r(), o.regs.r(), o.regs.r(), o.regs.r(), o.regs.r(), o.regs.r(), o.regs.r());
    let ca = o.regs.rd();
    o.emit(format!("mul.wide.u32 {ca}, {}, 4;", k.agent));
    o.emit(format!("add.u64 {ca}, {}, {ca};", base[k.sizes]));
    o.emit(format!("ld.global.u32 {count}, [{ca}];"));
    o.emit(format!("and.b32 {lane}, {tid}, 31;"));
    o.emit(format!("shr.u32 {warp}, {tid}, 5;"));
    o.emit(format!("shr.u32 {g}, {lane}, 2;"));
    o.emit(format!("and.b32 {t2}, {lane}, 3;"));
    o.emit(format!("shl.b32 {t2}, {t2}, 1;"));
    o.emit(format!("mad.lo.u32 {wl}, {lane}, 8, {wf};"));
    o.emit(format!("mad.lo.u32 {il}, {t2}, 8, {itab};"));
    o.emit(format!("mad.lo.u32 {ol}, {t2}, 8, {otab};"));
    o.emit(format!("mad.lo.u32 {bl}, {t2}, 4, {bs};"));

    let (it, tb, pdone) = (o.regs.r(), o.regs.r(), o.regs.p());
    let (top, done) = (o.regs.label("tile"), o.regs.label("done"));
    o.emit(format!("mov.u32 {it}, 0;"));
    o.emit(format!("{top}:"));
    o.emit(format!("mad.lo.u32 {tb}, {it}, {warps}, {warp};"));
    o.emit(format!("mul.lo.u32 {tb}, {tb}, {tile};"));
    let bb = o.regs.r();
    o.emit(format!("mul.lo.u32 {bb}, {blk}, {};", block * ROWS));
    o.emit(format!("add.u32 {tb}, {tb}, {bb};"));
    o.emit(format!("setp.ge.u32 {pdone}, {tb}, {count};"));
    o.emit(format!("@{pdone} bra {done};"));

    // Rows of this lane: m-tile m, half h (0: row g, 1: row g + 8).
    let mut row_off: Vec<String> = Vec::new();
    let mut row_ok: Vec<String> = Vec::new();
    for m in 0..mt {
        for h in 0..2 {
            let (r, ok, off) = (o.regs.r(), o.regs.p(), o.regs.rd());
            o.emit(format!("add.u32 {r}, {tb}, {};", m * 16 + h * 8));
            o.emit(format!("add.u32 {r}, {r}, {g};"));
            o.emit(format!("setp.lt.u32 {ok}, {r}, {count};"));
            o.emit(format!("mul.wide.u32 {off}, {r}, 4;"));
            row_off.push(off);
            row_ok.push(ok);
        }
    }

    // Layer 0's A operand from the input columns: register j of k-tile kt holds row half
    // j & 1 and columns kt·16 + 2t + (j >> 1)·8 + {0, 1}.
    let mut a: Vec<Vec<[String; 4]>> = Vec::new();
    // int8: the scale of each of the lane's rows (m-tile, half) of the current A operand.
    let mut sx: Vec<[String; 2]> = Vec::new();
    if int8 {
        let mut vals: Vec<Vec<Int8Operand>> = Vec::new();
        for m in 0..mt as usize {
            let mut per = Vec::new();
            for kt in 0..ls[0].kt {
                let op: Int8Operand = std::array::from_fn(|r| {
                    std::array::from_fn(|j| {
                        let col = kt * 32 + int8_feature(r as u32 >> 1, j as u32);
                        load_input(&mut o, &il, col, (&row_ok[m * 2 + (r & 1)], &row_off[m * 2 + (r & 1)]))
                    })
                });
                per.push(op);
            }
            vals.push(per);
        }
        (a, sx) = quantize(&mut o, &vals);
    }
    for m in (0..mt as usize).filter(|_| !int8) {
        let mut frags = Vec::new();
        for kt in 0..ls[0].kt {
            let mut regs: [String; 4] = Default::default();
            for (j, reg) in regs.iter_mut().enumerate() {
                let h = j & 1;
                let mut v = Vec::new();
                // tf32: register j holds logical column t + (j >> 1)·4, which is feature
                // 2t + (j >> 1) of the k-tile (the lane's table entry is already at 2t).
                let pairs: &[u32] = if tf32 { &[0] } else { &[0, 1] };
                for &e in pairs {
                    let col = if tf32 { kt * 8 + (j as u32 >> 1) } else { kt * 16 + (j as u32 >> 1) * 8 + e };
                    v.push(load_input(&mut o, &il, col, (&row_ok[m * 2 + h], &row_off[m * 2 + h])));
                }
                let r = o.regs.r();
                if tf32 {
                    o.emit(format!("cvt.rna.tf32.f32 {r}, {};", v[0]));
                } else {
                    o.emit(format!("{pack} {r}, {}, {};", v[1], v[0]));
                }
                *reg = r;
            }
            frags.push(regs);
        }
        a.push(frags);
    }

    let last = ls.len() - 1;
    for (li, l) in ls.iter().enumerate() {
        let mut next: Vec<Vec<[String; 4]>> = vec![vec![Default::default(); (l.nt * 8 / kk) as usize]; mt as usize];
        let mut next8: Vec<Vec<Int8Operand>> = vec![vec![Default::default(); (l.nt * 8 / kk) as usize]; mt as usize];
        // Output n-tiles in chunks of 8, to bound the live accumulators.
        for chunk in (0..l.nt).step_by(8) {
            let tiles: Vec<u32> = (chunk..(chunk + 8).min(l.nt)).collect();
            let mut acc: Vec<Vec<[String; 4]>> = Vec::new();
            for _ in 0..mt {
                let mut per = Vec::new();
                for _ in &tiles {
                    let regs: [String; 4] = std::array::from_fn(|_| if int8 { o.regs.r() } else { o.regs.f() });
                    for r in &regs {
                        o.emit(if int8 { format!("mov.b32 {r}, 0;") } else { format!("mov.f32 {r}, 0f00000000;") });
                    }
                    per.push(regs);
                }
                acc.push(per);
            }
            for kt in 0..l.kt {
                for (c, &nt) in tiles.iter().enumerate() {
                    let (b0, b1) = (o.regs.r(), o.regs.r());
                    let off = l.wfrag + (kt * l.nt + nt) * 256;
                    o.emit(format!("ld.shared.v2.b32 {{{b0}, {b1}}}, [{wl}+{off}];"));
                    for m in 0..mt as usize {
                        let d = &acc[m][c];
                        let av = &a[m][kt as usize];
                        o.emit(format!(
                            "{mma} {{{}, {}, {}, {}}}, {{{}, {}, {}, {}}}, {{{b0}, {b1}}}, {{{}, {}, {}, {}}};",
                            d[0], d[1], d[2], d[3], av[0], av[1], av[2], av[3], d[0], d[1], d[2], d[3]
                        ));
                    }
                }
            }
            // Epilogue: bias, then the activation into the next A operand, or the outputs.
            for (c, &nt) in tiles.iter().enumerate() {
                let (b0, b1) = (o.regs.f(), o.regs.f());
                o.emit(format!("ld.shared.v2.f32 {{{b0}, {b1}}}, [{bl}+{}];", l.bias_at + nt * 32));
                let mut sw = Vec::new();
                if int8 {
                    let (s0, s1) = (o.regs.f(), o.regs.f());
                    o.emit(format!("ld.shared.v2.f32 {{{s0}, {s1}}}, [{bl}+{}];", scales + l.bias_at + nt * 32));
                    sw = vec![s0, s1];
                }
                for m in 0..mt as usize {
                    let d = &acc[m][c];
                    let v: Vec<String> = (0..4)
                        .map(|i| {
                            let r = o.regs.f();
                            let b = if i % 2 == 0 { &b0 } else { &b1 };
                            if int8 {
                                // acc · (row scale · weight-row scale) + bias
                                let (x, sc) = (o.regs.f(), o.regs.f());
                                o.emit(format!("cvt.rn.f32.s32 {x}, {};", d[i]));
                                o.emit(format!("mul.f32 {sc}, {}, {};", sx[m][i / 2], sw[i % 2]));
                                o.emit(format!("fma.rn.f32 {r}, {x}, {sc}, {b};"));
                            } else {
                                o.emit(format!("add.f32 {r}, {}, {b};", d[i]));
                            }
                            r
                        })
                        .collect();
                    if li == last {
                        let rows = (&row_off[m * 2..m * 2 + 2], &row_ok[m * 2..m * 2 + 2]);
                        store(&mut o, k.plan.accumulate, &v, nt * 8, outs, &ol, rows);
                        continue;
                    }
                    if int8 {
                        // Column 2t + e of n-tile nt is byte (nt % 2)·2 + e of register
                        // ((nt % 4) / 2)·2 + h of k-tile nt / 4 (see `int8_feature`).
                        for (i, x) in v.iter().enumerate() {
                            let y = activation(&mut o, plan.act, x);
                            let (h, e) = (i / 2, i % 2);
                            let r = ((nt % 4) / 2 * 2) as usize + h;
                            next8[m][(nt / 4) as usize][r][(nt % 2 * 2) as usize + e] = y;
                        }
                        continue;
                    }
                    if tf32 {
                        // The n-tile is the next k-tile: its columns 2t and 2t + 1 are the
                        // logical columns t and t + 4 the weights were staged for.
                        for (slot, i) in [0, 2, 1, 3].into_iter().enumerate() {
                            let y = activation(&mut o, plan.act, &v[i]);
                            let r = o.regs.r();
                            o.emit(format!("cvt.rna.tf32.f32 {r}, {y};"));
                            next[m][nt as usize][slot] = r;
                        }
                        continue;
                    }
                    let kt_next = (nt / 2) as usize;
                    let slot = if nt % 2 == 0 { 0 } else { 2 };
                    for h in 0..2 {
                        let r = o.regs.r();
                        let (x0, x1) = (&v[2 * h], &v[2 * h + 1]);
                        if plan.act == Activation::Tanh && !bf16 {
                            o.emit(format!("{pack} {r}, {x1}, {x0};"));
                            o.emit(format!("tanh.approx.f16x2 {r}, {r};"));
                        } else {
                            let y0 = activation(&mut o, plan.act, x0);
                            let y1 = activation(&mut o, plan.act, x1);
                            o.emit(format!("{pack} {r}, {y1}, {y0};"));
                        }
                        next[m][kt_next][slot + h] = r;
                    }
                }
            }
        }
        a = next;
        if int8 && li != last {
            (a, sx) = quantize(&mut o, &next8);
        }
    }
    o.emit(format!("add.u32 {it}, {it}, 1;"));
    o.emit(format!("setp.lt.u32 {pdone}, {it}, {iters};"));
    o.emit(format!("@{pdone} bra {top};"));
    o.emit(format!("{done}:"));
    o.emit("ret;");

    let mut out = format!("// {name}: tensor cores, {} per tile of {tile} agents\n", plan.precision.name());
    let params: Vec<String> = (0..bindings).map(|n| format!("    .param .u64 {entry}_p{n}")).collect();
    let _ = writeln!(out, ".visible .entry {entry}(\n{}\n)\n.maxntid {block}, 1, 1\n{{", params.join(",\n"));
    let r = &o.regs;
    let _ = writeln!(out, "    .reg .b32 %r<{}>;", r.r.max(1));
    let _ = writeln!(out, "    .reg .f32 %f<{}>;", r.f.max(1));
    let _ = writeln!(out, "    .reg .b64 %rd<{}>;", r.rd.max(1));
    let _ = writeln!(out, "    .reg .pred %p<{}>;", r.p.max(1));
    let _ = writeln!(out, "    .shared .align 16 .b8 wfrag[{wbytes}];");
    let _ = writeln!(out, "    .shared .align 16 .b8 wbias[{wbias_bytes}];");
    let _ = writeln!(out, "    .shared .align 16 .b8 coltab[{table_bytes}];");
    out += &o.body;
    out += "}\n";
    out
}

/// Input column `col` of the lane's row `row` (its predicate and byte offset), from the column
/// table at `il`: zero past the last column or the last agent.
fn load_input(o: &mut Out, il: &str, col: u32, row: (&str, &str)) -> String {
    let (ptr, ok, x) = (o.regs.rd(), o.regs.p(), o.regs.f());
    o.emit(format!("ld.shared.u64 {ptr}, [{il}+{}];", col * 8));
    o.emit(format!("setp.ne.and.u64 {ok}, {ptr}, 0, {};", row.0));
    o.emit(format!("add.u64 {ptr}, {ptr}, {};", row.1));
    o.emit(format!("mov.f32 {x}, 0f00000000;"));
    o.emit(format!("@{ok} ld.global.f32 {x}, [{ptr}];"));
    x
}

/// The activation of an f32 value, from the hardware tanh (accurate to about 2⁻¹¹, below the
/// rounding of the f16 or bf16 operand it feeds).
fn activation(o: &mut Out, act: Activation, x: &str) -> String {
    let y = o.regs.f();
    match act {
        Activation::Identity => o.emit(format!("mov.f32 {y}, {x};")),
        Activation::Tanh => o.emit(format!("tanh.approx.f32 {y}, {x};")),
        Activation::Relu => o.emit(format!("max.f32 {y}, {x}, 0f00000000;")),
        Activation::Sigmoid | Activation::Silu => {
            // σ(x) = ½·tanh(x/2) + ½
            o.emit(format!("mul.f32 {y}, {x}, 0f3F000000;"));
            o.emit(format!("tanh.approx.f32 {y}, {y};"));
            o.emit(format!("fma.rn.f32 {y}, {y}, 0f3F000000, 0f3F000000;"));
            if act == Activation::Silu {
                o.emit(format!("mul.f32 {y}, {y}, {x};"));
            }
        }
        Activation::Gelu => {
            let t = o.regs.f();
            o.emit(format!("mul.f32 {t}, {x}, {x};"));
            o.emit(format!("fma.rn.f32 {t}, {t}, {}, 0f3F800000;", f32_hex(0.044715)));
            o.emit(format!("mul.f32 {t}, {t}, {x};"));
            o.emit(format!("mul.f32 {t}, {t}, {};", f32_hex((2.0 / std::f64::consts::PI).sqrt() as f32)));
            o.emit(format!("tanh.approx.f32 {t}, {t};"));
            o.emit(format!("fma.rn.f32 {t}, {t}, 0f3F000000, 0f3F000000;"));
            o.emit(format!("mul.f32 {y}, {t}, {x};"));
        }
    }
    y
}

/// Stores the last layer's values of one n-tile, from column `first`: `v[2h + e]` is row half
/// `h`, column `first + 2t + e`. A column with a compensation (its address `outs` entries
/// further in the table) is updated with Kahan's sum, rounded as written.
fn store(o: &mut Out, accumulate: bool, v: &[String], first: u32, outs: u32, ol: &str, rows: (&[String], &[String])) {
    let (off, ok) = rows;
    for h in 0..2 {
        for e in 0..2u32 {
            let (ptr, cptr, p, pc) = (o.regs.rd(), o.regs.rd(), o.regs.p(), o.regs.p());
            o.emit(format!("ld.shared.u64 {ptr}, [{ol}+{}];", (first + e) * 8));
            o.emit(format!("ld.shared.u64 {cptr}, [{ol}+{}];", (outs + first + e) * 8));
            o.emit(format!("setp.ne.and.u64 {p}, {ptr}, 0, {};", ok[h]));
            o.emit(format!("setp.ne.and.u64 {pc}, {cptr}, 0, {p};"));
            o.emit(format!("add.u64 {ptr}, {ptr}, {};", off[h]));
            o.emit(format!("add.u64 {cptr}, {cptr}, {};", off[h]));
            let x = &v[2 * h + e as usize];
            if accumulate {
                let (old, c, y, t) = (o.regs.f(), o.regs.f(), o.regs.f(), o.regs.f());
                o.emit(format!("mov.f32 {c}, 0f00000000;"));
                o.emit(format!("@{p} ld.global.f32 {old}, [{ptr}];"));
                o.emit(format!("@{pc} ld.global.f32 {c}, [{cptr}];"));
                o.emit(format!("sub.rn.f32 {y}, {x}, {c};"));
                o.emit(format!("add.rn.f32 {t}, {old}, {y};"));
                o.emit(format!("@{p} st.global.f32 [{ptr}], {t};"));
                o.emit(format!("sub.rn.f32 {c}, {t}, {old};"));
                o.emit(format!("sub.rn.f32 {c}, {c}, {y};"));
                o.emit(format!("@{pc} st.global.f32 [{cptr}], {c};"));
            } else {
                o.emit(format!("@{p} st.global.f32 [{ptr}], {x};"));
                o.emit(format!("@{pc} st.global.f32 [{cptr}], 0f00000000;"));
            }
        }
    }
}

/// int8 operand values before quantization: per register, its four bytes' f32 values.
type Int8Operand = [[String; 4]; 4];

/// Quantizes int8 A operands (per m-tile, per k-tile) with one scale per row: the largest
/// magnitude of the row over 127 (the four lanes of a quad hold a row between them). Returns
/// the packed registers and each (m-tile, row half)'s scale.
fn quantize(o: &mut Out, vals: &[Vec<Int8Operand>]) -> (Vec<Vec<[String; 4]>>, Vec<[String; 2]>) {
    let mut frags = Vec::new();
    let mut scales = Vec::new();
    for per in vals {
        let mut row_scale: [String; 2] = Default::default();
        let mut row_inv: [String; 2] = Default::default();
        for h in 0..2 {
            let mx = o.regs.f();
            // The smallest scale keeps a row of zeros finite: its values stay zero.
            o.emit(format!("mov.f32 {mx}, 0f0DA24260;"));
            for op in per {
                for r in (0..4).filter(|r| r & 1 == h) {
                    for x in &op[r] {
                        let t = o.regs.f();
                        o.emit(format!("abs.f32 {t}, {x};"));
                        o.emit(format!("max.f32 {mx}, {mx}, {t};"));
                    }
                }
            }
            for lane in [1, 2] {
                let t = o.regs.f();
                o.emit(format!("shfl.sync.bfly.b32 {t}, {mx}, {lane}, 31, 0xffffffff;"));
                o.emit(format!("max.f32 {mx}, {mx}, {t};"));
            }
            let (sc, inv) = (o.regs.f(), o.regs.f());
            o.emit(format!("mul.f32 {sc}, {mx}, {};", f32_hex(1.0 / 127.0)));
            o.emit(format!("div.rn.f32 {inv}, 0f42FE0000, {mx};"));
            row_scale[h] = sc;
            row_inv[h] = inv;
        }
        let mut tiles = Vec::new();
        for op in per {
            let regs: [String; 4] = std::array::from_fn(|r| {
                let q: Vec<String> = op[r]
                    .iter()
                    .map(|x| {
                        let (y, i) = (o.regs.f(), o.regs.r());
                        o.emit(format!("mul.f32 {y}, {x}, {};", row_inv[r & 1]));
                        o.emit(format!("cvt.rni.s32.f32 {i}, {y};"));
                        i
                    })
                    .collect();
                let d = o.regs.r();
                pack_s8(o, &d, &q);
                d
            });
            tiles.push(regs);
        }
        frags.push(tiles);
        scales.push(row_scale);
    }
    (frags, scales)
}

/// Packs four s32 values (in [-127, 127]) into the bytes of `d`, the first lowest.
fn pack_s8(o: &mut Out, d: &str, q: &[String]) {
    let hi = o.regs.r();
    o.emit(format!("cvt.pack.sat.s8.s32.b32 {hi}, {}, {}, 0;", q[3], q[2]));
    o.emit(format!("cvt.pack.sat.s8.s32.b32 {d}, {}, {}, {hi};", q[1], q[0]));
}

/// int8: each weight row's scale, the largest magnitude of the row over 127 (1 for a row of
/// zeros or of padding), into workgroup memory after the biases; a thread per row.
fn weight_scales(o: &mut Out, ls: &[Layer], params: &str, tid: &str, bs: &str, scales: u32, block: u32) {
    for l in ls {
        let (j, pj, top, done) = (o.regs.r(), o.regs.p(), o.regs.label("scale"), o.regs.label("scaled"));
        o.emit(format!("mov.u32 {j}, {tid};"));
        o.emit(format!("{top}:"));
        o.emit(format!("setp.ge.u32 {pj}, {j}, {};", l.nt * 8));
        o.emit(format!("@{pj} bra {done};"));
        let (mx, kk, pk, row, v, a) = (o.regs.f(), o.regs.r(), o.regs.p(), o.regs.r(), o.regs.f(), o.regs.rd());
        let (inner, inner_done) = (o.regs.label("row"), o.regs.label("rowdone"));
        o.emit(format!("mov.f32 {mx}, 0f00000000;"));
        o.emit(format!("mov.u32 {kk}, 0;"));
        o.emit(format!("setp.ge.u32 {pk}, {j}, {};", l.of.rows));
        o.emit(format!("@{pk} bra {inner_done};"));
        o.emit(format!("mad.lo.u32 {row}, {j}, {}, {};", l.of.cols, l.of.weight));
        o.emit(format!("{inner}:"));
        o.emit(format!("add.u32 {kk}, {kk}, 1;"));
        o.emit(format!("mul.wide.u32 {a}, {row}, 4;"));
        o.emit(format!("add.u64 {a}, {params}, {a};"));
        o.emit(format!("ld.global.nc.f32 {v}, [{a}];"));
        o.emit(format!("abs.f32 {v}, {v};"));
        o.emit(format!("max.f32 {mx}, {mx}, {v};"));
        o.emit(format!("add.u32 {row}, {row}, 1;"));
        o.emit(format!("setp.lt.u32 {pk}, {kk}, {};", l.of.cols));
        o.emit(format!("@{pk} bra {inner};"));
        o.emit(format!("{inner_done}:"));
        let (sc, at, zero) = (o.regs.f(), o.regs.r(), o.regs.p());
        o.emit(format!("mul.f32 {sc}, {mx}, {};", f32_hex(1.0 / 127.0)));
        o.emit(format!("setp.eq.f32 {zero}, {mx}, 0f00000000;"));
        o.emit(format!("@{zero} mov.f32 {sc}, 0f3F800000;"));
        o.emit(format!("shl.b32 {at}, {j}, 2;"));
        o.emit(format!("add.u32 {at}, {at}, {};", scales + l.bias_at));
        o.emit(format!("add.u32 {at}, {at}, {bs};"));
        o.emit(format!("st.shared.f32 [{at}], {sc};"));
        o.emit(format!("add.u32 {j}, {j}, {block};"));
        o.emit(format!("bra {top};"));
        o.emit(format!("{done}:"));
    }
    o.emit("bar.sync 0;");
}
