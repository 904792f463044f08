//! The syntax tree: what the user wrote, with spans, before names or types are known.

use crate::source::Span;

#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct File {
    pub uses: Vec<Use>,
    pub systems: Vec<System>,
    /// Items outside any system: how stdlib modules define potentials, functions and integrators.
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Use {
    /// `std::potentials` for `use std::potentials::{gravity}`.
    pub path: Vec<Ident>,
    /// Empty means `*`.
    pub names: Vec<Ident>,
    pub glob: bool,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct System {
    pub name: Ident,
    pub items: Vec<Item>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    pub name: Ident,
    pub args: Vec<Arg>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub annotations: Vec<Annotation>,
    pub kind: ItemKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ItemKind {
    Const(ValueDecl),
    Param(ValueDecl),
    Agent(AgentDecl),
    Potential(FnDecl),
    Fn(FnDecl),
    Interaction(InteractionDecl),
    Integrator(IntegratorDecl),
    Conserve(ConserveDecl),
    Model(ModelDecl),
    Step(Vec<StepStmt>),
    Init(Vec<InitStmt>),
    /// A stretch the parser skipped after a syntax error.
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValueDecl {
    pub name: Ident,
    pub ty: TypeExpr,
    pub value: Expr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Property,
    State,
    Accum,
    Derive,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldDecl {
    pub kind: FieldKind,
    pub name: Ident,
    pub ty: TypeExpr,
    pub value: Option<Expr>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentDecl {
    pub name: Ident,
    pub fields: Vec<FieldDecl>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParamDecl {
    pub name: Ident,
    pub ty: TypeExpr,
}

/// `fn` and `potential` share a shape.
#[derive(Debug, Clone, PartialEq)]
pub struct FnDecl {
    pub name: Ident,
    pub params: Vec<ParamDecl>,
    pub ret: Option<TypeExpr>,
    pub body: Block,
}

#[derive(Debug, Clone, PartialEq)]
pub enum InteractionKind {
    Each,
    Pairs,
    Within { radius: Box<Expr>, max: Option<Box<Expr>> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct InteractionDecl {
    pub name: Ident,
    pub params: Vec<ParamDecl>,
    pub kind: InteractionKind,
    pub kind_span: Span,
    pub external: bool,
    pub body: Block,
}

/// `integrate NAME(params) on (alias: field, ...) { body }` at a module's top level.
#[derive(Debug, Clone, PartialEq)]
pub struct IntegratorDecl {
    pub name: Ident,
    pub params: Vec<ParamDecl>,
    pub fields: Vec<(Ident, Ident)>,
    pub body: Block,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConserveDecl {
    pub name: Ident,
    pub ty: TypeExpr,
    pub value: Expr,
    pub tolerance: Option<Expr>,
    pub assume: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelDecl {
    pub name: Ident,
    pub value: Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepStmt {
    Run(Ident),
    Integrate { integrator: Ident, args: Vec<Expr>, on: Option<Vec<Ident>>, body: Vec<Ident>, span: Span },
}

#[derive(Debug, Clone, PartialEq)]
pub enum InitStmt {
    Spawn(Spawn),
    Let { name: Ident, ty: Option<TypeExpr>, value: Expr },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Spawn {
    pub agent: Ident,
    pub count: Option<Expr>,
    pub from: Option<(String, Span)>,
    pub fields: Vec<(Ident, Expr)>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TypeExpr {
    /// `f32`, `vec3`, `Body`, ...
    Named(Ident),
    /// `agent` in a stdlib signature: any agent type that has the fields the body uses.
    AnyAgent(Span),
    /// `vec<T, N>` and `tensor<T>[D0, D1, ...]`.
    Generic {
        name: Ident,
        args: Vec<TypeExpr>,
        consts: Vec<Expr>,
        dims: Vec<Expr>,
        span: Span,
    },
    Tuple(Vec<TypeExpr>, Span),
}

impl TypeExpr {
    pub fn span(&self) -> Span {
        match self {
            TypeExpr::Named(i) => i.span,
            TypeExpr::AnyAgent(s) | TypeExpr::Tuple(_, s) => *s,
            TypeExpr::Generic { span, .. } => *span,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub stmts: Vec<Stmt>,
    pub tail: Option<Box<Expr>>,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignOp {
    Set,
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    Name(Ident),
    Tuple(Vec<Ident>, Span),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    Let { pat: Pattern, ty: Option<TypeExpr>, value: Expr, span: Span },
    Assign { target: Expr, op: AssignOp, value: Expr, span: Span },
    If { cond: Expr, then: Block, els: Option<Block>, span: Span },
    Return(Expr, Span),
    Expr(Expr),
    Error(Span),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    MatMul,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::MatMul => "@",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "&&",
            BinOp::Or => "||",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    Neg,
    Not,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantifier {
    /// `sum(b: Body) expr`
    Sum,
    /// `pairs(a: Body, b: Body) expr`
    Pairs,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// The literal's text without suffix, whether it was written as an integer, and its suffix.
    Number {
        text: String,
        integer: bool,
        suffix: Option<String>,
    },
    Bool(bool),
    Str(String),
    Name(String),
    Field(Box<Expr>, Ident),
    Call {
        callee: Box<Expr>,
        args: Vec<Arg>,
    },
    Index(Box<Expr>, Vec<Expr>),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Cast(Box<Expr>, TypeExpr),
    Tuple(Vec<Expr>),
    If {
        cond: Box<Expr>,
        then: Block,
        els: Block,
    },
    Block(Block),
    Quant {
        q: Quantifier,
        binders: Vec<ParamDecl>,
        body: Box<Expr>,
    },
    Error,
}
