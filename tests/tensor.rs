//! Tensor interactions on every executor against the f64 interpreter: a lattice of shapes
//! (inputs, hidden width and outputs from 1 to 300, mostly not multiples of 16, agent counts
//! that are not multiples of a tile), in each precision, and the learned-force example.
//!
//! Bounds are relative to the largest magnitude of the output field. f32 executors compute what
//! the interpreter computes to f32 rounding (1e-5). Tensor cores round inputs, weights and hidden
//! activations to 11 significant bits (f16) or 8 (bf16) and accumulate in f32; the bounds below
//! are five times the largest error measured on the H200 over the lattice (f16 1.0e-3, bf16
//! 6.5e-3: bench/RESULTS.md), and an error in the fragment layouts (a transposed operand, a
//! swapped half, a lost tile) is of the order of the output itself.

use aiic_compiler::driver::compile_file;
use aiic_compiler::ir::interp::Interp;
use aiic_compiler::ir::{Module, Precision};
use aiic_compiler::sema::CheckOptions;
use aiic_runtime::backend::Backend;
use aiic_runtime::cpu::exec::CpuBackend;
use aiic_runtime::World;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[path = "support/engines.rs"]
mod engines;
#[path = "support/npy.rs"]
mod npy;
#[path = "support/require.rs"]
mod require;
use npy::write_npy;

const F32_BOUND: f64 = 1e-5;
const F16_BOUND: f64 = 5e-3;
const BF16_BOUND: f64 = 3.2e-2;
/// tf32 keeps f16's 10 bits of mantissa with f32's range.
const TF32_BOUND: f64 = 5e-3;
/// int8 rounds each weight to 1/254 of its row's largest and each activation to 1/254 of its
/// agent's largest: a few parts in a thousand an operand, summed over the layers.
const INT8_BOUND: f64 = 6e-2;

/// One shape of the lattice: input width, hidden width (0: a bare `W @ x`), output width,
/// activation, and whether the output is accumulated (`+=`).
struct Shape {
    inputs: u32,
    hidden: u32,
    outputs: u32,
    act: &'static str,
    accumulate: bool,
}

const fn shape(inputs: u32, hidden: u32, outputs: u32, act: &'static str, accumulate: bool) -> Shape {
    Shape { inputs, hidden, outputs, act, accumulate }
}

const LATTICE: &[Shape] = &[
    shape(1, 1, 1, "tanh", false),
    shape(3, 13, 3, "tanh", true),
    shape(7, 20, 1, "relu", false),
    shape(17, 33, 5, "sigmoid", true),
    shape(2, 0, 9, "tanh", false),
    shape(31, 64, 3, "tanh", false),
    shape(45, 100, 19, "gelu", true),
    shape(130, 90, 7, "silu", false),
    shape(37, 0, 41, "tanh", true),
    // Parameter indices past 977, the number the SPIR-V writes the workgroup size as before it
    // becomes a specialization constant: an index of that value must stay an index.
    shape(2, 400, 1, "tanh", false),
    // Weights beyond the tensor-core kernel's workgroup memory, and a layer wider than it keeps
    // in registers: the f32 kernel runs instead.
    shape(200, 250, 60, "tanh", false),
    shape(300, 17, 100, "relu", false),
];

/// Shapes small enough for every executor's binding limits (lavapipe allows 32 buffers a shader).
fn small(s: &Shape) -> bool {
    s.inputs + 2 * s.outputs <= 24
}

/// Shapes small enough that `auto` on CUDA, which compiles the f32 kernel and every candidate,
/// stays quick.
fn cheap(s: &Shape) -> bool {
    let macs = if s.hidden == 0 { s.inputs * s.outputs } else { s.hidden * (s.inputs + s.outputs) };
    macs <= 8000
}

/// A deterministic stream of numbers in [-1, 1).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
    }
}

fn ty(n: u32) -> String {
    if n == 1 {
        "f32".into()
    } else {
        format!("vec<f32, {n}>")
    }
}

/// Writes the program of a shape (and its weights) into `dir`; returns its path.
fn program(dir: &Path, s: &Shape, precision: &str) -> PathBuf {
    let mut rng = Lcg(u64::from(s.inputs) << 32 | u64::from(s.hidden) << 16 | u64::from(s.outputs));
    let mut tensor = |name: &str, shape: &[u32], scale: f32| {
        let n: u32 = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|_| rng.next() * scale).collect();
        write_npy(&dir.join(format!("{name}.npy")), shape, &values);
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        format!("    param {name}: tensor<f32>[{}] = load(\"{name}.npy\");\n", dims.join(", "))
    };
    let mut params = String::new();
    let spread = |n: u32| if n == 1 { "rand_uniform(-1.0, 1.0)".to_string() } else { String::new() };
    if s.inputs > 1 {
        params += &tensor("EX", &[s.inputs, 3], 1.0);
    }
    if s.outputs > 1 {
        params += &tensor("EY", &[s.outputs, 3], 1.0);
    }
    let gain = |fan_in: u32| 2.0 / (fan_in as f32).sqrt();
    let (model, value) = if s.hidden == 0 {
        params += &tensor("W", &[s.outputs, s.inputs], gain(s.inputs));
        (String::new(), "W @ p.x".to_string())
    } else {
        params += &tensor("W1", &[s.hidden, s.inputs], gain(s.inputs));
        params += &tensor("B1", &[s.hidden], 0.5);
        params += &tensor("W2", &[s.outputs, s.hidden], gain(s.hidden));
        params += &tensor("B2", &[s.outputs], 0.5);
        (format!("    model net = mlp(W1, B1, W2, B2, act: {});\n", s.act), "net(p.x)".to_string())
    };
    let init = |n: u32, e: &str| if n == 1 { spread(1) } else { format!("{e} @ rand_in_sphere(1.0)") };
    let src = format!(
        "system Shape {{\n{params}{model}\n    agent P {{\n        state x: {};\n        state y: {};\n    }}\n\n    @accel(tensor_cores) @precision({precision})\n    interaction apply(p: P) each external {{\n        p.y {} {value};\n    }}\n\n    step {{\n        apply;\n    }}\n\n    init {{\n        spawn P * {} {{\n            x: {},\n            y: {},\n        }}\n    }}\n}}\n",
        ty(s.inputs),
        ty(s.outputs),
        if s.accumulate { "+=" } else { "=" },
        // Not a multiple of any tile; more than one block of 2,048 agents for the narrow shapes,
        // fewer agents where the interpreter's reference is costly.
        if s.inputs.max(s.hidden) <= 64 { 2100 + s.inputs } else { 97 + s.inputs },
        init(s.inputs, "EX"),
        init(s.outputs, "EY"),
    );
    let path = dir.join("shape.aii");
    std::fs::write(&path, src).expect("write program");
    path
}

fn compile(path: &Path) -> Module {
    let c = compile_file(path, &CheckOptions::default()).expect("readable");
    let errors: Vec<String> = c.diags.list.iter().map(|d| d.one_line(&c.sources)).collect();
    c.module.unwrap_or_else(|| panic!("{} compiles: {errors:?}", path.display()))
}

fn temp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("aiic-tensor-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The initial state, every column rounded to f32 as executors hold it.
fn start(m: &Module) -> World {
    let mut sim = Interp::new(m, 7);
    sim.init(&HashMap::new()).expect("init");
    for data in &mut sim.world.agents {
        for col in &mut data.columns {
            col.iter_mut().for_each(|x| *x = *x as f32 as f64);
        }
    }
    sim.world
}

/// Steps `backend` `steps` times; its state after them.
fn run(backend: &mut dyn Backend, steps: usize) -> World {
    for _ in 0..steps {
        backend.step().expect("backend step");
    }
    backend.world().expect("read back").clone()
}

/// The interpreter's state after `steps` steps from `start`, the reference of every run.
fn reference(m: &Module, start: &World, steps: usize) -> World {
    let mut interp = Interp::new(m, 7);
    interp.world = start.clone();
    run(&mut interp, steps)
}

/// The largest difference of a field of `other` from `reference`, relative to the field's largest
/// magnitude in the reference; a NaN is an infinite error.
fn field_error(m: &Module, field: &str, reference: &World, other: &World) -> f64 {
    let (fi, f) = m.agents[0].field(field).unwrap_or_else(|| panic!("field {field}"));
    let first = m.agents[0].column_offsets()[fi];
    let (mut diff, mut scale) = (0.0f64, 0.0f64);
    for c in first..first + f.lanes.len() {
        for (x, y) in reference.agents[0].columns[c].iter().zip(&other.agents[0].columns[c]) {
            scale = scale.max(x.abs());
            diff = diff.max(if (x - y).is_nan() { f64::INFINITY } else { (x - y).abs() });
        }
    }
    diff / scale.max(f64::MIN_POSITIVE)
}

fn label(s: &Shape) -> String {
    let acc = if s.accumulate { "+=" } else { "=" };
    match s.hidden {
        0 => format!("{acc} W[{}x{}] @ x", s.outputs, s.inputs),
        h => format!("{acc} mlp {}->{h}->{} {}", s.inputs, s.outputs, s.act),
    }
}

#[test]
fn tensor_interactions_are_recognised_as_plans() {
    let dir = temp("plans");
    for s in LATTICE {
        let m = compile(&program(&dir, s, "f16"));
        let k = m.kernels.iter().find(|k| k.name == "apply").expect("kernel apply");
        let t = k.tensor.as_ref().unwrap_or_else(|| panic!("{}: no tensor plan", label(s)));
        assert_eq!(t.inputs.len() as u32, s.inputs, "{}", label(s));
        assert_eq!(t.outputs.len() as u32, s.outputs, "{}", label(s));
        assert_eq!(t.layers.len(), if s.hidden == 0 { 1 } else { 2 }, "{}", label(s));
        assert_eq!(t.accumulate, s.accumulate, "{}", label(s));
        assert_eq!(t.precision, Precision::F16);
    }
    // A body that does more than one product is not a plan: it runs as scalar code everywhere.
    let path = program(&dir, &LATTICE[1], "f16");
    let src = std::fs::read_to_string(&path).expect("read").replace("p.y += net(p.x);", "p.y += net(p.x) * 2.0;");
    std::fs::write(&path, src).expect("write");
    let m = compile(&path);
    assert!(m.kernels.iter().all(|k| k.tensor.is_none()));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The CPU's vector activations (its own eˣ and tanh, not libm's) against the interpreter's f64
/// over the ranges that matter: a 1→1→1 model whose hidden pre-activation is `gain·x`, x uniform
/// in [−1, 1], so that each range is swept by 2,100 agents. The small gains test tanh's series
/// near zero and its switch at ¼; the large one the clamping far out.
#[test]
fn cpu_activations_match_the_interpreter_across_their_range() {
    let dir = temp("activations");
    for act in ["tanh", "sigmoid", "silu", "gelu", "relu"] {
        for gain in [0.05f32, 0.6, 3.0, 30.0] {
            write_npy(&dir.join("W1.npy"), &[1, 1], &[gain]);
            write_npy(&dir.join("B1.npy"), &[1], &[0.0]);
            write_npy(&dir.join("W2.npy"), &[1, 1], &[1.0]);
            write_npy(&dir.join("B2.npy"), &[1], &[0.0]);
            let src = format!(
                "system Act {{\n    param W1: tensor<f32>[1, 1] = load(\"W1.npy\");\n    param B1: tensor<f32>[1] = load(\"B1.npy\");\n    param W2: tensor<f32>[1, 1] = load(\"W2.npy\");\n    param B2: tensor<f32>[1] = load(\"B2.npy\");\n    model net = mlp(W1, B1, W2, B2, act: {act});\n    agent P {{\n        state x: f32;\n        state y: f32;\n    }}\n    interaction apply(p: P) each external {{\n        p.y = net(p.x);\n    }}\n    step {{\n        apply;\n    }}\n    init {{\n        spawn P * 2100 {{\n            x: rand_uniform(-1.0, 1.0),\n            y: 0.0,\n        }}\n    }}\n}}\n"
            );
            let path = dir.join("act.aii");
            std::fs::write(&path, src).expect("write program");
            let m = compile(&path);
            assert!(m.kernels.iter().any(|k| k.tensor.is_some()), "{act}: a tensor plan");
            let start = start(&m);
            let reference = reference(&m, &start, 1);
            let code = aiic_compiler::backend::cpu::emit_module(&m).expect("cpu code");
            let mut cpu = CpuBackend::new(&m, &code, &start, 2).expect("cpu backend");
            let e = field_error(&m, "y", &reference, &run(&mut cpu, 1));
            if std::env::var_os("AIIC_TEST_SHOW_ERRORS").is_some() {
                eprintln!("{act} at gain {gain}: error {e:.2e}");
            }
            assert!(e < 1e-6, "{act} at gain {gain}: error {e:e}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cpu_matches_the_interpreter_on_the_lattice() {
    let dir = temp("cpu");
    for s in LATTICE {
        // Other precisions are computed in f32 on the CPU: the f32 bound holds.
        let m = compile(&program(&dir, s, "f16"));
        let start = start(&m);
        let code = aiic_compiler::backend::cpu::emit_module(&m).expect("cpu code");
        let mut cpu = CpuBackend::new(&m, &code, &start, 2).expect("cpu backend");
        let e = field_error(&m, "y", &reference(&m, &start, STEPS), &run(&mut cpu, STEPS));
        assert!(e < F32_BOUND, "{} on the CPU: error {e:e}", label(s));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The state after [`STEPS`] steps of `m` from `start` on the first OpenCL device.
fn on_opencl(m: &Module, start: &World) -> World {
    let code = aiic_compiler::backend::gpu::opencl::emit_module(m, Default::default()).expect("opencl");
    let mut gpu = aiic_runtime::opencl::OpenClBackend::new(m, code.code.plan.clone(), &code.text, start, None, None)
        .expect("opencl backend");
    run(&mut gpu, STEPS)
}

/// A Vulkan executor of `m` from `start` on the first device, and whether a cooperative-matrix
/// kernel runs its tensor interaction (its notes say so).
fn vulkan<'m>(m: &'m Module, start: &World) -> (aiic_runtime::vulkan::exec::VulkanBackend<'m>, bool) {
    let (gpu, kernel) = vulkan_with(m, start, Variants::All);
    (gpu, kernel.is_some())
}

/// Which cooperative-matrix variants a test offers the Vulkan executor, which runs the first
/// its device can.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Variants {
    All,
    /// Those that stage accumulators through workgroup memory.
    Staging,
    /// Those that read their weights from device memory.
    Streamed,
    /// Those that do both.
    StagingStreamed,
}

/// A Vulkan executor of `m` from `start`, offered `variants`; the variant it runs, if any.
fn vulkan_with<'m>(
    m: &'m Module,
    start: &World,
    variants: Variants,
) -> (aiic_runtime::vulkan::exec::VulkanBackend<'m>, Option<String>) {
    let code = aiic_compiler::backend::gpu::spirv::emit_module(m).expect("spirv");
    let mut plan = code.code.plan.clone();
    let offered = |v: &aiic_runtime::gpu::CoopKernel| match variants {
        Variants::All => true,
        Variants::Staging => !v.conversions,
        Variants::Streamed => !v.staged_weights,
        Variants::StagingStreamed => !v.conversions && !v.staged_weights,
    };
    let withheld: Vec<usize> =
        (0..plan.kernels.len()).filter(|&k| plan.kernels[k].coop.as_ref().is_some_and(|v| !offered(v))).collect();
    for c in &mut plan.choices {
        c.candidates.retain(|(_, k)| !withheld.contains(k));
    }
    let opts = aiic_runtime::vulkan::exec::Options { device: None, workgroup: None };
    let gpu =
        aiic_runtime::vulkan::exec::VulkanBackend::new(m, plan, &code.words, start, &opts).expect("vulkan backend");
    let notes = gpu.notes();
    let kernel = notes
        .iter()
        .filter(|n| n.contains("on cooperative matrices") && !n.contains("chose f32"))
        .find_map(|n| n.split("(kernel `").nth(1).and_then(|k| k.split('`').next()).map(String::from));
    if std::env::var_os("AIIC_TEST_SHOW_ERRORS").is_some() {
        eprintln!("vulkan: {notes:?}");
    }
    (gpu, kernel)
}

/// Whether shapes of `s`'s size run on cooperative matrices on this Vulkan device: every shape
/// on a GPU; on a CPU (lavapipe, where each small product is unrolled scalar code that takes
/// its compiler seconds) those of at most about a hundred 8×8×8 products.
fn coop_affordable(s: &Shape, on_cpu: bool) -> bool {
    let padded = |n: u32| n.div_ceil(16) * 16;
    let products = if s.hidden == 0 {
        padded(s.inputs) * padded(s.outputs)
    } else {
        padded(s.hidden) * (padded(s.inputs) + padded(s.outputs))
    } / 64;
    !on_cpu || products <= 100
}

#[test]
fn vulkan_and_opencl_match_the_interpreter_on_small_shapes() {
    let _one = require::one_device_at_a_time();
    let dir = temp("gpu");
    let vulkan_device = require::device("vulkan", aiic_runtime::vulkan::probe, |d| d.name.clone()).is_some();
    let opencl = require::device("opencl", aiic_runtime::opencl::probe, |d| d.name.clone()).is_some();
    for s in LATTICE.iter().filter(|s| small(s)) {
        let m = compile(&program(&dir, s, "auto"));
        let start = start(&m);
        let reference = reference(&m, &start, STEPS);
        if vulkan_device {
            // Without cooperative matrices `auto` leaves the f32 kernel running.
            let (mut gpu, coop) = vulkan(&m, &start);
            let bound = if coop { F16_BOUND } else { F32_BOUND };
            let e = field_error(&m, "y", &reference, &run(&mut gpu, STEPS));
            assert!(e < bound, "{} on Vulkan (cooperative matrices: {coop}): error {e:e}", label(s));
        }
        if opencl {
            let e = field_error(&m, "y", &reference, &on_opencl(&m, &start));
            assert!(e < F32_BOUND, "{} on OpenCL: error {e:e}", label(s));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every shape of the lattice whose kernels the device can bind runs on Vulkan: in f32 within
/// the f32 bound and, on a device with cooperative matrices (`VK_KHR_cooperative_matrix`), in
/// f16 and `auto` too, where every shape the generator writes a kernel for runs on them within
/// the f16 bound (the others run the f32 kernel): in the variant the device picks, and in those
/// that stage accumulators through workgroup memory (where it picks one converting them with
/// `VK_NV_cooperative_matrix2`) and that read their weights from device memory.
#[test]
fn vulkan_matches_the_interpreter_on_the_lattice() {
    let _one = require::one_device_at_a_time();
    let Some(devices) = require::device("vulkan", aiic_runtime::vulkan::probe, |d| d.name.clone()) else {
        return;
    };
    let (limit, on_cpu) = aiic_runtime::vulkan::list_devices()
        .ok()
        .and_then(|l| l.first().map(|d| (d.storage_buffers, d.is_cpu)))
        .unwrap_or((0, false));
    let dir = temp("coop");
    let first = LATTICE.iter().find(|s| small(s)).expect("a small shape");
    let m = compile(&program(&dir, first, "f16"));
    let kernel = vulkan_with(&m, &start(&m), Variants::All).1;
    let has_coop = kernel.is_some();
    let converts = kernel.as_deref().is_some_and(|k| k.contains(".converting"));
    if !has_coop {
        require::skip(
            "vulkan-coop",
            format!("{devices:?} has no cooperative matrices that aiic's kernels use: f32 only"),
        );
    }
    for s in LATTICE {
        let m = compile(&program(&dir, s, "f32"));
        let code = aiic_compiler::backend::gpu::spirv::emit_module(&m).expect("spirv");
        let widest = code.code.plan.kernels.iter().map(|k| k.bindings.len() as u32).max().unwrap_or(0);
        if widest > limit {
            eprintln!("{}: {widest} buffers, more than the device's {limit}: not run", label(s));
            continue;
        }
        let reference = reference(&m, &start(&m), STEPS);
        let plan = m.kernels.iter().find_map(|k| k.tensor.clone()).expect("a tensor plan");
        let fits = aiic_compiler::backend::gpu::coop::supported(&aiic_compiler::ir::TensorPlan {
            precision: Precision::F16,
            ..plan
        })
        .is_ok();
        let mut runs = vec![("f32", Variants::All)];
        if has_coop && coop_affordable(s, on_cpu) {
            runs.extend([("f16", Variants::All), ("auto", Variants::All), ("f16", Variants::Streamed)]);
            if converts {
                runs.extend([("f16", Variants::Staging), ("f16", Variants::StagingStreamed)]);
            }
        }
        for (precision, variants) in runs {
            let m = compile(&program(&dir, s, precision));
            let start = start(&m);
            let (mut gpu, kernel) = vulkan_with(&m, &start, variants);
            let e = field_error(&m, "y", &reference, &run(&mut gpu, STEPS));
            if std::env::var_os("AIIC_TEST_SHOW_ERRORS").is_some() {
                eprintln!("{} {precision} on Vulkan: error {e:.2e}, kernel {kernel:?}", label(s));
            }
            if precision == "f16" {
                assert_eq!(kernel.is_some(), fits, "{}: cooperative matrices ({kernel:?})", label(s));
                let k = kernel.as_deref().unwrap_or("");
                let converting = k.contains(".converting");
                let staging = matches!(variants, Variants::Staging | Variants::StagingStreamed);
                assert_eq!(converting, fits && !staging && converts, "{}: {k}", label(s));
                if fits && matches!(variants, Variants::Streamed | Variants::StagingStreamed) {
                    assert!(k.ends_with(".streamed"), "{}: {k}", label(s));
                }
            }
            let bound = if kernel.is_some() { F16_BOUND } else { F32_BOUND };
            assert!(e < bound, "{} {precision} on Vulkan: error {e:e}, bound {bound:e}", label(s));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Steps of every lattice run: the second shows what `+=` accumulates.
const STEPS: usize = 2;

/// Runs one shape in one precision on CUDA, with the PTX written for `block` threads; the error
/// against `reference` and whether a tensor-core kernel ran.
fn cuda_error(dir: &Path, s: &Shape, precision: &str, block: u32, reference: &World) -> (f64, bool) {
    let m = compile(&program(dir, s, precision));
    let start = start(&m);
    let code = aiic_compiler::backend::gpu::ptx::emit_module(&m, block).expect("ptx");
    let mut gpu = aiic_runtime::cuda::CudaBackend::new(&m, code.code.plan.clone(), &code.text, block, &start, None)
        .unwrap_or_else(|e| panic!("{}: {e}", label(s)));
    let launched: Vec<usize> = code
        .code
        .plan
        .step
        .iter()
        .filter_map(|op| if let aiic_runtime::gpu::GpuOp::Launch(k) = op { Some(*k) } else { None })
        .collect();
    let notes = gpu.notes();
    let e = field_error(&m, "y", reference, &run(&mut gpu, STEPS));
    let tensor = match precision {
        "auto" => notes.iter().any(|n| !n.contains("chose f32")),
        _ => launched.iter().any(|&k| code.code.kernels[k].mma.is_some() || code.code.kernels[k].gemm.is_some()),
    };
    if std::env::var_os("AIIC_TEST_SHOW_ERRORS").is_some() {
        eprintln!("{} {precision} ({block} threads): error {e:.2e}, tensor cores {tensor} {notes:?}", label(s));
    }
    (e, tensor)
}

/// The device tests' lock and a scratch directory, where a CUDA device is present.
fn cuda_session(tag: &str) -> Option<(std::sync::MutexGuard<'static, ()>, PathBuf)> {
    let one = require::one_device_at_a_time();
    require::device("cuda", aiic_runtime::cuda::probe, |d| d.name.clone())?;
    Some((one, temp(tag)))
}

/// The interpreter's result for a shape: the programs of a shape differ only in their
/// `@precision`, so one reference serves them all.
fn f32_reference(dir: &Path, s: &Shape) -> (Module, World) {
    let m = compile(&program(dir, s, "f32"));
    let r = reference(&m, &start(&m), STEPS);
    (m, r)
}

#[test]
fn cuda_tensor_cores_match_the_interpreter_on_the_lattice() {
    let Some((_one, dir)) = cuda_session("cuda") else { return };
    for s in LATTICE {
        let (m, reference) = f32_reference(&dir, s);
        // Layers wider than the kernel keeps in registers, or weights beyond its workgroup
        // memory, run the f32 kernel instead.
        let plan = m.kernels.iter().find_map(|k| k.tensor.clone()).expect("a tensor plan");
        let kinds = [
            ("f16", Precision::F16, F16_BOUND, &[256, 64][..]),
            ("bf16", Precision::Bf16, BF16_BOUND, &[256][..]),
            ("tf32", Precision::Tf32, TF32_BOUND, &[256, 64][..]),
            ("int8", Precision::Int8, INT8_BOUND, &[256, 64][..]),
        ];
        for (precision, p, bound, blocks) in kinds {
            let plan = aiic_compiler::ir::TensorPlan { precision: p, ..plan.clone() };
            let fits = aiic_compiler::backend::gpu::mma::unsupported(&plan).is_none();
            for &block in blocks {
                let (e, tensor) = cuda_error(&dir, s, precision, block, &reference);
                assert_eq!(tensor, fits, "{} {precision}: tensor cores", label(s));
                let bound = if tensor { bound } else { F32_BOUND };
                assert!(e < bound, "{} {precision} ({block} threads): error {e:e}, bound {bound:e}", label(s));
            }
        }
        // `auto` runs the f32 kernel beside the candidates: on the shapes it compiles quickly.
        if cheap(s) {
            let (e, _) = cuda_error(&dir, s, "auto", 256, &reference);
            assert!(e < F16_BOUND, "{} auto: error {e:e}", label(s));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `W @ x` between fields of more than `gpu::WIDE` lanes, each field one device buffer: the
/// batched GEMM of `bench/gemm.aii` at sizes the interpreter checks quickly, odd in every
/// dimension, `=` and `+=`.
const WIDE: &[Shape] =
    &[shape(300, 0, 257, "tanh", false), shape(520, 0, 1000, "tanh", true), shape(1024, 0, 1024, "tanh", false)];

#[test]
fn cuda_gemm_matches_the_interpreter() {
    let Some((_one, dir)) = cuda_session("cuda-gemm") else { return };
    for s in WIDE {
        let (_, reference) = f32_reference(&dir, s);
        for (precision, bound) in [("f16", F16_BOUND), ("f32", F32_BOUND)] {
            let (e, tensor) = cuda_error(&dir, s, precision, 256, &reference);
            assert_eq!(tensor, precision == "f16", "{} {precision}: the GEMM on tensor cores", label(s));
            assert!(e < bound, "{} {precision}: error {e:e}, bound {bound:e}", label(s));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The GEMM of a step that also writes its input field copies the field to f16 before every
/// product (a copy made once per upload would multiply the first step's x ever after).
#[test]
fn cuda_gemm_reads_an_input_the_step_writes() {
    let Some((_one, dir)) = cuda_session("cuda-gemm-drift") else { return };
    let path = program(&dir, &WIDE[0], "f16");
    let src = std::fs::read_to_string(&path).expect("program");
    let decay =
        "interaction decay(p: P) each external {\n        p.x = p.x * 0.5;\n    }\n\n    step {\n        decay;";
    let drifting = src.replacen("step {", decay, 1);
    assert_ne!(drifting, src, "the step is patched");
    std::fs::write(&path, drifting).expect("write");
    let m = compile(&path);
    let start = start(&m);
    let reference = reference(&m, &start, STEPS);
    let code = aiic_compiler::backend::gpu::ptx::emit_module(&m, 256).expect("ptx");
    assert!(code.code.plan.kernels.iter().any(|k| k.prelude.is_some() && !k.prelude_on_upload));
    let mut gpu =
        aiic_runtime::cuda::CudaBackend::new(&m, code.code.plan.clone(), &code.text, 256, &start, None).expect("cuda");
    let e = field_error(&m, "y", &reference, &run(&mut gpu, STEPS));
    assert!(e < F16_BOUND, "a GEMM after a step that halves x: error {e:e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Wide fields on the CPU, OpenCL and Vulkan. llvmpipe ends a shader's loop nest after 65,535
/// trips, so Vulkan there runs the shapes whose layer loops stay under that (one side narrow)
/// and refuses the others with an error that says so.
#[test]
fn wide_fields_match_the_interpreter_on_every_executor() {
    let _one = require::one_device_at_a_time();
    let dir = temp("wide");
    let vulkan_device = require::device("vulkan", aiic_runtime::vulkan::probe, |d| d.name.clone()).is_some();
    let opencl = require::device("opencl", aiic_runtime::opencl::probe, |d| d.name.clone()).is_some();
    let narrow_side = [shape(300, 0, 3, "tanh", false), shape(2, 0, 400, "tanh", true)];
    for s in WIDE.iter().take(2).chain(&narrow_side) {
        let m = compile(&program(&dir, s, "f16"));
        let start = start(&m);
        let reference = reference(&m, &start, STEPS);
        let code = aiic_compiler::backend::cpu::emit_module(&m).expect("cpu code");
        let mut cpu = CpuBackend::new(&m, &code, &start, 2).expect("cpu backend");
        let e = field_error(&m, "y", &reference, &run(&mut cpu, STEPS));
        assert!(e < F32_BOUND, "{} on the CPU: error {e:e}", label(s));
        if opencl {
            let e = field_error(&m, "y", &reference, &on_opencl(&m, &start));
            assert!(e < F32_BOUND, "{} on OpenCL: error {e:e}", label(s));
        }
        if vulkan_device {
            let code = aiic_compiler::backend::gpu::spirv::emit_module(&m).expect("spirv");
            let opts = aiic_runtime::vulkan::exec::Options { device: None, workgroup: None };
            match aiic_runtime::vulkan::exec::VulkanBackend::new(&m, code.code.plan.clone(), &code.words, &start, &opts)
            {
                Ok(mut gpu) => {
                    let e = field_error(&m, "y", &reference, &run(&mut gpu, STEPS));
                    assert!(e < F16_BOUND, "{} on Vulkan: error {e:e}", label(s));
                }
                Err(e) => {
                    let trips = u64::from(s.outputs) * u64::from(s.inputs + 1);
                    assert!(
                        trips > 65_535 && e.to_string().contains("stops a shader's loops"),
                        "{} on Vulkan: {e}",
                        label(s)
                    );
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn learned_force_runs_on_every_executor() {
    let _one = require::one_device_at_a_time();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/learned_force.aii");
    let m = compile(&path);
    let start = start(&m);
    let code = aiic_compiler::backend::cpu::emit_module(&m).expect("cpu code");
    let mut cpu = CpuBackend::new(&m, &code, &start, 2).expect("cpu backend");
    let reference = reference(&m, &start, 5);
    let e = field_error(&m, "velocity", &reference, &run(&mut cpu, 5));
    assert!(e < 1e-4, "learned_force on the CPU: velocity error {e:e}");
    if require::device("cuda", aiic_runtime::cuda::probe, |d| d.name.clone()).is_some() {
        let ptx = aiic_compiler::backend::gpu::ptx::emit_module(&m, 256).expect("ptx");
        let mut gpu = aiic_runtime::cuda::CudaBackend::new(&m, ptx.code.plan.clone(), &ptx.text, 256, &start, None)
            .expect("cuda backend");
        let notes = gpu.notes();
        assert!(notes.iter().any(|n| n.contains("@precision(auto) chose")), "{notes:?}");
        let e = field_error(&m, "velocity", &reference, &run(&mut gpu, 5));
        assert!(e < 1e-2, "learned_force on CUDA ({notes:?}): velocity error {e:e}");
    }
    // Bookworm's lavapipe allows 32 buffers a shader, fewer than the model's 32 inputs need
    // with the rest.
    if require::device("vulkan", aiic_runtime::vulkan::probe, |d| d.name.clone()).is_some()
        && aiic_runtime::vulkan::list_devices().is_ok_and(|l| l.first().is_some_and(|d| d.storage_buffers >= 64))
    {
        let (mut gpu, coop) = vulkan(&m, &start);
        let e = field_error(&m, "velocity", &reference, &run(&mut gpu, 5));
        assert!(e < 1e-2, "learned_force on Vulkan (cooperative matrices: {coop}): velocity error {e:e}");
    }
}

/// Every field of `tests/programs/tensor_cores.aii` (an f16 force in an integrator, a bf16 and
/// an `auto` read-out) against `reference`, each relative to its largest magnitude.
fn program_errors(m: &Module, reference: &World, other: &World) -> Vec<(String, f64)> {
    let fields = m.agents[0].fields.iter().filter(|f| f.kind != aiic_runtime::FieldKind::Scratch);
    fields.map(|f| (f.name.clone(), field_error(m, &f.name, reference, other))).collect()
}

#[test]
fn tensor_cores_program_matches_the_interpreter() {
    let _one = require::one_device_at_a_time();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/programs/tensor_cores.aii");
    let m = compile(&path);
    let start = start(&m);
    let code = aiic_compiler::backend::cpu::emit_module(&m).expect("cpu code");
    let mut cpu = CpuBackend::new(&m, &code, &start, 2).expect("cpu backend");
    let reference = reference(&m, &start, 20);
    for (field, e) in program_errors(&m, &reference, &run(&mut cpu, 20)) {
        assert!(e < 1e-4, "tensor_cores on the CPU: {field} error {e:e}");
    }
    if require::device("vulkan", aiic_runtime::vulkan::probe, |d| d.name.clone()).is_some() {
        // bf16 has no cooperative-matrix kernel: `read` runs in f32 on Vulkan.
        let (mut gpu, coop) = vulkan(&m, &start);
        for (field, e) in program_errors(&m, &reference, &run(&mut gpu, 20)) {
            let bound = if coop && field != "read" { F16_BOUND } else { 1e-4 };
            assert!(e < bound, "tensor_cores on Vulkan (cooperative matrices: {coop}): {field} error {e:e}");
        }
    }
    if require::device("cuda", aiic_runtime::cuda::probe, |d| d.name.clone()).is_none() {
        return;
    }
    let ptx = aiic_compiler::backend::gpu::ptx::emit_module(&m, 64).expect("ptx");
    let mut gpu =
        aiic_runtime::cuda::CudaBackend::new(&m, ptx.code.plan.clone(), &ptx.text, 64, &start, None).expect("cuda");
    for (field, e) in program_errors(&m, &reference, &run(&mut gpu, 20)) {
        if std::env::var_os("AIIC_TEST_SHOW_ERRORS").is_some() {
            eprintln!("tensor_cores on CUDA: {field}: error {e:.2e}");
        }
        // bf16 read-outs round to 8 significant bits; the rest to 11 or better.
        let bound = if field == "read" { BF16_BOUND } else { F16_BOUND };
        assert!(e < bound, "tensor_cores on CUDA: {field} error {e:e}, bound {bound:e}");
    }
}

/// The model compilation pipeline on every ONNX engine: the learned force in f16, in int8
/// (calibrated on the initial state) and under `auto` (the fastest within the tolerance, f32
/// included), each run telling the error it measured against f32; f16 and `auto` then follow
/// the interpreter within the f16 bound.
#[test]
fn onnx_models_in_f16_and_int8_report_their_error() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/learned_force.aii");
    let mut m = compile(&path);
    let start = start(&m);
    let reference = reference(&m, &start, 5);
    for engine in engines::onnx_engines() {
        for p in [Precision::F16, Precision::Int8, Precision::Auto] {
            for k in &mut m.kernels {
                if let Some(t) = &mut k.tensor {
                    t.precision = p;
                }
            }
            let code = aiic_compiler::backend::onnx::emit_module(&m).expect("onnx graphs");
            let mut exec = aiic_runtime::onnx::exec::OnnxBackend::new(&m, code.plan, &code.graphs, &start, engine)
                .unwrap_or_else(|e| panic!("{}: {e}", engine.name()));
            exec.prime().expect("prime");
            let notes = exec.notes();
            let label = format!("{} on {}", p.name(), engine.name());
            let measured: Vec<f64> = notes
                .iter()
                .filter_map(|n| n.split("on the initial state ").nth(1)?.split([';', '(']).next())
                .flat_map(|s| s.split(", ").filter_map(|e| e.split_whitespace().nth(1)?.parse::<f64>().ok()))
                .collect();
            assert!(!measured.is_empty() && measured.iter().all(|e| e.is_finite()), "{label}: {notes:?}");
            let want = if p == Precision::Auto { "@precision(auto) chose" } else { p.name() };
            assert!(notes.iter().any(|n| n.contains(want)), "{label}: {notes:?}");
            if p != Precision::Int8 {
                let e = field_error(&m, "velocity", &reference, &run(&mut exec, 5));
                assert!(e < 1e-2, "{label}: velocity error {e:e} ({notes:?})");
            }
        }
    }
}

/// `model net = onnx("net.onnx")` reads the learned force's MLP from an ONNX file (three
/// spellings of a dense layer): the same weights as the `mlp` of the example, the same
/// trajectory on the interpreter and on the CPU.
#[test]
fn an_onnx_model_reads_into_the_same_mlp() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let ours = compile(&root.join("examples/learned_force.aii"));
    let theirs = compile(&root.join("tests/programs/onnx_force.aii"));
    let plan = |m: &Module| m.kernels.iter().find_map(|k| k.tensor.clone()).expect("a tensor plan");
    let (a, b) = (plan(&ours), plan(&theirs));
    assert_eq!((a.layers.len(), a.act, a.inputs.len()), (b.layers.len(), b.act, b.inputs.len()));
    for (x, y) in a.layers.iter().zip(&b.layers) {
        assert_eq!((x.rows, x.cols), (y.rows, y.cols));
        let n = (x.rows * x.cols) as usize;
        assert_eq!(ours.tensor_lanes(x.weight, n), theirs.tensor_lanes(y.weight, n));
        assert_eq!(
            ours.tensor_lanes(x.bias.unwrap(), x.rows as usize),
            theirs.tensor_lanes(y.bias.unwrap(), y.rows as usize)
        );
    }
    let start = start(&ours);
    let reference = reference(&ours, &start, 3);
    assert_eq!(reference.agents, self::reference(&theirs, &start, 3).agents);
    let code = aiic_compiler::backend::cpu::emit_module(&theirs).expect("cpu code");
    let mut cpu = CpuBackend::new(&theirs, &code, &start, 2).expect("cpu backend");
    let e = field_error(&theirs, "velocity", &reference, &run(&mut cpu, 3));
    assert!(e < 1e-4, "the imported model on the CPU: velocity error {e:e}");
}

/// What `onnx(…)` refuses, each with E0205 and what was wrong: a file that cannot be read, bytes
/// that are no model, and a model with an operation aiic does not read. (A missing file is no
/// error at check time, as for tensors: `tests/cli.rs` runs such a program.)
#[test]
fn onnx_models_that_cannot_be_read_are_clear_errors() {
    use aiic_runtime::onnx::pb;
    let dir = temp("onnx-import");
    let erf = pb::ModelProto {
        graph: Some(pb::GraphProto {
            node: vec![pb::NodeProto {
                op_type: "Erf".into(),
                name: "erf0".into(),
                input: vec!["x".into()],
                output: vec!["y".into()],
                ..Default::default()
            }],
            input: vec![pb::ValueInfoProto { name: "x".into(), ..Default::default() }],
            output: vec![pb::ValueInfoProto { name: "y".into(), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    };
    std::fs::write(dir.join("erf.onnx"), aiic_runtime::onnx::encode(&erf)).expect("write");
    std::fs::write(dir.join("junk.onnx"), b"\xff\xff not protobuf").expect("write");
    std::fs::create_dir_all(dir.join("dir.onnx")).expect("a directory");
    for (file, want) in [("dir.onnx", "cannot read"), ("junk.onnx", "not an ONNX model"), ("erf.onnx", "is Erf")] {
        let src = format!(
            "system S {{ model net = onnx(\"{file}\"); agent P {{ state x: f32; state y: f32; }} \
             interaction f(p: P) each {{ p.y = net(p.x); }} init {{ spawn P * 4 {{ x: 1.0, y: 0.0 }}; }} \
             step {{ f; }} }}"
        );
        let path = dir.join("m.aii");
        std::fs::write(&path, src).expect("write program");
        let c = compile_file(&path, &CheckOptions::default()).expect("readable");
        let errors: Vec<String> = c.diags.list.iter().map(|d| d.one_line(&c.sources)).collect();
        assert!(errors.iter().any(|e| e.contains("E0205") && e.contains(want)), "{file}: {errors:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `model field = onnx("field.onnx")` where the model is not dense layers (a Slice, Sin, Mul and
/// Sub graph): aiic warns that it runs as it is (W0004), runs it on the host before the kernel
/// that calls it, and the trajectory is the one of the same force written in the language.
#[test]
fn a_hosted_model_gives_the_trajectory_of_the_same_force_written_out() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("tests/programs/hosted_field.aii");
    let c = compile_file(&path, &CheckOptions::default()).expect("readable");
    let warnings: Vec<String> = c.diags.list.iter().map(|d| d.one_line(&c.sources)).collect();
    assert!(warnings.iter().any(|w| w.contains("W0004") && w.contains("Slice")), "{warnings:?}");
    let hosted = c.module.expect("compiles");
    assert_eq!(hosted.hosted.len(), 1);
    assert_eq!((hosted.hosted[0].inputs, hosted.hosted[0].outputs, hosted.hosted[0].batch), (6, 3, 0));
    // Each kernel that calls the model runs it first: in the first force pass and in the step.
    for list in [&hosted.prime, &hosted.step] {
        let at = list.iter().position(|s| matches!(s, aiic_runtime::ir::Sched::Model { .. })).expect("a model run");
        assert!(matches!(list[at + 1], aiic_runtime::ir::Sched::Run(k) if hosted.kernels[k].name == "ripple"));
    }
    let src = std::fs::read_to_string(&path).expect("source");
    let force = "(1.5 * vec3(sin(2.0 * p.position.x), sin(2.0 * p.position.y), sin(2.0 * p.position.z)) \
                 - 4.0 * p.position - 0.5 * p.velocity)";
    let written = src
        .replace("model field = onnx(\"hosted_field/field.onnx\");", "")
        .replace("field(p.position, p.velocity)", force);
    let dir = temp("hosted");
    std::fs::write(dir.join("written.aii"), written).expect("write");
    let native = compile(&dir.join("written.aii"));
    assert!(native.hosted.is_empty());
    let from = start(&hosted);
    let mut native_start = start(&native);
    for (to, from) in native_start.agents.iter_mut().zip(&from.agents) {
        let n = to.columns.len();
        to.columns.clone_from_slice(&from.columns[..n]);
    }
    let (a, b) = (reference(&hosted, &from, 20), reference(&native, &native_start, 20));
    for field in ["position", "velocity", "speed_up"] {
        let e = field_error(&native, field, &b, &a);
        assert!(e < 1e-5, "{field}: the hosted model against the force written out: {e:e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A hosted model runs over all the agents before the interaction, so it is called from `each`
/// with the agent's own fields, not assigned ones; any ONNX model of one f32 matrix in and one
/// out is hosted, and one that is not says why on both counts.
#[test]
fn hosted_models_are_called_from_each_on_the_agents_fields() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = temp("hosted-errors");
    std::fs::copy(root.join("tests/programs/hosted_field/field.onnx"), dir.join("field.onnx")).expect("copy");
    let head = "system S { model field = onnx(\"field.onnx\"); \
                agent P { state x: vec3; state v: vec3; state y: vec3; accum f: vec3; } ";
    let tail = " init { spawn P * 4 { x: vec3(1.0), v: vec3(0.0), y: vec3(0.0) }; } }";
    let cases = [
        ("interaction g(a: P, b: P) pairs { a.f += field(a.x, b.v); } step { g; }", "from an `each` interaction"),
        ("interaction g(p: P) each { p.y = field(p.x * 2.0, p.v); } step { g; }", "the agent's own fields"),
        ("interaction g(p: P) each { p.x = p.v; p.y = field(p.x, p.v); } step { g; }", "before assigning to them"),
        ("interaction g(p: P) each { p.y = field(p.x); } step { g; }", "takes 6 inputs, found 3"),
    ];
    for (body, want) in cases {
        std::fs::write(dir.join("m.aii"), format!("{head}{body}{tail}")).expect("write");
        let c = compile_file(&dir.join("m.aii"), &CheckOptions::default()).expect("readable");
        let errors: Vec<String> = c.diags.list.iter().chain(&c.lower_diags).map(|d| d.one_line(&c.sources)).collect();
        assert!(c.module.is_none() && errors.iter().any(|e| e.contains(want)), "{body}: {errors:?}");
    }
    // Weights in a file beside the model: E0205 at check time, not a failure at the first step.
    let mut external =
        aiic_runtime::onnx::decode(&std::fs::read(dir.join("field.onnx")).expect("read")).expect("model");
    let graph = external.graph.as_mut().expect("graph");
    graph.initializer[4].data_location = Some(aiic_runtime::onnx::pb::tensor_proto::DataLocation::External as i32);
    graph.initializer[4].external_data =
        vec![aiic_runtime::onnx::pb::StringStringEntryProto { key: "location".into(), value: "field.bin".into() }];
    std::fs::write(dir.join("external.onnx"), aiic_runtime::onnx::encode(&external)).expect("write");
    let body = "interaction g(p: P) each { p.y = field(p.x, p.v); } step { g; }";
    std::fs::write(dir.join("m.aii"), format!("{}{body}{tail}", head.replace("field.onnx", "external.onnx")))
        .expect("write");
    let c = compile_file(&dir.join("m.aii"), &CheckOptions::default()).expect("readable");
    let errors: Vec<String> = c.diags.list.iter().map(|d| d.one_line(&c.sources)).collect();
    assert!(errors.iter().any(|e| e.contains("E0205") && e.contains("external data")), "{errors:?}");
    let ok = "interaction g(p: P) each { p.y = field(p.x, p.v) + field(p.x, p.v); } step { g; }";
    std::fs::write(dir.join("m.aii"), format!("{head}{ok}{tail}")).expect("write");
    let m = compile(&dir.join("m.aii"));
    let runs = m.step.iter().filter(|s| matches!(s, aiic_runtime::ir::Sched::Model { .. })).count();
    assert_eq!(runs, 1, "the same call twice runs the model once");
    let _ = std::fs::remove_dir_all(&dir);
}

/// On a large state `@precision(auto)` tries its candidates on the first agents only, and says
/// so; the model then runs in the precision chosen over all of them.
#[test]
fn the_precision_trial_of_a_large_state_runs_on_a_sample() {
    let Some(engine) = engines::onnx_engines().into_iter().find(|e| *e != aiic_runtime::onnx::engine::Engine::Tract)
    else {
        eprintln!("skipped: the trial is timed on ONNX Runtime or OpenVINO, and neither is here");
        return;
    };
    let mut m = compile(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/learned_force.aii"));
    let mut sim = Interp::new(&m, 7);
    sim.init(&HashMap::from([("P".to_string(), 20_000u64)])).expect("init");
    let world = sim.world.clone();
    // int8 chosen on the sample is calibrated again on every agent before it runs.
    for p in [Precision::Auto, Precision::Int8] {
        m.kernels.iter_mut().filter_map(|k| k.tensor.as_mut()).for_each(|t| t.precision = p);
        let code = aiic_compiler::backend::onnx::emit_module(&m).expect("onnx graphs");
        let mut exec = aiic_runtime::onnx::exec::OnnxBackend::new(&m, code.plan, &code.graphs, &world, engine)
            .unwrap_or_else(|e| panic!("{}: {e}", engine.name()));
        exec.prime().expect("prime");
        let notes = exec.notes();
        assert!(notes.iter().any(|n| n.contains("on the first 16384 of 20000 agents")), "{notes:?}");
        exec.step().expect("a step over all the agents");
        assert_eq!(exec.world().expect("world").agents[0].count, 20_000);
    }
}
