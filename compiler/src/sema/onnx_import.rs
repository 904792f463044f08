//! `model m = onnx("file.onnx")`: a model made of dense layers is read into the same form as an
//! `mlp(…)`, so that it runs on every target (tensor cores included).
//!
//! What is read: one input `[batch, in]` (or several, concatenated along the features by a first
//! `Concat`), then layers, each a `Gemm` or a `MatMul` by a constant with an optional `Add` of a
//! constant bias, with one activation between layers (`Tanh`, `Relu`, `Sigmoid`, `x·Sigmoid(x)`
//! for silu, `Gelu` with `approximate="tanh"`) and none after the last; `Identity` nodes are
//! passed over. Constants are initializers or `Constant` nodes, in f32, f64 or f16.

use super::hir::Activation;
use aiic_runtime::onnx::pb;
use pb::tensor_proto::DataType;
use std::collections::HashMap;

/// One dense layer: `W` `[out, in]` row-major, its bias of `out`.
pub struct Layer {
    pub weight: Vec<f64>,
    pub out: u32,
    pub inp: u32,
    pub bias: Vec<f64>,
}

pub struct Imported {
    pub layers: Vec<Layer>,
    pub act: Activation,
}

/// A constant's values as f64 and its shape.
fn values(t: &pb::TensorProto) -> Result<(Vec<f64>, Vec<usize>), String> {
    let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    let raw = &t.raw_data;
    let v: Vec<f64> = match DataType::from_i32(t.data_type) {
        Some(DataType::Float) if !t.float_data.is_empty() => t.float_data.iter().map(|&x| x as f64).collect(),
        Some(DataType::Float) => {
            raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect()
        }
        Some(DataType::Double) if !t.double_data.is_empty() => t.double_data.clone(),
        Some(DataType::Double) => {
            raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect()
        }
        Some(DataType::Float16) if raw.is_empty() => {
            t.int32_data.iter().map(|&b| half::f16::from_bits(b as u16).to_f64()).collect()
        }
        Some(DataType::Float16) => {
            raw.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64()).collect()
        }
        other => {
            return Err(format!("constant `{}` is of type {other:?}; aiic reads f32, f64 and f16 weights", t.name))
        }
    };
    if v.len() != dims.iter().product::<usize>() {
        return Err(format!("constant `{}` holds {} values for shape {dims:?}", t.name, v.len()));
    }
    Ok((v, dims))
}

/// A node as messages name it: by its name, or by its first output where it has none.
fn node_name(n: &pb::NodeProto) -> String {
    if n.name.is_empty() {
        format!("the node that makes `{}`", n.output.first().map_or("", String::as_str))
    } else {
        format!("node `{}`", n.name)
    }
}

fn attr<'a>(n: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

/// What a node does to the value flowing through the chain.
enum Step {
    /// `x · W + b` with `W` given as `[out, in]`.
    Dense(Vec<f64>, usize, usize, Option<Vec<f64>>),
    Bias(Vec<f64>),
    Act(Activation),
    Pass,
}

pub fn import(bytes: &[u8]) -> Result<Imported, String> {
    let model = aiic_runtime::onnx::decode(bytes).map_err(|e| format!("not an ONNX model ({e})"))?;
    let g = model.graph.ok_or("the model has no graph")?;
    let mut consts: HashMap<String, pb::TensorProto> =
        g.initializer.iter().map(|t| (t.name.clone(), t.clone())).collect();
    let mut nodes = Vec::new();
    for n in g.node {
        match (n.op_type.as_str(), attr(&n, "value").and_then(|a| a.t.clone())) {
            ("Constant", Some(t)) => {
                consts.insert(n.output[0].clone(), t);
            }
            _ => nodes.push(n),
        }
    }
    let inputs: Vec<&pb::ValueInfoProto> = g.input.iter().filter(|i| !consts.contains_key(&i.name)).collect();
    if g.output.len() != 1 {
        return Err(format!("the model has {} outputs; aiic reads models of one", g.output.len()));
    }
    let mut at = match inputs.as_slice() {
        [one] => one.name.clone(),
        [] => return Err("the model has no input".into()),
        many => {
            // Several inputs: the first node must concatenate them all, in order, along the features.
            let first = nodes.first().ok_or("the model has no nodes")?;
            let names: Vec<&str> = many.iter().map(|i| i.name.as_str()).collect();
            let axis = attr(first, "axis").map_or(0, |a| a.i);
            if first.op_type != "Concat"
                || first.input.iter().map(String::as_str).ne(names)
                || !(axis == 1 || axis == -1)
            {
                return Err("a model of several inputs must first concatenate them, in order, along axis 1".into());
            }
            let out = first.output[0].clone();
            nodes.remove(0);
            out
        }
    };
    let mut layers: Vec<Layer> = Vec::new();
    let mut act: Option<Activation> = None;
    // Whether an activation came after the last layer read.
    let mut activated = false;
    let mut i = 0;
    while i < nodes.len() {
        let n = &nodes[i];
        let other = |k: usize| -> Result<(Vec<f64>, Vec<usize>), String> {
            let name = n.input.get(k).ok_or_else(|| format!("`{}` lacks an input", n.op_type))?;
            let t = consts.get(name).ok_or_else(|| format!("`{}` takes `{name}`, which is no constant", n.op_type))?;
            values(t)
        };
        if !n.input.contains(&at) {
            return Err(format!("{} is not on the path from the input to the output", node_name(n)));
        }
        let step = match n.op_type.as_str() {
            "Gemm" => {
                let int = |k: &str, d: i64| attr(n, k).map_or(d, |a| a.i);
                let float = |k: &str| attr(n, k).map_or(1.0, |a| a.f);
                if n.input[0] != at || int("transA", 0) != 0 || float("alpha") != 1.0 || float("beta") != 1.0 {
                    return Err("a Gemm must be x · B (+ C) with alpha = beta = 1 and x not transposed".into());
                }
                let (b, bd) = other(1)?;
                let [r, c] = bd.as_slice() else { return Err("a Gemm's B must be a matrix".into()) };
                let (out, inp, w) = if int("transB", 0) == 1 {
                    (*r, *c, b)
                } else {
                    (*c, *r, (0..r * c).map(|k| b[(k % r) * c + k / r]).collect())
                };
                let bias = if n.input.len() > 2 && !n.input[2].is_empty() { Some(other(2)?.0) } else { None };
                Step::Dense(w, out, inp, bias)
            }
            "MatMul" => {
                if n.input[0] != at {
                    return Err("a MatMul must be x · W, with W a constant".into());
                }
                let (b, bd) = other(1)?;
                let [inp, out] = bd.as_slice() else { return Err("a MatMul's W must be a matrix".into()) };
                Step::Dense((0..inp * out).map(|k| b[(k % inp) * out + k / inp]).collect(), *out, *inp, None)
            }
            "Add" => {
                let k = if n.input[0] == at { 1 } else { 0 };
                Step::Bias(other(k)?.0)
            }
            "Tanh" => Step::Act(Activation::Tanh),
            "Relu" => Step::Act(Activation::Relu),
            "Gelu" => match attr(n, "approximate").map(|a| String::from_utf8_lossy(&a.s).into_owned()) {
                Some(a) if a == "tanh" => Step::Act(Activation::Gelu),
                _ => return Err("a Gelu must be the tanh approximation (approximate = \"tanh\"), as aiic's gelu is".into()),
            },
            "Sigmoid" => {
                // x · Sigmoid(x) is silu.
                let next = nodes.get(i + 1);
                let silu = next.is_some_and(|m| {
                    m.op_type == "Mul"
                        && m.input.len() == 2
                        && m.input.contains(&at)
                        && m.input.contains(&n.output[0])
                });
                if silu {
                    i += 1;
                    Step::Act(Activation::Silu)
                } else {
                    Step::Act(Activation::Sigmoid)
                }
            }
            "Identity" => Step::Pass,
            op => {
                return Err(format!(
                    "{} is {op}; aiic reads models of Gemm, MatMul and Add layers with Tanh, Relu, Sigmoid, silu or tanh-Gelu between them",
                    node_name(n)
                ))
            }
        };
        let out = nodes[i].output[0].clone();
        match step {
            Step::Dense(weight, out_w, inp, bias) => {
                if let Some(prev) = layers.last() {
                    if !activated && !layers.is_empty() {
                        return Err("two layers without an activation between them".into());
                    }
                    if prev.out as usize != inp {
                        return Err(format!("a layer takes {inp} inputs, but the layer before gives {}", prev.out));
                    }
                }
                let bias = bias.unwrap_or_else(|| vec![0.0; out_w]);
                if bias.len() != out_w {
                    return Err(format!("a bias of {} values for a layer of {out_w}", bias.len()));
                }
                layers.push(Layer { weight, out: out_w as u32, inp: inp as u32, bias });
                activated = false;
            }
            Step::Bias(b) => {
                let last = layers.last_mut().filter(|_| !activated).ok_or("an Add that follows no layer")?;
                if b.len() != last.out as usize {
                    return Err(format!("a bias of {} values for a layer of {}", b.len(), last.out));
                }
                last.bias.iter_mut().zip(b).for_each(|(x, y)| *x += y);
            }
            Step::Act(a) => {
                if layers.is_empty() || activated {
                    return Err("an activation that follows no layer".into());
                }
                if act.is_some_and(|x| x != a) {
                    return Err("the layers have different activations; aiic's models have one".into());
                }
                act = Some(a);
                activated = true;
            }
            Step::Pass => {}
        }
        at = out;
        i += 1;
    }
    if at != g.output[0].name {
        return Err("the chain of layers does not end at the model's output".into());
    }
    if layers.is_empty() {
        return Err("the model has no layer".into());
    }
    if activated {
        return Err("an activation after the last layer; aiic's models end with a layer".into());
    }
    Ok(Imported { layers, act: act.unwrap_or(Activation::Tanh) })
}
