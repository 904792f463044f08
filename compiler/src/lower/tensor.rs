//! Recognises the matrix work of an `each` interaction (see [`ir::TensorPlan`]): a body that is
//! one assignment of a model call or of `W @ x` over the agent's own fields.

use crate::ir::{self, TensorLayer, TensorPlan};
use crate::sema::hir::*;
use crate::sema::types::Ty;
use crate::syntax::ast::BinOp;

/// Tolerance of `@precision(auto)` when none is given.
pub const DEFAULT_TOLERANCE: f64 = 1e-3;

/// The plan of an interaction's tensor work, or `None` when its body is anything else.
pub fn plan(p: &Program, it: &Interaction, field_cols: &[Vec<u32>], param_lanes: &[u32]) -> Option<TensorPlan> {
    if !matches!(it.kind, InteractionKind::Each) || it.body.stmts.len() != 1 || it.body.tail.is_some() {
        return None;
    }
    let HStmt::Assign { place: Place::Field { slot: 0, field: out }, lane: None, op, value, .. } = &it.body.stmts[0]
    else {
        return None;
    };
    let accumulate = match op {
        AssignOp::Set => false,
        AssignOp::Add => true,
        _ => return None,
    };
    let agent = it.agents[0];
    // Every input and output lane is a float column of this agent.
    let float_cols = |field: usize| -> Option<Vec<u32>> {
        let f = &p.agents[agent].fields[field];
        // f64 fields keep the scalar body, computed in f64 everywhere.
        if !f.ty.elem().is_float() || f.ty.elem() == crate::ir::Scalar::F64 {
            return None;
        }
        let first = field_cols[agent][field];
        Some((first..first + f.ty.lanes() as u32).collect())
    };
    let args_cols = |args: &[&HExpr]| -> Option<Vec<u32>> {
        let mut cols = Vec::new();
        for a in args {
            let HKind::Field { slot: 0, field } = a.kind else { return None };
            cols.extend(float_cols(field)?);
        }
        Some(cols)
    };
    let layer = |w: ParamId, b: Option<ParamId>| -> Option<TensorLayer> {
        let Ty::Tensor(_, dims) = &p.params[w].ty else { return None };
        if dims.len() != 2 || p.params[w].default.is_none() || b.is_some_and(|b| p.params[b].default.is_none()) {
            return None;
        }
        Some(TensorLayer { weight: param_lanes[w], rows: dims[0], cols: dims[1], bias: b.map(|b| param_lanes[b]) })
    };
    let (inputs, layers, act) = match &value.kind {
        HKind::ModelCall(m, args) => {
            let mlp = p.models[*m].mlp.as_ref()?;
            let layers = mlp.layers.iter().map(|&(w, b)| layer(w, Some(b))).collect::<Option<Vec<_>>>()?;
            (args_cols(&args.iter().collect::<Vec<_>>())?, layers, activation(mlp.act))
        }
        HKind::Binary(BinOp::MatMul, w, x) => {
            let (HKind::Param(w), Ty::Vec(..)) = (&w.kind, &x.ty) else { return None };
            (args_cols(&[x])?, vec![layer(*w, None)?], ir::Activation::Identity)
        }
        _ => return None,
    };
    let outputs = float_cols(*out)?;
    let widths_chain = layers.first().is_some_and(|l| l.cols as usize == inputs.len())
        && layers.windows(2).all(|w| w[1].cols == w[0].rows)
        && layers.last().is_some_and(|l| l.rows as usize == outputs.len());
    if !widths_chain {
        return None;
    }
    Some(TensorPlan {
        inputs,
        layers,
        act,
        outputs,
        accumulate,
        precision: it.hints.precision.unwrap_or(ir::Precision::F32),
        tolerance: it.hints.tolerance.unwrap_or(DEFAULT_TOLERANCE),
        npu: it.hints.accel.as_deref() == Some("npu"),
    })
}

fn activation(a: Activation) -> ir::Activation {
    match a {
        Activation::Tanh => ir::Activation::Tanh,
        Activation::Relu => ir::Activation::Relu,
        Activation::Sigmoid => ir::Activation::Sigmoid,
        Activation::Gelu => ir::Activation::Gelu,
        Activation::Silu => ir::Activation::Silu,
    }
}
