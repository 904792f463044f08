//! `aiic run`: init, then steps, with outputs, the conservation monitor and a progress bar.

use crate::progress::Progress;
use crate::{exit, load, ProgramArgs};
use aiic_compiler::ir::interp::Interp;
use aiic_compiler::ir::Module;
use aiic_runtime::backend::Backend;
use aiic_runtime::cpu::exec::CpuBackend;
use aiic_runtime::monitor::{LawInfo, Monitor};
use aiic_runtime::output::{open_writer, BackgroundWriter};
use clap::Args;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub program: ProgramArgs,
    /// Where to run: auto (CUDA on an NVIDIA GPU, else a Vulkan or OpenCL GPU, else the CPU),
    /// cuda, vulkan, opencl, onnx (ONNX graphs: ONNX Runtime where installed, else tract),
    /// onnx:PROVIDER (tract, cpu, cuda, tensorrt, coreml, qnn, openvino, directml),
    /// openvino[:CPU|GPU|NPU] (OpenVINO), npu (the first neural processing unit: Core ML's
    /// Neural Engine, Qualcomm's HTP, OpenVINO's NPU), cpu (Cranelift code on all cores), interp
    /// (the f64 reference interpreter).
    #[arg(long, default_value = "auto")]
    pub target: String,
    /// The GPU to use, by its number in `aiic devices` (default: the first, discrete GPUs first).
    #[arg(long, value_name = "N")]
    pub device: Option<usize>,
    /// Number of steps.
    #[arg(long, default_value_t = 100)]
    pub steps: u64,
    /// Override a spawn count: `--count Body=65536` (repeatable).
    #[arg(long = "count", value_name = "AGENT=N")]
    pub count: Vec<String>,
    /// Seed of the random functions in `init`.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write a trajectory: .csv, .npy (one file per agent type), .xyz (extended XYZ) or .vtk (one file per frame).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write a frame every K steps (default: only the first and the last step).
    #[arg(long, value_name = "K")]
    pub every: Option<u64>,
    /// Measure the conservation laws every K steps (always at the start and the end).
    #[arg(long, value_name = "K")]
    pub check_every: Option<u64>,
    /// Exit with code 2 if a law drifts beyond its tolerance.
    #[arg(long)]
    pub strict: bool,
    /// Draw the relative drift of each conservation law over the run into a PNG.
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
    /// Threads of the CPU backend (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Targets named in the language contract that this build cannot run yet.
pub const TARGETS: &[&str] = &["rt"];

pub fn parse_counts(list: &[String]) -> Result<HashMap<String, u64>, String> {
    let mut out = HashMap::new();
    for s in list {
        let (name, n) =
            s.split_once('=').ok_or_else(|| format!("`--count {s}`: expected AGENT=N, e.g. `--count Body=65536`"))?;
        let n: u64 =
            n.trim().parse().map_err(|_| format!("`--count {s}`: `{}` is not a non-negative integer", n.trim()))?;
        let max = aiic_compiler::sema::check::MAX_AGENTS;
        if n > max {
            return Err(format!("`--count {s}`: at most {max} agents per spawn"));
        }
        out.insert(name.trim().to_string(), n);
    }
    Ok(out)
}

/// The program to run and the `--count` overrides; `Err` carries the exit code.
pub fn load_with_counts(
    program: &ProgramArgs,
    count: &[String],
    color: bool,
) -> Result<(load::Loaded, HashMap<String, u64>), u8> {
    let counts = parse_counts(count).map_err(|e| {
        eprintln!("error: {e}");
        exit::USER_ERROR
    })?;
    Ok((load::load_module(program, color)?, counts))
}

/// Checks a target name; `Err` carries the exit code.
pub fn check_target(t: &str) -> Result<(), u8> {
    match t {
        "auto" | "interp" | "cpu" | "vulkan" | "cuda" | "opencl" => Ok(()),
        t if is_graph_target(t) => match onnx_engine(t) {
            Ok(_) => Ok(()),
            Err(e) => {
                eprintln!("error: {e}");
                Err(if e.contains("unknown") { exit::USER_ERROR } else { exit::BACKEND_UNAVAILABLE })
            }
        },
        t if TARGETS.contains(&t) => {
            eprintln!(
                "error: the `{t}` backend is not part of this build of aiic; use --target cuda, vulkan, opencl, onnx, openvino, npu, cpu, interp or auto"
            );
            Err(exit::BACKEND_UNAVAILABLE)
        }
        t => {
            eprintln!(
                "error: unknown target `{t}`; targets: auto, cuda, vulkan, opencl, onnx[:PROVIDER], openvino[:DEVICE], npu, cpu, interp, {}",
                TARGETS.join(", ")
            );
            Err(exit::USER_ERROR)
        }
    }
}

/// Whether a target runs ONNX graphs: `onnx[:PROVIDER]`, `openvino[:DEVICE]` or `npu`.
pub fn is_graph_target(t: &str) -> bool {
    t == "npu" || ["onnx", "openvino"].iter().any(|k| t == *k || t.strip_prefix(k).is_some_and(|r| r.starts_with(':')))
}

/// The engine of a graph target, or why there is none (see `Available::engine`).
pub fn onnx_engine(t: &str) -> Result<aiic_runtime::onnx::engine::Engine, String> {
    aiic_runtime::onnx::engine::Available::probe().engine(t)
}

pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Creates the agents on the host (the interpreter runs `init` for every backend, in f64); the
/// executor then runs the first force passes (`Backend::prime`).
pub fn init<'m>(module: &'m Module, counts: &HashMap<String, u64>, seed: u64) -> Result<Interp<'m>, String> {
    for name in counts.keys() {
        if !module.agents.iter().any(|a| &a.name == name) {
            let names: Vec<&str> = module.agents.iter().map(|a| a.name.as_str()).collect();
            return Err(format!(
                "`--count {name}=…`: no agent type `{name}`; the agent types are {}",
                names.join(", ")
            ));
        }
    }
    let mut sim = Interp::new(module, seed);
    sim.spawn_agents(counts).map_err(|e| format!("init failed: {e}"))?;
    if let Some((t, i, col)) = sim.world.find_non_finite() {
        return Err(format!("after init, agent {} #{i} has a non-finite `{col}`", module.agents[t].name));
    }
    Ok(sim)
}

/// Where and how to run: the target and the options of its executor.
pub struct Placement<'a> {
    pub target: &'a str,
    pub threads: usize,
    pub device: Option<usize>,
}

/// The executor for a target, holding the initial state. Under `auto`, a GPU that fails to start
/// gives way to the CPU with a note.
pub fn backend<'m>(
    at: &Placement,
    module: &'m Module,
    loaded: &load::Loaded,
    sim: Interp<'m>,
) -> Result<Box<dyn Backend + 'm>, String> {
    let mut exec = executor(at, module, loaded, sim)?;
    exec.prime().map_err(|e| format!("the first force pass failed: {e}"))?;
    Ok(exec)
}

fn executor<'m>(
    at: &Placement,
    module: &'m Module,
    loaded: &load::Loaded,
    sim: Interp<'m>,
) -> Result<Box<dyn Backend + 'm>, String> {
    let cpu_code = loaded.cpu_code.as_deref();
    match at.target {
        "interp" => Ok(Box::new(sim)),
        "vulkan" => Ok(Box::new(vulkan(module, loaded, &sim.world, at.device)?)),
        "cuda" => Ok(Box::new(cuda(module, loaded, &sim.world, at.device)?)),
        "opencl" => Ok(Box::new(opencl(module, &sim.world, at.device)?)),
        t if is_graph_target(t) => Ok(Box::new(onnx(module, loaded, &sim.world, onnx_engine(t)?, None)?)),
        "auto" => {
            // An NPU takes the kernels that call models where an interaction asks for one, or
            // where no GPU runs the step; the rest of the step runs on ONNX Runtime's CPU
            // provider (or tract) beside it.
            let asks_npu = module.kernels.iter().any(|k| k.tensor.as_ref().is_some_and(|t| t.npu));
            let calls_models = module.kernels.iter().any(|k| k.tensor.is_some()) || !module.hosted.is_empty();
            let engines = (asks_npu || calls_models).then(aiic_runtime::onnx::engine::Available::probe);
            let beside_npu = |gpu: bool| -> Option<Result<Box<dyn Backend + 'm>, String>> {
                let engines = engines.as_ref()?;
                let npu = engines.auto_models(asks_npu, calls_models, gpu)?;
                let rest = engines.engine("onnx").unwrap_or(aiic_runtime::onnx::engine::Engine::Tract);
                Some(onnx(module, loaded, &sim.world, rest, Some(npu)).map(|b| Box::new(b) as Box<dyn Backend + 'm>))
            };
            if let Some(made) = beside_npu(true) {
                match made {
                    Ok(b) => return Ok(b),
                    Err(e) => eprintln!("note: {e}; trying the next backend"),
                }
            }
            // NVIDIA GPUs run CUDA; other GPUs Vulkan; the CPU otherwise.
            if aiic_runtime::cuda::device_count() > at.device.unwrap_or(0) {
                match cuda(module, loaded, &sim.world, at.device) {
                    Ok(b) => return Ok(Box::new(b)),
                    Err(e) => eprintln!("note: {e}; trying the next backend"),
                }
            }
            let gpu = found(aiic_runtime::vulkan::probe(), "Vulkan")
                .and_then(|d| d.into_iter().nth(at.device.unwrap_or(0)))
                .filter(|d| !d.is_cpu || at.device.is_some());
            if gpu.is_some() {
                match vulkan(module, loaded, &sim.world, at.device) {
                    Ok(b) => return Ok(Box::new(b)),
                    Err(e) => eprintln!("note: {e}; trying the next backend"),
                }
            }
            // OpenCL only for a GPU: a CPU implementation is slower than aiic's own CPU code.
            let cl_gpu = found(aiic_runtime::opencl::probe(), "OpenCL")
                .and_then(|d| d.into_iter().nth(at.device.unwrap_or(0)))
                .is_some_and(|d| d.is_gpu);
            if cl_gpu {
                match opencl(module, &sim.world, at.device) {
                    Ok(b) => return Ok(Box::new(b)),
                    Err(e) => eprintln!("note: {e}; running on the CPU instead"),
                }
            }
            if let Some(made) = beside_npu(false) {
                match made {
                    Ok(b) => return Ok(b),
                    Err(e) => eprintln!("note: {e}; running on the CPU instead"),
                }
            }
            cpu(module, cpu_code, sim, at.threads)
        }
        _ => cpu(module, cpu_code, sim, at.threads),
    }
}

/// The devices a probe found; a broken loader or driver is said, not passed over in silence.
fn found<T>(probe: aiic_runtime::probe::Probe<T>, what: &str) -> Option<Vec<T>> {
    match probe {
        aiic_runtime::probe::Probe::Found(list) => Some(list),
        aiic_runtime::probe::Probe::Absent(_) => None,
        aiic_runtime::probe::Probe::Broken(e) => {
            eprintln!("note: {what}: {e}; trying the next backend");
            None
        }
    }
}

fn cpu<'m>(
    module: &'m Module,
    cpu_code: Option<&[Option<String>]>,
    sim: Interp<'m>,
    threads: usize,
) -> Result<Box<dyn Backend + 'm>, String> {
    let owned;
    let code = match cpu_code {
        Some(c) => c,
        None => {
            owned =
                aiic_compiler::backend::cpu::emit_module(module).map_err(|e| format!("generating CPU code: {e}"))?;
            &owned
        }
    };
    let cpu = CpuBackend::new(module, code, &sim.world, threads).map_err(|e| format!("CPU backend: {e}"))?;
    Ok(Box::new(cpu))
}

/// The shape of device kernels generated at run time; `AIIC_ROWS` overrides the agents per
/// thread of all-pairs kernels, for measurements.
fn gpu_options() -> aiic_compiler::backend::gpu::kernels::Options {
    let mut opts = aiic_compiler::backend::gpu::kernels::Options::default();
    if let Some(rows) = std::env::var("AIIC_ROWS").ok().and_then(|r| r.parse::<u32>().ok()) {
        opts.rows = rows.clamp(1, 8);
    }
    opts
}

/// The ONNX executor, with an artifact's graphs where it has them.
fn onnx<'m>(
    module: &'m Module,
    loaded: &load::Loaded,
    world: &aiic_runtime::World,
    engine: aiic_runtime::onnx::engine::Engine,
    models: Option<aiic_runtime::onnx::engine::Engine>,
) -> Result<aiic_runtime::onnx::exec::OnnxBackend<'m>, String> {
    let (plan, graphs) = match &loaded.onnx {
        Some(o) => (o.plan.clone(), o.graphs.clone()),
        None => {
            let code = aiic_compiler::backend::onnx::emit_module(module)
                .map_err(|e| format!("this program has no ONNX form: {e}"))?;
            (code.plan, code.graphs)
        }
    };
    match models {
        Some(npu) => aiic_runtime::onnx::exec::OnnxBackend::split(module, plan, &graphs, world, engine, npu),
        None => aiic_runtime::onnx::exec::OnnxBackend::new(module, plan, &graphs, world, engine),
    }
    .map_err(|e| format!("ONNX: {e}"))
}

fn opencl<'m>(
    module: &'m Module,
    world: &aiic_runtime::World,
    device: Option<usize>,
) -> Result<aiic_runtime::opencl::OpenClBackend<'m>, String> {
    let code = aiic_compiler::backend::gpu::opencl::emit_module(module, gpu_options())
        .map_err(|e| format!("this program has no OpenCL form: {e}"))?;
    let workgroup = std::env::var("AIIC_WORKGROUP").ok().and_then(|w| w.parse().ok());
    aiic_runtime::opencl::OpenClBackend::new(module, code.code.plan, &code.text, world, device, workgroup)
        .map_err(|e| format!("OpenCL: {e}"))
}

fn cuda<'m>(
    module: &'m Module,
    loaded: &load::Loaded,
    world: &aiic_runtime::World,
    device: Option<usize>,
) -> Result<aiic_runtime::cuda::CudaBackend<'m>, String> {
    use aiic_compiler::backend::gpu::ptx;
    // Tuning knob for measurements; artifacts carry the block size they were written for.
    let wanted = std::env::var("AIIC_BLOCK").ok().and_then(|w| w.parse::<u32>().ok());
    let (plan, text, block) = match (&loaded.ptx, wanted) {
        (Some((plan, text, block)), None) => (plan.clone(), text.clone(), *block),
        _ => {
            let opts = gpu_options();
            // As on Vulkan: the widest block that still makes 128 blocks of the largest agent type.
            let most = world.agents.iter().map(|a| a.count).max().unwrap_or(0) / opts.rows as usize;
            let fitting = [512u32, 256, 128].into_iter().find(|&b| most / b as usize >= 128).unwrap_or(64);
            let block = wanted.unwrap_or(fitting);
            if block == 0 || block > 1024 || !block.is_multiple_of(aiic_runtime::gpu::TILE_UNROLL) {
                return Err(format!("CUDA: {block} threads per block: give a multiple of 4 up to 1024"));
            }
            let p = ptx::emit_module_with(module, block, opts)
                .map_err(|e| format!("this program has no CUDA form: {e}"))?;
            (p.code.plan, p.text, block)
        }
    };
    aiic_runtime::cuda::CudaBackend::new(module, plan, &text, block, world, device).map_err(|e| format!("CUDA: {e}"))
}

fn vulkan<'m>(
    module: &'m Module,
    loaded: &load::Loaded,
    world: &aiic_runtime::World,
    device: Option<usize>,
) -> Result<aiic_runtime::vulkan::exec::VulkanBackend<'m>, String> {
    let (plan, words) = match &loaded.spirv {
        Some((plan, words)) => (plan.clone(), words.clone()),
        None => {
            let s = aiic_compiler::backend::gpu::spirv::emit_module_with(module, gpu_options())
                .map_err(|e| format!("this program has no Vulkan form: {e}"))?;
            (s.code.plan, s.words)
        }
    };
    // Tuning knob for measurements; the default comes from the device's limits.
    let workgroup = std::env::var("AIIC_WORKGROUP").ok().and_then(|w| w.parse().ok());
    let opts = aiic_runtime::vulkan::exec::Options { device, workgroup };
    aiic_runtime::vulkan::exec::VulkanBackend::new(module, plan, &words, world, &opts)
        .map_err(|e| format!("Vulkan: {e}"))
}

/// What became of `@accel(npu)` where the run is not on an NPU: none was found (and why), or
/// one was, which the named target does not use (`--target auto` sends the interaction there).
pub fn npu_note(module: &Module, target: &str) -> Option<String> {
    let asks: Vec<&str> =
        module.kernels.iter().filter(|k| k.tensor.as_ref().is_some_and(|t| t.npu)).map(|k| k.name.as_str()).collect();
    if asks.is_empty() || target == "npu" {
        return None;
    }
    let names = asks.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
    let found = aiic_runtime::onnx::engine::Available::probe();
    Some(match found.npu() {
        // `auto` ran it there (the executor's name says so).
        Some(_) if target == "auto" => return None,
        Some(engine) => format!(
            "{names} asks for an NPU (@accel(npu)); {} is one, but --target {target} runs the whole step elsewhere (--target auto sends {names} to it)",
            engine.name()
        ),
        None => format!("{names} asks for an NPU (@accel(npu)); none here, so it runs with the rest of the step ({})", found.no_npu()),
    })
}

pub fn run(args: &RunArgs, color: bool) -> u8 {
    if let Err(code) = check_target(&args.target) {
        return code;
    }
    if args.every == Some(0) || args.check_every == Some(0) || args.threads == Some(0) {
        eprintln!("error: --every, --check-every and --threads take a positive number");
        return exit::USER_ERROR;
    }
    let (loaded, counts) = match load_with_counts(&args.program, &args.count, color) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let module = &loaded.module;
    let sim = match init(module, &counts, args.seed) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USER_ERROR;
        }
    };
    let at =
        Placement { target: &args.target, threads: args.threads.unwrap_or_else(default_threads), device: args.device };
    let mut exec = match backend(&at, module, &loaded, sim) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::BACKEND_UNAVAILABLE;
        }
    };
    if args.target == "auto" {
        eprintln!("note: running on {}", exec.name());
    }
    for n in exec.notes() {
        eprintln!("note: {n}");
    }
    if let Some(n) = npu_note(module, &args.target) {
        eprintln!("note: {n}");
    }

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        // A second Ctrl-C while the handler is set does nothing more; the loop stops at the next step.
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    }

    let mut writer: Option<BackgroundWriter> = match &args.out {
        Some(path) => match open_writer(path, &module.agents) {
            Ok(w) => Some(BackgroundWriter::new(w)),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USER_ERROR;
            }
        },
        None => None,
    };
    // Frames travel back while the device goes on stepping (the executor keeps one in flight,
    // handed over at the next frame or the end), and are written on a thread of their own.
    let flush = |w: &mut Option<BackgroundWriter>, exec: &mut Box<dyn Backend + '_>| -> Result<(), String> {
        if let Some(w) = w.as_mut() {
            if let Some(frame) = exec.take_frame().map_err(|e| e.to_string())? {
                w.write(frame).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    };
    let write = |w: &mut Option<BackgroundWriter>, exec: &mut Box<dyn Backend + '_>| -> Result<(), String> {
        flush(w, exec)?;
        let Some(w) = w.as_mut() else { return Ok(()) };
        match exec.begin_frame().map_err(|e| e.to_string())? {
            Some(frame) => w.write(frame).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    };
    let measure = |exec: &mut Box<dyn Backend + '_>| -> Result<Vec<aiic_runtime::monitor::LawSample>, String> {
        // Where the state lives when the executor can; else its state is measured on the host.
        if let Some(samples) = exec.laws().map_err(|e| e.to_string())? {
            return Ok(samples);
        }
        let world = exec.world().map_err(|e| e.to_string())?;
        Interp::laws_of(module, world, args.seed).map_err(|e| e.to_string())
    };
    if let Err(e) = write(&mut writer, &mut exec) {
        eprintln!("error: {e}");
        return exit::USER_ERROR;
    }

    let laws: Vec<LawInfo> =
        module.laws.iter().map(|l| LawInfo { name: l.name.clone(), tolerance: l.tolerance }).collect();
    let mut monitor = match measure(&mut exec) {
        Ok(s) => Monitor::new(laws, s),
        Err(e) => {
            eprintln!("error: measuring the conservation laws: {e}");
            return exit::USER_ERROR;
        }
    };

    let started = Instant::now();
    let mut progress = Progress::new(args.steps);
    let mut last_written = 0;
    let mut last_checked = 0;
    let mut steps_done = 0;
    let mut code = exit::OK;
    for s in 1..=args.steps {
        if interrupted.load(Ordering::SeqCst) {
            eprintln!("interrupted after {} steps; frames written so far are complete", s - 1);
            code = exit::INTERRUPTED;
            break;
        }
        if let Err(e) = exec.step() {
            eprintln!("error: step {s}: {e}");
            code = exit::USER_ERROR;
            break;
        }
        steps_done = s;
        let bad = match exec.find_non_finite() {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: step {s}: {e}");
                code = exit::USER_ERROR;
                break;
            }
        };
        if let Some((t, i, col)) = bad {
            eprintln!(
                "error: by step {s}: agent {} #{i} has a non-finite `{col}`; the run stops here",
                module.agents[t].name
            );
            eprintln!("hint: a smaller time step (--set dt=…) or a softening length usually helps");
            code = exit::USER_ERROR;
            break;
        }
        if args.every.is_some_and(|k| s % k == 0) || s == args.steps {
            if let Err(e) = write(&mut writer, &mut exec) {
                eprintln!("error: {e}");
                code = exit::USER_ERROR;
                break;
            }
            last_written = s;
        }
        if args.check_every.is_some_and(|k| s % k == 0) || s == args.steps {
            last_checked = s;
            match exec.recheck_precisions(s) {
                Ok(notes) => notes.iter().for_each(|n| progress.note(&format!("note: {n}"))),
                Err(e) => {
                    eprintln!("error: step {s}: checking the precision of tensor kernels: {e}");
                    code = exit::USER_ERROR;
                    break;
                }
            }
            match measure(&mut exec) {
                Ok(samples) => monitor.record(s, samples),
                Err(e) => {
                    eprintln!("error: step {s}: measuring the conservation laws: {e}");
                    code = exit::USER_ERROR;
                    break;
                }
            }
        }
        progress.set(s);
    }
    progress.finish();
    // Executors that look for non-finite values every few steps look once more at the end.
    if code == exit::OK && steps_done > 0 {
        if let Ok(Some((t, i, col))) = exec.world().map(|_| ()).and_then(|()| exec.find_non_finite()) {
            eprintln!("error: by step {steps_done}: agent {} #{i} has a non-finite `{col}`", module.agents[t].name);
            code = exit::USER_ERROR;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // An interrupted run keeps the state it reached as a last frame, and reports its laws there.
    if code == exit::INTERRUPTED && steps_done != last_written && write(&mut writer, &mut exec).is_ok() {
        last_written = steps_done;
    }
    if code == exit::INTERRUPTED && steps_done != last_checked {
        if let Ok(samples) = measure(&mut exec) {
            monitor.record(steps_done, samples);
        }
    }
    if let Err(e) = flush(&mut writer, &mut exec) {
        eprintln!("error: {e}");
        code = exit::USER_ERROR;
    }
    if let Some(w) = writer {
        match w.finish() {
            Ok(files) => {
                let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
                eprintln!("wrote {} (last frame: step {last_written})", names.join(", "));
            }
            Err(e) => {
                eprintln!("error: {e}");
                code = exit::USER_ERROR;
            }
        }
    }
    let agents: usize = exec.world().map_or(0, |w| w.agents.iter().map(|a| a.count).sum());
    eprintln!(
        "ran {steps_done} steps of {} ({agents} agents) on {} in {elapsed:.3} s ({:.1} steps/s)",
        module.name,
        exec.name(),
        steps_done as f64 / elapsed.max(1e-9)
    );
    if !module.laws.is_empty() {
        eprint!("{}", monitor.table());
    }
    if let Some(path) = &args.plot {
        let title = format!("{}: relative drift of each law", module.name);
        match aiic_runtime::plot::drift_plot(path, &monitor, &title) {
            Ok(()) => eprintln!("wrote {}", path.display()),
            Err(e) => {
                eprintln!("error: {e}");
                code = exit::USER_ERROR;
            }
        }
    }
    if code == exit::OK && args.strict && !monitor.violations().is_empty() {
        let names: Vec<&str> = monitor.violations().iter().map(|&i| module.laws[i].name.as_str()).collect();
        eprintln!("error: --strict: {} drifted beyond tolerance", names.join(", "));
        code = exit::CONSERVATION;
    }
    code
}
