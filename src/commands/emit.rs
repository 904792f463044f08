use crate::{exit, load, ProgramArgs};
use aiic_compiler::ir::printer::print_module;

const PLANNED: &[&str] = &["ptx", "spirv", "spirv-asm", "opencl", "onnx", "rt"];
const TARGETS: &str = "ir, clif";

pub fn run(args: &ProgramArgs, target: &str, color: bool) -> u8 {
    if target != "ir" && target != "clif" {
        if PLANNED.contains(&target) {
            eprintln!("error: this build of aiic has no `{target}` code generator; available: {TARGETS}");
            return exit::BACKEND_UNAVAILABLE;
        }
        eprintln!("error: unknown target `{target}`; targets: {TARGETS}, {}", PLANNED.join(", "));
        return exit::USER_ERROR;
    }
    let c = match load::compile(args, load::Need::Kernels, color) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(m) = &c.module else { return exit::USER_ERROR };
    if target == "ir" {
        print!("{}", print_module(m));
        return exit::OK;
    }
    match aiic_compiler::backend::cpu::emit_module(m) {
        Ok(kernels) => {
            for text in kernels.into_iter().flatten() {
                println!("{text}");
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("error: generating CPU code: {e}");
            exit::USER_ERROR
        }
    }
}
