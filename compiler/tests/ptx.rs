//! The PTX of every example: kept under `snapshots/ptx/`, and assembled by `ptxas` for sm_80 and
//! sm_90 where it is installed (CI installs it from the PyPI package `nvidia-cuda-nvcc-cu12`).

mod common;
#[path = "../../tests/support/require.rs"]
mod require;
use aiic_compiler::backend::gpu::ptx;
use common::*;

fn snapshot(name: &str) {
    let code = ptx::emit_module(&program(name), ptx::DEFAULT_BLOCK).unwrap_or_else(|e| panic!("{name}: {e}"));
    insta::with_settings!({ snapshot_path => "../../snapshots/ptx", prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!(name, code.text);
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
                let out = std::process::Command::new(&ptxas)
                    .args(["-arch", arch, "-o"])
                    .arg(dir.join("out.cubin"))
                    .arg(&path)
                    .output()
                    .expect("ptxas runs");
                assert!(
                    out.status.success(),
                    "{name} ({block} threads) for {arch}:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
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
