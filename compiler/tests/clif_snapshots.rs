//! The Cranelift IR of every example's CPU kernels, kept under `snapshots/clif/`; every function
//! also passes Cranelift's verifier (checked by `emit_module`).

mod common;
use common::*;

fn snapshot(name: &str) {
    let m = program(name);
    let kernels = aiic_compiler::backend::cpu::emit_module(&m).unwrap_or_else(|e| panic!("{name}: {e}"));
    let text: Vec<String> = kernels.into_iter().flatten().collect();
    insta::with_settings!({ snapshot_path => "../../snapshots/clif", prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!(name, text.join("\n"));
    });
}

macro_rules! example_clif {
    ($($name:ident),*) => {$(
        #[test]
        fn $name() {
            snapshot(stringify!($name));
        }
    )*};
}

example_clif!(nbody, kepler, lj_gas, billiards, springs);

/// Tensor plans as loops over layers, sixteen agents per step (`learned`, `read`, `guess`).
#[test]
fn tensor_plan_loops() {
    snapshot("tensor_cores");
}
