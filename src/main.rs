//! `aiic`: compile and run particle simulations written in AII.

mod commands;
mod load;
mod progress;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit codes of the command line contract.
pub mod exit {
    pub const OK: u8 = 0;
    pub const USER_ERROR: u8 = 1;
    pub const CONSERVATION: u8 = 2;
    pub const BACKEND_UNAVAILABLE: u8 = 3;
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Parser)]
#[command(
    name = "aiic",
    version,
    about = "Compile particle simulations written in AII (.aii) and run them on the hardware you have",
    long_about = "aiic compiles simulations written in AII: agents with properties and state, interactions \
between them, and conservation laws that are checked before anything runs and measured while it runs.\n\n\
Exit codes: 0 success, 1 user error (a diagnostic is printed), 2 conservation law over its tolerance under \
--strict, 3 a backend named explicitly is unavailable, 130 interrupted."
)]
struct Cli {
    /// Never colour diagnostics (also when NO_COLOR is set or output is not a terminal).
    #[arg(long, global = true)]
    no_color: bool,
    #[command(subcommand)]
    command: Command,
}

/// What every command that reads a program accepts.
#[derive(Args, Clone)]
pub struct ProgramArgs {
    /// The simulation: a `.aii` source, or (for `run` and `bench`) a `.aiib` artifact from `aiic build`.
    pub file: PathBuf,
    /// Which system to use when the file defines several.
    #[arg(long)]
    pub system: Option<String>,
    /// Override a const or param: `--set dt=1e-4` (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    /// Override `@precision` of every tensor interaction: f32, tf32, f16, bf16, int8, f64 or
    /// auto (tensor cores run f16, bf16, tf32 and int8 on CUDA, f16 on Vulkan devices with
    /// cooperative matrices; other targets compute f32).
    #[arg(long, value_name = "P")]
    pub precision: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Parse, type-check and prove the conservation laws; exit 0 if the program is sound.
    Check {
        #[command(flatten)]
        program: ProgramArgs,
        /// Print, for each law, the proof obligations and how each was discharged.
        #[arg(long)]
        explain: bool,
    },
    /// Check and compile a program into an artifact (`sim.aiib`) that `aiic run` accepts.
    Build {
        #[command(flatten)]
        program: ProgramArgs,
        /// Where to write the artifact (default: next to the source, with `.aiib`).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        /// Targets to generate code for, comma-separated: cpu (Cranelift IR), vulkan (SPIR-V), cuda
        /// (PTX), onnx (ONNX graphs, for --target onnx, openvino and npu), or all. OpenCL is
        /// built for the device when a run starts.
        #[arg(long, default_value = "cpu")]
        target: String,
    },
    /// Print generated code for one target.
    Emit {
        #[command(flatten)]
        program: ProgramArgs,
        /// Target: ir (the kernel IR), clif (Cranelift IR of the CPU kernels), wgsl (the source of
        /// the SPIR-V kernels), spirv-asm (SPIR-V disassembly), spirv (binary modules; needs -o),
        /// ptx (the CUDA module, then the sm_90a module of each Hopper kernel), opencl (OpenCL C) or
        /// onnx (a listing of each kernel's ONNX graph; with -o the graphs and plan.json).
        #[arg(long, default_value = "ir")]
        target: String,
        /// Directory for binary output: one `.spv` file per device kernel (`--target spirv`), or one
        /// `.onnx` file per kernel, the step's graph where there is one, and `plan.json` (`--target onnx`).
        #[arg(short, long)]
        out: Option<std::path::PathBuf>,
    },
    /// Run a simulation.
    Run(commands::run::RunArgs),
    /// Measure steps per second and pair interactions per second on each target.
    Bench(commands::bench::BenchArgs),
    /// List the hardware and backends this machine offers, and why others are missing.
    Devices,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let color =
        !cli.no_color && std::env::var_os("NO_COLOR").is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let code = match cli.command {
        Command::Check { program, explain } => commands::check::run(&program, explain, color),
        Command::Build { program, output, target } => commands::build::run(&program, output.as_ref(), &target, color),
        Command::Emit { program, target, out } => commands::emit::run(&program, &target, out.as_deref(), color),
        Command::Run(args) => commands::run::run(&args, color),
        Command::Bench(args) => commands::bench::run(&args, color),
        Command::Devices => commands::devices::run(),
    };
    ExitCode::from(code)
}
