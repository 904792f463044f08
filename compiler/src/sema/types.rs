//! The types of checked programs.

use std::fmt;

pub use aiic_runtime::ir::Scalar;

pub type AgentId = usize;

#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    Scalar(Scalar),
    /// An unsuffixed literal such as `2`, which takes the numeric type its context asks for.
    IntLit,
    /// An unsuffixed literal such as `0.5`, which takes the float type its context asks for.
    FloatLit,
    /// `vec2`..`vec4` and `vec<T, N>`.
    Vec(Scalar, u32),
    /// Square `matN` of f32.
    Mat(u32),
    Tensor(Scalar, Vec<u32>),
    Tuple(Vec<Ty>),
    Agent(AgentId),
    Str,
    Model,
    Unit,
    /// The type of an expression that already produced a diagnostic; silences follow-up errors.
    Error,
}

pub const F32: Ty = Ty::Scalar(Scalar::F32);
pub const BOOL: Ty = Ty::Scalar(Scalar::Bool);
pub const I32: Ty = Ty::Scalar(Scalar::I32);

impl Ty {
    pub fn vec(n: u32) -> Ty {
        Ty::Vec(Scalar::F32, n)
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Ty::Error)
    }

    pub fn is_numeric_scalar(&self) -> bool {
        match self {
            Ty::Scalar(s) => *s != Scalar::Bool,
            Ty::IntLit | Ty::FloatLit => true,
            _ => false,
        }
    }

    pub fn is_float_scalar(&self) -> bool {
        matches!(self, Ty::Scalar(s) if s.is_float()) || matches!(self, Ty::FloatLit | Ty::IntLit)
    }

    pub fn is_bool(&self) -> bool {
        matches!(self, Ty::Scalar(Scalar::Bool))
    }

    /// Literal types settle on their default: `f32` (the language's default precision).
    pub fn settled(&self) -> Ty {
        match self {
            Ty::IntLit | Ty::FloatLit => F32,
            Ty::Tuple(ts) => Ty::Tuple(ts.iter().map(Ty::settled).collect()),
            t => t.clone(),
        }
    }

    /// Number of scalar lanes the value occupies once lowered.
    pub fn lanes(&self) -> usize {
        match self {
            Ty::Scalar(_) | Ty::IntLit | Ty::FloatLit => 1,
            Ty::Vec(_, n) => *n as usize,
            Ty::Mat(n) => (*n * *n) as usize,
            Ty::Tensor(_, dims) => dims.iter().product::<u32>() as usize,
            Ty::Tuple(ts) => ts.iter().map(Ty::lanes).sum(),
            _ => 0,
        }
    }

    /// The scalar type of each lane.
    pub fn elem(&self) -> Scalar {
        match self {
            Ty::Scalar(s) | Ty::Vec(s, _) | Ty::Tensor(s, _) => *s,
            _ => Scalar::F32,
        }
    }

    /// Whether a value of type `self` may be used where `want` is expected (literals adapt).
    pub fn fits(&self, want: &Ty) -> bool {
        if self == want || self.is_error() || want.is_error() {
            return true;
        }
        match (self, want) {
            (Ty::IntLit, Ty::Scalar(s)) => *s != Scalar::Bool,
            (Ty::FloatLit, Ty::Scalar(s)) => s.is_float(),
            (Ty::Tuple(a), Ty::Tuple(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.fits(y)),
            _ => false,
        }
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Scalar(s) => write!(f, "{}", s.name()),
            Ty::IntLit => write!(f, "{{integer}}"),
            Ty::FloatLit => write!(f, "{{float}}"),
            Ty::Vec(Scalar::F32, n @ 2..=4) => write!(f, "vec{n}"),
            Ty::Vec(s, n) => write!(f, "vec<{}, {n}>", s.name()),
            Ty::Mat(n) => write!(f, "mat{n}"),
            Ty::Tensor(s, dims) => {
                let d: Vec<String> = dims.iter().map(u32::to_string).collect();
                write!(f, "tensor<{}>[{}]", s.name(), d.join(", "))
            }
            Ty::Tuple(ts) => {
                let d: Vec<String> = ts.iter().map(Ty::to_string).collect();
                write!(f, "({})", d.join(", "))
            }
            Ty::Agent(_) => write!(f, "agent"),
            Ty::Str => write!(f, "string"),
            Ty::Model => write!(f, "model"),
            Ty::Unit => write!(f, "()"),
            Ty::Error => write!(f, "{{error}}"),
        }
    }
}
