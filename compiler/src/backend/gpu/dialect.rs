//! The spelling of the C-like GPU languages aiic writes (WGSL for SPIR-V, OpenCL C): the kernel
//! generator is written once against this trait.

use aiic_runtime::ir::{Scalar, UnOp};

/// A binding as a kernel declares it.
pub struct Binding {
    pub name: String,
    /// Element type (a device scalar; `U32` for the grid's and the sizes' words).
    pub elem: Scalar,
    /// Updated with atomic adds.
    pub atomic: bool,
    pub read_only: bool,
}

/// A workgroup-shared array of `wg()` elements of `lanes` (1 or 4) values of type `elem`.
pub struct Shared {
    pub name: String,
    pub elem: Scalar,
    pub lanes: u8,
}

impl Shared {
    pub fn bytes(&self) -> u32 {
        self.lanes as u32 * if self.elem == Scalar::F64 { 8 } else { 4 }
    }
}

pub trait Dialect {
    /// The type of a device scalar in registers (`Bool` included).
    fn ty(&self, s: Scalar) -> &'static str;
    fn float(&self, x: f64, s: Scalar) -> String;
    fn int(&self, x: i64) -> String;
    fn uint(&self, x: u64) -> String;
    fn bool(&self, b: bool) -> String {
        if b { "true" } else { "false" }.into()
    }
    /// An immutable local.
    fn let_(&self, name: &str, s: Scalar, e: &str) -> String;
    /// A mutable local.
    fn var(&self, name: &str, s: Scalar, e: &str) -> String;
    /// A mutable local array of `u32` (bucket lists of the neighbour search).
    fn var_array_u32(&self, name: &str, len: usize) -> String;
    fn select(&self, cond: &str, t: &str, f: &str) -> String;
    fn cast(&self, to: Scalar, x: &str) -> String;
    fn unary(&self, op: UnOp, s: Scalar, x: &str) -> String;
    fn pow(&self, x: &str, y: &str) -> String;
    /// Remainder of floats, truncating (C's `fmod`).
    fn fmod(&self, x: &str, y: &str) -> String;
    fn and(&self) -> &'static str;
    fn or(&self) -> &'static str;
    /// `buf[idx] += v` atomically, for `u32` buffers; the expression's value is the old value.
    fn atomic_add(&self, buf: &str, idx: &str, v: &str) -> String;
    /// A plain read of an atomic `u32` buffer.
    fn atomic_load(&self, buf: &str, idx: &str) -> String;
    fn atomic_store(&self, buf: &str, idx: &str, v: &str) -> String;
    fn barrier(&self) -> &'static str;
    /// The workgroup size: a compile-time constant of the kernel, set when the device is known.
    fn wg(&self) -> String;
    /// Four f32 values as one vector, whose lanes read as `.x`, `.y`, `.z`, `.w`.
    fn vec4(&self, parts: &[String; 4]) -> String;
    /// A whole kernel: its bindings, workgroup-shared arrays of `wg()` elements, and a body that
    /// may use `gid`, `lid` and `grp` (the global, local and workgroup index, `u32`).
    fn kernel(&self, name: &str, bindings: &[Binding], shared: &[Shared], body: &str) -> String;
}
