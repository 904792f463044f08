//! The kernel IR. Its data types, verifier and reference interpreter live in the runtime
//! (`aiic_runtime::ir`), so that compiled artifacts carry it and any executor can read it; the
//! compiler builds it and prints it.

pub mod printer;

pub use aiic_runtime::ir::*;
pub use aiic_runtime::ir::{interp, verify};
