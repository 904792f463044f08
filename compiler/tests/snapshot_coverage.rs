//! Snapshot coverage, read from the snapshot tests themselves: every example has a snapshot test
//! for every kind of generated code, every test's snapshot is kept, and every kept snapshot is
//! written by a test (no stale file left behind by a renamed or removed test).

mod common;
use common::*;
use std::collections::BTreeSet;

/// Each folder of `snapshots/` and the test file that writes it.
const SUITES: &[(&str, &str)] = &[
    ("ir", "ir_snapshots.rs"),
    ("clif", "clif_snapshots.rs"),
    ("wgsl", "spirv.rs"),
    ("spirv", "spirv.rs"),
    ("ptx", "ptx.rs"),
    ("opencl", "opencl.rs"),
    ("onnx", "onnx.rs"),
];

/// The snapshot names a test file writes: the arguments of its `example_…!(…)` invocation and
/// the names given to `snapshot("…", …)` directly.
fn names_in(test_file: &str) -> BTreeSet<String> {
    let src = std::fs::read_to_string(root().join("compiler/tests").join(test_file)).expect("test file");
    let mut names = BTreeSet::new();
    for line in src.lines().map(str::trim) {
        if let Some(args) = line.strip_prefix("example_").and_then(|l| l.split_once("!(")).map(|(_, a)| a) {
            if !args.starts_with('$') {
                let args = args.trim_end_matches(';').trim_end_matches(')');
                names.extend(args.split(',').map(|n| n.trim().to_string()).filter(|n| !n.is_empty()));
            }
        }
        if let Some(rest) = line.strip_prefix("snapshot(\"").or_else(|| line.strip_prefix("snapshot_text(\"")) {
            names.insert(rest.split('"').next().expect("a name").to_string());
        }
    }
    names
}

fn kept_in(dir: &str) -> BTreeSet<String> {
    std::fs::read_dir(root().join("snapshots").join(dir))
        .expect("snapshot folder")
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "snap").then(|| p.file_stem()?.to_str().map(String::from))?
        })
        .collect()
}

fn examples() -> BTreeSet<String> {
    std::fs::read_dir(root().join("examples"))
        .expect("examples")
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "aii").then(|| p.file_stem()?.to_str().map(String::from))?
        })
        .collect()
}

/// Examples whose generated code is too large to review as a snapshot, and where the same kind
/// of code is snapshotted instead.
const UNREVIEWABLE: &[(&str, &str)] = &[(
    "learned_force",
    "its MLP is 6,336 multiply-adds per agent, unrolled in every scalar target; tests/programs/tensor_cores.aii has the same kinds of kernels at a reviewable size",
)];

#[test]
fn every_example_has_a_snapshot_test_of_every_kind_of_code() {
    let mut examples = examples();
    for (name, why) in UNREVIEWABLE {
        assert!(examples.remove(*name), "{name} is listed as too large to snapshot ({why}) but is no example");
    }
    assert_eq!(examples.iter().cloned().collect::<BTreeSet<_>>(), EXAMPLES.iter().map(|s| s.to_string()).collect());
    for (dir, file) in SUITES {
        let tested = names_in(file);
        let missing: Vec<&String> = examples.difference(&tested).collect();
        assert!(missing.is_empty(), "{file} has no snapshot test for {missing:?} (snapshots/{dir})");
    }
}

#[test]
fn every_snapshot_test_has_its_snapshot_and_every_snapshot_its_test() {
    for (dir, file) in SUITES {
        let (tested, kept) = (names_in(file), kept_in(dir));
        let unkept: Vec<&String> = tested.difference(&kept).collect();
        let stale: Vec<&String> = kept.difference(&tested).collect();
        assert!(unkept.is_empty(), "tests of {file} without a reviewed snapshot in snapshots/{dir}: {unkept:?}");
        assert!(stale.is_empty(), "snapshots/{dir} keeps files no test of {file} writes: {stale:?}");
    }
}
