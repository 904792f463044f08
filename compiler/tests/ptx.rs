//! The PTX of every example: kept under `snapshots/ptx/`, and assembled by `ptxas` for sm_80 and
//! sm_90 where it is installed (CI installs it from the PyPI package `nvidia-cuda-nvcc-cu12`).

mod common;
#[path = "../../tests/support/npy.rs"]
mod npy;
#[path = "../../tests/support/require.rs"]
mod require;
use aiic_compiler::backend::gpu::ptx;
use common::*;

fn snapshot(name: &str) {
    let code = ptx::emit_module(&program(name), ptx::DEFAULT_BLOCK).unwrap_or_else(|e| panic!("{name}: {e}"));
    snapshot_text(name, &code.text);
}

fn snapshot_text(name: &str, text: &str) {
    insta::with_settings!({ snapshot_path => "../../snapshots/ptx", prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!(name, text);
    });
}

macro_rules! example_ptx {
    ($($name:ident),*) => {$(
        #[test]
        fn $name() {
            snapshot(stringify!($name));
        }
    )*};
}

example_ptx!(nbody, kepler, lj_gas, billiards, springs, mixed_types);

/// Tensor-core kernels (`mma.sync`, f16 and bf16) of a program whose interactions ask for them.
#[test]
fn tensor_core_kernels() {
    snapshot("tensor_cores");
}

fn ptxas() -> Option<std::path::PathBuf> {
    let found = std::process::Command::new("ptxas").arg("--version").output().is_ok_and(|o| o.status.success());
    found.then(|| "ptxas".into())
}

/// Assembles the PTX at `path` for `arch`: `Err` holds what ptxas said.
fn assemble(ptxas: &std::path::Path, path: &std::path::Path, arch: &str) -> Result<(), String> {
    let out = std::process::Command::new(ptxas)
        .args(["-arch", arch, "-o"])
        .arg(path.with_extension("cubin"))
        .arg(path)
        .output()
        .expect("ptxas runs");
    out.status.success().then_some(()).ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn every_module_assembles_with_ptxas() {
    require::listed();
    let Some(ptxas) = ptxas() else {
        return require::skip(
            "ptxas",
            "ptxas is not on PATH (pip install nvidia-cuda-nvcc-cu12; its bin/ holds ptxas)",
        );
    };
    let dir = std::env::temp_dir().join(format!("aiic-ptxas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for name in EXAMPLES.iter().chain(&["mixed_types", "tensor_cores"]) {
        for block in [64, ptx::DEFAULT_BLOCK] {
            let code = ptx::emit_module(&program(name), block).unwrap_or_else(|e| panic!("{name}: {e}"));
            let path = dir.join(format!("{name}_{block}.ptx"));
            std::fs::write(&path, &code.text).expect("write");
            for arch in ["sm_80", "sm_90", "sm_90a"] {
                if let Err(e) = assemble(&ptxas, &path, arch) {
                    panic!("{name} ({block} threads) for {arch}:\n{e}");
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The int8 kernels (`mma.sync.m16n8k32`, a scale per weight row and per agent) of the same
/// program with every tensor interaction at `@precision(int8)`: snapshot, and ptxas.
#[test]
fn int8_tensor_core_kernels() {
    let mut m = program("tensor_cores");
    for k in &mut m.kernels {
        if let Some(t) = &mut k.tensor {
            t.precision = aiic_compiler::ir::Precision::Int8;
        }
    }
    let code = ptx::emit_module(&m, ptx::DEFAULT_BLOCK).expect("ptx");
    let int8: Vec<&str> = code.code.kernels.iter().filter(|k| k.mma.is_some()).map(|k| k.name.as_str()).collect();
    assert_eq!(int8, ["learned.int8", "read.int8", "guess.int8"]);
    assert!(code.text.contains("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32"));
    snapshot_text("tensor_cores_int8", &code.text);
    let Some(ptxas) = ptxas() else { return };
    let dir = std::env::temp_dir().join(format!("aiic-int8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("int8.ptx");
    std::fs::write(&path, &code.text).expect("write");
    for arch in ["sm_80", "sm_90"] {
        if let Err(e) = assemble(&ptxas, &path, arch) {
            panic!("{arch}:\n{e}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `auto` keeps the f32 kernel in the step and writes the tensor-core candidates beside it, for
/// the executor to measure; a fixed precision puts its tensor-core kernel in the step; targets
/// other than PTX never write tensor-core kernels.
#[test]
fn auto_precision_keeps_f32_in_the_step_with_candidates_beside_it() {
    let m = program("tensor_cores");
    let code = ptx::emit_module(&m, ptx::DEFAULT_BLOCK).expect("ptx");
    let plan = &code.code.plan;
    let launched: Vec<usize> = plan
        .step
        .iter()
        .filter_map(|op| if let aiic_runtime::gpu::GpuOp::Launch(k) = op { Some(*k) } else { None })
        .collect();
    assert_eq!(plan.choices.len(), 1, "{:?}", plan.choices);
    let choice = &plan.choices[0];
    assert_eq!(choice.name, "guess");
    assert!(launched.contains(&choice.f32) && code.code.kernels[choice.f32].mma.is_none());
    let names: Vec<&str> = choice.candidates.iter().map(|(p, _)| p.name()).collect();
    assert_eq!(names, ["f16", "bf16", "tf32"]);
    for &(_, k) in &choice.candidates {
        assert!(code.code.kernels[k].mma.is_some() && !launched.contains(&k));
    }
    for name in ["learned.f16", "read.bf16"] {
        let k = code.code.kernels.iter().position(|k| k.name == name).unwrap_or_else(|| panic!("{name}"));
        assert!(launched.contains(&k), "{name} is launched");
    }
    let opencl = aiic_compiler::backend::gpu::opencl::emit_module(&m, Default::default()).expect("opencl");
    assert!(opencl.code.kernels.iter().all(|k| k.mma.is_none()) && opencl.code.plan.choices.is_empty());
}

/// An IEEE half's value (normal numbers and zero, which is all the test's weights are).
fn f16_value(h: u16) -> f32 {
    let (sign, exp, frac) = ((h >> 15) as i32, ((h >> 10) & 0x1f) as i32, (h & 0x3ff) as f32);
    let magnitude = if exp == 0 { frac / 1024.0 * 2f32.powi(-14) } else { (1.0 + frac / 1024.0) * 2f32.powi(exp - 15) };
    if sign == 1 {
        -magnitude
    } else {
        magnitude
    }
}

/// A program whose `W @ x` joins two wide fields: the step copies x to f16 and runs the GEMM
/// (`mma.sync` in the module, `wgmma` beside it for Hopper), and both assemble.
#[test]
fn wide_fields_become_a_tensor_core_gemm() {
    let dir = std::env::temp_dir().join(format!("aiic-gemm-ptx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (rows, cols) = (300u32, 264u32);
    let npy = |name: &str, shape: &[u32]| {
        let n: u32 = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|i| (i % 997) as f32 * 0.001).collect();
        npy::write_npy(&dir.join(name), shape, &values);
    };
    npy("w.npy", &[rows, cols]);
    npy("e.npy", &[cols, 3]);
    let src = format!(
        "system G {{\n  param W: tensor<f16>[{rows}, {cols}] = load(\"w.npy\");\n  param E: tensor<f32>[{cols}, 3] = load(\"e.npy\");\n  param F: tensor<f32>[{rows}, 3] = load(\"f.npy\");\n  agent A {{ state x: vec<f16, {cols}>; state y: vec<f32, {rows}>; }}\n  @precision(f16)\n  interaction product(a: A) each external {{ a.y += W @ a.x; }}\n  step {{ product; }}\n  init {{ spawn A * 10 {{ x: (E @ rand_in_sphere(1.0)) as vec<f16, {cols}>, y: F @ vec3(0.0) }} }}\n}}\n"
    );
    npy("f.npy", &[rows, 3]);
    let m = compile_with(&src, aiic_compiler::sema::CheckOptions { base_dir: dir.clone(), ..Default::default() })
        .module
        .expect("compiles");
    let code = ptx::emit_module(&m, ptx::DEFAULT_BLOCK).expect("ptx");
    let plan = &code.code.plan;
    let gemm = plan.kernels.iter().position(|k| k.hopper.is_some()).expect("a GEMM kernel");
    let copy = plan.kernels[gemm].prelude.expect("the f16 copy runs before it");
    assert_eq!(plan.step, vec![aiic_runtime::gpu::GpuOp::Launch(gemm)], "the GEMM is the step");
    assert!(code.code.kernels[copy].gemm.is_some() && code.code.kernels[gemm].gemm.is_some());
    assert!(plan.kernels[gemm].prelude_on_upload, "only the host writes x: its copy is made once per upload");
    // The kernels' parameters, in order, are these buffers and nothing else.
    use aiic_runtime::gpu::Buf;
    let (x, y) = (Buf::Field { agent: 0, col: 0, lanes: cols }, Buf::Field { agent: 0, col: cols, lanes: rows });
    let half = Buf::Half { agent: 0, col: 0, lanes: cols };
    let source = plan.kernels[gemm].source.expect("source");
    assert_eq!(plan.kernels[copy].bindings, vec![x, half, Buf::Sizes]);
    assert_eq!(
        plan.kernels[gemm].bindings,
        vec![half, Buf::Weights { kernel: source }, Buf::Bias { kernel: source }, y, Buf::Sizes]
    );
    // What the executor uploads for them: W in f16, [Mp][Kp] with zeros past the layer, and
    // zero biases (the layer has none).
    let world = aiic_runtime::World::new(m.agents.clone());
    let (mp, kp) = aiic_runtime::gpu::gemm_padding(rows, cols);
    let w = aiic_runtime::gpu::initial_bytes(&m, plan, Buf::Weights { kernel: source }, &world);
    assert_eq!(w.len(), (mp * kp * 2) as usize);
    for (r, c) in [(0, 0), (1, 5), (rows - 1, cols - 1), (rows - 1, cols), (rows, 0), (mp - 1, kp - 1)] {
        let at = ((r * kp + c) * 2) as usize;
        let got = f16_value(u16::from_le_bytes([w[at], w[at + 1]]));
        let want = if r < rows && c < cols { ((r * cols + c) % 997) as f32 * 0.001 } else { 0.0 };
        assert!((got - want).abs() <= want.abs() * 1e-3, "W[{r}, {c}]: {got} against {want}");
    }
    let bias = aiic_runtime::gpu::initial_bytes(&m, plan, Buf::Bias { kernel: source }, &world);
    assert_eq!(bias.len(), (mp * 4) as usize);
    assert!(bias.iter().all(|&b| b == 0));
    snapshot_text("gemm", &code.text);
    if let Some(ptxas) = ptxas() {
        let hopper = plan.kernels[gemm].hopper.as_ref().expect("hopper").ptx.clone();
        for (text, archs) in [(code.text.clone(), &["sm_80", "sm_90"][..]), (hopper, &["sm_90a"][..])] {
            let path = dir.join("g.ptx");
            std::fs::write(&path, text).expect("write");
            for arch in archs {
                if let Err(e) = assemble(&ptxas, &path, arch) {
                    panic!("{arch}:\n{e}");
                }
            }
        }
    }
    // A step that also writes x copies it before every product.
    let drifting = src.replace(
        "step { product; }",
        "interaction decay(a: A) each external { a.x = a.x * 0.5; }\n  step { decay; product; }",
    );
    let m = compile_with(&drifting, aiic_compiler::sema::CheckOptions { base_dir: dir.clone(), ..Default::default() })
        .module
        .expect("compiles");
    let plan = ptx::emit_module(&m, ptx::DEFAULT_BLOCK).expect("ptx").code.plan;
    let gemm = plan.kernels.iter().position(|k| k.hopper.is_some()).expect("a GEMM kernel");
    assert!(plan.kernels[gemm].prelude.is_some() && !plan.kernels[gemm].prelude_on_upload);
    let _ = std::fs::remove_dir_all(&dir);
}
