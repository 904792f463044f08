//! Names, types and the checked program (HIR).

mod body;
pub mod check;
pub mod hir;
pub mod loader;
mod onnx_import;
mod scope;
pub mod types;

pub use check::{check_program, CheckOptions};
