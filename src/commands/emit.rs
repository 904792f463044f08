use crate::{exit, load, ProgramArgs};
use aiic_compiler::ir::printer::print_module;

const PLANNED: &[&str] = &["ptx", "spirv", "spirv-asm", "opencl", "clif", "onnx", "rt"];

pub fn run(args: &ProgramArgs, target: &str, color: bool) -> u8 {
    if target != "ir" {
        if PLANNED.contains(&target) {
            eprintln!("error: this build of aiic has no `{target}` code generator; available: ir");
            return exit::BACKEND_UNAVAILABLE;
        }
        eprintln!("error: unknown target `{target}`; targets: ir, {}", PLANNED.join(", "));
        return exit::USER_ERROR;
    }
    match load::compile(args, load::Need::Kernels, color) {
        Ok(c) => {
            if let Some(m) = &c.module {
                print!("{}", print_module(m));
            }
            exit::OK
        }
        Err(code) => code,
    }
}
