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
    let compiled = compile_file(&args.file, &opts).map_err(|e| {
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
    Ok(compiled)
}
