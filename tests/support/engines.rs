//! The ONNX engines a test runs graphs on.
#![allow(dead_code)]

use super::require;
use aiic_runtime::onnx::engine::{ort_providers, Engine, OvDevice, Provider};

/// tract always; ONNX Runtime and OpenVINO on the CPU where their libraries are found (a failure
/// if `AIIC_TEST_REQUIRE` lists `onnxruntime` or `openvino`).
pub fn onnx_engines() -> Vec<Engine> {
    let mut engines = vec![Engine::Tract];
    match ort_providers() {
        Ok(_) => engines.push(Engine::Ort(Provider::Cpu)),
        Err(why) => require::skip("onnxruntime", why),
    }
    match aiic_runtime::onnx::openvino::devices() {
        Ok(d) if d.contains(&OvDevice::Cpu) => engines.push(Engine::OpenVino(OvDevice::Cpu)),
        Ok(_) => require::skip("openvino", "OpenVINO has no CPU device here"),
        Err(why) => require::skip("openvino", why),
    }
    engines
}
