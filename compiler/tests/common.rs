//! Helpers shared by the compiler's integration tests.
#![allow(dead_code)]

use aiic_compiler::driver::{compile_source, Compiled};
use aiic_compiler::sema::CheckOptions;
use std::path::PathBuf;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn compile_with(src: &str, options: CheckOptions) -> Compiled {
    let mut options = options;
    if options.base_dir.as_os_str().is_empty() {
        options.base_dir = root().join("tests/programs");
    }
    compile_source("test.aii", None, src.to_string(), &options)
}

pub fn compile(src: &str) -> Compiled {
    compile_with(src, CheckOptions::default())
}

/// Every error as `file:line:col: error[CODE]: message`.
pub fn errors(c: &Compiled) -> Vec<String> {
    c.diags.list.iter().chain(&c.lower_diags).filter(|d| d.is_error()).map(|d| d.one_line(&c.sources)).collect()
}

pub fn example(name: &str) -> String {
    std::fs::read_to_string(root().join("examples").join(format!("{name}.aii"))).expect("example exists")
}

pub const EXAMPLES: &[&str] = &["nbody", "kepler", "lj_gas", "billiards", "springs"];

/// A program of `tests/programs` (`mixed_types`, `tensor_cores`), or an example, compiled to its module.
pub fn program(name: &str) -> aiic_compiler::ir::Module {
    let test_program = root().join("tests/programs").join(format!("{name}.aii"));
    // Files the program loads lie next to it.
    let (src, base_dir) = if test_program.is_file() {
        (std::fs::read_to_string(test_program).expect("readable"), root().join("tests/programs"))
    } else {
        (example(name), root().join("examples"))
    };
    compile_with(&src, CheckOptions { base_dir, ..Default::default() })
        .module
        .unwrap_or_else(|| panic!("{name} compiles"))
}
