//! Every backend against the reference interpreter, on every example.
//!
//! Both start from the same state (rounded to the precision each column is declared in), run the
//! same steps, and must agree field by field to within the tolerance of f32 arithmetic.

use aiic_compiler::driver::compile_file;
use aiic_compiler::ir::interp::Interp;
use aiic_compiler::ir::Module;
use aiic_compiler::sema::CheckOptions;
use aiic_runtime::backend::Backend;
use aiic_runtime::cpu::exec::CpuBackend;
use aiic_runtime::World;
use std::collections::HashMap;
use std::path::PathBuf;

const EXAMPLES: &[&str] = &["nbody", "kepler", "lj_gas", "billiards", "springs"];

/// Device tests run one at a time: Mesa's lavapipe and PoCL each bring an LLVM into this one
/// process, and compiling on both at once from two threads crashes.
fn one_device_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn module(name: &str) -> Module {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = if name == "mixed_types" {
        root.join("tests/programs/mixed_types.aii")
    } else {
        root.join("examples").join(format!("{name}.aii"))
    };
    let c = compile_file(&path, &CheckOptions::default()).expect("readable");
    c.module.unwrap_or_else(|| panic!("{name} compiles"))
}

/// The initial state with every column rounded to its declared precision.
fn initial<'m>(m: &'m Module) -> Interp<'m> {
    let mut sim = Interp::new(m, 3);
    sim.init(&HashMap::new()).expect("init");
    for (t, data) in sim.world.agents.iter_mut().enumerate() {
        for (c, col) in data.columns.iter_mut().enumerate() {
            if m.column_types[t][c] != aiic_compiler::ir::Scalar::F64 {
                col.iter_mut().for_each(|x| *x = *x as f32 as f64);
            }
        }
    }
    sim
}

/// Largest difference of each field, relative to the field's largest magnitude.
fn field_errors(m: &Module, a: &World, b: &World) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for (t, schema) in m.agents.iter().enumerate() {
        let offsets = schema.column_offsets();
        for (f, field) in schema.fields.iter().enumerate() {
            if !field.kind.is_output() {
                continue;
            }
            let cols = offsets[f]..offsets[f] + field.lanes.len();
            let scale = cols.clone().flat_map(|c| a.agents[t].columns[c].iter()).fold(0.0f64, |s, x| s.max(x.abs()));
            let diff = cols
                .flat_map(|c| a.agents[t].columns[c].iter().zip(&b.agents[t].columns[c]))
                .fold(0.0f64, |s, (x, y)| s.max((x - y).abs()));
            out.push((format!("{}.{}", schema.name, field.name), if scale > 0.0 { diff / scale } else { diff }));
        }
    }
    out
}

/// Runs `backend` and the interpreter for 100 steps from `start` and checks every field within
/// the tolerance of f32 arithmetic; returns the errors, for the record.
fn agrees_with_interpreter(m: &Module, start: &World, what: &str, backend: &mut dyn Backend) -> Vec<(String, f64)> {
    let mut interp = Interp::new(m, 3);
    interp.world = start.clone();
    for _ in 0..100 {
        interp.step().expect("interp step");
        backend.step().unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    let errs = field_errors(m, &interp.world, backend.world().expect("download"));
    for (field, e) in &errs {
        assert!(*e < 1e-5, "{what}: {field} differs by {e:e} (relative)");
    }
    errs
}

/// Many agents per cell and many cells: a neighbour grid built elsewhere finds the same
/// neighbours as the CPU's (which the interpreter checks), including agents in hash buckets
/// shared by cells.
fn grid_agrees_with_the_cpu(what: &str, make: impl for<'m> FnOnce(&'m Module, &World) -> Box<dyn Backend + 'm>) {
    let m = module("lj_gas");
    let mut sim = Interp::new(&m, 5);
    sim.init(&HashMap::from([("Atom".to_string(), 3000u64)])).expect("init");
    let start = sim.world.clone();
    let cpu_code = aiic_compiler::backend::cpu::emit_module(&m).expect("cpu code");
    let mut cpu = CpuBackend::new(&m, &cpu_code, &start, 2).expect("cpu backend");
    let mut other = make(&m, &start);
    for _ in 0..10 {
        cpu.step().expect("cpu step");
        other.step().unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    let cpu_world = cpu.world().expect("cpu state").clone();
    for (field, e) in field_errors(&m, &cpu_world, other.world().expect("download")) {
        assert!(e < 1e-5, "lj_gas, 3000 atoms, {what}: {field} differs by {e:e} (relative)");
    }
}

#[test]
fn cpu_matches_the_interpreter_on_every_example() {
    for name in EXAMPLES.iter().chain(&["mixed_types"]) {
        let m = module(name);
        let start = initial(&m).world.clone();
        let code = aiic_compiler::backend::cpu::emit_module(&m).expect("cpu code");
        for threads in [1, 3] {
            let mut cpu = CpuBackend::new(&m, &code, &start, threads).expect("cpu backend");
            agrees_with_interpreter(&m, &start, &format!("{name} ({threads} threads)"), &mut cpu);
        }
    }
}

#[test]
fn cpu_runs_are_deterministic_for_a_thread_count() {
    let m = module("lj_gas");
    let start = initial(&m).world.clone();
    let code = aiic_compiler::backend::cpu::emit_module(&m).expect("cpu code");
    let run = || {
        let mut cpu = CpuBackend::new(&m, &code, &start, 3).expect("cpu backend");
        for _ in 0..20 {
            cpu.step().expect("step");
        }
        cpu.world().expect("download").clone()
    };
    assert_eq!(run(), run());
}

/// The first Vulkan device, or why there is none (the test then says so and checks nothing).
fn vulkan_device() -> Option<String> {
    match aiic_runtime::vulkan::list_devices() {
        Ok(list) if !list.is_empty() => Some(list[0].name.clone()),
        Ok(_) => {
            eprintln!("skipped: the Vulkan loader found no device (install mesa-vulkan-drivers for lavapipe)");
            None
        }
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

#[test]
fn vulkan_matches_the_interpreter_on_every_example() {
    let _device = one_device_at_a_time();
    let Some(device) = vulkan_device() else { return };
    for name in EXAMPLES.iter().chain(&["mixed_types"]) {
        let m = module(name);
        let start = initial(&m).world.clone();
        // Several workgroup sizes, so that tiles both cover and split the agents, and one to
        // three agents per thread.
        for (wg, rows) in [(None, 1), (Some(16), 1), (Some(16), 2), (Some(32), 3)] {
            let shape = aiic_compiler::backend::gpu::kernels::Options { rows };
            let code = aiic_compiler::backend::gpu::spirv::emit_module_with(&m, shape).expect("spirv");
            let opts = aiic_runtime::vulkan::exec::Options { device: None, workgroup: wg };
            let what = format!("{name} on {device} (workgroup {wg:?}, {rows} rows)");
            let mut gpu =
                aiic_runtime::vulkan::exec::VulkanBackend::new(&m, code.code.plan.clone(), &code.words, &start, &opts)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
            agrees_with_interpreter(&m, &start, &what, &mut gpu);
        }
    }
}

#[test]
fn vulkan_neighbour_grid_matches_the_cpu_with_many_agents() {
    let _device = one_device_at_a_time();
    let Some(device) = vulkan_device() else { return };
    grid_agrees_with_the_cpu(&format!("on {device}"), |m, start| {
        let code = aiic_compiler::backend::gpu::spirv::emit_module(m).expect("spirv");
        let opts = aiic_runtime::vulkan::exec::Options { device: None, workgroup: Some(64) };
        let gpu = aiic_runtime::vulkan::exec::VulkanBackend::new(m, code.code.plan.clone(), &code.words, start, &opts)
            .unwrap_or_else(|e| panic!("lj_gas on {device}: {e}"));
        Box::new(gpu)
    });
}

/// The first CUDA device, or why there is none (the test then says so and checks nothing).
fn cuda_device() -> Option<String> {
    match aiic_runtime::cuda::list_devices() {
        Ok(list) if !list.is_empty() => Some(list[0].name.clone()),
        Ok(_) => {
            eprintln!("skipped: the CUDA driver found no device");
            None
        }
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

#[test]
fn cuda_matches_the_interpreter_on_every_example() {
    let _device = one_device_at_a_time();
    let Some(device) = cuda_device() else { return };
    for name in EXAMPLES.iter().chain(&["mixed_types"]) {
        let m = module(name);
        let start = initial(&m).world.clone();
        // Several block sizes, so that tiles both cover and split the agents, and one and two
        // agents per thread.
        for (block, rows) in [(256, 1), (16, 1), (16, 2)] {
            let shape = aiic_compiler::backend::gpu::kernels::Options { rows };
            let code = aiic_compiler::backend::gpu::ptx::emit_module_with(&m, block, shape).expect("ptx");
            let what = format!("{name} on {device} ({block} threads, {rows} rows)");
            let mut gpu =
                aiic_runtime::cuda::CudaBackend::new(&m, code.code.plan.clone(), &code.text, block, &start, None)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
            let errs = agrees_with_interpreter(&m, &start, &what, &mut gpu);
            eprintln!("{what}: {errs:?}");
        }
    }
}

#[test]
fn cuda_neighbour_grid_matches_the_cpu_with_many_agents() {
    let _device = one_device_at_a_time();
    let Some(device) = cuda_device() else { return };
    grid_agrees_with_the_cpu(&format!("on {device}"), |m, start| {
        let code = aiic_compiler::backend::gpu::ptx::emit_module(m, 64).expect("ptx");
        let gpu = aiic_runtime::cuda::CudaBackend::new(m, code.code.plan.clone(), &code.text, 64, start, None)
            .unwrap_or_else(|e| panic!("lj_gas on {device}: {e}"));
        Box::new(gpu)
    });
}

/// The first OpenCL device, or why there is none (the test then says so and checks nothing).
fn opencl_device() -> Option<String> {
    match aiic_runtime::opencl::list_devices() {
        Ok(list) if !list.is_empty() => Some(list[0].name.clone()),
        Ok(_) => {
            eprintln!("skipped: the OpenCL runtime found no device (install pocl-opencl-icd)");
            None
        }
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

#[test]
fn opencl_matches_the_interpreter_on_every_example() {
    let _device = one_device_at_a_time();
    let Some(device) = opencl_device() else { return };
    for name in EXAMPLES.iter().chain(&["mixed_types"]) {
        let m = module(name);
        let start = initial(&m).world.clone();
        for (wg, rows) in [(None, 1), (Some(16), 1), (Some(16), 2)] {
            let shape = aiic_compiler::backend::gpu::kernels::Options { rows };
            let code = aiic_compiler::backend::gpu::opencl::emit_module(&m, shape).expect("opencl");
            let what = format!("{name} on {device} (workgroup {wg:?}, {rows} rows)");
            let mut gpu =
                aiic_runtime::opencl::OpenClBackend::new(&m, code.code.plan.clone(), &code.text, &start, None, wg)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
            agrees_with_interpreter(&m, &start, &what, &mut gpu);
        }
    }
}

#[test]
fn opencl_neighbour_grid_matches_the_cpu_with_many_agents() {
    let _device = one_device_at_a_time();
    let Some(device) = opencl_device() else { return };
    grid_agrees_with_the_cpu(&format!("on {device}"), |m, start| {
        let code = aiic_compiler::backend::gpu::opencl::emit_module(m, Default::default()).expect("opencl");
        let gpu =
            aiic_runtime::opencl::OpenClBackend::new(m, code.code.plan.clone(), &code.text, start, None, Some(64))
                .unwrap_or_else(|e| panic!("lj_gas on {device}: {e}"));
        Box::new(gpu)
    });
}

#[test]
fn an_opencl_build_failure_shows_the_build_log() {
    let _device = one_device_at_a_time();
    let Some(_) = opencl_device() else { return };
    let m = module("kepler");
    let start = initial(&m).world.clone();
    let code = aiic_compiler::backend::gpu::opencl::emit_module(&m, Default::default()).expect("opencl");
    let broken = code.text.replace("const uint lid", "const uint lid = undefined_name +");
    match aiic_runtime::opencl::OpenClBackend::new(&m, code.code.plan.clone(), &broken, &start, None, None) {
        Ok(_) => panic!("a broken program built"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("building the OpenCL program") && msg.contains("undefined_name"), "{msg}");
        }
    }
}
