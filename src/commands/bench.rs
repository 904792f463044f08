//! `aiic bench`: steps per second and pair interactions per second on each target.

use super::run::{backend, check_target, default_threads, init, load_with_counts, Placement};
use crate::{exit, ProgramArgs};
use aiic_compiler::ir::{Module, Pattern, Sched};
use aiic_runtime::grid::CellGrid;
use aiic_runtime::World;
use clap::Args;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub program: ProgramArgs,
    /// Targets to measure, comma-separated.
    #[arg(long, default_value = "cpu,interp")]
    pub target: String,
    /// Override a spawn count: `--count Body=4096` (repeatable).
    #[arg(long = "count", value_name = "AGENT=N")]
    pub count: Vec<String>,
    /// Measure for about this many seconds per target (after one warm-up step).
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Threads of the CPU backend (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// The GPU to use, by its number in `aiic devices`.
    #[arg(long, value_name = "N")]
    pub device: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Pairs a step's pair kernels visit: all pairs, or the neighbour search's candidates.
fn pairs_per_step(m: &Module, w: &World) -> u64 {
    let mut total = 0u64;
    for s in &m.step {
        let Sched::Run(k) = s else { continue };
        let n = |t: usize| w.agents[t].count as u64;
        total += match m.kernels[*k].pattern {
            Pattern::AllPairs { a, b } if a == b => n(a) * n(a).saturating_sub(1) / 2,
            Pattern::AllPairs { a, b } => n(a) * n(b),
            Pattern::Neighbors { a, b, bound } => {
                let cols = |t: usize| -> Vec<&[f64]> {
                    let schema = &m.agents[t];
                    let Some((fi, f)) = schema.field("position") else { return Vec::new() };
                    let start = schema.column_offsets()[fi];
                    (start..start + f.lanes.len()).map(|c| w.agents[t].columns[c].as_slice()).collect()
                };
                let Ok(grid) = CellGrid::build(&cols(b), bound) else { continue };
                let mut count = 0u64;
                if a == b {
                    grid.for_each_pair_within_cells(|_, _| count += 1);
                } else {
                    let _ = grid.for_each_candidate(&cols(a), |_, _| count += 1);
                }
                count
            }
            _ => 0,
        };
    }
    total
}

/// Floating-point operations of a step's tensor plans: two per multiply-add of every layer,
/// for every agent.
fn tensor_flop_per_step(m: &Module, w: &World) -> f64 {
    let mut total = 0.0;
    for s in &m.step {
        let Sched::Run(k) = s else { continue };
        let (Some(plan), Pattern::Map { agent }) = (&m.kernels[*k].tensor, &m.kernels[*k].pattern) else { continue };
        let macs: f64 = plan.layers.iter().map(|l| l.rows as f64 * l.cols as f64).sum();
        total += 2.0 * macs * w.agents[*agent].count as f64;
    }
    total
}

pub fn run(args: &BenchArgs, color: bool) -> u8 {
    let targets: Vec<&str> = args.target.split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
    for t in &targets {
        if let Err(code) = check_target(t) {
            return code;
        }
    }
    let (loaded, counts) = match load_with_counts(&args.program, &args.count, color) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let module = &loaded.module;
    // An interaction is one agent feeling one partner: each pair is two.
    println!(
        "{:<34} {:>8} {:>8} {:>12} {:>12} {:>14}  clock",
        "target", "agents", "steps", "steps/s", "pairs/s", "interactions/s"
    );
    for target in targets {
        let sim = match init(module, &counts, args.seed) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USER_ERROR;
            }
        };
        let agents: usize = sim.world.agents.iter().map(|a| a.count).sum();
        let pairs = pairs_per_step(module, &sim.world);
        let flop = tensor_flop_per_step(module, &sim.world);
        let at = Placement { target, threads: args.threads.unwrap_or_else(default_threads), device: args.device };
        let mut exec = match backend(&at, module, &loaded, sim) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::BACKEND_UNAVAILABLE;
            }
        };
        for n in exec.notes() {
            eprintln!("note: {target}: {n}");
        }
        if let Err(e) = exec.step().and_then(|()| exec.finish()) {
            eprintln!("error: {target}: {e}");
            return exit::USER_ERROR;
        }
        let budget = Duration::from_secs_f64(args.seconds.max(0.01));
        let start = Instant::now();
        let mut steps = 0u64;
        while steps < 2 || start.elapsed() < budget {
            if let Err(e) = exec.step() {
                eprintln!("error: {target}: step {steps}: {e}");
                return exit::USER_ERROR;
            }
            steps += 1;
        }
        if let Err(e) = exec.finish() {
            eprintln!("error: {target}: {e}");
            return exit::USER_ERROR;
        }
        let secs = start.elapsed().as_secs_f64();
        let name = exec.name();
        let show = |clock: &str, steps: u64, secs: f64| {
            let rate = steps as f64 / secs;
            println!(
                "{:<34} {:>8} {:>8} {:>12.2} {:>12.4e} {:>14.4e}  {clock}",
                name,
                agents,
                steps,
                rate,
                rate * pairs as f64,
                2.0 * rate * pairs as f64
            );
            if flop > 0.0 {
                eprintln!("note: {name}: tensor work {flop:.4e} FLOP a step, {:.4e} FLOP/s ({clock})", rate * flop);
            }
        };
        show("wall", steps, secs);
        // The device's own clock, over as many steps as the wall clock saw (at most 1000).
        match exec.device_seconds(steps.clamp(1, 1000)) {
            Some(Ok(t)) if t > 0.0 => show("device", steps.clamp(1, 1000), t),
            Some(Err(e)) => {
                eprintln!("error: {target}: timing on the device: {e}");
                return exit::USER_ERROR;
            }
            _ => {}
        }
    }
    exit::OK
}
