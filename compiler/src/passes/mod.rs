//! Passes over the kernel IR.

pub mod canon;
pub mod conserve;
pub mod force;
pub mod measure;
pub mod simplify;
