//! Passes over the kernel IR.

pub mod force;
pub mod simplify;
