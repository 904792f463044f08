//! The CPU executor: kernels generated as Cranelift IR, compiled in memory at load, and run on
//! all cores.

pub mod abi;
pub mod exec;
pub mod jit;
