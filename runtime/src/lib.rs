//! aiic-runtime: what a compiled simulation needs at run time, independent of the compiler.

pub mod artifact;
pub mod backend;
pub mod cpu;
pub mod cuda;
pub mod gpu;
pub mod grid;
pub mod host;
pub mod input;
pub mod ir;
pub mod monitor;
pub mod onnx;
pub mod opencl;
pub mod output;
pub mod plot;
pub mod probe;
pub mod sum;
pub mod vulkan;
pub mod world;

pub use world::{AgentData, AgentSchema, FieldKind, FieldSchema, World};
