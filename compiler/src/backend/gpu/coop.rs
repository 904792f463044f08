//! Cooperative-matrix WGSL for the matrix work of an `each` kernel ([`TensorPlan`]) on Vulkan
//! (`VK_KHR_cooperative_matrix`, through naga's `wgpu_cooperative_matrix`): 16×16×16 products
//! of f16 operands accumulated in f32, all layers of a model fused in one kernel.
//!
//! - A subgroup of 32 invocations takes 32 agents at a time, one agent per invocation, as two
//!   16-row tiles. Activations live in workgroup memory between layers, *column-major* (one
//!   column of 32 agents after another), so that every invocation reads and writes its own
//!   agent's values at consecutive addresses: no bank conflicts outside the matrix loads.
//! - A layer loads all its A operands before it computes, so its outputs overwrite its inputs:
//!   one activation buffer per subgroup. The kernel is bound by latency, not arithmetic (few
//!   subgroups per multiprocessor), so the memory this saves goes to more subgroups per
//!   workgroup.
//! - Weights are converted to f16 once per workgroup, row-major (K × N, the B operand), biases
//!   kept in f32. Every row and column stride is padded by 16 bytes so that the rows a
//!   cooperative load reads at once fall in different banks; K, hidden widths and the output
//!   width are padded with zeros to 16.
//! - A layer's accumulators start at its biases (a cooperative load of stride 0 repeats them in
//!   every row) and are stored per 16 outputs to a small f32 tile; each invocation applies the
//!   activation for its agent and writes the next layer's f16 input (or the output columns,
//!   with Kahan's update where the scalar kernel keeps one), unrolled: as a loop this cost a
//!   fifth of the kernel's time on an H100.
//! - The loop over tiles has the same trip count in every subgroup, so that the workgroup
//!   barriers between the phases are in uniform control flow.

use super::ast::Binding;
use super::mma::MmaKernel;
use super::wgsl::Wgsl;
use aiic_runtime::ir::{Activation, Precision, TensorPlan};
use std::fmt::Write;

/// Invocations of a subgroup, which the kernel is written for: a device whose subgroups are
/// of another size runs the scalar kernel.
pub const SUBGROUP: u32 = 32;
/// Tiles of 32 agents each subgroup takes in turn: a workgroup covers `workgroup × TILES`
/// agents, and converts the weights once for all of them.
pub const TILES: u32 = 16;

/// Workgroup memory a kernel may use (Vulkan's guaranteed minimum is 16 KiB; every device with
/// cooperative matrices has at least 48).
const MAX_SHARED: u32 = 48 * 1024;
/// Padding of strides in elements, 16 bytes: f16 and f32.
const PAD16: u32 = 8;
const PAD32: u32 = 4;

/// Rows of an activation column in workgroup memory: the subgroup's 32 agents, padded.
const ACT_STRIDE: u32 = SUBGROUP + PAD16;
/// Rows of a column of the accumulator tile.
const ACC_STRIDE: u32 = SUBGROUP + PAD32;

/// One layer's padded geometry and where its weights and biases start in workgroup memory.
struct Layer {
    rows: u32,
    cols: u32,
    weight: u32,
    bias: Option<u32>,
    /// Padded input and output widths (multiples of 16).
    k: u32,
    n: u32,
    /// Offset of its K × (n + PAD16) f16 weights, and of its n f32 biases.
    w_at: u32,
    b_at: u32,
}

impl Layer {
    /// Elements of a row of its K × N weights.
    fn stride(&self) -> u32 {
        self.n + PAD16
    }
}

fn layers(plan: &TensorPlan) -> Vec<Layer> {
    let (mut w_at, mut b_at) = (0, 0);
    plan.layers
        .iter()
        .map(|l| {
            let (k, n) = (l.cols.div_ceil(16) * 16, l.rows.div_ceil(16) * 16);
            let out = Layer { rows: l.rows, cols: l.cols, weight: l.weight, bias: l.bias, k, n, w_at, b_at };
            w_at += k * out.stride();
            b_at += n;
            out
        })
        .collect()
}

/// The widest padded layer input or output.
fn widest(ls: &[Layer]) -> u32 {
    ls.iter().map(|l| l.k.max(l.n)).max().unwrap_or(16)
}

/// Bytes of workgroup memory for `subgroups` subgroups.
fn shared_bytes(ls: &[Layer], subgroups: u32) -> u32 {
    let weights: u32 = ls.iter().map(|l| l.k * l.stride() * 2).sum();
    let biases: u32 = ls.iter().map(|l| l.n * 4).sum();
    let per_subgroup = widest(ls) * ACT_STRIDE * 2 + 16 * ACC_STRIDE * 4;
    weights + biases + subgroups * per_subgroup
}

/// The workgroup size of the kernel of `plan` (a multiple of [`SUBGROUP`]), or why it has none.
pub fn workgroup(plan: &TensorPlan) -> Result<u32, String> {
    if plan.precision != Precision::F16 {
        return Err(format!("precision {} has no cooperative-matrix kernel (f16 has)", plan.precision.name()));
    }
    let ls = layers(plan);
    [8, 4, 2, 1]
        .into_iter()
        .find(|&s| shared_bytes(&ls, s) <= MAX_SHARED)
        .map(|s| s * SUBGROUP)
        .ok_or_else(|| format!("its weights and tiles need {} bytes of workgroup memory", shared_bytes(&ls, 1)))
}

/// The WGSL of a tensor kernel with these bindings, for a workgroup of `wg` invocations.
pub fn wgsl(k: &MmaKernel, name: &str, bindings: &[Binding], wg: u32) -> String {
    let plan = &k.plan;
    let ls = layers(plan);
    let subgroups = wg / SUBGROUP;
    let wide = widest(&ls);
    let act_len = subgroups * wide * ACT_STRIDE;
    let acc_len = subgroups * 16 * ACC_STRIDE;
    let w_len: u32 = ls.iter().map(|l| l.k * l.stride()).sum();
    let b_len: u32 = ls.iter().map(|l| l.n).sum();
    let buf = |i: usize| bindings[i].name.as_str();

    let mut out = format!("// {name}: cooperative matrices, f16 16x16x16, {wg} invocations\n");
    out += "enable f16;\nenable wgpu_cooperative_matrix;\n\n";
    for (n, b) in bindings.iter().enumerate() {
        let access = if b.read_only { "read" } else { "read_write" };
        let _ = writeln!(
            out,
            "@group(0) @binding({n}) var<storage, {access}> {}: array<{}>;",
            b.name,
            crate::backend::gpu::dialect::Dialect::ty(&Wgsl, b.elem)
        );
    }
    let _ = writeln!(out, "var<workgroup> wts: array<f16, {}>;", w_len.max(1));
    let _ = writeln!(out, "var<workgroup> bias: array<f32, {}>;", b_len.max(1));
    let _ = writeln!(out, "var<workgroup> act: array<f16, {act_len}>;");
    let _ = writeln!(out, "var<workgroup> acc: array<f32, {acc_len}>;");
    let _ = writeln!(
        out,
        "\n@compute @workgroup_size({wg})\nfn main(@builtin(local_invocation_id) lid3: vec3<u32>, \
         @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {{"
    );
    let mut b = String::new();
    let mut line = |s: String| {
        b.push_str("  ");
        b.push_str(&s);
        b.push('\n');
    };
    line("let lid = lid3.x;".into());
    line("let grp = wid.x + wid.y * nw.x;".into());
    line(format!("let count = {}[{}];", buf(k.sizes), k.agent));
    line(format!("let sg = lid / {SUBGROUP}u;"));
    line(format!("let lane = lid % {SUBGROUP}u;"));
    // The subgroup's activation buffer (column-major) and accumulator tile.
    line(format!("let act0 = sg * {}u;", wide * ACT_STRIDE));
    line(format!("let accb = sg * {}u;", 16 * ACC_STRIDE));
    let params = buf(k.params);
    for l in &ls {
        line(format!("for (var i = lid; i < {}u; i += {wg}u) {{", l.k * l.n));
        line(format!("  let kk = i / {}u;", l.n));
        line(format!("  let nn = i % {}u;", l.n));
        line("  var w = 0.0f;".into());
        line(format!(
            "  if (kk < {}u && nn < {}u) {{ w = {params}[{}u + nn * {}u + kk]; }}",
            l.cols, l.rows, l.weight, l.cols
        ));
        line(format!("  wts[{}u + kk * {}u + nn] = f16(w);", l.w_at, l.stride()));
        line("}".into());
        line(format!("for (var i = lid; i < {}u; i += {wg}u) {{", l.n));
        match l.bias {
            Some(at) => line(format!("  var v = 0.0f;\n    if (i < {}u) {{ v = {params}[{at}u + i]; }}", l.rows)),
            None => line("  let v = 0.0f;".into()),
        }
        line(format!("  bias[{}u + i] = v;", l.b_at));
        line("}".into());
    }
    line("workgroupBarrier();".into());

    line(format!("for (var it = 0u; it < {TILES}u; it++) {{"));
    line(format!("  let row = ((grp * {TILES}u + it) * {subgroups}u + sg) * {SUBGROUP}u + lane;"));
    line("  let ok = row < count;".into());
    // Layer 0's input, zero past the last column and the last agent.
    let first = &ls[0];
    for c in 0..first.k {
        let at = format!("act[act0 + {}u + lane]", c * ACT_STRIDE);
        match k.inputs.get(c as usize) {
            Some(&i) => line(format!("  {at} = f16(0.0f);\n    if (ok) {{ {at} = f16({}[row]); }}", buf(i))),
            None => line(format!("  {at} = f16(0.0f);")),
        }
    }
    line("  workgroupBarrier();".into());
    let last = ls.len() - 1;
    for (li, l) in ls.iter().enumerate() {
        let kt = l.k / 16;
        // A operands of both row tiles for every k-tile, loaded once per layer.
        for t in 0..kt {
            for m in 0..2 {
                line(format!(
                    "  let a{li}_{t}_{m} = coopLoad<coop_mat16x16<f16, A>>(&act[act0 + {}u], {ACT_STRIDE}u);",
                    t * 16 * ACT_STRIDE + m * 16
                ));
            }
        }
        for nt in 0..l.n / 16 {
            line("  {".into());
            // The accumulators start at the biases: a row-major load with stride 0 repeats
            // them in every row (agent).
            for m in 0..2 {
                line(format!("  var c{m} = coopLoadT<coop_mat16x16<f32, C>>(&bias[{}u], 0u);", l.b_at + nt * 16));
            }
            for t in 0..kt {
                line(format!(
                    "  let b{li}_{nt}_{t} = coopLoadT<coop_mat16x16<f16, B>>(&wts[{}u], {}u);",
                    l.w_at + t * 16 * l.stride() + nt * 16,
                    l.stride()
                ));
                for m in 0..2 {
                    line(format!("  c{m} = coopMultiplyAdd(a{li}_{t}_{m}, b{li}_{nt}_{t}, c{m});"));
                }
            }
            for m in 0..2 {
                line(format!("  coopStore(c{m}, &acc[accb + {}u], {ACC_STRIDE}u);", m * 16));
            }
            line("  workgroupBarrier();".into());
            if li == last {
                for j in 0..16u32 {
                    let col = (nt * 16 + j) as usize;
                    if col >= k.outputs.len() {
                        break;
                    }
                    let v = format!("acc[accb + {}u + lane]", j * ACC_STRIDE);
                    let comp = k.comps.get(col).copied().flatten().map(buf);
                    store(&mut line, k.plan.accumulate, buf(k.outputs[col]), comp, &v);
                }
            } else {
                // The barrier above also orders every A load of the layer before these writes.
                for j in 0..16u32 {
                    line(format!("  {{ let x = acc[accb + {}u + lane];", j * ACC_STRIDE));
                    line(format!(
                        "    act[act0 + {}u + lane] = f16({}); }}",
                        (nt * 16 + j) * ACT_STRIDE,
                        activation(plan.act, "x")
                    ));
                }
            }
            line("  workgroupBarrier();".into());
            line("  }".into());
        }
    }
    line("}".into());
    out += &b;
    out + "}\n"
}

/// Writes an output column of the invocation's agent: `v` or, for `+=`, the column plus `v`
/// (with Kahan's update where the column has a compensation).
fn store(line: &mut impl FnMut(String), accumulate: bool, out: &str, comp: Option<&str>, v: &str) {
    line("  if (ok) {".into());
    line(format!("    let v = {v};"));
    match (accumulate, comp) {
        (false, None) => line(format!("    {out}[row] = v;")),
        (false, Some(c)) => line(format!("    {out}[row] = v;\n      {c}[row] = 0.0f;")),
        (true, None) => line(format!("    {out}[row] = {out}[row] + v;")),
        (true, Some(c)) => {
            line(format!("    let old = {out}[row];"));
            line(format!("    let y = v - {c}[row];"));
            line("    let t = old + y;".into());
            line(format!("    {out}[row] = t;"));
            line(format!("    {c}[row] = (t - old) - y;"));
        }
    }
    line("  }".into());
}

/// The activation of an f32 WGSL expression. tanh is 1 − 2 / (e²ˣ + 1), within about 1e-7 of
/// tanh (far below the f16 it is rounded to): an exponential and a division, where the driver's
/// tanh made the whole kernel 1.6× slower on an H100.
fn activation(act: Activation, x: &str) -> String {
    let tanh = |y: String| format!("(1.0f - 2.0f / (exp(2.0f * {y}) + 1.0f))");
    match act {
        Activation::Identity => x.to_string(),
        Activation::Tanh => tanh(x.to_string()),
        Activation::Relu => format!("max({x}, 0.0f)"),
        Activation::Sigmoid => format!("(1.0f / (1.0f + exp(-{x})))"),
        Activation::Silu => format!("({x} / (1.0f + exp(-{x})))"),
        Activation::Gelu => {
            let c = (2.0 / std::f64::consts::PI).sqrt() as f32;
            format!("(0.5f * {x} * (1.0f + {}))", tanh(format!("({c:?}f * ({x} + 0.044715f * {x} * {x} * {x}))")))
        }
    }
}
