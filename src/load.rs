//! Compiling the program a command names, and reporting its diagnostics.

use crate::{exit, ProgramArgs};
use aiic_compiler::driver::{compile_file, render, Compiled};
use aiic_compiler::sema::CheckOptions;

pub fn options(args: &ProgramArgs) -> Result<CheckOptions, String> {
    let mut set = Vec::new();
    for s in &args.set {
        let Some((name, value)) = s.split_once('=') else {
            return Err(format!("`--set {s}`: expected NAME=VALUE, e.g. `--set dt=1e-4`"));
        };
        set.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok(CheckOptions { system: args.system.clone(), set, base_dir: Default::default() })
}

/// Whether the command needs kernels (run, emit) or only a checked program (check).
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum Need {
    Checked,
    Kernels,
}

/// Compiles the program and prints its diagnostics; `Err` carries the exit code.
pub fn compile(args: &ProgramArgs, need: Need, color: bool) -> Result<Compiled, u8> {
    let opts = options(args).map_err(|e| {
        eprintln!("error: {e}");
        exit::USER_ERROR
    })?;
    // Checking and lowering recurse over the syntax tree; a generous stack lets long expression
    // chains through (nesting depth itself is limited by the parser).
    let file = args.file.clone();
    let compiled = std::thread::Builder::new()
        .stack_size(512 << 20)
        .spawn(move || compile_file(&file, &opts))
        .map_err(|e| {
            eprintln!("error: cannot start the compiler: {e}");
            exit::USER_ERROR
        })?
        .join()
        .map_err(|_| {
            eprintln!("error: the compiler crashed; please report this with the input file");
            exit::USER_ERROR
        })?
        .map_err(|e| {
            eprintln!("error: {e}");
            exit::USER_ERROR
        })?;
    eprint!("{}", render(&compiled, &compiled.diags.list, color));
    let lowering_failed = compiled.program.is_some() && compiled.module.is_none();
    if lowering_failed && need == Need::Checked {
        let notes: Vec<_> = compiled
            .lower_diags
            .iter()
            .cloned()
            .map(|mut d| {
                d.severity = aiic_compiler::diag::Severity::Warning;
                d
            })
            .collect();
        eprint!("{}", render(&compiled, &notes, color));
        return Ok(compiled);
    }
    eprint!("{}", render(&compiled, &compiled.lower_diags, color));
    if compiled.diags.has_errors() || compiled.module.is_none() {
        let n = (compiled.diags.error_count() + compiled.lower_diags.len()).max(1);
        eprintln!("error: {} has {n} error{}", args.file.display(), if n == 1 { "" } else { "s" });
        return Err(exit::USER_ERROR);
    }
    let mut compiled = compiled;
    if let Some(m) = &mut compiled.module {
        override_precision(args, m)?;
    }
    Ok(compiled)
}

/// A module ready to run: compiled from source, or read from a `.aiib` artifact.
pub struct Loaded {
    pub module: aiic_compiler::ir::Module,
    /// CPU kernels from an artifact; None means generate them from the module.
    pub cpu_code: Option<Vec<Option<String>>>,
    /// SPIR-V kernels and their plan from an artifact; None means generate them.
    pub spirv: Option<(aiic_runtime::gpu::GpuPlan, Vec<Vec<u32>>)>,
    /// The PTX module, its plan and its threads per block from an artifact.
    pub ptx: Option<(aiic_runtime::gpu::GpuPlan, String, u32)>,
    /// ONNX graphs and their plan from an artifact.
    pub onnx: Option<aiic_runtime::artifact::OnnxGraphs>,
}

/// Loads the program a command names: `.aiib` artifacts are read, anything else compiled.
pub fn load_module(args: &ProgramArgs, color: bool) -> Result<Loaded, u8> {
    let is_artifact = args.file.extension().is_some_and(|e| e == "aiib") || args.file.join("manifest.json").is_file();
    if !is_artifact {
        let c = compile(args, Need::Kernels, color)?;
        let module = c.module.ok_or(exit::USER_ERROR)?;
        return Ok(Loaded { module, cpu_code: None, spirv: None, ptx: None, onnx: None });
    }
    if args.system.is_some() {
        eprintln!("error: --system picks a system when compiling; {} is already built", args.file.display());
        return Err(exit::USER_ERROR);
    }
    let (manifest, mut code, mut gpu, onnx) = aiic_runtime::artifact::read(&args.file).map_err(|e| {
        eprintln!("error: {e}");
        exit::USER_ERROR
    })?;
    let mut module = manifest.module;
    // Parameters may change at run time; constants were folded when the artifact was built.
    for s in &args.set {
        let Some((name, value)) = s.split_once('=') else {
            eprintln!("error: `--set {s}`: expected NAME=VALUE");
            return Err(exit::USER_ERROR);
        };
        let lanes: Vec<usize> =
            module.uniforms.iter().enumerate().filter(|(_, u)| u.param == name.trim()).map(|(i, _)| i).collect();
        let values: Result<Vec<f64>, _> = value.split(',').map(|v| v.trim().parse::<f64>()).collect();
        match values {
            Ok(v) if !lanes.is_empty() && v.len() == lanes.len() => {
                for (i, x) in lanes.into_iter().zip(v) {
                    module.uniforms[i].value = x;
                }
            }
            _ if module.tensors.iter().any(|t| t.param == name.trim()) => {
                eprintln!("error: `--set {s}`: `{}` is a tensor parameter; its values come from its file", name.trim());
                return Err(exit::USER_ERROR);
            }
            _ if lanes.is_empty() => {
                eprintln!("error: `--set {s}`: the artifact has no param `{}` (constants are fixed when it is built; rebuild with --set)", name.trim());
                return Err(exit::USER_ERROR);
            }
            _ => {
                eprintln!("error: `--set {s}`: give {} number(s), separated by commas", lanes.len());
                return Err(exit::USER_ERROR);
            }
        }
    }
    let spirv = match gpu.remove("vulkan") {
        Some(g) => {
            let (plan, files) = (g.plan, g.code);
            let mut words = Vec::new();
            for (k, bytes) in plan.kernels.iter().zip(&files) {
                if bytes.len() % 4 != 0 || bytes.get(..4) != Some(&0x0723_0203u32.to_le_bytes()[..]) {
                    eprintln!(
                        "error: {}: the SPIR-V of kernel `{}` is damaged; rebuild it",
                        args.file.display(),
                        k.name
                    );
                    return Err(exit::USER_ERROR);
                }
                words.push(bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect());
            }
            Some((plan, words))
        }
        None => None,
    };
    let ptx = match gpu.remove("cuda") {
        Some(g) => {
            let text = g.code.into_iter().next().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            Some((g.plan, text, g.block.unwrap_or(aiic_compiler::backend::gpu::ptx::DEFAULT_BLOCK)))
        }
        None => None,
    };
    if let Some(o) = &onnx {
        for (i, g) in o.graphs.iter().enumerate() {
            if let Err(e) = aiic_runtime::onnx::decode(g) {
                let what = o.plan.kernels.get(i).map_or("the step".into(), |k| format!("kernel `{}`", k.name));
                eprintln!("error: {}: the ONNX graph of {what} is damaged ({e}); rebuild it", args.file.display());
                return Err(exit::USER_ERROR);
            }
        }
    }
    // The PTX was written for the artifact's precisions; another is generated at run time.
    let ptx = if args.precision.is_some() { None } else { ptx };
    override_precision(args, &mut module)?;
    Ok(Loaded { module, cpu_code: code.remove("cpu"), spirv, ptx, onnx })
}

/// Applies `--precision` to every tensor interaction.
fn override_precision(args: &ProgramArgs, module: &mut aiic_compiler::ir::Module) -> Result<(), u8> {
    let Some(name) = &args.precision else { return Ok(()) };
    let Some(p) = aiic_compiler::ir::Precision::from_name(name) else {
        let names = aiic_compiler::ir::Precision::NAMES.join(", ");
        eprintln!("error: `--precision {name}`: expected one of {names}");
        return Err(exit::USER_ERROR);
    };
    for k in &mut module.kernels {
        if let Some(t) = &mut k.tensor {
            t.precision = p;
        }
    }
    Ok(())
}
