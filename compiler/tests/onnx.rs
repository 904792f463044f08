//! The ONNX graphs of every example, kept under `snapshots/onnx/` as listings (tract, ONNX
//! Runtime and OpenVINO run them in `tests/backends.rs`), and the ONNX checker's verdict on them
//! (the step's graph included, where there is one) where the Python `onnx` package is installed.

mod common;
#[path = "../../tests/support/require.rs"]
mod require;
use aiic_compiler::backend::onnx;
use common::*;

fn listing(name: &str) -> String {
    let code = onnx::emit_module(&program(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut text = code.texts.join("\n");
    text.push_str("\nplan ");
    text.push_str(&code.plan.to_json());
    text
}

fn snapshot(name: &str) {
    let text = listing(name);
    insta::with_settings!({ snapshot_path => "../../snapshots/onnx", prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!(name, text);
    });
}

macro_rules! example_onnx {
    ($($name:ident),*) => {$(
        #[test]
        fn $name() {
            snapshot(stringify!($name));
        }
    )*};
}

example_onnx!(nbody, kepler, lj_gas, billiards, springs, learned_force, tensor_cores, mixed_types);

fn has_checker() -> bool {
    std::process::Command::new("python3").args(["-c", "import onnx"]).output().is_ok_and(|o| o.status.success())
}

#[test]
fn every_graph_passes_the_onnx_checker() {
    require::listed();
    if !has_checker() {
        return require::skip("onnx-checker", "the Python package `onnx` is not installed (pip install onnx)");
    }
    let dir = std::env::temp_dir().join(format!("aiic-onnx-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut files = Vec::new();
    for name in EXAMPLES.iter().chain(&["learned_force", "tensor_cores", "mixed_types"]) {
        let code = onnx::emit_module(&program(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (i, g) in code.graphs.iter().enumerate() {
            let kernel = code.plan.kernels.get(i).map_or("step", |k| k.name.as_str());
            let path = dir.join(format!("{name}-{kernel}.onnx"));
            std::fs::write(&path, g).expect("write graph");
            files.push(path);
        }
    }
    // Full check: the schema of every node, and shape inference over the whole graph.
    let script = "import onnx, sys\nfor p in sys.argv[1:]:\n    onnx.checker.check_model(onnx.load(p), full_check=True)\nprint(len(sys.argv) - 1)";
    let out = std::process::Command::new("python3").arg("-c").arg(script).args(&files).output().expect("python3 runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "the ONNX checker refuses a graph:\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), files.len().to_string());
}
