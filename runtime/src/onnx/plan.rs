//! How the ONNX graphs of a module's kernels are fed and what their outputs mean: the manifest
//! `aiic emit --target onnx` writes beside the graphs, and what the ONNX executor follows.

use serde::{Deserialize, Serialize};

/// How a kernel's graph runs over the agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Form {
    /// Once over every agent of a type (`each` and integrator kernels): columns are `[N]`.
    Map { agent: usize },
    /// Every pair, in blocks of rows: a block of the first type's agents (`[B]`, the rows)
    /// against all of the second's (`[M]`). Where both types are one, each unordered pair once:
    /// the graph keeps the pairs whose row index is below the column index.
    Pairs { a: usize, b: usize },
    /// The candidate pairs of a neighbour search (`[P]` indices into each type), which the
    /// executor finds with its cell grid; the kernel's guard is the exact test.
    Neighbors { a: usize, b: usize, bound: f64 },
}

/// An input of a kernel's graph, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Feed {
    /// A column of the agent in `slot` (its storage type: f32, f64 or i32): `[N]` for a map,
    /// the block's rows (slot 0) or all agents (slot 1) for pairs, all agents for neighbours.
    Col {
        slot: u8,
        col: u32,
    },
    /// The compensation of a compensated column of a map kernel's agent (f32, `[N]`).
    Comp {
        col: u32,
    },
    /// Every run-time parameter lane, as f32 and as f64 (`[L]`).
    ParamsF32,
    ParamsF64,
    /// Pairs: the indices of the block's rows and of the columns (i64, `[B]` and `[M]`).
    Rows,
    Cols,
    /// Neighbours: the candidate pairs' first and second agents (i64, `[P]`).
    First,
    Second,
}

/// An output of a kernel's graph, in order.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Sink {
    /// The new value of a column of a map kernel's agent.
    Store { col: u32 },
    /// The new compensation of a compensated column.
    Comp { col: u32 },
    /// Changes to add to a column once the kernel has run: per row (slot 0) or per column
    /// (slot 1) for pairs, per candidate pair for neighbours.
    Accum { slot: u8, col: u32 },
    /// 1 (i32, a scalar) where check `msg` of the kernel failed for some agent or pair.
    Check { msg: u32 },
}

/// One kernel's graph and its wiring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnnxKernel {
    /// The module kernel it computes.
    pub kernel: usize,
    pub name: String,
    pub form: Form,
    pub feeds: Vec<Feed>,
    pub sinks: Vec<Sink>,
}

/// The step as one graph: every kernel of it maps over the agents of type `agent`. Its inputs
/// are columns and compensations of those agents and the parameters; its outputs, in order, are
/// checks of kernel `k` (`(k, Check)`) and the new values of columns and compensations
/// (`(usize::MAX, Store | Comp)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepGraph {
    pub agent: usize,
    pub feeds: Vec<Feed>,
    pub sinks: Vec<(usize, Sink)>,
}

/// The graphs of the kernels a module's schedule runs, and the opset they are written for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnnxPlan {
    pub opset: i64,
    pub kernels: Vec<OnnxKernel>,
    /// One graph for the whole step, where the step is expressible as one: the last of the
    /// graphs, after the kernels' own.
    #[serde(default)]
    pub step: Option<StepGraph>,
    /// Lanes of the run-time parameters the parameter inputs carry (the first ones: every lane
    /// a kernel reads lies among them).
    pub param_lanes: usize,
}

impl OnnxPlan {
    /// The plan as the manifest `aiic emit --target onnx -o DIR` writes (`plan.json`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The graph of module kernel `k`, if it has one.
    pub fn of(&self, k: usize) -> Option<usize> {
        self.kernels.iter().position(|g| g.kernel == k)
    }
}

/// The names of graph inputs and outputs, which the emitter writes and the engines feed.
pub fn feed_name(f: &Feed) -> String {
    match f {
        Feed::Col { slot, col } => format!("s{slot}_c{col}"),
        Feed::Comp { col } => format!("comp_c{col}"),
        Feed::ParamsF32 => "params_f32".into(),
        Feed::ParamsF64 => "params_f64".into(),
        Feed::Rows => "rows".into(),
        Feed::Cols => "cols".into(),
        Feed::First => "first".into(),
        Feed::Second => "second".into(),
    }
}

pub fn sink_name(s: &Sink) -> String {
    match s {
        Sink::Store { col } => format!("store_c{col}"),
        Sink::Comp { col } => format!("comp_out_c{col}"),
        Sink::Accum { slot, col } => format!("accum_s{slot}_c{col}"),
        Sink::Check { msg } => format!("check_{msg}"),
    }
}
