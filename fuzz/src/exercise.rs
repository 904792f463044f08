//! What one case goes through: everything `aiic check --explain` does (parse, check, lower,
//! prove, render every diagnostic) and a short run on the reference interpreter. A deep case
//! also compiles twice (the two reports must be equal), prints and verifies the kernel IR,
//! generates code for every target and runs on the CPU backend, measuring the laws there too.
//! Errors are fine; a panic, a crash or a hang is a finding.

use aiic_compiler::driver::compile_source;
use aiic_compiler::ir::Module;
use aiic_compiler::sema::CheckOptions;
use aiic_runtime::backend::Backend;
use aiic_runtime::ir::InitOp;
use std::collections::HashMap;
use std::path::Path;

/// How far a case got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reached {
    /// Refused with diagnostics.
    Diagnosed,
    /// Compiled; the run stopped with an error (a failed check, NaN, a missing file).
    Compiled,
    /// Compiled and ran its steps on the interpreter and the CPU backend.
    Ran,
}

/// Agents per type in the short run: enough for pairs and neighbour cells, few enough that a
/// case takes milliseconds.
const MAX_AGENTS: u64 = 24;
const STEPS: usize = 2;

pub fn exercise(text: &str, base_dir: &Path, deep: bool) -> Reached {
    let options = CheckOptions { base_dir: base_dir.to_path_buf(), ..Default::default() };
    let c = compile_source("case.aii", None, text.to_string(), &options);
    for d in c.diags.list.iter().chain(&c.lower_diags) {
        let _ = d.render(&c.sources, false);
        let _ = d.one_line(&c.sources);
    }
    if let Some(report) = &c.proofs {
        let _ = aiic_compiler::passes::conserve::explain(report);
    }
    if deep {
        // The same text must give the same report: no diagnostic may depend on hashing or timing.
        let again = compile_source("case.aii", None, text.to_string(), &options);
        let lines = |c: &aiic_compiler::driver::Compiled| -> Vec<String> {
            c.diags.list.iter().chain(&c.lower_diags).map(|d| d.one_line(&c.sources)).collect()
        };
        assert_eq!(lines(&c), lines(&again), "the same program gave two different reports");
    }
    let Some(m) = c.module.as_ref() else { return Reached::Diagnosed };
    if c.diags.has_errors() {
        return Reached::Diagnosed;
    }
    if !deep {
        return if run(m).is_some() { Reached::Ran } else { Reached::Compiled };
    }
    let _ = aiic_compiler::ir::printer::print_module(m);
    for k in &m.kernels {
        let _ = aiic_compiler::ir::verify::verify(k);
    }
    let cpu = aiic_compiler::backend::cpu::emit_module(m);
    let _ = aiic_compiler::backend::gpu::spirv::emit_module(m);
    let _ = aiic_compiler::backend::gpu::opencl::emit_module(m, Default::default());
    let _ = aiic_compiler::backend::gpu::ptx::emit_module(m, aiic_compiler::backend::gpu::ptx::DEFAULT_BLOCK);
    match (run(m), cpu) {
        (Some(start), Ok(code)) if run_cpu(m, &code, &start) => Reached::Ran,
        _ => Reached::Compiled,
    }
}

/// Spawn counts capped at `MAX_AGENTS`.
fn small_counts(m: &Module) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for op in &m.init {
        if let InitOp::Spawn { agent, count, .. } = op {
            let n = counts.entry(m.agents[*agent].name.clone()).or_insert(MAX_AGENTS);
            *n = (*n).min(*count);
        }
    }
    counts
}

/// Init and a few steps on the interpreter, with the laws measured as `aiic run` does; the
/// state after init, if everything ran.
fn run(m: &Module) -> Option<aiic_runtime::World> {
    let mut sim = aiic_compiler::ir::interp::Interp::new(m, 1);
    sim.init(&small_counts(m)).ok()?;
    let start = sim.world.clone();
    sim.laws().ok()?;
    for _ in 0..STEPS {
        sim.step().ok()?;
    }
    let _ = sim.world.find_non_finite();
    sim.laws().ok()?;
    Some(start)
}

fn run_cpu(m: &Module, code: &[Option<String>], start: &aiic_runtime::World) -> bool {
    let Ok(mut cpu) = aiic_runtime::cpu::exec::CpuBackend::new(m, code, start, 1) else { return false };
    // The laws are measured by the CPU backend's own kernels too, as `aiic run` measures them.
    (0..STEPS).all(|_| cpu.step().is_ok()) && cpu.world().is_ok() && cpu.laws().is_ok()
}
