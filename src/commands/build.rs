//! `aiic build`: check and compile a program into a `.aiib` artifact.

use crate::{exit, load, ProgramArgs};
use aiic_runtime::artifact::GpuTarget;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub fn run(args: &ProgramArgs, out: Option<&PathBuf>, targets: &str, color: bool) -> u8 {
    let mut wanted: Vec<&str> = targets.split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
    if wanted.contains(&"all") {
        wanted = vec!["cpu", "vulkan", "cuda", "onnx"];
    }
    for t in &wanted {
        match *t {
            "cpu" | "vulkan" | "cuda" | "onnx" => {}
            "opencl" => {
                eprintln!(
                    "error: OpenCL programs are built for the device when a run starts (and cached per device); \
                     the artifact's IR is enough: `aiic run sim.aiib --target opencl`"
                );
                return exit::USER_ERROR;
            }
            "rt" => {
                eprintln!(
                    "error: the `{t}` code generator is not part of this build of aiic; available: cpu, vulkan, cuda, onnx"
                );
                return exit::BACKEND_UNAVAILABLE;
            }
            t => {
                eprintln!("error: unknown target `{t}`; targets: cpu, vulkan, cuda, opencl, rt, onnx, all");
                return exit::USER_ERROR;
            }
        }
    }
    let c = match load::compile(args, load::Need::Kernels, color) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(module) = &c.module else { return exit::USER_ERROR };
    let mut code = BTreeMap::new();
    if wanted.contains(&"cpu") {
        match aiic_compiler::backend::cpu::emit_module(module) {
            Ok(k) => {
                code.insert("cpu".to_string(), k);
            }
            Err(e) => {
                eprintln!("error: generating CPU code: {e}");
                return exit::USER_ERROR;
            }
        }
    }
    let mut gpu = BTreeMap::new();
    if wanted.contains(&"vulkan") {
        match aiic_compiler::backend::gpu::spirv::emit_module(module) {
            Ok(s) => {
                let code = s.words.iter().map(|w| w.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
                gpu.insert("vulkan".to_string(), GpuTarget { plan: s.code.plan, code, block: None });
            }
            Err(e) => {
                eprintln!("error: generating SPIR-V: {e}");
                return exit::USER_ERROR;
            }
        }
    }
    if wanted.contains(&"cuda") {
        let block = aiic_compiler::backend::gpu::ptx::DEFAULT_BLOCK;
        match aiic_compiler::backend::gpu::ptx::emit_module(module, block) {
            Ok(p) => {
                gpu.insert(
                    "cuda".to_string(),
                    GpuTarget { plan: p.code.plan, code: vec![p.text.into_bytes()], block: Some(block) },
                );
            }
            Err(e) => {
                eprintln!("error: generating PTX: {e}");
                return exit::USER_ERROR;
            }
        }
    }
    let onnx = if wanted.contains(&"onnx") {
        match aiic_compiler::backend::onnx::emit_module(module) {
            Ok(o) => Some(aiic_runtime::artifact::OnnxGraphs { plan: o.plan, graphs: o.graphs }),
            Err(e) => {
                eprintln!("error: generating ONNX graphs: {e}");
                return exit::USER_ERROR;
            }
        }
    } else {
        None
    };
    let path = out.cloned().unwrap_or_else(|| args.file.with_extension("aiib"));
    let source = args.file.display().to_string();
    match aiic_runtime::artifact::write(&path, &source, module, &code, &gpu, onnx.as_ref()) {
        Ok(()) => {
            let n = code.values().map(|k| k.iter().flatten().count()).sum::<usize>()
                + gpu.values().map(|g| g.code.len()).sum::<usize>()
                + onnx.as_ref().map_or(0, |o| o.graphs.len());
            eprintln!(
                "wrote {} ({} kernel file{} for {})",
                path.display(),
                n,
                if n == 1 { "" } else { "s" },
                wanted.join(", ")
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::USER_ERROR
        }
    }
}
