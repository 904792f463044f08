//! Hardware and tool requirements of tests.
//!
//! A test that needs something this machine may lack (a GPU runtime, `ptxas`, a validation layer)
//! skips with the reason printed, unless that thing is listed in `AIIC_TEST_REQUIRE`
//! (comma-separated): then its absence fails the test. CI lists what it installs, so a runtime
//! that stops working there fails the run instead of passing as "skipped".
#![allow(dead_code)]

/// Every name `AIIC_TEST_REQUIRE` may list.
pub const KNOWN: &[&str] = &[
    "vulkan",
    "vulkan-coop",
    "opencl",
    "cuda",
    "ptxas",
    "spirv-val",
    "spirv-val-coop",
    "validation",
    "onnxruntime",
    "openvino",
    "onnx-checker",
];

/// The requirements listed in `AIIC_TEST_REQUIRE`; a name that is not known fails, so that a typo
/// cannot quietly turn a requirement off.
pub fn listed() -> Vec<String> {
    let value = std::env::var("AIIC_TEST_REQUIRE").unwrap_or_default();
    let names: Vec<String> = value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    for n in &names {
        assert!(KNOWN.contains(&n.as_str()), "AIIC_TEST_REQUIRE names `{n}`, which is none of {KNOWN:?}");
    }
    names
}

/// Whether `what` must be present on this machine.
pub fn required(what: &str) -> bool {
    assert!(KNOWN.contains(&what), "`{what}` is not a known requirement");
    listed().iter().any(|n| n == what)
}

/// Says why a test of `what` checks nothing here, or fails when `what` is required.
pub fn skip(what: &str, reason: impl std::fmt::Display) {
    if required(what) {
        panic!("`{what}` is required (AIIC_TEST_REQUIRE) but absent: {reason}");
    }
    eprintln!("skipped: {reason} (set AIIC_TEST_REQUIRE={what} to make this a failure)");
}

/// Device tests run one at a time: Mesa's lavapipe and PoCL each bring an LLVM into this one
/// process, and compiling on both at once from two threads crashes.
pub fn one_device_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The name of the first device a probe found, or why there is none.
pub fn device<T>(
    what: &str,
    probe: impl FnOnce() -> aiic_runtime::probe::Probe<T>,
    name: impl Fn(&T) -> String,
) -> Option<String> {
    use aiic_runtime::probe::Probe;
    listed();
    match probe() {
        Probe::Found(list) => Some(name(&list[0])),
        Probe::Absent(why) => {
            skip(what, why);
            None
        }
        Probe::Broken(err) => panic!("{what} is installed but listing its devices failed: {err}"),
    }
}
