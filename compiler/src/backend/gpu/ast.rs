//! Device kernels as a small structured program (expressions, statements, loops, barriers),
//! built once by `kernels.rs` and then printed as WGSL or OpenCL C, or lowered to PTX.

use aiic_runtime::ir::{Scalar, UnOp};

/// Binary operators of device code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bo {
    Add,
    Sub,
    Mul,
    /// Float division, or integer division (the generator guards the divisor).
    Div,
    /// Integer remainder.
    Rem,
    /// Float remainder, truncating (C's `fmod`).
    FMod,
    Pow,
    Min,
    Max,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// Logical on booleans.
    And,
    Or,
    /// Bitwise on `u32`.
    BitAnd,
    BitXor,
}

impl Bo {
    pub fn is_comparison(self) -> bool {
        matches!(self, Bo::Eq | Bo::Ne | Bo::Lt | Bo::Le | Bo::Gt | Bo::Ge)
    }
}

/// An expression; its type follows from its parts (see [`Types`]).
#[derive(Debug, Clone, PartialEq)]
pub enum E {
    /// A float literal of type `F32` or `F64`.
    F(f64, Scalar),
    I(i64),
    U(u64),
    B(bool),
    /// The workgroup size (a constant of the compiled kernel).
    Wg,
    /// The thread's global, local and workgroup index.
    Gid,
    Lid,
    Grp,
    Var(String),
    /// A unary operation on a value of the given type.
    Un(UnOp, Scalar, Box<E>),
    Bin(Bo, Box<E>, Box<E>),
    /// `cond ? t : f`.
    Sel(Box<E>, Box<E>, Box<E>),
    /// Numeric conversion (float to integer truncates; `i32` to `u32` keeps the bits).
    Cast(Scalar, Box<E>),
    /// Element of a buffer.
    Ld(String, Box<E>),
    /// Element of a workgroup array, or one lane of a `vec4` element.
    Sh(String, Box<E>, Option<u8>),
    /// Element of a thread's local array of this type (`u32` or `f32`).
    Arr(String, Scalar, Box<E>),
    /// Adds to an element of an atomic `u32` buffer; the value is the element's old value.
    AtomicAdd(String, Box<E>, Box<E>),
    AtomicLoad(String, Box<E>),
    /// Four f32 values as one vector.
    Vec4(Vec<E>),
}

/// A statement.
#[derive(Debug, Clone, PartialEq)]
pub enum S {
    Let(String, Scalar, E),
    Var(String, Scalar, E),
    Set(String, E),
    Store(String, E, E),
    ShStore(String, E, E),
    AtomicStore(String, E, E),
    /// A thread-local array of `u32` or `f32`.
    Array(String, Scalar, usize),
    ArrStore(String, E, E),
    If(E, Vec<S>, Vec<S>),
    While(E, Vec<S>),
    Block(Vec<S>),
    Barrier,
}

/// A buffer as a kernel binds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub name: String,
    /// Element type (a device scalar; `U32` for the grid's and the sizes' words).
    pub elem: Scalar,
    /// Updated with atomic adds.
    pub atomic: bool,
    pub read_only: bool,
}

/// A workgroup-shared array of `wg` elements of `lanes` (1 or 4) values of type `elem`.
#[derive(Debug, Clone, PartialEq)]
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

/// A whole device kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    pub name: String,
    pub bindings: Vec<Binding>,
    pub shared: Vec<Shared>,
    pub body: Vec<S>,
    /// Float arithmetic must be computed as written (no fused or reordered operations):
    /// compensated updates depend on it.
    pub exact: bool,
    /// A tensor-core kernel, which only the PTX target writes (its `body` is empty).
    pub mma: Option<super::mma::MmaKernel>,
    /// A tensor-core GEMM or the f16 copy it reads, which only the PTX target writes.
    pub gemm: Option<super::gemm::GemmCode>,
}

// Constructors that keep the generator readable.
pub fn var(n: &str) -> E {
    E::Var(n.to_string())
}
pub fn u(x: u64) -> E {
    E::U(x)
}
pub fn bin(op: Bo, a: E, b: E) -> E {
    E::Bin(op, Box::new(a), Box::new(b))
}
pub fn add(a: E, b: E) -> E {
    bin(Bo::Add, a, b)
}
pub fn sub(a: E, b: E) -> E {
    bin(Bo::Sub, a, b)
}
pub fn mul(a: E, b: E) -> E {
    bin(Bo::Mul, a, b)
}
pub fn lt(a: E, b: E) -> E {
    bin(Bo::Lt, a, b)
}
pub fn ld(buf: &str, idx: E) -> E {
    E::Ld(buf.to_string(), Box::new(idx))
}
pub fn cast(to: Scalar, x: E) -> E {
    E::Cast(to, Box::new(x))
}
pub fn sel(c: E, t: E, f: E) -> E {
    E::Sel(Box::new(c), Box::new(t), Box::new(f))
}
pub fn let_(n: &str, t: Scalar, e: E) -> S {
    S::Let(n.to_string(), t, e)
}
pub fn var_(n: &str, t: Scalar, e: E) -> S {
    S::Var(n.to_string(), t, e)
}
pub fn set(n: &str, e: E) -> S {
    S::Set(n.to_string(), e)
}
pub fn store(buf: &str, idx: E, e: E) -> S {
    S::Store(buf.to_string(), idx, e)
}
/// `n = n + step`.
pub fn incr(n: &str, step: E) -> S {
    set(n, add(var(n), step))
}

/// The types of the names a kernel declares, for lowering that needs every value's type.
pub struct Types<'a> {
    pub kernel: &'a Kernel,
    scopes: Vec<Vec<(String, Scalar)>>,
}

impl<'a> Types<'a> {
    pub fn new(kernel: &'a Kernel) -> Self {
        Types { kernel, scopes: vec![Vec::new()] }
    }
    pub fn push(&mut self) {
        self.scopes.push(Vec::new());
    }
    pub fn pop(&mut self) {
        self.scopes.pop();
    }
    pub fn declare(&mut self, n: &str, t: Scalar) {
        if let Some(s) = self.scopes.last_mut() {
            s.push((n.to_string(), t));
        }
    }
    pub fn var(&self, n: &str) -> Scalar {
        self.scopes.iter().rev().flat_map(|s| s.iter().rev()).find(|(m, _)| m == n).map_or(Scalar::U32, |(_, t)| *t)
    }
    fn buffer(&self, n: &str) -> Scalar {
        self.kernel.bindings.iter().find(|b| b.name == n).map_or(Scalar::U32, |b| b.elem)
    }
    fn shared(&self, n: &str) -> Scalar {
        self.kernel.shared.iter().find(|s| s.name == n).map_or(Scalar::U32, |s| s.elem)
    }

    /// The type of an expression (`vec4` values report their lane type).
    pub fn of(&self, e: &E) -> Scalar {
        match e {
            E::F(_, s) => *s,
            E::I(_) => Scalar::I32,
            E::Arr(_, s, _) => *s,
            E::U(_) | E::Wg | E::Gid | E::Lid | E::Grp | E::AtomicAdd(..) | E::AtomicLoad(..) => Scalar::U32,
            E::B(_) => Scalar::Bool,
            E::Var(n) => self.var(n),
            E::Un(UnOp::Not, _, _) => Scalar::Bool,
            E::Un(_, s, _) => *s,
            E::Bin(op, a, _) if op.is_comparison() => {
                let _ = a;
                Scalar::Bool
            }
            E::Bin(_, a, _) => self.of(a),
            E::Sel(_, t, _) => self.of(t),
            E::Cast(s, _) => *s,
            E::Ld(b, _) => self.buffer(b),
            E::Sh(n, _, _) => self.shared(n),
            E::Vec4(_) => Scalar::F32,
        }
    }
}
