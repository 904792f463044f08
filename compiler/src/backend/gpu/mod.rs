//! GPU code generators. `kernels` turns a module's step into device kernels written against the
//! `dialect` of a C-like GPU language; `wgsl` is one such dialect, and `spirv` takes its output
//! through naga to SPIR-V for Vulkan.

pub mod ast;
pub mod body;
pub mod coop;
pub mod dialect;
pub mod gemm;
pub mod kernels;
pub mod mma;
pub mod opencl;
pub mod ptx;
pub mod spirv;
pub mod spirv_asm;
pub mod wgsl;
