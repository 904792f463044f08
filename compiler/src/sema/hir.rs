//! The checked program: names resolved, types known, functions and potentials inlined at their
//! call sites (so generic stdlib bodies are checked once per use), constants folded.

use super::types::{AgentId, Ty};
use crate::source::Span;
use crate::syntax::ast::{BinOp, UnOp};
use std::path::PathBuf;

pub use crate::syntax::ast::AssignOp;

pub type FieldId = usize;
pub type LocalId = usize;
pub type ParamId = usize;
pub type InteractionId = usize;
/// Which agent of the kernel a field access reads: 0 is the first binder (`a`), 1 the second.
pub type Slot = u8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Property,
    State,
    Accum,
    Derive,
}

#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub kind: FieldKind,
    pub ty: Ty,
    /// The expression of a `derive` field, over slot 0.
    pub derive: Option<HExpr>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Agent {
    pub name: String,
    pub fields: Vec<Field>,
    pub span: Span,
}

impl Agent {
    pub fn field(&self, name: &str) -> Option<FieldId> {
        self.fields.iter().position(|f| f.name == name)
    }
}

/// A compile-time value: the lanes of a constant, in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct ConstValue {
    pub ty: Ty,
    pub lanes: Vec<f64>,
}

#[derive(Debug, Clone)]
pub struct Const {
    pub name: String,
    pub value: ConstValue,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub ty: Ty,
    /// None for tensor parameters loaded from files, which no executor runs yet.
    pub default: Option<ConstValue>,
    pub source: Option<PathBuf>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    pub span: Span,
    /// `mlp(W1, b1, W2, b2, …, act: f)`, or an `onnx(…)` model read as one; `None` where the
    /// model's file does not exist (yet).
    pub mlp: Option<Mlp>,
    /// An `onnx(…)` model that is not a chain of dense layers: it runs as it is.
    pub hosted: Option<HostedOnnx>,
}

/// An ONNX model aiic runs as it is, through an ONNX engine on the host (see
/// `ir::HostedModel`): one f32 input `[agents, inputs]`, one f32 output `[agents, outputs]`.
#[derive(Debug, Clone)]
pub struct HostedOnnx {
    pub file: String,
    pub bytes: Vec<u8>,
    pub inputs: u32,
    pub outputs: u32,
    pub batch: u32,
    /// Why it was not read into an `mlp`.
    pub reason: String,
}

/// A multilayer perceptron over tensor parameters: `h = W @ h + b` per layer (parameter
/// indices), the activation after every layer but the last.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub layers: Vec<(ParamId, ParamId)>,
    pub act: Activation,
    pub inputs: u32,
    pub outputs: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Tanh,
    Relu,
    Sigmoid,
    /// The tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
    Gelu,
    Silu,
}

impl Activation {
    pub fn from_name(n: &str) -> Option<Self> {
        Some(match n {
            "tanh" => Activation::Tanh,
            "relu" => Activation::Relu,
            "sigmoid" => Activation::Sigmoid,
            "gelu" => Activation::Gelu,
            "silu" => Activation::Silu,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Builtin {
    Sqrt,
    Rsqrt,
    Abs,
    Exp,
    Log,
    Sin,
    Cos,
    Tanh,
    Floor,
    Pow,
    Min,
    Max,
    Clamp,
    Select,
    Dot,
    Cross,
    Length,
    Length2,
    Normalize,
    Distance,
    Distance2,
    Reflect,
    Transpose,
    /// `vecN(...)`, `matN(...)`: builds the node's type from scalars, vectors or one splatted scalar.
    Construct,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RandFn {
    Uniform,
    Normal,
    InSphere,
    InBox,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    Sum,
    Pairs,
}

#[derive(Debug, Clone)]
pub struct HExpr {
    pub kind: HKind,
    pub ty: Ty,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum HKind {
    Lit(f64),
    Param(ParamId),
    Local(LocalId),
    Field {
        slot: Slot,
        field: FieldId,
    },
    Unary(UnOp, Box<HExpr>),
    Binary(BinOp, Box<HExpr>, Box<HExpr>),
    Call(Builtin, Vec<HExpr>),
    Cast(Box<HExpr>),
    /// Lane `i` of a vector, or element `i` of a tuple.
    Get(Box<HExpr>, usize),
    Tuple(Vec<HExpr>),
    If {
        cond: Box<HExpr>,
        then: Box<HExpr>,
        els: Box<HExpr>,
    },
    Block(Box<HBlock>),
    /// `force(U, a, b)`: −∇ of `energy` (U inlined over these slots) with respect to the
    /// position of the agent in `wrt`.
    Force {
        energy: Box<HExpr>,
        wrt: Slot,
        position: FieldId,
    },
    Rand(RandFn, Vec<HExpr>),
    /// The spawn index of the agent being initialised.
    SpawnIndex,
    /// The number of agents the current spawn creates.
    SpawnCount,
    /// A reduction over agents (`sum`) or unordered pairs (`pairs`); the body reads slots 0 (and 1).
    Quant {
        q: Quant,
        agents: Vec<AgentId>,
        body: Box<HExpr>,
    },
    /// Calls into models that do not run yet (`onnx`): checked, not executed.
    Opaque(&'static str, Vec<HExpr>),
    /// A call of `mlp` model `usize` on its arguments, concatenated.
    ModelCall(usize, Vec<HExpr>),
    /// An agent bound in the enclosing kernel, passed to a potential or function.
    AgentRef(Slot),
}

#[derive(Debug, Clone)]
pub struct HBlock {
    pub stmts: Vec<HStmt>,
    pub tail: Option<HExpr>,
}

#[derive(Debug, Clone)]
pub enum Place {
    Local(LocalId),
    Field { slot: Slot, field: FieldId },
}

// Statements are built once per program and never stored in bulk; boxing would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum HStmt {
    Let {
        locals: Vec<LocalId>,
        value: HExpr,
    },
    Assign {
        place: Place,
        lane: Option<usize>,
        op: AssignOp,
        value: HExpr,
        span: Span,
    },
    If {
        cond: HExpr,
        then: HBlock,
        els: HBlock,
        span: Span,
    },
    /// The force pass inside an integrator body.
    Forces(Span),
}

/// A statement or an expression met by [`HStmt::walk`] and [`HExpr::walk`].
#[derive(Clone, Copy)]
pub enum Node<'a> {
    Stmt(&'a HStmt),
    Expr(&'a HExpr),
}

impl HBlock {
    /// Visits every statement of the block, then its value, each with all it contains.
    pub fn walk<'a>(&'a self, f: &mut dyn FnMut(Node<'a>)) {
        for s in &self.stmts {
            s.walk(f);
        }
        if let Some(t) = &self.tail {
            t.walk(f);
        }
    }
}

impl HStmt {
    /// Visits this statement, then every statement and expression inside it, outermost first.
    pub fn walk<'a>(&'a self, f: &mut dyn FnMut(Node<'a>)) {
        f(Node::Stmt(self));
        match self {
            HStmt::Let { value, .. } | HStmt::Assign { value, .. } => value.walk(f),
            HStmt::If { cond, then, els, .. } => {
                cond.walk(f);
                then.walk(f);
                els.walk(f);
            }
            HStmt::Forces(_) => {}
        }
    }
}

impl HExpr {
    /// Visits this expression, then every statement and expression inside it, outermost first.
    pub fn walk<'a>(&'a self, f: &mut dyn FnMut(Node<'a>)) {
        f(Node::Expr(self));
        match &self.kind {
            HKind::Unary(_, x) | HKind::Cast(x) | HKind::Get(x, _) => x.walk(f),
            HKind::Binary(_, a, b) => {
                a.walk(f);
                b.walk(f);
            }
            HKind::Call(_, xs)
            | HKind::Tuple(xs)
            | HKind::Rand(_, xs)
            | HKind::Opaque(_, xs)
            | HKind::ModelCall(_, xs) => xs.iter().for_each(|x| x.walk(f)),
            HKind::If { cond, then, els } => {
                cond.walk(f);
                then.walk(f);
                els.walk(f);
            }
            HKind::Block(b) => b.walk(f),
            HKind::Force { energy, .. } => energy.walk(f),
            HKind::Quant { body, .. } => body.walk(f),
            _ => {}
        }
    }
}

#[derive(Debug, Clone)]
pub struct Local {
    pub name: String,
    pub ty: Ty,
}

#[derive(Debug, Clone)]
pub enum InteractionKind {
    Each,
    Pairs,
    Within { radius: HExpr, bound: f64 },
}

#[derive(Debug, Clone)]
pub struct Interaction {
    pub name: String,
    pub agents: Vec<AgentId>,
    pub kind: InteractionKind,
    pub external: bool,
    pub body: HBlock,
    pub locals: Vec<Local>,
    pub hints: Hints,
    pub span: Span,
}

/// `@accel(...)` and `@precision(...)` of an interaction.
#[derive(Debug, Clone, Default)]
pub struct Hints {
    pub accel: Option<String>,
    pub precision: Option<aiic_runtime::ir::Precision>,
    pub tolerance: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Law {
    pub name: String,
    pub ty: Ty,
    pub value: HExpr,
    pub locals: Vec<Local>,
    pub tolerance: Option<f64>,
    pub assume: bool,
    pub span: Span,
}

/// An integrator specialised to one agent type and one call site.
#[derive(Debug, Clone)]
pub struct IntegratorUse {
    pub integrator: String,
    pub symplectic: bool,
    pub agent: AgentId,
    /// Each role alias of the integrator (`x`, `v`, `f`, `m`) and the field it advances here.
    pub roles: Vec<(String, FieldId)>,
    /// Statements over slot 0; `Forces` marks where the force pass runs.
    pub body: HBlock,
    pub locals: Vec<Local>,
}

#[derive(Debug, Clone)]
pub enum StepItem {
    Run(InteractionId, Span),
    Integrate { uses: Vec<IntegratorUse>, forces: Vec<InteractionId>, span: Span },
}

#[derive(Debug, Clone)]
pub struct SpawnField {
    pub field: FieldId,
    pub value: HExpr,
}

#[derive(Debug, Clone)]
pub struct Spawn {
    pub agent: AgentId,
    pub count: u64,
    /// Resolved path of the CSV or npy file to read agents from.
    pub from: Option<PathBuf>,
    pub fields: Vec<SpawnField>,
    /// The `init` block's `let`s, evaluated per spawned agent before its fields.
    pub prelude: Vec<HStmt>,
    pub locals: Vec<Local>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Program {
    pub name: String,
    pub consts: Vec<Const>,
    pub params: Vec<Param>,
    pub agents: Vec<Agent>,
    pub models: Vec<Model>,
    pub interactions: Vec<Interaction>,
    pub laws: Vec<Law>,
    pub step: Vec<StepItem>,
    pub spawns: Vec<Spawn>,
}
