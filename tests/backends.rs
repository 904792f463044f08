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
use aiic_runtime::{FieldKind, World};
use std::collections::HashMap;
use std::path::PathBuf;

#[path = "support/engines.rs"]
mod engines;
#[path = "support/require.rs"]
mod require;
use engines::onnx_engines;

const EXAMPLES: &[&str] = &["nbody", "kepler", "lj_gas", "billiards", "springs"];

/// Test programs of `tests/programs` that every backend runs too: every column type, tensor
/// parameters applied with `@`, MLP models with every activation, and an ONNX model run as it
/// is on the host between the kernels.
const PROGRAMS: &[&str] = &["mixed_types", "tensor_trap", "mlp_field", "hosted_field"];

fn module(name: &str) -> Module {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = if PROGRAMS.contains(&name) {
        root.join("tests/programs").join(format!("{name}.aii"))
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
    round_to_columns(m, &mut sim.world);
    sim
}

/// Rounds every column to the precision it is declared in, as executors hold it.
fn round_to_columns(m: &Module, world: &mut World) {
    for (t, data) in world.agents.iter_mut().enumerate() {
        for (c, col) in data.columns.iter_mut().enumerate() {
            if m.column_types[t][c] != aiic_compiler::ir::Scalar::F64 {
                col.iter_mut().for_each(|x| *x = *x as f32 as f64);
            }
        }
    }
}

/// How far one field of a backend is from the reference: the largest difference, relative to
/// the field's largest magnitude and to its largest change over the run.
#[derive(Debug)]
struct FieldError {
    field: String,
    kind: FieldKind,
    of_magnitude: f64,
    of_change: f64,
}

/// Every property, state and accumulator field of `other` against `reference`, both run from
/// `start`; panics if the agent counts or column shapes differ.
fn field_errors(m: &Module, start: &World, reference: &World, other: &World, what: &str) -> Vec<FieldError> {
    assert_eq!(other.agents.len(), reference.agents.len(), "{what}: agent types");
    let mut out = Vec::new();
    for (t, schema) in m.agents.iter().enumerate() {
        let (r, o, s) = (&reference.agents[t], &other.agents[t], &start.agents[t]);
        assert_eq!(o.count, r.count, "{what}: number of {} agents", schema.name);
        assert_eq!(o.columns.len(), r.columns.len(), "{what}: columns of {}", schema.name);
        let offsets = schema.column_offsets();
        for (f, field) in schema.fields.iter().enumerate() {
            if field.kind == FieldKind::Scratch {
                continue;
            }
            let (mut scale, mut change, mut diff) = (0.0f64, 0.0f64, 0.0f64);
            for c in offsets[f]..offsets[f] + field.lanes.len() {
                let name = &field.lanes[c - offsets[f]];
                assert_eq!(o.columns[c].len(), r.count, "{what}: length of {}.{name}", schema.name);
                for i in 0..r.count {
                    let (x, y) = (r.columns[c][i], o.columns[c][i]);
                    scale = scale.max(x.abs());
                    change = change.max((x - s.columns[c][i]).abs());
                    // A NaN must count as the largest error, not vanish in `max`.
                    diff = diff.max(if (x - y).is_nan() { f64::INFINITY } else { (x - y).abs() });
                }
            }
            let relative = |d: f64, to: f64| if d == 0.0 { 0.0 } else { d / to };
            out.push(FieldError {
                field: format!("{}.{}", schema.name, field.name),
                kind: field.kind,
                of_magnitude: relative(diff, scale),
                of_change: relative(diff, change),
            });
        }
    }
    out
}

/// Largest error of a field after 100 steps, relative to its largest magnitude and to its largest
/// change over the run. A field that did not change must match exactly (its error relative to a
/// zero change is infinite). f32 arithmetic measured against the f64 interpreter stays about ten
/// times inside these bounds on every example (bench/RESULTS.md), while an error of a few parts in
/// a thousand of what a field did (a wrong factor in a force, one step too many) is caught even
/// where that is far below the field's size (spring positions move 3e-4 of their size).
fn bounds(kind: FieldKind) -> (f64, f64) {
    match kind {
        // Forces are derivatives: f32 rounding of positions near contact is amplified in them.
        FieldKind::Accum => (1e-4, 1e-3),
        _ => (1e-5, 1e-4),
    }
}

fn assert_within_bounds(errs: &[FieldError], what: &str) {
    for e in errs {
        let (of_magnitude, of_change) = bounds(e.kind);
        assert!(
            e.of_magnitude < of_magnitude && e.of_change < of_change,
            "{what}: {} differs by {:e} of its magnitude (bound {of_magnitude:e}) and {:e} of its change over the run (bound {of_change:e})",
            e.field,
            e.of_magnitude,
            e.of_change
        );
    }
}

/// Runs `backend` and the interpreter for 100 steps from `start` and checks every field
/// (`AIIC_TEST_SHOW_ERRORS=1` prints the errors, for the record).
fn agrees_with_interpreter(m: &Module, start: &World, what: &str, backend: &mut dyn Backend) {
    let mut interp = Interp::new(m, 3);
    interp.world = start.clone();
    for _ in 0..100 {
        interp.step().expect("interp step");
        backend.step().unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    let errs = field_errors(m, start, &interp.world, backend.world().expect("download"), what);
    if std::env::var_os("AIIC_TEST_SHOW_ERRORS").is_some() {
        for e in &errs {
            eprintln!("{what}: {}: {:.2e} of magnitude, {:.2e} of change", e.field, e.of_magnitude, e.of_change);
        }
    }
    assert_within_bounds(&errs, what);
    laws_agree(m, what, backend);
}

/// Largest difference of a law measured by an executor from the interpreter's measurement of the
/// same state, relative to the law's scale: both compute each term in f64 and sum in f64, so
/// only the order of summation differs. The monitor promises drifts resolvable to about 1e-9.
const LAW_BOUND: f64 = 1e-10;

/// The executor's law values on its current state against the interpreter's on that state.
fn laws_agree(m: &Module, what: &str, backend: &mut dyn Backend) {
    let world = backend.world().unwrap_or_else(|e| panic!("{what}: {e}")).clone();
    let reference = Interp::laws_of(m, &world, 3).expect("interp laws");
    let measured = backend
        .laws()
        .unwrap_or_else(|e| panic!("{what}: measuring the laws: {e}"))
        .unwrap_or_else(|| panic!("{what}: the laws were not measured on the executor"));
    assert_eq!(measured.len(), reference.len(), "{what}: number of laws");
    for ((law, r), x) in m.laws.iter().zip(&reference).zip(&measured) {
        let scale = r.scale.max(r.value.iter().map(|v| v * v).sum::<f64>().sqrt());
        let diff = r.value.iter().zip(&x.value).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        let diff = if diff.is_nan() || x.value.len() != r.value.len() { f64::INFINITY } else { diff };
        let of_scale = if diff == 0.0 { 0.0 } else { diff / scale };
        if std::env::var_os("AIIC_TEST_SHOW_ERRORS").is_some() {
            eprintln!("{what}: law {}: {of_scale:.2e} of its scale", law.name);
        }
        assert!(
            of_scale <= LAW_BOUND,
            "{what}: law `{}` measured {:?}, the interpreter {:?} ({of_scale:e} of its scale)",
            law.name,
            x.value,
            r.value
        );
        assert!(
            (x.scale - r.scale).abs() <= LAW_BOUND * r.scale.max(f64::MIN_POSITIVE),
            "{what}: scale of `{}`",
            law.name
        );
    }
}

/// Agent counts for the law lattice: odd sizes, sizes around workgroup multiples, and up to
/// 100,000 where the pair term is summed over neighbours (all pairs stay below what the
/// interpreter measures quickly).
const LATTICE_NEIGHBOURS: &[(&str, &str, u64)] = &[
    ("lj_gas", "Atom", 1),
    ("lj_gas", "Atom", 2),
    ("lj_gas", "Atom", 3),
    ("lj_gas", "Atom", 63),
    ("lj_gas", "Atom", 257),
    ("lj_gas", "Atom", 4099),
    ("lj_gas", "Atom", 30_001),
    ("lj_gas", "Atom", 100_000),
    ("nbody", "Body", 1),
    ("nbody", "Body", 2),
    ("nbody", "Body", 129),
    ("nbody", "Body", 1023),
    ("nbody", "Body", 2049),
];

/// Every executor's law values equal the interpreter's across the lattice of sizes.
fn laws_agree_on_the_lattice(what: &str, make: &dyn for<'m> Fn(&'m Module, &World) -> Box<dyn Backend + 'm>) {
    let mut modules: HashMap<&str, Module> = HashMap::new();
    for &(name, agent, n) in LATTICE_NEIGHBOURS {
        let m = modules.entry(name).or_insert_with(|| module(name));
        let mut sim = Interp::new(m, 11);
        sim.init(&HashMap::from([(agent.to_string(), n)])).expect("init");
        round_to_columns(m, &mut sim.world);
        let mut backend = make(m, &sim.world);
        laws_agree(m, &format!("{name}, {n} agents, {what}"), backend.as_mut());
    }
}

#[test]
fn cpu_laws_match_the_interpreter_on_the_lattice() {
    for threads in [1, 2] {
        laws_agree_on_the_lattice(&format!("cpu ({threads} threads)"), &|m, start| {
            let code = aiic_compiler::backend::cpu::emit_module(m).expect("cpu code");
            Box::new(CpuBackend::new(m, &code, start, threads).expect("cpu backend"))
        });
    }
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
    let what = format!("lj_gas, 3000 atoms, {what}");
    assert_within_bounds(&field_errors(&m, &start, &cpu_world, other.world().expect("download"), &what), &what);
}

#[test]
fn cpu_matches_the_interpreter_on_every_example() {
    for name in EXAMPLES.iter().chain(PROGRAMS) {
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

/// The first Vulkan device; or, where Vulkan is not installed, `None` after saying why (a failure
/// if `AIIC_TEST_REQUIRE` lists `vulkan`). A loader or driver that is there but fails is a failure.
fn vulkan_device() -> Option<String> {
    require::device("vulkan", aiic_runtime::vulkan::probe, |d| d.name.clone())
}

#[test]
fn vulkan_matches_the_interpreter_on_every_example() {
    let _device = require::one_device_at_a_time();
    let Some(device) = vulkan_device() else { return };
    for name in EXAMPLES.iter().chain(PROGRAMS) {
        let m = module(name);
        let start = initial(&m).world.clone();
        // Several workgroup sizes, so that tiles both cover and split the agents, and one to
        // three agents per thread.
        for (wg, rows) in [(None, 1), (Some(16), 1), (Some(16), 2), (Some(32), 3)] {
            let shape = aiic_compiler::backend::gpu::kernels::Options { rows, ..Default::default() };
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
    let _device = require::one_device_at_a_time();
    let Some(device) = vulkan_device() else { return };
    grid_agrees_with_the_cpu(&format!("on {device}"), |m, start| {
        let code = aiic_compiler::backend::gpu::spirv::emit_module(m).expect("spirv");
        let opts = aiic_runtime::vulkan::exec::Options { device: None, workgroup: Some(64) };
        let gpu = aiic_runtime::vulkan::exec::VulkanBackend::new(m, code.code.plan.clone(), &code.words, start, &opts)
            .unwrap_or_else(|e| panic!("lj_gas on {device}: {e}"));
        Box::new(gpu)
    });
}

/// The first CUDA device; or, where CUDA is not installed, `None` after saying why (a failure
/// if `AIIC_TEST_REQUIRE` lists `cuda`). A loader or driver that is there but fails is a failure.
fn cuda_device() -> Option<String> {
    require::device("cuda", aiic_runtime::cuda::probe, |d| d.name.clone())
}

#[test]
fn cuda_matches_the_interpreter_on_every_example() {
    let _device = require::one_device_at_a_time();
    let Some(device) = cuda_device() else { return };
    for name in EXAMPLES.iter().chain(PROGRAMS) {
        let m = module(name);
        let start = initial(&m).world.clone();
        // Several block sizes, so that tiles both cover and split the agents, and one and two
        // agents per thread.
        for (block, rows) in [(256, 1), (16, 1), (16, 2)] {
            let shape = aiic_compiler::backend::gpu::kernels::Options { rows, ..Default::default() };
            let code = aiic_compiler::backend::gpu::ptx::emit_module_with(&m, block, shape).expect("ptx");
            let what = format!("{name} on {device} ({block} threads, {rows} rows)");
            let mut gpu =
                aiic_runtime::cuda::CudaBackend::new(&m, code.code.plan.clone(), &code.text, block, &start, None)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
            agrees_with_interpreter(&m, &start, &what, &mut gpu);
        }
    }
}

#[test]
fn cuda_neighbour_grid_matches_the_cpu_with_many_agents() {
    let _device = require::one_device_at_a_time();
    let Some(device) = cuda_device() else { return };
    grid_agrees_with_the_cpu(&format!("on {device}"), |m, start| {
        let code = aiic_compiler::backend::gpu::ptx::emit_module(m, 64).expect("ptx");
        let gpu = aiic_runtime::cuda::CudaBackend::new(m, code.code.plan.clone(), &code.text, 64, start, None)
            .unwrap_or_else(|e| panic!("lj_gas on {device}: {e}"));
        Box::new(gpu)
    });
}

/// The first OpenCL device; or, where OpenCL is not installed, `None` after saying why (a failure
/// if `AIIC_TEST_REQUIRE` lists `opencl`). A loader or driver that is there but fails is a failure.
fn opencl_device() -> Option<String> {
    require::device("opencl", aiic_runtime::opencl::probe, |d| d.name.clone())
}

#[test]
fn opencl_matches_the_interpreter_on_every_example() {
    let _device = require::one_device_at_a_time();
    let Some(device) = opencl_device() else { return };
    for name in EXAMPLES.iter().chain(PROGRAMS) {
        let m = module(name);
        let start = initial(&m).world.clone();
        for (wg, rows) in [(None, 1), (Some(16), 1), (Some(16), 2)] {
            let shape = aiic_compiler::backend::gpu::kernels::Options { rows, ..Default::default() };
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
    let _device = require::one_device_at_a_time();
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
    let _device = require::one_device_at_a_time();
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

/// The comparison itself: an error of 3% of what the spring positions did over the run (3e-4 of
/// their size), a lost agent, and a NaN are each caught.
#[test]
fn the_comparison_catches_small_errors_lost_agents_and_nan() {
    let m = module("springs");
    let start = initial(&m).world.clone();
    let mut interp = Interp::new(&m, 3);
    interp.world = start.clone();
    for _ in 0..100 {
        interp.step().expect("interp step");
    }
    let reference = interp.world.clone();
    let same = field_errors(&m, &start, &reference, &reference, "itself");
    assert_within_bounds(&same, "itself");
    let (pos, _) = m.agents[0].field("position").expect("springs have positions");
    let first = m.agents[0].column_offsets()[pos];
    let mut off = reference.clone();
    for c in first..first + 3 {
        for i in 0..off.agents[0].count {
            off.agents[0].columns[c][i] += 0.03 * (reference.agents[0].columns[c][i] - start.agents[0].columns[c][i]);
        }
    }
    let errs = field_errors(&m, &start, &reference, &off, "off by 3%");
    let e = errs.iter().find(|e| e.field == "Bead.position").expect("position compared");
    assert!(e.of_magnitude < bounds(FieldKind::State).0, "too small to see against the size: {e:?}");
    assert!(std::panic::catch_unwind(|| assert_within_bounds(&errs, "off by 3%")).is_err(), "{e:?}");
    let mut fewer = reference.clone();
    fewer.agents[0].count -= 1;
    fewer.agents[0].columns.iter_mut().for_each(|c| {
        c.pop();
    });
    assert!(std::panic::catch_unwind(|| field_errors(&m, &start, &reference, &fewer, "fewer")).is_err());
    let mut nan = reference.clone();
    nan.agents[0].columns[first][5] = f64::NAN;
    let errs = field_errors(&m, &start, &reference, &nan, "nan");
    assert!(std::panic::catch_unwind(|| assert_within_bounds(&errs, "nan")).is_err());
}

/// Runs one test of this binary in a child process with `env`, and returns whether it passed and
/// what it printed.
fn run_this_test(name: &str, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([name, "--exact", "--nocapture", "--test-threads", "1"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().expect("the test binary runs");
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

#[test]
fn a_hidden_vulkan_driver_skips_unless_vulkan_is_required() {
    let hidden = [("VK_DRIVER_FILES", "/nonexistent/icd.json"), ("VK_ICD_FILENAMES", "/nonexistent/icd.json")];
    let test = "vulkan_neighbour_grid_matches_the_cpu_with_many_agents";
    let (passed, out) = run_this_test(test, &[&hidden[..], &[("AIIC_TEST_REQUIRE", "")]].concat());
    assert!(passed && out.contains("skipped: no Vulkan"), "{out}");
    let (passed, out) = run_this_test(test, &[&hidden[..], &[("AIIC_TEST_REQUIRE", "opencl,vulkan")]].concat());
    assert!(!passed && out.contains("`vulkan` is required"), "{out}");
}

#[test]
fn an_unknown_requirement_fails_rather_than_requiring_nothing() {
    let (passed, out) =
        run_this_test("opencl_neighbour_grid_matches_the_cpu_with_many_agents", &[("AIIC_TEST_REQUIRE", "vulcan")]);
    assert!(!passed && out.contains("names `vulcan`"), "{out}");
}

#[test]
fn vulkan_laws_match_the_interpreter_on_the_lattice() {
    let _device = require::one_device_at_a_time();
    let Some(device) = vulkan_device() else { return };
    for wg in [None, Some(12)] {
        laws_agree_on_the_lattice(&format!("{device} (workgroup {wg:?})"), &|m, start| {
            let code = aiic_compiler::backend::gpu::spirv::emit_module(m).expect("spirv");
            let opts = aiic_runtime::vulkan::exec::Options { device: None, workgroup: wg };
            Box::new(
                aiic_runtime::vulkan::exec::VulkanBackend::new(m, code.code.plan.clone(), &code.words, start, &opts)
                    .unwrap_or_else(|e| panic!("{device}: {e}")),
            )
        });
    }
}

#[test]
fn cuda_laws_match_the_interpreter_on_the_lattice() {
    let _device = require::one_device_at_a_time();
    let Some(device) = cuda_device() else { return };
    for block in [256, 12] {
        laws_agree_on_the_lattice(&format!("{device} ({block} threads)"), &|m, start| {
            let code = aiic_compiler::backend::gpu::ptx::emit_module(m, block).expect("ptx");
            Box::new(
                aiic_runtime::cuda::CudaBackend::new(m, code.code.plan.clone(), &code.text, block, start, None)
                    .unwrap_or_else(|e| panic!("{device}: {e}")),
            )
        });
    }
}

#[test]
fn opencl_laws_match_the_interpreter_on_the_lattice() {
    let _device = require::one_device_at_a_time();
    let Some(device) = opencl_device() else { return };
    for wg in [None, Some(12)] {
        laws_agree_on_the_lattice(&format!("{device} (workgroup {wg:?})"), &|m, start| {
            let code = aiic_compiler::backend::gpu::opencl::emit_module(m, Default::default()).expect("opencl");
            Box::new(
                aiic_runtime::opencl::OpenClBackend::new(m, code.code.plan.clone(), &code.text, start, None, wg)
                    .unwrap_or_else(|e| panic!("{device}: {e}")),
            )
        });
    }
}

/// A frame begun at a step is the state at that step, even where the executor copies it back
/// while it goes on stepping: the same run without frames, read at that step, matches it.
fn frames_are_the_state_they_were_begun_at(
    what: &str,
    make: &dyn for<'m> Fn(&'m Module, &World) -> Box<dyn Backend + 'm>,
) {
    let m = module("nbody");
    let start = initial(&m).world.clone();
    let (mut framed, mut plain) = (make(&m, &start), make(&m, &start));
    for _ in 0..5 {
        framed.step().unwrap_or_else(|e| panic!("{what}: {e}"));
        plain.step().unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    let frame = match framed.begin_frame().unwrap_or_else(|e| panic!("{what}: {e}")) {
        Some(w) => w,
        None => {
            for _ in 0..7 {
                framed.step().unwrap_or_else(|e| panic!("{what}: {e}"));
            }
            framed.take_frame().unwrap_or_else(|e| panic!("{what}: {e}")).expect("the frame begun")
        }
    };
    let reference = plain.world().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(frame.step, reference.step, "{what}: step of the frame");
    for (t, schema) in m.agents.iter().enumerate() {
        for (c, name) in schema.output_columns() {
            assert_eq!(frame.agents[t].columns[c], reference.agents[t].columns[c], "{what}: {name}");
        }
    }
    assert!(framed.take_frame().expect("nothing in flight").is_none(), "{what}: a frame is taken once");
}

#[test]
fn frames_are_the_state_they_were_begun_at_on_every_executor() {
    frames_are_the_state_they_were_begun_at("cpu", &|m, start| {
        let code = aiic_compiler::backend::cpu::emit_module(m).expect("cpu code");
        Box::new(CpuBackend::new(m, &code, start, 2).expect("cpu backend"))
    });
    let _device = require::one_device_at_a_time();
    if let Some(device) = cuda_device() {
        frames_are_the_state_they_were_begun_at(&device, &|m, start| {
            let code = aiic_compiler::backend::gpu::ptx::emit_module(m, 64).expect("ptx");
            Box::new(
                aiic_runtime::cuda::CudaBackend::new(m, code.code.plan.clone(), &code.text, 64, start, None)
                    .unwrap_or_else(|e| panic!("{e}")),
            )
        });
    }
    if let Some(device) = vulkan_device() {
        frames_are_the_state_they_were_begun_at(&device, &|m, start| {
            let code = aiic_compiler::backend::gpu::spirv::emit_module(m).expect("spirv");
            let opts = aiic_runtime::vulkan::exec::Options { device: None, workgroup: None };
            Box::new(
                aiic_runtime::vulkan::exec::VulkanBackend::new(m, code.code.plan.clone(), &code.words, start, &opts)
                    .unwrap_or_else(|e| panic!("{e}")),
            )
        });
    }
    if let Some(device) = opencl_device() {
        frames_are_the_state_they_were_begun_at(&device, &|m, start| {
            let code = aiic_compiler::backend::gpu::opencl::emit_module(m, Default::default()).expect("opencl");
            Box::new(
                aiic_runtime::opencl::OpenClBackend::new(m, code.code.plan.clone(), &code.text, start, None, None)
                    .unwrap_or_else(|e| panic!("{e}")),
            )
        });
    }
}

fn onnx<'m>(m: &'m Module, start: &World, engine: aiic_runtime::onnx::engine::Engine) -> Box<dyn Backend + 'm> {
    let code = aiic_compiler::backend::onnx::emit_module(m).expect("onnx graphs");
    Box::new(
        aiic_runtime::onnx::exec::OnnxBackend::new(m, code.plan, &code.graphs, start, engine)
            .unwrap_or_else(|e| panic!("{}: {e}", engine.name())),
    )
}

#[test]
fn onnx_matches_the_interpreter_on_every_example() {
    for engine in onnx_engines() {
        for name in EXAMPLES.iter().chain(PROGRAMS) {
            let m = module(name);
            let start = initial(&m).world.clone();
            let mut exec = onnx(&m, &start, engine);
            agrees_with_interpreter(&m, &start, &format!("{name} on {}", engine.name()), exec.as_mut());
        }
    }
}

#[test]
fn onnx_laws_match_the_interpreter_on_the_lattice() {
    for engine in onnx_engines() {
        laws_agree_on_the_lattice(&engine.name(), &|m, start| onnx(m, start, engine));
    }
}

#[test]
fn onnx_neighbour_candidates_match_the_cpu_with_many_agents() {
    for engine in onnx_engines() {
        grid_agrees_with_the_cpu(&engine.name(), |m, start| onnx(m, start, engine));
    }
}

/// A step of map kernels over one agent type runs as one graph (`OnnxPlan::step`), with the same
/// result as its kernels' graphs one by one, on every engine; a step with pairs has none.
#[test]
fn onnx_step_graph_matches_the_kernels_one_by_one() {
    let m = module("learned_force");
    let start = initial(&m).world.clone();
    let code = aiic_compiler::backend::onnx::emit_module(&m).expect("onnx graphs");
    assert!(code.plan.step.is_some() && code.graphs.len() == code.plan.kernels.len() + 1);
    assert!(aiic_compiler::backend::onnx::emit_module(&module("nbody")).expect("onnx graphs").plan.step.is_none());
    for engine in onnx_engines() {
        let run = |with_step: bool| {
            let mut plan = code.plan.clone();
            let mut graphs = code.graphs.clone();
            if !with_step {
                plan.step = None;
                graphs.pop();
            }
            let mut m = m.clone();
            // f32: the same model in both (the step's graph takes the precision its kernels chose).
            m.kernels
                .iter_mut()
                .filter_map(|k| k.tensor.as_mut())
                .for_each(|t| t.precision = aiic_compiler::ir::Precision::F32);
            let mut exec =
                aiic_runtime::onnx::exec::OnnxBackend::new(&m, plan, &graphs, &start, engine).expect("backend");
            exec.prime().expect("prime");
            assert_eq!(exec.name().contains("one graph a step"), with_step, "{}", exec.name());
            for _ in 0..5 {
                exec.step().expect("step");
            }
            exec.world().expect("world").clone()
        };
        let (one, each) = (run(true), run(false));
        for (a, b) in one.agents.iter().zip(&each.agents) {
            for (ca, cb) in a.columns.iter().zip(&b.columns) {
                for (x, y) in ca.iter().zip(cb) {
                    assert!((x - y).abs() <= 1e-6 * y.abs().max(1.0), "{}: {x} against {y}", engine.name());
                }
            }
        }
    }
}

/// The split `--target auto` makes where there is an NPU: the kernels that call models (and
/// hosted models) on one engine, the rest of the step on another. No NPU here, so another
/// engine stands in for it; the executor's placement is what is tested, against the interpreter.
#[test]
fn onnx_models_on_one_engine_and_the_rest_on_another_match_the_interpreter() {
    let engines = onnx_engines();
    let Some(&stand_in) = engines.iter().find(|e| **e != aiic_runtime::onnx::engine::Engine::Tract) else {
        eprintln!("skipped: only tract here, no second engine to stand in for an NPU");
        return;
    };
    for name in ["mlp_field", "hosted_field"] {
        let m = module(name);
        let start = initial(&m).world.clone();
        let code = aiic_compiler::backend::onnx::emit_module(&m).expect("onnx graphs");
        let mut exec = aiic_runtime::onnx::exec::OnnxBackend::split(
            &m,
            code.plan,
            &code.graphs,
            &start,
            aiic_runtime::onnx::engine::Engine::Tract,
            stand_in,
        )
        .expect("backend");
        let what = format!("{name}, models on {}", stand_in.name());
        assert!(exec.name().contains(&format!("models on {}", stand_in.name())), "{}", exec.name());
        if name == "hosted_field" {
            assert!(exec.notes().iter().any(|n| n.contains(&stand_in.name())), "{:?}", exec.notes());
        }
        agrees_with_interpreter(&m, &start, &what, &mut exec);
    }
}
