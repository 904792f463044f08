//! The command line contract, exercised through the built `aiic` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "support/npy.rs"]
mod npy;
#[path = "support/require.rs"]
mod require;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn aiic(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aiic")).args(args).current_dir(root()).output().expect("aiic runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const EXAMPLES: &[&str] = &["nbody", "kepler", "lj_gas", "billiards", "springs"];

#[test]
fn every_example_checks() {
    for name in EXAMPLES {
        let o = aiic(&["check", &format!("examples/{name}.aii")]);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", stderr(&o));
    }
}

/// The benchmark programs stay valid programs that run.
#[test]
fn every_benchmark_program_runs() {
    let o = aiic(&["run", "bench/mlp_small.aii", "--target", "interp", "--steps", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("ran 2 steps of MlpSmall (1024 agents)"), "{}", stderr(&o));
    let o = aiic(&["run", "bench/mlp_tc.aii", "--target", "cpu", "--steps", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("ran 2 steps of MlpTensorCores (4096 agents)"), "{}", stderr(&o));
}

#[test]
fn every_example_runs_on_the_interpreter_and_reports_its_laws() {
    for name in EXAMPLES {
        // Small counts keep debug-build runs short; the laws are measured all the same.
        let mut args = vec!["run", &*format!("examples/{name}.aii"), "--target", "interp", "--steps", "5"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        match *name {
            "nbody" => args.extend(["--count".into(), "Body=64".into()]),
            "lj_gas" => args.extend(["--count".into(), "Atom=64".into()]),
            _ => {}
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = aiic(&refs);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(0), "{name}: {err}");
        assert!(err.contains("ran 5 steps"), "{name}: {err}");
        assert!(err.contains("max drift"), "{name} prints the drift table: {err}");
    }
}

fn read_csv(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path).expect("csv").lines().map(|l| l.split(',').map(String::from).collect()).collect()
}

#[test]
fn kepler_closes_its_orbit_and_prints_each_laws_drift() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("orbit.csv");
    let o = aiic(&["run", "examples/kepler.aii", "--steps", "1000", "--out", out.to_str().expect("utf8")]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    for law in ["momentum", "angular", "energy"] {
        assert!(err.lines().any(|l| l.starts_with(law)), "drift of `{law}` printed: {err}");
    }
    let rows = read_csv(&out);
    let header = &rows[0];
    let col = |name: &str| header.iter().position(|h| h == name).expect("column");
    let (step, x, y) = (col("step"), col("position.x"), col("position.y"));
    let first: Vec<&Vec<String>> = rows[1..].iter().filter(|r| r[step] == "0").collect();
    let last: Vec<&Vec<String>> = rows[1..].iter().filter(|r| r[step] == "1000").collect();
    assert_eq!((first.len(), last.len()), (2, 2), "frames at the first and the last step");
    for (a, b) in first.iter().zip(&last) {
        let f = |r: &Vec<String>, c: usize| r[c].parse::<f64>().expect("number");
        let d = ((f(a, x) - f(b, x)).powi(2) + (f(a, y) - f(b, y)).powi(2)).sqrt();
        let r = (f(a, x).powi(2) + f(a, y).powi(2)).sqrt();
        assert!(d / r < 1e-3, "relative distance from start {}", d / r);
    }
}

#[test]
fn outputs_in_every_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    for ext in ["csv", "npy", "xyz", "vtk"] {
        let out = dir.path().join(format!("t.{ext}"));
        let o = aiic(&[
            "run",
            "examples/springs.aii",
            "--steps",
            "4",
            "--every",
            "2",
            "--out",
            out.to_str().expect("utf8"),
        ]);
        assert_eq!(o.status.code(), Some(0), "{ext}: {}", stderr(&o));
    }
    let csv = read_csv(&dir.path().join("t.csv"));
    assert_eq!(csv.len(), 1 + 3 * 32, "header and three frames (steps 0, 2, 4) of 32 beads");
    assert!(dir.path().join("t.Bead.npy").is_file());
    let xyz = std::fs::read_to_string(dir.path().join("t.xyz")).expect("xyz");
    assert_eq!(xyz.lines().filter(|l| l.trim() == "32").count(), 3);
    assert!(dir.path().join("t.000004.vtk").is_file());
}

#[test]
fn count_seed_and_set_change_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |extra: &[&str], name: &str| {
        let out = dir.path().join(name);
        let mut args = vec![
            "run",
            "examples/nbody.aii",
            "--steps",
            "1",
            "--count",
            "Body=8",
            "--out",
            out.to_str().expect("utf8"),
        ];
        args.extend_from_slice(extra);
        let o = aiic(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        std::fs::read_to_string(out).expect("csv")
    };
    let base = run(&[], "a.csv");
    assert_eq!(base.lines().count(), 1 + 2 * 8);
    assert_eq!(base, run(&[], "b.csv"), "same seed, same run");
    assert_ne!(base, run(&["--seed", "5"], "c.csv"));
    assert_ne!(base, run(&["--set", "dt=0.01"], "d.csv"));
}

#[test]
fn malformed_input_exits_1_with_a_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.aii");
    std::fs::write(
        &bad,
        "system S {\n  agent A { state x: f32; }\n  interaction f(p: A) each { p.y += 1.0; }\n  step { f; }\n}\n",
    )
    .expect("write");
    let o = aiic(&["check", bad.to_str().expect("utf8"), "--no-color"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("E0201") && err.contains("line 3, column 32"), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let o = aiic(&["run", "no/such/file.aii"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read no/such/file.aii"), "{}", stderr(&o));
}

#[test]
fn an_unavailable_backend_named_explicitly_exits_3() {
    let o = aiic(&["run", "examples/kepler.aii", "--target", "rt"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let o = aiic(&["run", "examples/kepler.aii", "--target", "onnx:qnn"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("QNNExecutionProvider") || stderr(&o).contains("ONNX Runtime"), "{}", stderr(&o));
    let o = aiic(&["run", "examples/kepler.aii", "--target", "onnx:npx"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("unknown ONNX provider"), "{}", stderr(&o));
    let o = aiic(&["run", "examples/kepler.aii", "--target", "openvino:TPU"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("unknown OpenVINO device"), "{}", stderr(&o));
}

/// These machines have no neural processing unit: `--target npu` says what it looked for.
#[test]
fn npu_without_one_says_what_was_looked_for_and_exits_3() {
    let o = aiic(&["run", "examples/learned_force.aii", "--target", "npu", "--steps", "1"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    for part in ["no neural processing unit", "Core ML", "QNN", "OpenVINO"] {
        assert!(stderr(&o).contains(part), "{}", stderr(&o));
    }
}

/// `@accel(npu)` with no NPU here: the run goes on with the rest of the step and says why.
#[test]
fn accel_npu_without_one_runs_with_the_step_and_says_so() {
    let o = aiic(&["run", "tests/programs/onnx_force.aii", "--target", "cpu", "--steps", "2", "--count", "P=64"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("`learned` asks for an NPU (@accel(npu)); none here"), "{err}");
}

/// A program may be checked before its ONNX model exists; running it says the file is missing.
#[test]
fn a_missing_onnx_model_checks_but_does_not_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m.aii");
    std::fs::write(
        &path,
        "system S { model net = onnx(\"not_yet.onnx\"); agent P { state x: f32; state y: vec3; } \
         interaction f(p: P) each { p.y = net(p.x); } init { spawn P * 4 { x: 1.0, y: vec3(0.0, 0.0, 0.0) }; } step { f; } }",
    )
    .expect("write program");
    let file = path.to_str().expect("utf8");
    let o = aiic(&["check", file]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = aiic(&["run", file, "--steps", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("its ONNX file was not found"), "{}", stderr(&o));
}

#[test]
fn devices_lists_the_onnx_engines() {
    let o = aiic(&["devices"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for line in ["--target onnx:tract", "onnx:coreml", "npu "] {
        assert!(out.contains(line), "{out}");
    }
}

#[test]
fn precision_overrides_every_tensor_interaction_and_rejects_unknown_names() {
    let o = aiic(&["run", "tests/programs/tensor_cores.aii", "--target", "cpu", "--precision", "f8"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("`--precision f8`: expected one of"), "{}", stderr(&o));
    let o = aiic(&["emit", "tests/programs/tensor_cores.aii", "--target", "ir", "--precision", "bf16"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(text.matches(" precision bf16 ").count(), 3, "{text}");
    assert!(!text.contains(" precision f16 ") && !text.contains(" precision auto "), "{text}");
}

#[test]
fn emit_prints_the_ir() {
    let o = aiic(&["emit", "examples/kepler.aii", "--target", "ir"]);
    assert_eq!(o.status.code(), Some(0));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("kernel attract : all_pairs(Body, Body)"), "{text}");
}

#[test]
fn strict_fails_with_code_2_when_a_law_drifts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("drift.aii");
    std::fs::write(
        &src,
        "system D {\n  agent P { state v: vec3; property mass: f32; }\n  interaction push(p: P) each external { p.v += vec3(1.0); }\n  conserve momentum: vec3 = sum(p: P) p.mass * p.v tolerance 1e-6;\n  step { push; }\n  init { spawn P * 2 { mass: 1.0, v: vec3(1.0) } }\n}\n",
    )
    .expect("write");
    let path = src.to_str().expect("utf8");
    assert_eq!(aiic(&["run", path, "--steps", "3"]).status.code(), Some(0));
    let o = aiic(&["run", path, "--steps", "3", "--strict"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("EXCEEDED"));
}

#[test]
fn non_finite_state_stops_the_run_with_step_and_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("nan.aii");
    std::fs::write(
        &src,
        "system N {\n  agent P { state x: f32; }\n  interaction grow(p: P) each { p.x = p.x * 1e30; }\n  step { grow; }\n  init { spawn P * 3 { x: index as f32 } }\n}\n",
    )
    .expect("write");
    // f64 overflows after eleven multiplications by 1e30, f32 after two.
    for (target, step) in [("interp", "step 11"), ("cpu", "step 2")] {
        let o = aiic(&["run", src.to_str().expect("utf8"), "--steps", "50", "--target", target]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains(step) && err.contains("P #1") && err.contains("`x`"), "{target}: {err}");
    }
}

#[test]
fn an_interrupted_run_keeps_complete_frames() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("long.csv");
    let child = Command::new(env!("CARGO_BIN_EXE_aiic"))
        .args([
            "run",
            "examples/springs.aii",
            "--steps",
            "100000000",
            "--every",
            "50",
            "--out",
            out.to_str().expect("utf8"),
        ])
        .current_dir(root())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::metadata(&out).map_or(0, |m| m.len()) < 20_000 {
        assert!(std::time::Instant::now() < deadline, "no frames written");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let o = child.wait_with_output().expect("wait");
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let rows = read_csv(&out);
    let frames = (rows.len() - 1) / 32;
    assert!(frames >= 2 && (rows.len() - 1).is_multiple_of(32), "whole frames only: {} rows", rows.len() - 1);
    assert!(rows[1..].iter().all(|r| r.len() == rows[0].len()), "every row complete");
}

#[test]
fn nbody_keeps_its_energy_over_ten_thousand_steps() {
    let o = aiic(&[
        "run",
        "examples/nbody.aii",
        "--steps",
        "10000",
        "--count",
        "Body=64",
        "--check-every",
        "500",
        "--strict",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let line = err.lines().find(|l| l.starts_with("energy")).expect("energy row");
    let cols: Vec<&str> = line.split_whitespace().collect();
    let max_drift: f64 = cols[4].parse().expect("max drift");
    assert!(max_drift < 1e-4, "energy drift {max_drift} over its tolerance 1e-4");
}

#[test]
fn nbody_with_euler_is_refused_at_check_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = std::fs::read_to_string(root().join("examples/nbody.aii")).expect("nbody");
    let euler = dir.path().join("nbody_euler.aii");
    std::fs::write(&euler, src.replace("integrate velocity_verlet(dt)", "integrate euler(dt)")).expect("write");
    let o = aiic(&["check", euler.to_str().expect("utf8"), "--no-color"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("E0612") && err.contains("euler is not symplectic; use velocity_verlet"), "{err}");
}

#[test]
fn check_explain_lists_each_obligation() {
    let o = aiic(&["check", "--explain", "examples/nbody.aii"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("law `momentum`: linear") && out.contains("law `energy`: energy"), "{out}");
    assert!(out.contains("[proved] interaction `attract` (forces): applies −∇ of a potential in the law"), "{out}");
    assert!(out.contains("[proved] integrator `velocity_verlet` on `Body`: is symplectic"), "{out}");
    assert!(!out.contains("FAILED"), "{out}");
}

#[test]
fn check_explain_says_how_each_law_term_is_summed() {
    let o = aiic(&["check", "--explain", "examples/lj_gas.aii"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("term 0: a sum over every Atom, in f64"), "{out}");
    assert!(out.contains("term 1: a sum over the pairs closer than 2.5 (neighbour grid)"), "{out}");
    let o = aiic(&["check", "--explain", "examples/nbody.aii"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("term 1: a sum over all pairs: the term is not provably zero beyond a distance"), "{out}");
}

#[test]
fn plot_writes_a_png_of_the_drift() {
    let dir = tempfile::tempdir().expect("tempdir");
    let png = dir.path().join("drift.png");
    let o = aiic(&[
        "run",
        "examples/kepler.aii",
        "--steps",
        "200",
        "--check-every",
        "10",
        "--plot",
        png.to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let bytes = std::fs::read(&png).expect("png written");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
}

#[test]
fn an_artifact_keeps_its_tensor_parameters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let art = dir.path().join("learned.aiib");
    let o = aiic(&["build", "examples/learned_force.aii", "-o", art.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(art.join("tensors.f64").is_file(), "tensor elements beside the manifest");
    let run = |file: &str, out: &str| {
        let out = dir.path().join(out);
        let o = aiic(&["run", file, "--target", "cpu", "--steps", "20", "--out", out.to_str().expect("utf8")]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        std::fs::read_to_string(out).expect("csv")
    };
    assert_eq!(run("examples/learned_force.aii", "a.csv"), run(art.to_str().expect("utf8"), "b.csv"));
    let o = aiic(&["run", art.to_str().expect("utf8"), "--set", "W1=1"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

#[test]
fn a_built_artifact_runs_like_its_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let art = dir.path().join("kepler.aiib");
    let o = aiic(&["build", "examples/kepler.aii", "-o", art.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(art.join("manifest.json").is_file());
    assert!(std::fs::read_dir(art.join("cpu")).expect("cpu kernels").count() >= 2, "one file per CPU kernel");
    let run = |file: &str, out: &str, extra: &[&str]| {
        let out = dir.path().join(out);
        let mut args = vec![
            "run",
            file,
            "--target",
            "cpu",
            "--threads",
            "1",
            "--steps",
            "50",
            "--out",
            out.to_str().expect("utf8"),
        ];
        args.extend_from_slice(extra);
        let o = aiic(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        std::fs::read_to_string(out).expect("csv")
    };
    let from_source = run("examples/kepler.aii", "a.csv", &[]);
    let from_artifact = run(art.to_str().expect("utf8"), "b.csv", &[]);
    assert_eq!(from_source, from_artifact);
    assert_ne!(
        from_artifact,
        run(art.to_str().expect("utf8"), "c.csv", &["--set", "dt=0.01"]),
        "params can change at run time"
    );
    let o = aiic(&["run", art.to_str().expect("utf8"), "--set", "G=2"]);
    assert_eq!(o.status.code(), Some(1), "constants are fixed in an artifact: {}", stderr(&o));
}

/// `build --target onnx` keeps the graphs, and a run of the artifact on an ONNX engine reads
/// them: the same trajectory as from the source, and a clear error where a graph is damaged.
#[test]
fn an_artifact_with_onnx_graphs_runs_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let art = dir.path().join("nbody.aiib");
    let o = aiic(&["build", "examples/nbody.aii", "--target", "onnx", "-o", art.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let graphs: Vec<PathBuf> =
        std::fs::read_dir(art.join("onnx")).expect("onnx graphs").map(|e| e.expect("entry").path()).collect();
    assert!(graphs.iter().any(|g| g.to_string_lossy().ends_with("_attract.onnx")), "{graphs:?}");
    let run = |file: &str, out: &str| {
        let out = dir.path().join(out);
        let args = ["run", file, "--target", "onnx:tract", "--steps", "5", "--out", out.to_str().expect("utf8")];
        let o = aiic(&args);
        (o.status.code(), stderr(&o), std::fs::read_to_string(out).unwrap_or_default())
    };
    let (code, err, from_source) = run("examples/nbody.aii", "a.csv");
    assert_eq!(code, Some(0), "{err}");
    let (code, err, from_artifact) = run(art.to_str().expect("utf8"), "b.csv");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(from_source, from_artifact);
    let attract = graphs.iter().find(|g| g.to_string_lossy().ends_with("_attract.onnx")).expect("attract");
    std::fs::write(attract, b"not a graph").expect("damage");
    let (code, err, _) = run(art.to_str().expect("utf8"), "c.csv");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("attract") && !err.contains("panicked"), "{err}");
}

#[test]
fn emit_clif_prints_verified_cranelift_ir() {
    let o = aiic(&["emit", "examples/nbody.aii", "--target", "clif"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("; kernel attract") && text.contains("f32x4"), "{text}");
}

#[test]
fn bench_reports_rates_per_target() {
    let o = aiic(&["bench", "examples/nbody.aii", "--count", "Body=128", "--seconds", "0.2", "--target", "cpu,interp"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("interactions/s") && out.contains("cpu (") && out.contains("interp"), "{out}");
}

#[test]
fn emit_ptx_shows_the_hopper_module_of_a_gemm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (rows, cols) = (260u32, 270u32);
    npy::write_npy(&dir.path().join("w.npy"), &[rows, cols], &vec![0.01; (rows * cols) as usize]);
    npy::write_npy(&dir.path().join("e.npy"), &[cols, 3], &vec![0.5; (cols * 3) as usize]);
    npy::write_npy(&dir.path().join("f.npy"), &[rows, 3], &vec![0.0; (rows * 3) as usize]);
    let src = format!(
        "system G {{ param W: tensor<f16>[{rows}, {cols}] = load(\"w.npy\"); param E: tensor<f32>[{cols}, 3] = load(\"e.npy\"); param F: tensor<f32>[{rows}, 3] = load(\"f.npy\");\n agent A {{ state x: vec<f16, {cols}>; state y: vec<f32, {rows}>; }}\n @precision(f16) interaction product(a: A) each external {{ a.y = W @ a.x; }}\n step {{ product; }}\n init {{ spawn A * 3 {{ x: (E @ rand_in_sphere(1.0)) as vec<f16, {cols}>, y: F @ vec3(0.0) }} }} }}\n"
    );
    let file = dir.path().join("g.aii");
    std::fs::write(&file, src).expect("write");
    let o = aiic(&["emit", file.to_str().expect("utf8"), "--target", "ptx"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(".target sm_80") && out.contains("mma.sync.aligned.m16n8k16"), "the module");
    assert!(out.contains(".target sm_90a") && out.contains("wgmma.mma_async"), "the Hopper module");
}

#[test]
fn pairs_writing_a_wide_field_are_refused_on_gpus_and_run_on_the_cpu() {
    let dir = tempfile::tempdir().expect("tempdir");
    npy::write_npy(&dir.path().join("e.npy"), &[300, 3], &vec![0.01; 900]);
    let src = "system P {\n param E: tensor<f32>[300, 3] = load(\"e.npy\");\n agent A { state position: vec3; accum s: vec<f32, 300>; }\n interaction touch(a: A, b: A) pairs external { a.s += E @ b.position; b.s += E @ a.position; }\n step { touch; }\n init { spawn A * 4 { position: rand_in_sphere(1.0) } }\n}\n";
    let file = dir.path().join("p.aii");
    std::fs::write(&file, src).expect("write");
    let path = file.to_str().expect("utf8");
    let o = aiic(&["emit", path, "--target", "ptx"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("writes a field of more than 256 lanes from pairs"), "{}", stderr(&o));
    let o = aiic(&["run", path, "--target", "cpu", "--steps", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn bench_reports_the_tensor_work_of_a_step() {
    // examples/learned_force.aii: 32 -> 64 -> 64 -> 3 for 1,000 agents, two FLOP a multiply-add.
    let o = aiic(&["bench", "examples/learned_force.aii", "--count", "P=1000", "--seconds", "0.05", "--target", "cpu"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let flop = 2.0 * (32.0 * 64.0 + 64.0 * 64.0 + 64.0 * 3.0) * 1000.0;
    assert!(stderr(&o).contains(&format!("tensor work {flop:.4e} FLOP a step")), "{}", stderr(&o));
}

/// Whether `aiic devices` lists a Vulkan device; otherwise the test says why it checks nothing
/// (a failure if `AIIC_TEST_REQUIRE` lists `vulkan`). A Vulkan that is installed but fails to
/// list its devices is a failure.
fn vulkan_present() -> bool {
    require::listed();
    let o = aiic(&["devices"]);
    assert_eq!(o.status.code(), Some(0), "aiic devices: {}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = text.lines().find(|l| l.starts_with("vulkan")).expect("aiic devices has a vulkan line").to_string();
    assert!(!line.starts_with("vulkan   failed"), "{line}");
    let found = line.contains("available   --device 0");
    if !found {
        require::skip("vulkan", format!("no Vulkan device ({line})"));
    }
    found
}

#[test]
fn every_example_runs_on_vulkan_with_the_validation_layers_quiet() {
    if !vulkan_present() {
        return;
    }
    for name in EXAMPLES {
        let o = Command::new(env!("CARGO_BIN_EXE_aiic"))
            .args(["run", &format!("examples/{name}.aii"), "--target", "vulkan", "--steps", "20"])
            .env("AIIC_VALIDATION", "1")
            .current_dir(root())
            .output()
            .expect("aiic runs");
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(0), "{name}: {err}");
        assert!(err.contains("on vulkan ("), "{name}: {err}");
        if err.contains("the Khronos validation layer is not installed") {
            return require::skip(
                "validation",
                "the Khronos validation layer is not installed (vulkan-validationlayers)",
            );
        }
        assert!(err.contains("Khronos validation layer on"), "{name}: the layer was not loaded:\n{err}");
        assert!(!err.contains("vulkan validation"), "{name}: the validation layers reported:\n{err}");
    }
}

#[test]
fn a_vulkan_device_that_does_not_exist_exits_3() {
    if !vulkan_present() {
        return;
    }
    let o = aiic(&["run", "examples/kepler.aii", "--target", "vulkan", "--device", "99"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("--device 99"), "{}", stderr(&o));
}

#[test]
fn without_a_vulkan_driver_vulkan_exits_3_and_auto_runs_on_the_cpu() {
    let run = |target: &str| {
        Command::new(env!("CARGO_BIN_EXE_aiic"))
            .args(["run", "examples/kepler.aii", "--steps", "5", "--target", target])
            .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
            .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
            .current_dir(root())
            .output()
            .expect("aiic runs")
    };
    let o = run("vulkan");
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("Vulkan"), "{}", stderr(&o));
    let o = run("auto");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("on cpu"), "{}", stderr(&o));
}

#[test]
fn non_finite_state_on_vulkan_stops_the_run_with_agent_and_field() {
    if !vulkan_present() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("nan.aii");
    std::fs::write(
        &src,
        "system N {\n  agent P { state x: f32; }\n  interaction grow(p: P) each { p.x = p.x * 1e30; }\n  step { grow; }\n  init { spawn P * 3 { x: index as f32 } }\n}\n",
    )
    .expect("write");
    for steps in ["10", "200"] {
        let o = aiic(&["run", src.to_str().expect("utf8"), "--steps", steps, "--target", "vulkan"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains("P #1") && err.contains("`x`"), "{steps} steps: {err}");
    }
}

/// How many device kernels the GPU generator makes of an example: the step's and the laws'.
fn device_kernels(example: &str) -> usize {
    let path = root().join("examples").join(format!("{example}.aii"));
    let c = aiic_compiler::driver::compile_file(&path, &Default::default()).expect("readable");
    let m = c.module.expect("compiles");
    let code = aiic_compiler::backend::gpu::kernels::generate(&m, Default::default()).expect("device kernels");
    code.plan.kernels.len()
}

#[test]
fn emit_spirv_writes_binary_modules_and_spirv_asm_prints_them() {
    let o = aiic(&["emit", "examples/nbody.aii", "--target", "spirv"]);
    assert_eq!(o.status.code(), Some(1), "binary needs -o: {}", stderr(&o));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("spv");
    let o = aiic(&["emit", "examples/nbody.aii", "--target", "spirv", "-o", out.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let files: Vec<_> = std::fs::read_dir(&out).expect("dir").map(|e| e.expect("entry").path()).collect();
    assert_eq!(files.len(), device_kernels("nbody"), "{files:?}");
    assert!(files.iter().any(|f| f.ends_with("001_attract.spv")), "{files:?}");
    for f in files {
        let bytes = std::fs::read(&f).expect("read");
        assert_eq!(&bytes[..4], &0x0723_0203u32.to_le_bytes(), "{} starts with the SPIR-V magic", f.display());
    }
    let o = aiic(&["emit", "examples/nbody.aii", "--target", "spirv-asm"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("OpEntryPoint GLCompute") && text.contains("; kernel attract"), "{text}");
}

#[test]
fn an_artifact_with_spirv_runs_on_vulkan_like_its_source() {
    if !vulkan_present() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let art = dir.path().join("nbody.aiib");
    let o = aiic(&["build", "examples/nbody.aii", "-o", art.to_str().expect("utf8"), "--target", "all"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(art.join("vulkan")).expect("vulkan kernels").count(), device_kernels("nbody"));
    let run = |file: &str, out: &str| {
        let out = dir.path().join(out);
        let o = aiic(&["run", file, "--target", "vulkan", "--steps", "30", "--out", out.to_str().expect("utf8")]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        std::fs::read_to_string(out).expect("csv")
    };
    assert_eq!(run("examples/nbody.aii", "a.csv"), run(art.to_str().expect("utf8"), "b.csv"));
}

#[test]
fn emit_ptx_prints_one_module_and_build_stores_it() {
    let o = aiic(&["emit", "examples/lj_gas.aii", "--target", "ptx"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(".target sm_80") && text.contains(".visible .entry aiic_k0("), "{text}");
    assert!(text.contains("atom.global.add.u32"), "the neighbour grid is counted on the device: {text}");
    let dir = tempfile::tempdir().expect("tempdir");
    let art = dir.path().join("lj.aiib");
    let o = aiic(&["build", "examples/lj_gas.aii", "-o", art.to_str().expect("utf8"), "--target", "cuda"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let stored = std::fs::read_to_string(art.join("cuda/000_module.ptx")).expect("the PTX module");
    assert_eq!(stored, text, "the artifact holds what emit prints");
}

#[test]
fn cuda_without_a_driver_exits_3_with_the_reason() {
    let devices = aiic(&["devices"]);
    assert_eq!(devices.status.code(), Some(0), "aiic devices: {}", stderr(&devices));
    if devices.stdout.windows(15).any(|w| w == b"cuda     availa") {
        return eprintln!("skipped: this machine has a CUDA device");
    }
    let o = aiic(&["run", "examples/kepler.aii", "--target", "cuda"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("CUDA"), "{}", stderr(&o));
}

#[test]
fn emit_opencl_prints_one_program() {
    let o = aiic(&["emit", "examples/nbody.aii", "--target", "opencl"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("__kernel void aiic_k0(") && text.contains("__local float4 t4_0[WG];"), "{text}");
}

/// A program with a hosted model says so when it runs, and its artifact carries the model: the
/// artifact runs like the source without the model's file beside it.
#[test]
fn a_hosted_model_is_named_and_travels_in_the_artifact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let art = dir.path().join("hosted.aiib");
    let o = aiic(&["build", "tests/programs/hosted_field.aii", "-o", art.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(art.join("hosted_0.onnx").is_file(), "the model beside the manifest");
    let run = |file: &str, out: &str| {
        let out = dir.path().join(out);
        let args = ["run", file, "--target", "cpu", "--steps", "10", "--out", out.to_str().expect("utf8")];
        let o = aiic(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        (stderr(&o), std::fs::read_to_string(out).expect("csv"))
    };
    let (said, from_source) = run("tests/programs/hosted_field.aii", "a.csv");
    assert!(said.contains("model `field`") && said.contains("on the host"), "{said}");
    let (_, from_artifact) = run(art.to_str().expect("utf8"), "b.csv");
    assert_eq!(from_source, from_artifact);
    let graphs = dir.path().join("graphs");
    let o =
        aiic(&["emit", "tests/programs/hosted_field.aii", "--target", "onnx", "-o", graphs.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(graphs.join("hosted_0_field.onnx").is_file(), "the hosted model beside the kernels' graphs");
}
