//! aiic-compiler: from `.aii` source to checked kernel IR, and the reference interpreter.

pub mod backend;
pub mod diag;
pub mod driver;
pub mod ir;
pub mod lower;
pub mod passes;
pub mod sema;
pub mod source;
pub mod syntax;
