//! Code generators, one module per target, each turning checked kernel IR into that target's code.

pub mod cpu;
pub mod gpu;
