//! The kernel IR: per kernel, a typed SSA list of scalar instructions.
//!
//! Vectors and matrices are split into scalar lanes when lowered, and agent fields into one column
//! per lane (structure of arrays), so every backend sees plain scalar code over columns. `if` is
//! converted to `select`: bodies have no side effects until their final stores, so evaluating
//! both branches is exact. Effects (`Store`, `Accum`, `Reduce`) come last in a kernel.

pub mod interp;
pub mod verify;

use crate::AgentSchema;
use serde::{Deserialize, Serialize};

/// A place in the source a kernel came from (file index, byte range), kept so that diagnostics
/// about compiled kernels can point at the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct SrcSpan {
    pub file: u32,
    pub start: usize,
    pub end: usize,
}

/// The scalar type of a value or a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scalar {
    F32,
    F64,
    F16,
    BF16,
    I32,
    U32,
    Bool,
}

impl Scalar {
    pub fn name(self) -> &'static str {
        match self {
            Scalar::F32 => "f32",
            Scalar::F64 => "f64",
            Scalar::F16 => "f16",
            Scalar::BF16 => "bf16",
            Scalar::I32 => "i32",
            Scalar::U32 => "u32",
            Scalar::Bool => "bool",
        }
    }

    pub fn from_name(s: &str) -> Option<Scalar> {
        Some(match s {
            "f32" => Scalar::F32,
            "f64" => Scalar::F64,
            "f16" => Scalar::F16,
            "bf16" => Scalar::BF16,
            "i32" => Scalar::I32,
            "u32" => Scalar::U32,
            "bool" => Scalar::Bool,
            _ => return None,
        })
    }

    pub fn is_float(self) -> bool {
        matches!(self, Scalar::F32 | Scalar::F64 | Scalar::F16 | Scalar::BF16)
    }

    pub fn is_int(self) -> bool {
        matches!(self, Scalar::I32 | Scalar::U32)
    }
}

use std::path::PathBuf;

/// An SSA value: the index of the instruction that defines it.
pub type V = u32;
pub type KernelId = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnOp {
    Neg,
    Not,
    Sqrt,
    Rsqrt,
    Abs,
    Exp,
    Log,
    Sin,
    Cos,
    Tanh,
    Floor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Pow,
    Min,
    Max,
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
    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge)
    }
    pub fn is_commutative(self) -> bool {
        matches!(
            self,
            BinOp::Add | BinOp::Mul | BinOp::Min | BinOp::Max | BinOp::Eq | BinOp::Ne | BinOp::And | BinOp::Or
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Dist {
    /// Uniform in [0, 1).
    Uniform,
    /// Standard normal.
    Normal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    Const(f64),
    /// A lane of the run-time parameters (`Module::uniforms`).
    Param(u32),
    /// Column `col` of the agent in `slot` (0: the kernel's first agent, 1: its second).
    Load {
        slot: u8,
        col: u32,
    },
    /// The index of the agent being spawned, within its spawn statement.
    Index,
    /// The number of agents the current spawn statement creates.
    Count,
    /// A random number, a pure function of (seed, kernel, agent index, stream).
    Rand {
        dist: Dist,
        stream: u32,
    },
    /// Law combiners: the `n`-th summed value of the law's terms.
    Input(u32),
    Un(UnOp, V),
    Bin(BinOp, V, V),
    Select(V, V, V),
    /// Converts to the instruction's type (truncating toward zero into integers).
    Cast(V),
    /// The agent's new value of a column (Map-like kernels).
    Store {
        slot: u8,
        col: u32,
        value: V,
    },
    /// Added to the column after the whole kernel has run (pair kernels; Jacobi semantics).
    Accum {
        slot: u8,
        col: u32,
        value: V,
    },
    /// Added into output `out` of the kernel (conservation laws).
    Reduce {
        out: u32,
        value: V,
    },
    /// A run-time assertion; `msg` indexes `Kernel::messages`.
    Check {
        cond: V,
        msg: u32,
    },
    /// Output `lane` of the kernel's [`TensorPlan`] for the agent of slot 0 (the model's value,
    /// before any `+=`): the plan is the definition, so that a model of a few thousand features
    /// is a loop to every executor rather than millions of unrolled multiply-adds.
    Tensor(u32),
}

impl Op {
    pub fn is_effect(&self) -> bool {
        matches!(self, Op::Store { .. } | Op::Accum { .. } | Op::Reduce { .. } | Op::Check { .. })
    }

    /// The values this instruction reads.
    pub fn args(&self) -> Vec<V> {
        match *self {
            Op::Un(_, a) | Op::Cast(a) => vec![a],
            Op::Bin(_, a, b) => vec![a, b],
            Op::Select(c, a, b) => vec![c, a, b],
            Op::Store { value, .. } | Op::Accum { value, .. } | Op::Reduce { value, .. } => vec![value],
            Op::Check { cond, .. } => vec![cond],
            _ => Vec::new(),
        }
    }

    /// Rewrites the values this instruction reads.
    pub fn map_args(&mut self, mut f: impl FnMut(V) -> V) {
        match self {
            Op::Un(_, a) | Op::Cast(a) => *a = f(*a),
            Op::Bin(_, a, b) => {
                *a = f(*a);
                *b = f(*b);
            }
            Op::Select(c, a, b) => {
                *c = f(*c);
                *a = f(*a);
                *b = f(*b);
            }
            Op::Store { value, .. } | Op::Accum { value, .. } | Op::Reduce { value, .. } => *value = f(*value),
            Op::Check { cond, .. } => *cond = f(*cond),
            _ => {}
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inst {
    pub ty: Scalar,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Pattern {
    /// Once per agent of one type (`each` interactions).
    Map { agent: usize },
    /// One phase of an integrator: once per agent, between force passes.
    Integrate { agent: usize, integrator: String, phase: usize },
    /// Every unordered pair of distinct agents (`a == b`), or every (a, b) of two types.
    AllPairs { a: usize, b: usize },
    /// Pairs closer than `bound`, found with a spatial structure; `Kernel::guard` is the exact test.
    Neighbors { a: usize, b: usize, bound: f64 },
    /// Initial values of the agents a spawn statement creates.
    Spawn { agent: usize },
    /// Runs once, over no agent (law combiners, constants).
    Uniform,
}

impl Integration {
    pub fn role(&self, alias: &str) -> Option<&[u32]> {
        self.roles.iter().find(|(a, _)| a == alias).map(|(_, c)| c.as_slice())
    }
}

impl Pattern {
    /// The agent types bound to slots 0 and 1.
    pub fn slots(&self) -> Vec<usize> {
        match self {
            Pattern::Map { agent } | Pattern::Integrate { agent, .. } | Pattern::Spawn { agent } => vec![*agent],
            Pattern::AllPairs { a, b } | Pattern::Neighbors { a, b, .. } => vec![*a, *b],
            Pattern::Uniform => Vec::new(),
        }
    }

    pub fn is_pairwise(&self) -> bool {
        matches!(self, Pattern::AllPairs { .. } | Pattern::Neighbors { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kernel {
    pub name: String,
    pub pattern: Pattern,
    pub insts: Vec<Inst>,
    /// Pair kernels: the pair's effects apply only where this value is true.
    pub guard: Option<V>,
    /// Number of `Reduce` outputs.
    pub outputs: u32,
    pub messages: Vec<String>,
    /// Where in the source each written column (slot, column) was last assigned: diagnostics of
    /// the conservation proofs point there.
    pub write_spans: Vec<(u8, u32, SrcSpan)>,
    /// The matrix work of an `each` kernel, where its whole body is one (see [`TensorPlan`]).
    #[serde(default)]
    pub tensor: Option<TensorPlan>,
}

/// An `each` kernel whose whole body is `p.out = net(p.x, …)` or `p.out += net(…)` for an `mlp`
/// model, or `p.out = W @ p.x`: a chain of products over the agents, (agents × features) ·
/// (features × outputs) per layer. Executors with matrix units run it as batched GEMMs, fused
/// layer to layer; the kernel's body reads the result as [`Op::Tensor`] lanes, and the
/// interpreter computes it in f64 from this plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorPlan {
    /// Columns of slot 0 that make the input vector, in order.
    pub inputs: Vec<u32>,
    pub layers: Vec<TensorLayer>,
    /// Applied after every layer but the last.
    pub act: Activation,
    /// The column each output lane is written to.
    pub outputs: Vec<u32>,
    /// `+=`: outputs are added to the columns' values instead of replacing them.
    pub accumulate: bool,
    pub precision: Precision,
    /// The largest relative error `auto` accepts against f32.
    pub tolerance: f64,
    /// `@accel(npu)`: the interaction asks for a neural processing unit.
    #[serde(default)]
    pub npu: bool,
}

/// One layer `h = W @ h + b`: `W` is `[rows, cols]` row-major in the uniforms from lane
/// `weight`, `b` its `rows` lanes from `bias` (none for a bare `W @ x`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorLayer {
    pub weight: u32,
    pub rows: u32,
    pub cols: u32,
    pub bias: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Activation {
    Identity,
    Tanh,
    Relu,
    Sigmoid,
    /// The tanh approximation.
    Gelu,
    Silu,
}

/// The arithmetic a tensor interaction asks for (`@precision`): inputs are rounded to it and
/// products accumulate in f32. `Auto` picks, on the run's own state, the cheapest whose error
/// against f32 stays under the tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Precision {
    F32,
    Tf32,
    F16,
    Bf16,
    /// int8 operands with a scale per weight row and per agent, accumulated in s32.
    Int8,
    F64,
    Auto,
}

impl Precision {
    /// Every precision's name, as `@precision` and `--precision` take them.
    pub const NAMES: [&'static str; 7] = ["f32", "tf32", "f16", "bf16", "int8", "f64", "auto"];

    pub fn from_name(s: &str) -> Option<Precision> {
        Some(match s {
            "f32" => Precision::F32,
            "tf32" => Precision::Tf32,
            "f16" => Precision::F16,
            "bf16" => Precision::Bf16,
            "int8" => Precision::Int8,
            "f64" => Precision::F64,
            "auto" => Precision::Auto,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Tf32 => "tf32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
            Precision::F64 => "f64",
            Precision::Auto => "auto",
        }
    }
}

/// A step of the schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Sched {
    /// Zero accumulator columns before a force pass.
    Zero {
        agent: usize,
        cols: Vec<u32>,
    },
    Run(KernelId),
    /// Copies the exact value of each f32 column `from` of agent type `agent` (its stored value
    /// less the compensation of its compensated updates) into f64 column `to`. Law terms read
    /// compensated state through these copies, so they measure what the interpreter measures.
    Exact {
        agent: usize,
        cols: Vec<(u32, u32)>,
    },
    /// Runs hosted model `model` (see [`HostedModel`]) over every agent of type `agent`: its
    /// input is the f32 values of columns `inputs`, one row per agent, and its output rows are
    /// written to the f32 scratch columns `outputs`, which the kernel that called it reads.
    Model {
        agent: usize,
        model: usize,
        inputs: Vec<u32>,
        outputs: Vec<u32>,
    },
}

/// `model m = onnx("file")` where the file is not a chain of dense layers aiic can read into its
/// own IR: the graph runs as it is, on the host, through an ONNX engine (ONNX Runtime where it
/// is installed, else tract), once per step over all the agents, its columns copied to and from
/// wherever the state lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostedModel {
    pub name: String,
    /// The file it was read from, as the program names it.
    pub file: String,
    /// Why aiic could not read it into its IR.
    pub reason: String,
    /// Widths of its input `[N, inputs]` and output `[N, outputs]`.
    pub inputs: u32,
    pub outputs: u32,
    /// The batch the model was exported with, 0 where it takes any number of rows.
    #[serde(default)]
    pub batch: u32,
    /// The ONNX model; stored beside the manifest of an artifact, not in it.
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InitOp {
    /// `spawn A * count { … }`; `count` may be replaced by `--count A=N`.
    Spawn { agent: usize, kernel: KernelId, count: u64 },
    /// `spawn A from "file"`: columns named like the agent's fields; `kernel` sets the fields the
    /// spawn statement gives explicitly, after the file's values.
    File { agent: usize, path: PathBuf, kernel: KernelId },
}

/// One lane of the run-time parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Uniform {
    pub name: String,
    pub param: String,
    pub ty: Scalar,
    pub value: f64,
}

/// A tensor parameter: its elements are lanes `lane..lane + values.len()` of the run-time
/// parameters, after every [`Uniform`], row-major. Kept whole rather than as a `Uniform` per
/// element: a 4096 × 4096 matrix is 16 million lanes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorParam {
    pub param: String,
    pub ty: Scalar,
    pub shape: Vec<u32>,
    pub lane: u32,
    /// Stored beside the manifest of an artifact, not in it (see `artifact`).
    #[serde(skip)]
    pub values: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Law {
    pub name: String,
    pub span: SrcSpan,
    /// Lanes of the conserved quantity (3 for a `vec3` momentum).
    pub lanes: u32,
    /// Reduction kernels; output `2l` of each is lane `l` of its sum and `2l + 1` the sum of its
    /// magnitudes, the scale drift is measured against.
    pub terms: Vec<KernelId>,
    /// Combines the terms' sums (as `Input`s, in term order) into the law's lanes (as `Reduce`s).
    pub combine: KernelId,
    pub tolerance: Option<f64>,
    pub assume: bool,
    /// How executors measure each term where the state lives, in term order (see
    /// [`TermPlan`]); empty where only the interpreter can (then the state is measured on the host).
    #[serde(default)]
    pub measure: Vec<TermPlan>,
}

/// How a law term is summed on an executor: `fill` writes each agent's share of every output of
/// the term kernel into f64 scratch columns `cols` of agent type `agent` (pair terms through a
/// pair kernel that adds each pair's value to its first agent), and the executor then sums those
/// columns where they live. The term's values are computed in f64 throughout, as the
/// interpreter computes them, so executors and the reference agree to rounding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TermPlan {
    pub agent: usize,
    /// Zeroes the columns, then runs the kernels that fill them.
    pub fill: Vec<Sched>,
    /// Per output of the term kernel (value and magnitude of each lane), its scratch column.
    pub cols: Vec<u32>,
    /// How the agents' shares are found, as `--explain` reports it.
    pub visits: Visits,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Visits {
    /// `sum(x: A)`: one share per agent.
    Agents,
    /// `pairs(a, b)` over every pair.
    AllPairs,
    /// `pairs(a, b)` over the pairs closer than `radius`: the term is provably zero beyond it.
    Within { radius: f64 },
}

/// An interaction the step runs, as the proofs and `--explain` need it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InteractionInfo {
    pub name: String,
    pub kernel: KernelId,
    pub external: bool,
    pub span: SrcSpan,
}

/// One `integrate` statement applied to one agent type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Integration {
    pub integrator: String,
    pub symplectic: bool,
    pub agent: usize,
    /// Columns of each role alias of the integrator (`x`, `v`, `f`, `m` in the stdlib).
    pub roles: Vec<(String, Vec<u32>)>,
    /// The integrator's kernels for this agent type, in order; force passes run between them.
    pub phases: Vec<KernelId>,
    /// The interaction kernels of its force pass.
    pub forces: Vec<KernelId>,
    pub span: SrcSpan,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Module {
    pub name: String,
    pub agents: Vec<AgentSchema>,
    /// Scalar type of each column of each agent type.
    pub column_types: Vec<Vec<Scalar>>,
    pub uniforms: Vec<Uniform>,
    #[serde(default)]
    pub tensors: Vec<TensorParam>,
    pub kernels: Vec<Kernel>,
    pub init: Vec<InitOp>,
    /// Runs once after `init`: the first force passes.
    pub prime: Vec<Sched>,
    pub step: Vec<Sched>,
    pub laws: Vec<Law>,
    pub interactions: Vec<InteractionInfo>,
    pub integrations: Vec<Integration>,
    /// ONNX models run as they are (see [`Sched::Model`]).
    #[serde(default)]
    pub hosted: Vec<HostedModel>,
}

impl Module {
    /// Every lane of the run-time parameters: the uniforms, then the tensors' elements.
    pub fn uniform_values(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self.uniforms.iter().map(|u| u.value).collect();
        for t in &self.tensors {
            v.extend(&t.values);
        }
        v
    }

    /// Lanes `lane..lane + n` of the run-time parameters, where one tensor holds them all.
    pub fn tensor_lanes(&self, lane: u32, n: usize) -> Option<&[f64]> {
        let (t, at) = self.tensor_of(lane)?;
        t.values.get(at..)?.get(..n)
    }

    /// The tensor that lane `lane` is an element of, and which element.
    fn tensor_of(&self, lane: u32) -> Option<(&TensorParam, usize)> {
        self.tensors.iter().find_map(|t| {
            let at = lane.checked_sub(t.lane)? as usize;
            (at < t.values.len()).then_some((t, at))
        })
    }

    /// Lanes of the run-time parameters.
    pub fn lane_count(&self) -> usize {
        self.uniforms.len() + self.tensors.iter().map(|t| t.values.len()).sum::<usize>()
    }

    /// A lane's name: `dt`, `g.x`, or a tensor element `W[3, 1]`.
    pub fn lane_name(&self, lane: u32) -> String {
        if let Some(u) = self.uniforms.get(lane as usize) {
            return u.name.clone();
        }
        let Some((t, at)) = self.tensor_of(lane) else { return "?".into() };
        let mut idx = Vec::with_capacity(t.shape.len());
        let mut rest = at;
        for &d in t.shape.iter().rev() {
            idx.push((rest % d.max(1) as usize).to_string());
            rest /= d.max(1) as usize;
        }
        idx.reverse();
        format!("{}[{}]", t.param, idx.join(", "))
    }
}

/// The relative error of `other` against `reference` (the same outputs of two runs of a tensor
/// interaction, one of them in f32), which precision choices compare with their tolerance: the
/// largest difference over the largest reference magnitude, each output less `base` where it
/// adds to a column. A non-finite value is an infinite error.
pub fn relative_error(reference: &[Vec<f64>], other: &[Vec<f64>], base: &[Option<Vec<f64>>]) -> f64 {
    let (mut diff, mut scale) = (0.0f64, 0.0f64);
    for (i, (r, o)) in reference.iter().zip(other).enumerate() {
        let b = base.get(i).and_then(|b| b.as_ref());
        for j in 0..r.len().min(o.len()) {
            let z = b.and_then(|b| b.get(j)).copied().unwrap_or(0.0);
            let (x, y) = (r[j] - z, o[j] - z);
            if !y.is_finite() {
                return f64::INFINITY;
            }
            diff = diff.max((x - y).abs());
            scale = scale.max(x.abs());
        }
    }
    if diff == 0.0 {
        0.0
    } else {
        diff / scale
    }
}

#[cfg(test)]
mod precision_tests {
    use super::Precision;

    #[test]
    fn every_listed_precision_parses_to_itself() {
        for name in Precision::NAMES {
            assert_eq!(Precision::from_name(name).map(Precision::name), Some(name));
        }
        assert_eq!(Precision::from_name("f8"), None);
    }
}
