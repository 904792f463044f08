//! The OpenCL C of every example, kept under `snapshots/opencl/` (PoCL compiles and runs it in
//! `tests/backends.rs`).

mod common;
use aiic_compiler::backend::gpu::opencl;
use common::*;

fn snapshot(name: &str) {
    let code = opencl::emit_module(&program(name), Default::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    insta::with_settings!({ snapshot_path => "../../snapshots/opencl", prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!(name, code.text);
    });
}

macro_rules! example_opencl {
    ($($name:ident),*) => {$(
        #[test]
        fn $name() {
            snapshot(stringify!($name));
        }
    )*};
}

example_opencl!(nbody, kepler, lj_gas, billiards, springs, mixed_types);
