//! Code generators, one module per target, each turning checked kernel IR into that target's code.

pub mod cpu;
mod cpu_tensor;
pub mod gpu;
pub mod onnx;
