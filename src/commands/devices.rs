//! `aiic devices`: what this machine can run, and why the rest is missing.

use crate::exit;
use aiic_runtime::probe::Probe;

pub fn run() -> u8 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let isa = match cranelift_native_probe() {
        Ok(name) => format!("available   Cranelift code for {name}, {cores} core{}", if cores == 1 { "" } else { "s" }),
        Err(e) => format!("unavailable {e}"),
    };
    println!("cpu      {isa}");
    println!("interp   available   reference interpreter (f64), every program");
    show("vulkan", aiic_runtime::vulkan::probe(), |d| {
        let f64 = if d.f64 { "f64" } else { "no f64" };
        let slow = if d.is_cpu { "; runs on the CPU, slower than --target cpu" } else { "" };
        format!("{} ({}, {}, {f64}{slow})", d.name, d.kind, d.api)
    });
    show("cuda", aiic_runtime::cuda::probe(), |d| {
        format!("{} (compute {}.{}, {:.0} GiB)", d.name, d.compute.0, d.compute.1, d.memory_gib)
    });
    show("opencl", aiic_runtime::opencl::probe(), |d| {
        let kind = if d.is_gpu { "GPU" } else { "not a GPU; slower than --target cpu" };
        format!("{} ({}, {}, {kind})", d.name, d.platform, d.version)
    });
    for (t, why) in [("rt", "not part of this build of aiic"), ("onnx", "not part of this build of aiic")] {
        println!("{t:<8} unavailable {why}");
    }
    exit::OK
}

/// One line per device, or one saying why there is none: `unavailable` when the backend is not
/// installed here, `failed` when an installed loader or driver gave an error.
fn show<T>(target: &str, probe: Probe<T>, describe: impl Fn(&T) -> String) {
    match probe {
        Probe::Found(list) => {
            for (n, d) in list.iter().enumerate() {
                println!("{target:<8} available   --device {n}: {}", describe(d));
            }
        }
        Probe::Absent(why) => println!("{target:<8} unavailable {why}"),
        Probe::Broken(err) => println!("{target:<8} failed      {err}"),
    }
}

/// Whether Cranelift supports this processor, and its name.
fn cranelift_native_probe() -> Result<String, String> {
    aiic_runtime::cpu::jit::compile(&[]).map(|_| std::env::consts::ARCH.to_string()).map_err(|e| e.to_string())
}
