//! `aiic devices`: what this machine can run, and why the rest is missing.

use crate::exit;

pub fn run() -> u8 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let isa = match cranelift_native_probe() {
        Ok(name) => format!("available   Cranelift code for {name}, {cores} core{}", if cores == 1 { "" } else { "s" }),
        Err(e) => format!("unavailable {e}"),
    };
    println!("cpu      {isa}");
    println!("interp   available   reference interpreter (f64), every program");
    match aiic_runtime::vulkan::list_devices() {
        Ok(list) if !list.is_empty() => {
            for (n, d) in list.iter().enumerate() {
                let f64 = if d.f64 { "f64" } else { "no f64" };
                let slow = if d.is_cpu { "; runs on the CPU, slower than --target cpu" } else { "" };
                println!("vulkan   available   --device {n}: {} ({}, {}, {f64}{slow})", d.name, d.kind, d.api);
            }
        }
        Ok(_) => println!("vulkan   unavailable the Vulkan loader found no device"),
        Err(e) => println!("vulkan   unavailable {e}"),
    }
    match aiic_runtime::cuda::list_devices() {
        Ok(list) if !list.is_empty() => {
            for (n, d) in list.iter().enumerate() {
                println!(
                    "cuda     available   --device {n}: {} (compute {}.{}, {:.0} GiB)",
                    d.name, d.compute.0, d.compute.1, d.memory_gib
                );
            }
        }
        Ok(_) => println!("cuda     unavailable the CUDA driver found no device"),
        Err(e) => println!("cuda     unavailable {e}"),
    }
    match aiic_runtime::opencl::list_devices() {
        Ok(list) if !list.is_empty() => {
            for (n, d) in list.iter().enumerate() {
                let kind = if d.is_gpu { "GPU" } else { "not a GPU; slower than --target cpu" };
                println!("opencl   available   --device {n}: {} ({}, {}, {kind})", d.name, d.platform, d.version);
            }
        }
        Ok(_) => println!("opencl   unavailable the OpenCL runtime found no device"),
        Err(e) => println!("opencl   unavailable {e}"),
    }
    for (t, why) in [("rt", "not part of this build of aiic"), ("onnx", "not part of this build of aiic")] {
        println!("{t:<8} unavailable {why}");
    }
    exit::OK
}

/// Whether Cranelift supports this processor, and its name.
fn cranelift_native_probe() -> Result<String, String> {
    aiic_runtime::cpu::jit::compile(&[]).map(|_| std::env::consts::ARCH.to_string()).map_err(|e| e.to_string())
}
