//! `aiic emit`: print the code a target gets, or write binary code to a directory.

use crate::{exit, load, ProgramArgs};
use aiic_compiler::backend::gpu::spirv;
use aiic_compiler::ir::printer::print_module;
use aiic_compiler::ir::Module;
use std::path::Path;

const PLANNED: &[&str] = &["rt"];
const TARGETS: &str = "ir, clif, wgsl, spirv-asm, spirv, ptx, opencl, onnx";

pub fn run(args: &ProgramArgs, target: &str, out: Option<&Path>, color: bool) -> u8 {
    if !["ir", "clif", "wgsl", "spirv", "spirv-asm", "ptx", "opencl", "onnx"].contains(&target) {
        if PLANNED.contains(&target) {
            eprintln!("error: this build of aiic has no `{target}` code generator; available: {TARGETS}");
            return exit::BACKEND_UNAVAILABLE;
        }
        eprintln!("error: unknown target `{target}`; targets: {TARGETS}, {}", PLANNED.join(", "));
        return exit::USER_ERROR;
    }
    if target == "spirv" && out.is_none() {
        eprintln!("error: SPIR-V is binary: name a directory for it with `-o DIR` (or use --target spirv-asm)");
        return exit::USER_ERROR;
    }
    let c = match load::compile(args, load::Need::Kernels, color) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(m) = &c.module else { return exit::USER_ERROR };
    let result = match target {
        "ir" => {
            print!("{}", print_module(m));
            Ok(())
        }
        "clif" => aiic_compiler::backend::cpu::emit_module(m)
            .map(|kernels| kernels.into_iter().flatten().for_each(|text| println!("{text}")))
            .map_err(|e| format!("generating CPU code: {e}")),
        "ptx" => aiic_compiler::backend::gpu::ptx::emit_module(m, aiic_compiler::backend::gpu::ptx::DEFAULT_BLOCK)
            .map(|p| {
                print!("{}", p.text);
                // Hopper variants are modules of their own, which the executor loads on sm_90.
                for (n, k) in p.code.plan.kernels.iter().enumerate() {
                    if let Some(h) = &k.hopper {
                        print!("\n// aiic: the sm_90a module of device kernel {n} (`{}`)\n{}", k.name, h.ptx);
                    }
                }
            })
            .map_err(|e| format!("generating PTX: {e}")),
        "opencl" => aiic_compiler::backend::gpu::opencl::emit_module(m, Default::default())
            .map(|p| print!("{}", p.text))
            .map_err(|e| format!("generating OpenCL C: {e}")),
        "onnx" => emit_onnx(m, out),
        _ => emit_spirv(m, target, out),
    };
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: {e}");
            exit::USER_ERROR
        }
    }
}

/// The ONNX graph of every kernel the step and the law terms run: a listing of each, or with
/// `-o DIR` the models (`NNN_kernel.onnx`), `plan.json`, which says how the schedule feeds
/// them, and the hosted models (`hosted_N_name.onnx`).
fn emit_onnx(m: &Module, out: Option<&Path>) -> Result<(), String> {
    let code = aiic_compiler::backend::onnx::emit_module(m).map_err(|e| format!("generating ONNX: {e}"))?;
    let Some(dir) = out else {
        code.texts.iter().for_each(|t| println!("{t}"));
        return Ok(());
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (i, bytes) in code.graphs.iter().enumerate() {
        let name = code.plan.kernels.get(i).map_or("step".into(), |k| k.name.replace(['.', '/'], "_"));
        let path = dir.join(format!("{i:03}_{name}.onnx"));
        aiic_runtime::artifact::write_atomic(&path, bytes).map_err(|e| e.to_string())?;
    }
    aiic_runtime::artifact::write_atomic(&dir.join("plan.json"), code.plan.to_json().as_bytes())
        .map_err(|e| e.to_string())?;
    eprintln!("wrote {} ONNX models and plan.json to {}", code.graphs.len(), dir.display());
    // Hosted models run between these graphs, as they were read (see `Sched::Model`).
    for (i, h) in m.hosted.iter().enumerate() {
        let path = dir.join(format!("hosted_{i}_{}.onnx", h.name));
        aiic_runtime::artifact::write_atomic(&path, &h.bytes).map_err(|e| e.to_string())?;
        eprintln!(
            "wrote {}: model `{}`, run as it is on the host before the kernels that call it",
            path.display(),
            h.name
        );
    }
    Ok(())
}

fn emit_spirv(m: &Module, target: &str, out: Option<&Path>) -> Result<(), String> {
    let code = spirv::emit_module(m).map_err(|e| format!("generating SPIR-V: {e}"))?;
    let kernels = code.code.plan.kernels.iter().zip(code.texts.iter().zip(&code.words));
    match (target, out) {
        ("spirv", Some(dir)) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for (i, (k, (_, words))) in kernels.enumerate() {
                let path = dir.join(format!("{i:03}_{}.spv", k.name.replace(['.', '/'], "_")));
                let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                aiic_runtime::artifact::write_atomic(&path, &bytes).map_err(|e| e.to_string())?;
            }
            eprintln!("wrote {} SPIR-V modules to {}", code.words.len(), dir.display());
        }
        ("wgsl", _) => kernels.for_each(|(_, (text, _))| println!("{text}")),
        _ => kernels.for_each(|(k, (_, words))| println!("; kernel {}\n{}\n", k.name, spirv::disassemble(words))),
    }
    Ok(())
}
