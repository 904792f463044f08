//! One graph for the whole step, where the step is expressible as one: every kernel it runs maps
//! over the same agent type (no pairs, no neighbour search), so each kernel's graph can read the
//! columns the kernels before it wrote. The kernels' graphs are joined in schedule order, each
//! value renamed under its kernel, each column input wired to the latest value of that column;
//! zeroed accumulators become zeros of the column's shape. An engine then runs the step in one
//! call, with the state crossing the host boundary once.

use super::graph::Elem;
use aiic_runtime::ir::{Module, Sched};
use aiic_runtime::onnx::pb;
use aiic_runtime::onnx::plan::{feed_name, sink_name, Feed, Form, OnnxKernel, Sink, StepGraph};
use pb::attribute_proto::AttributeType;
use std::collections::{BTreeMap, HashMap, HashSet};

fn value_info(name: &str, like: &pb::ValueInfoProto) -> pb::ValueInfoProto {
    pb::ValueInfoProto { name: name.into(), ..like.clone() }
}

/// The step of `m` as one graph over `kernels`' graphs (`models`, in the same order), or `None`
/// where the step is not a sequence of map kernels over one agent type.
pub fn step_graph(
    m: &Module,
    kernels: &[OnnxKernel],
    models: &[pb::ModelProto],
    opset: i64,
) -> Option<(StepGraph, pb::ModelProto)> {
    let mut agent = None;
    for s in &m.step {
        let a = match s {
            Sched::Run(k) => match kernels.iter().find(|g| g.kernel == *k)?.form {
                Form::Map { agent } => agent,
                _ => return None,
            },
            Sched::Zero { agent, .. } => *agent,
            // Hosted models run beside the graphs, between kernels.
            Sched::Exact { .. } | Sched::Model { .. } => return None,
        };
        if *agent.get_or_insert(a) != a {
            return None;
        }
    }
    let agent = agent?;
    let mut nodes: Vec<pb::NodeProto> = Vec::new();
    let mut inits: Vec<pb::TensorProto> = Vec::new();
    let mut inputs: Vec<pb::ValueInfoProto> = Vec::new();
    let mut feeds: Vec<Feed> = Vec::new();
    // The latest value of each column and compensation, by name; the graph input where none yet.
    let mut cols: BTreeMap<u32, String> = BTreeMap::new();
    let mut comps: BTreeMap<u32, String> = BTreeMap::new();
    let mut sinks: Vec<(usize, Sink)> = Vec::new();
    let mut outputs: Vec<pb::ValueInfoProto> = Vec::new();
    let mut input = |feed: Feed, like: &pb::ValueInfoProto, inputs: &mut Vec<pb::ValueInfoProto>| -> String {
        let name = feed_name(&feed);
        if !feeds.contains(&feed) {
            feeds.push(feed);
            inputs.push(value_info(&name, like));
        }
        name
    };
    for (si, s) in m.step.iter().enumerate() {
        match s {
            Sched::Zero { cols: zeroed, .. } => {
                for &c in zeroed {
                    let elem = super::lower::storage(m.column_types[agent][c as usize]);
                    let base = format!("z{si}_c{c}");
                    let like = cols.get(&c).cloned().unwrap_or_else(|| {
                        // Any column of the agent gives the count; a zeroed column is not read.
                        cols.values().next().cloned().unwrap_or_default()
                    });
                    if like.is_empty() {
                        return None;
                    }
                    nodes.push(pb::NodeProto {
                        op_type: "Shape".into(),
                        input: vec![like],
                        output: vec![format!("{base}_shape")],
                        ..Default::default()
                    });
                    let zero = pb::TensorProto {
                        data_type: elem.code(),
                        dims: vec![1],
                        raw_data: zero_bytes(elem),
                        ..Default::default()
                    };
                    nodes.push(pb::NodeProto {
                        op_type: "ConstantOfShape".into(),
                        input: vec![format!("{base}_shape")],
                        output: vec![base.clone()],
                        attribute: vec![pb::AttributeProto {
                            name: "value".into(),
                            r#type: AttributeType::Tensor as i32,
                            t: Some(zero),
                            ..Default::default()
                        }],
                        ..Default::default()
                    });
                    cols.insert(c, base);
                }
            }
            Sched::Run(k) => {
                let gi = kernels.iter().position(|g| g.kernel == *k)?;
                let (g, model) = (&kernels[gi], models[gi].graph.as_ref()?);
                let prefix = format!("k{si}_");
                let mut rename: HashMap<String, String> = HashMap::new();
                for (feed, info) in g.feeds.iter().zip(&model.input) {
                    let name = match *feed {
                        Feed::Col { col, .. } => match cols.get(&col) {
                            Some(v) => v.clone(),
                            None => {
                                let n = input(*feed, info, &mut inputs);
                                cols.insert(col, n.clone());
                                n
                            }
                        },
                        Feed::Comp { col } => match comps.get(&col) {
                            Some(v) => v.clone(),
                            None => {
                                let n = input(*feed, info, &mut inputs);
                                comps.insert(col, n.clone());
                                n
                            }
                        },
                        Feed::ParamsF32 | Feed::ParamsF64 => input(*feed, info, &mut inputs),
                        _ => return None,
                    };
                    rename.insert(info.name.clone(), name);
                }
                let local: HashSet<&str> = model
                    .node
                    .iter()
                    .flat_map(|n| n.output.iter())
                    .chain(model.initializer.iter().map(|t| &t.name))
                    .map(String::as_str)
                    .collect();
                let renamed = |x: &String| -> String {
                    match rename.get(x) {
                        Some(r) => r.clone(),
                        None if local.contains(x.as_str()) => format!("{prefix}{x}"),
                        None => x.clone(),
                    }
                };
                for t in &model.initializer {
                    inits.push(pb::TensorProto { name: renamed(&t.name), ..t.clone() });
                }
                for n in &model.node {
                    let name = match n.name.split_once('/') {
                        Some((region, rest)) => format!("{region}/{prefix}{rest}"),
                        None if n.name.is_empty() => String::new(),
                        None => format!("{prefix}{}", n.name),
                    };
                    nodes.push(pb::NodeProto {
                        name,
                        input: n.input.iter().map(renamed).collect(),
                        output: n.output.iter().map(renamed).collect(),
                        ..n.clone()
                    });
                }
                for (sink, info) in g.sinks.iter().zip(&model.output) {
                    let value = renamed(&info.name);
                    match *sink {
                        Sink::Store { col } => {
                            cols.insert(col, value);
                        }
                        Sink::Comp { col } => {
                            comps.insert(col, value);
                        }
                        Sink::Check { msg } => {
                            let out = format!("check_k{si}_{msg}");
                            nodes.push(identity(&value, &out));
                            outputs.push(value_info(&out, info));
                            sinks.push((*k, *sink));
                        }
                        Sink::Accum { .. } => return None,
                    }
                }
            }
            Sched::Exact { .. } | Sched::Model { .. } => return None,
        }
    }
    // The step's results: every column and compensation that is no longer its input.
    for (&col, value) in &cols {
        if *value != feed_name(&Feed::Col { slot: 0, col }) {
            let sink = Sink::Store { col };
            let out = sink_name(&sink);
            nodes.push(identity(value, &out));
            outputs.push(column_info(&out, super::lower::storage(m.column_types[agent][col as usize])));
            sinks.push((usize::MAX, sink));
        }
    }
    for (&col, value) in &comps {
        if *value != feed_name(&Feed::Comp { col }) {
            let sink = Sink::Comp { col };
            let out = sink_name(&sink);
            nodes.push(identity(value, &out));
            outputs.push(column_info(&out, Elem::F32));
            sinks.push((usize::MAX, sink));
        }
    }
    let model = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: opset }],
        producer_name: "aiic".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(pb::GraphProto {
            name: "step".into(),
            node: nodes,
            initializer: inits,
            input: inputs,
            output: outputs,
            ..Default::default()
        }),
        ..Default::default()
    };
    Some((StepGraph { agent, feeds, sinks }, model))
}

/// A graph output `[N]` of element type `e`.
fn column_info(name: &str, e: Elem) -> pb::ValueInfoProto {
    super::graph::value_info(name, e, &[super::graph::Dim::Named("N")])
}

fn identity(from: &str, to: &str) -> pb::NodeProto {
    pb::NodeProto {
        op_type: "Identity".into(),
        input: vec![from.into()],
        output: vec![to.into()],
        ..Default::default()
    }
}

fn zero_bytes(e: Elem) -> Vec<u8> {
    match e {
        Elem::F64 | Elem::I64 => vec![0; 8],
        Elem::Bool => vec![0],
        _ => vec![0; 4],
    }
}
