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
    graph_engines();
    println!("{:<8} unavailable not part of this build of aiic", "rt");
    exit::OK
}

/// ONNX engines: tract always; ONNX Runtime's execution providers and OpenVINO's devices where
/// their libraries are installed, each missing one with why; and the NPU `--target npu` takes.
fn graph_engines() {
    use aiic_runtime::onnx::engine::{ort_library, Available, OvDevice, Provider};
    use aiic_runtime::onnx::openvino;
    let found = Available::probe();
    println!("{:<8} available   --target onnx:tract (in-process, every program)", "onnx");
    match &found.ort {
        Ok(have) => {
            let lib = ort_library().map(|p| p.display().to_string()).unwrap_or_default();
            for p in Provider::ALL {
                let t = format!("--target onnx:{}", p.name());
                if have.contains(&p) {
                    println!("{:<8} available   {t} ({}, {lib})", "onnx", p.ort_name());
                } else {
                    println!("{:<8} unavailable {t}: this ONNX Runtime was built without {}", "onnx", p.ort_name());
                }
            }
        }
        Err(e) => println!("{:<8} unavailable ONNX Runtime: {e}", "onnx"),
    }
    match &found.openvino {
        Ok(have) => {
            let lib = openvino::library().map(|p| p.display().to_string()).unwrap_or_default();
            for d in OvDevice::ALL {
                let t = format!("--target openvino:{}", d.name());
                if have.contains(&d) {
                    println!("{:<8} available   {t} ({lib})", "openvino");
                } else {
                    println!("{:<8} unavailable {t}: OpenVINO found no {} device", "openvino", d.name());
                }
            }
        }
        Err(e) => println!("{:<8} unavailable {e}", "openvino"),
    }
    match found.npu() {
        Some(engine) => println!("{:<8} available   --target npu runs on {}", "npu", engine.name()),
        None => println!("{:<8} unavailable {}", "npu", found.no_npu()),
    }
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
