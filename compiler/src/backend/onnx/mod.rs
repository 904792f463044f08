//! ONNX graphs of a module's step: every kernel its schedule and its law terms run, as one graph
//! over column tensors each ([`lower`]), wired by an [`OnnxPlan`] that says what each input and
//! output is.

pub mod graph;
pub mod lower;
pub mod step;

use aiic_runtime::ir::{Module, Op, Sched};
use aiic_runtime::onnx::plan::OnnxPlan;

/// The opset the graphs are written for: ONNX Runtime, OpenVINO and tract all read it.
pub const OPSET: i64 = 17;

/// A module's step as ONNX models: the plan, each kernel's model bytes (then the step's, where
/// the plan has a step graph) and its listing.
pub struct OnnxCode {
    pub plan: OnnxPlan,
    pub graphs: Vec<Vec<u8>>,
    pub texts: Vec<String>,
}

pub fn emit_module(m: &Module) -> Result<OnnxCode, String> {
    let mut kernels = Vec::new();
    let mut models = Vec::new();
    let mut texts = Vec::new();
    // The step's kernels, the first force passes' and the law terms', which the executor
    // measures on its state.
    let fills = m.laws.iter().flat_map(|l| &l.measure).flat_map(|t| &t.fill);
    for s in m.step.iter().chain(&m.prime).chain(fills) {
        let Sched::Run(k) = s else { continue };
        if kernels.iter().any(|g: &aiic_runtime::onnx::plan::OnnxKernel| g.kernel == *k) {
            continue;
        }
        let (kernel, model) = lower::lower(m, *k, OPSET)?;
        texts.push(graph::text(&model));
        models.push(model);
        kernels.push(kernel);
    }
    let param_lanes = kernels
        .iter()
        .flat_map(|k| &m.kernels[k.kernel].insts)
        .filter_map(|i| if let Op::Param(l) = i.op { Some(l as usize + 1) } else { None })
        .max()
        .unwrap_or(0);
    let mut graphs: Vec<Vec<u8>> = models.iter().map(aiic_runtime::onnx::encode).collect();
    let step = step::step_graph(m, &kernels, &models, OPSET).map(|(plan, model)| {
        let g = model.graph.as_ref();
        texts.push(format!(
            "step graph: {} inputs, {} nodes, {} outputs",
            g.map_or(0, |g| g.input.len()),
            g.map_or(0, |g| g.node.len()),
            g.map_or(0, |g| g.output.len())
        ));
        graphs.push(aiic_runtime::onnx::encode(&model));
        plan
    });
    Ok(OnnxCode { plan: OnnxPlan { opset: OPSET, kernels, step, param_lanes }, graphs, texts })
}
