//! The printed kernel IR of every example, kept under `snapshots/ir/` and reviewed on change.

mod common;
use aiic_compiler::ir::printer::print_module;
use common::*;

fn snapshot(name: &str, src: &str) {
    let c = compile(src);
    assert!(errors(&c).is_empty(), "{name}: {:?}", errors(&c));
    let text = print_module(c.module.as_ref().expect("module"));
    insta::with_settings!({ snapshot_path => "../../snapshots/ir", prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!(name, text);
    });
}

macro_rules! example_ir {
    ($($name:ident),*) => {$(
        #[test]
        fn $name() {
            snapshot(stringify!($name), &example(stringify!($name)));
        }
    )*};
}

example_ir!(nbody, kepler, lj_gas, billiards, springs);

#[test]
fn ir_of_tensor_plans() {
    let src = std::fs::read_to_string(root().join("tests/programs/tensor_cores.aii")).expect("tensor_cores");
    snapshot("tensor_cores", &src);
}

#[test]
fn ir_of_the_language_tour() {
    let src = std::fs::read_to_string(root().join("tests/programs/tour.aii")).expect("tour");
    snapshot("tour", &src);
}

#[test]
fn the_verifier_accepts_every_kernel() {
    for name in EXAMPLES {
        let c = compile(&example(name));
        for k in &c.module.as_ref().expect("module").kernels {
            aiic_compiler::ir::verify::verify(k).unwrap_or_else(|e| panic!("{name}/{}: {e}", k.name));
        }
    }
}

#[test]
fn ir_of_a_hosted_model() {
    let src = std::fs::read_to_string(root().join("tests/programs/hosted_field.aii")).expect("hosted_field");
    snapshot("hosted_field", &src);
}
