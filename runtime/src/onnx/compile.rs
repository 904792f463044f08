//! The model compilation pipeline: passes over an ONNX graph before an engine loads it.
//!
//! Constant folding evaluates every node whose inputs are all constants. The precision passes
//! work on the nodes of the model region (named `model/…` by the emitter: an `mlp` or `@` and
//! its input concatenation): f16 conversion computes the region in f16 (constants converted,
//! values cast at its borders); int8 quantization puts QuantizeLinear/DequantizeLinear pairs
//! (QDQ) around each product, weights per output column and symmetric, the other operand per
//! tensor with the range it had on the run's own state (calibration).

use super::pb;
use pb::tensor_proto::DataType;
use std::collections::{HashMap, HashSet};

pub use crate::ir::relative_error;

/// The prefix of the names of the model region's nodes.
pub const MODEL_REGION: &str = "model";

fn in_region(n: &pb::NodeProto) -> bool {
    n.name.strip_prefix(MODEL_REGION).is_some_and(|r| r.starts_with('/'))
}

fn graph_mut(m: &mut pb::ModelProto) -> &mut pb::GraphProto {
    m.graph.get_or_insert_with(Default::default)
}

/// The f32 values of a constant tensor, or `None` where it holds another type.
fn f32_values(t: &pb::TensorProto) -> Option<Vec<f32>> {
    if t.data_type != DataType::Float as i32 {
        return None;
    }
    if !t.float_data.is_empty() {
        return Some(t.float_data.clone());
    }
    Some(t.raw_data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

fn attr_int(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

fn node(op: &str, name: String, inputs: &[&str], output: &str, attribute: Vec<pb::AttributeProto>) -> pb::NodeProto {
    pb::NodeProto {
        name,
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

fn tensor(name: String, ty: DataType, dims: &[i64], raw: Vec<u8>) -> pb::TensorProto {
    pb::TensorProto { name, data_type: ty as i32, dims: dims.to_vec(), raw_data: raw, ..Default::default() }
}

/// Whether the graph has a model region.
pub fn has_model(m: &pb::ModelProto) -> bool {
    m.graph.as_ref().is_some_and(|g| g.node.iter().any(in_region))
}

/// Constant folding: replaces every node whose inputs are all constants (and that draws no
/// random numbers) by the constants it computes, evaluated by tract; repeats until nothing
/// changes. Returns the graph and how many nodes it removed.
pub fn fold_constants(m: &pb::ModelProto) -> Result<(pb::ModelProto, usize), String> {
    use tract_onnx::prelude::*;
    let mut m = m.clone();
    let mut folded = 0;
    loop {
        let g = graph_mut(&mut m);
        let consts: HashMap<String, usize> =
            g.initializer.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        let outputs: HashSet<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
        let pick = g.node.iter().position(|n| {
            !n.op_type.starts_with("Random")
                && !n.input.is_empty()
                && n.input.iter().all(|i| i.is_empty() || consts.contains_key(i))
                && n.output.iter().all(|o| !outputs.contains(o.as_str()))
        });
        let Some(at) = pick else { break };
        let n = g.node[at].clone();
        let inits: Vec<pb::TensorProto> =
            n.input.iter().filter(|i| !i.is_empty()).map(|i| g.initializer[consts[i]].clone()).collect();
        let one = pb::ModelProto {
            ir_version: m.ir_version,
            opset_import: m.opset_import.clone(),
            graph: Some(pb::GraphProto {
                name: "fold".into(),
                node: vec![n.clone()],
                initializer: inits,
                output: n.output.iter().map(|o| pb::ValueInfoProto { name: o.clone(), ..Default::default() }).collect(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let bytes = super::encode(&one);
        let fail = |e: TractError| format!("folding `{}` ({}): {e:?}", n.name, n.op_type);
        let plan = tract_onnx::onnx().model_for_read(&mut &bytes[..]).and_then(|p| p.into_optimized()).map_err(fail)?;
        let values = plan.into_runnable().and_then(|p| p.run(tvec!())).map_err(fail)?;
        let g = graph_mut(&mut m);
        g.node.remove(at);
        for (name, v) in n.output.iter().zip(values) {
            g.initializer.push(tract_tensor(name, &v)?);
        }
        folded += 1;
    }
    let g = graph_mut(&mut m);
    let used: HashSet<String> = g.node.iter().flat_map(|n| n.input.iter().cloned()).collect();
    let kept: HashSet<String> = g.output.iter().map(|o| o.name.clone()).collect();
    g.initializer.retain(|t| used.contains(&t.name) || kept.contains(&t.name));
    Ok((m, folded))
}

/// A tract tensor as an ONNX constant.
fn tract_tensor(name: &str, t: &tract_onnx::prelude::Tensor) -> Result<pb::TensorProto, String> {
    use tract_onnx::prelude::DatumType as D;
    let dims: Vec<i64> = t.shape().iter().map(|&d| d as i64).collect();
    let ty = match t.datum_type() {
        D::F32 => DataType::Float,
        D::F64 => DataType::Double,
        D::F16 => DataType::Float16,
        D::I32 => DataType::Int32,
        D::I64 => DataType::Int64,
        D::I8 => DataType::Int8,
        D::U8 => DataType::Uint8,
        D::Bool => DataType::Bool,
        other => return Err(format!("folding: a constant of type {other:?}")),
    };
    let raw = t.as_bytes().to_vec();
    Ok(tensor(name.into(), ty, &dims, raw))
}

/// The model region computed in f16: its f32 constants converted, the f32 values that enter it
/// cast to f16 and those that leave it cast back to f32.
pub fn to_f16(m: &pb::ModelProto) -> pb::ModelProto {
    let mut m = m.clone();
    let g = graph_mut(&mut m);
    let consts: HashMap<String, pb::TensorProto> = g.initializer.iter().map(|t| (t.name.clone(), t.clone())).collect();
    let made: HashSet<String> = g.node.iter().filter(|n| in_region(n)).flat_map(|n| n.output.iter().cloned()).collect();
    let mut casts: HashMap<String, String> = HashMap::new();
    let mut halves: Vec<pb::TensorProto> = Vec::new();
    let mut nodes = Vec::with_capacity(g.node.len());
    for mut n in std::mem::take(&mut g.node) {
        if in_region(&n) {
            for input in n.input.iter_mut() {
                if input.is_empty() || made.contains(input) {
                    continue;
                }
                if let Some(t) = consts.get(input) {
                    if let Some(v) = f32_values(t) {
                        let name = format!("{input}_f16");
                        if !halves.iter().any(|h| h.name == name) {
                            let raw = v.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect();
                            halves.push(tensor(name.clone(), DataType::Float16, &t.dims, raw));
                        }
                        *input = name;
                    }
                    continue;
                }
                // An f32 value from outside (the region's inputs are f32 columns).
                let cast = casts.entry(input.clone()).or_insert_with(|| format!("{input}_f16"));
                if !nodes.iter().any(|x: &pb::NodeProto| x.output.first() == Some(cast)) {
                    nodes.push(node(
                        "Cast",
                        format!("{MODEL_REGION}/{cast}"),
                        &[input],
                        cast,
                        vec![attr_int("to", DataType::Float16 as i64)],
                    ));
                }
                *input = cast.clone();
            }
            if n.op_type == "Cast" {
                for a in n.attribute.iter_mut().filter(|a| a.name == "to" && a.i == DataType::Float as i64) {
                    a.i = DataType::Float16 as i64;
                }
            }
            nodes.push(n);
        } else {
            // A value the region made, used outside it: back to f32.
            for input in n.input.iter_mut() {
                if made.contains(input) {
                    let back = format!("{input}_f32");
                    if !nodes.iter().any(|x: &pb::NodeProto| x.output.first() == Some(&back)) {
                        nodes.push(node(
                            "Cast",
                            String::new(),
                            &[input],
                            &back,
                            vec![attr_int("to", DataType::Float as i64)],
                        ));
                    }
                    *input = back;
                }
            }
            nodes.push(n);
        }
    }
    g.node = nodes;
    g.initializer.extend(halves);
    m
}

/// A product of the model region by a constant matrix: which input is the matrix (the
/// weights), which the values, and the axis of the weights along which each output has its own
/// scale. `MatMul(x, W[K, N])` has its outputs along W's columns; `MatMul(W[M, K], X)` and
/// `Gemm(W[M, K], X)` (the form aiic writes: features down the rows) along W's rows.
struct Product {
    weights: usize,
    values: usize,
    axis: usize,
}

fn product(n: &pb::NodeProto, consts: &HashSet<&str>) -> Option<Product> {
    let is_const = |i: usize| n.input.get(i).is_some_and(|x| consts.contains(x.as_str()));
    let plain =
        |n: &pb::NodeProto| n.attribute.iter().all(|a| !matches!(a.name.as_str(), "transA" | "transB") || a.i == 0);
    if !in_region(n) {
        return None;
    }
    match n.op_type.as_str() {
        "MatMul" if n.input.len() == 2 && is_const(1) && !is_const(0) => {
            Some(Product { weights: 1, values: 0, axis: 1 })
        }
        "MatMul" if n.input.len() == 2 && is_const(0) && !is_const(1) => {
            Some(Product { weights: 0, values: 1, axis: 0 })
        }
        "Gemm" if plain(n) && is_const(0) && !is_const(1) => Some(Product { weights: 0, values: 1, axis: 0 }),
        _ => None,
    }
}

/// The values whose ranges int8 quantization needs: the other operand of each product of the
/// model region by a constant matrix (the weights).
pub fn calibration_points(m: &pb::ModelProto) -> Vec<String> {
    let Some(g) = &m.graph else { return Vec::new() };
    let consts: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    g.node.iter().filter_map(|n| product(n, &consts).map(|p| n.input[p.values].clone())).collect()
}

/// The graph with these intermediate values as extra outputs (after its own), for calibration.
pub fn with_outputs(m: &pb::ModelProto, names: &[String]) -> pb::ModelProto {
    let mut m = m.clone();
    let g = graph_mut(&mut m);
    for n in names {
        g.output.push(pb::ValueInfoProto {
            name: n.clone(),
            r#type: Some(pb::TypeProto {
                value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                    elem_type: DataType::Float as i32,
                    shape: None,
                })),
                denotation: String::new(),
            }),
            doc_string: String::new(),
        });
    }
    m
}

/// Whether int8 weights keep to 7 bits: x86 processors without VNNI multiply u8 by s8 in pairs
/// summed in 16 bits (`vpmaddubsw`), which saturates with full-range weights; ONNX Runtime's
/// and OpenVINO's kernels use it there.
pub fn int8_reduced_range() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        !(std::arch::is_x86_feature_detected!("avx512vnni") || std::arch::is_x86_feature_detected!("avxvnni"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The model region's products in int8 (QDQ): each constant weight matrix quantized
/// symmetrically with one scale per output (to ±63 where `reduced`, see
/// [`int8_reduced_range`], else ±127); each other operand quantized per tensor to u8 over
/// `ranges` (its smallest and largest value on the calibration state, by name). Products with no
/// range stay f32.
pub fn quantize_int8(m: &pb::ModelProto, ranges: &HashMap<String, (f32, f32)>, reduced: bool) -> pb::ModelProto {
    let top = if reduced { 63.0f32 } else { 127.0 };
    let mut m = m.clone();
    let g = graph_mut(&mut m);
    let consts: HashMap<String, pb::TensorProto> = g.initializer.iter().map(|t| (t.name.clone(), t.clone())).collect();
    let names: HashSet<&str> = consts.keys().map(String::as_str).collect();
    let mut extra: Vec<pb::TensorProto> = Vec::new();
    let mut nodes = Vec::with_capacity(g.node.len());
    for mut n in std::mem::take(&mut g.node) {
        let Some(pr) = product(&n, &names) else {
            nodes.push(n);
            continue;
        };
        let w = consts.get(&n.input[pr.weights]).filter(|t| t.dims.len() == 2);
        let range = ranges.get(&n.input[pr.values]);
        let (Some(w), Some(&(lo, hi)), Some(values)) = (w, range, w.and_then(f32_values)) else {
            nodes.push(n);
            continue;
        };
        let (rows, cols) = (w.dims[0] as usize, w.dims[1] as usize);
        let outs = if pr.axis == 0 { rows } else { cols };
        let out_of = |i: usize| if pr.axis == 0 { i / cols } else { i % cols };
        let tag = n.output[0].clone();
        let p = |s: &str| format!("{tag}_{s}");
        // Weights: int8, one scale per output, zero point 0.
        let mut scales = vec![f32::MIN_POSITIVE; outs];
        for (i, v) in values.iter().enumerate() {
            scales[out_of(i)] = scales[out_of(i)].max(v.abs());
        }
        scales.iter_mut().for_each(|s| *s /= top);
        let q: Vec<u8> = values
            .iter()
            .enumerate()
            .map(|(i, v)| ((v / scales[out_of(i)]).round().clamp(-top, top) as i8) as u8)
            .collect();
        extra.push(tensor(p("wq"), DataType::Int8, &w.dims, q));
        extra.push(tensor(
            p("ws"),
            DataType::Float,
            &[outs as i64],
            scales.iter().flat_map(|s| s.to_le_bytes()).collect(),
        ));
        extra.push(tensor(p("wz"), DataType::Int8, &[outs as i64], vec![0; outs]));
        // The other operand: u8 over [min(lo, 0), max(hi, 0)], so that 0 is exact.
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let scale = ((hi - lo) / 255.0).max(f32::MIN_POSITIVE);
        let zero = (-lo / scale).round().clamp(0.0, 255.0) as u8;
        extra.push(tensor(p("as"), DataType::Float, &[], scale.to_le_bytes().to_vec()));
        extra.push(tensor(p("az"), DataType::Uint8, &[], vec![zero]));
        let name = |s: &str| format!("{MODEL_REGION}/{}", p(s));
        let v = n.input[pr.values].clone();
        nodes.push(node("QuantizeLinear", name("aq"), &[&v, &p("as"), &p("az")], &p("aq"), vec![]));
        nodes.push(node("DequantizeLinear", name("ad"), &[&p("aq"), &p("as"), &p("az")], &p("ad"), vec![]));
        let axis = vec![attr_int("axis", pr.axis as i64)];
        nodes.push(node("DequantizeLinear", name("wd"), &[&p("wq"), &p("ws"), &p("wz")], &p("wd"), axis));
        n.input[pr.values] = p("ad");
        n.input[pr.weights] = p("wd");
        nodes.push(n);
    }
    g.node = nodes;
    g.initializer.extend(extra);
    let used: HashSet<String> = g.node.iter().flat_map(|n| n.input.iter().cloned()).collect();
    g.initializer.retain(|t| used.contains(&t.name));
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::engine::{Data, Engine, HostTensor};

    fn f32s(name: &str, dims: &[i64], v: &[f32]) -> pb::TensorProto {
        tensor(name.into(), DataType::Float, dims, v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    /// An f32 graph input or output, `[4, 3]` where `shaped`.
    fn io(name: &str, shaped: bool) -> pb::ValueInfoProto {
        let mut v = with_outputs(&pb::ModelProto::default(), &[name.to_string()]).graph.unwrap().output.remove(0);
        if let Some(pb::type_proto::Value::TensorType(t)) = v.r#type.as_mut().and_then(|t| t.value.as_mut()) {
            let dim = |d| pb::tensor_shape_proto::Dimension {
                value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(d)),
                denotation: String::new(),
            };
            t.shape = shaped.then(|| pb::TensorShapeProto { dim: vec![dim(4), dim(3)] });
        }
        v
    }

    /// y = tanh(x · Wᵀᵀ + b) over x `[4, 3]`, with Wᵀ stored and transposed back by a node (for
    /// the folding); the product, bias and tanh are the model region.
    fn model() -> pb::ModelProto {
        let wt: Vec<f32> = (0..6).map(|i| (i as f32 - 2.5) * 0.3).collect(); // [2, 3]
        let r = |s: &str| format!("{MODEL_REGION}/{s}");
        pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: 17 }],
            graph: Some(pb::GraphProto {
                name: "m".into(),
                node: vec![
                    node("Transpose", String::new(), &["wt"], "w", vec![]),
                    node("MatMul", r("h"), &["x", "w"], "h", vec![]),
                    node("Add", r("a"), &["h", "b"], "a", vec![]),
                    node("Tanh", r("t"), &["a"], "t", vec![]),
                    node("Identity", String::new(), &["t"], "y", vec![]),
                ],
                initializer: vec![f32s("wt", &[2, 3], &wt), f32s("b", &[2], &[0.1, -0.2])],
                input: vec![io("x", true)],
                output: vec![io("y", false)],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn run(m: &pb::ModelProto) -> Vec<f64> {
        let x: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut s = Engine::Tract.load(&crate::onnx::encode(m)).expect("loads");
        let out = s.run(vec![HostTensor { shape: vec![4, 3], data: Data::F32(x) }]).expect("runs");
        (0..out[0].data.len()).map(|i| out[0].data.get(i)).collect()
    }

    fn ops(m: &pb::ModelProto) -> Vec<String> {
        m.graph.as_ref().unwrap().node.iter().map(|n| n.op_type.clone()).collect()
    }

    #[test]
    fn folding_turns_constant_nodes_into_constants() {
        let m = model();
        let (folded, n) = fold_constants(&m).expect("folds");
        assert_eq!(n, 1);
        assert!(!ops(&folded).contains(&"Transpose".to_string()));
        assert_eq!(run(&folded), run(&m));
    }

    #[test]
    fn f16_computes_the_region_in_f16() {
        let (m, _) = fold_constants(&model()).unwrap();
        let half = to_f16(&m);
        let g = half.graph.as_ref().unwrap();
        let w = g.initializer.iter().find(|t| t.name == "w_f16").expect("f16 weights");
        assert_eq!(w.data_type, DataType::Float16 as i32);
        assert_eq!(ops(&half).iter().filter(|o| *o == "Cast").count(), 2, "{:?}", ops(&half));
        let e = relative_error(&[run(&m)], &[run(&half)], &[]);
        assert!(e > 0.0 && e < 2e-3, "f16 error {e}");
    }

    #[test]
    fn int8_puts_qdq_around_the_products_over_the_calibrated_range() {
        let (m, _) = fold_constants(&model()).unwrap();
        assert_eq!(calibration_points(&m), vec!["x".to_string()]);
        let ranges = HashMap::from([("x".to_string(), (-1.0f32, 1.0f32))]);
        let q = quantize_int8(&m, &ranges, false);
        let o = ops(&q);
        assert!(
            o.contains(&"QuantizeLinear".to_string()) && o.iter().filter(|x| *x == "DequantizeLinear").count() == 2
        );
        let g = q.graph.as_ref().unwrap();
        assert!(g.initializer.iter().any(|t| t.data_type == DataType::Int8 as i32 && t.dims == vec![3, 2]));
        let e = relative_error(&[run(&m)], &[run(&q)], &[]);
        assert!(e > 0.0 && e < 3e-2, "int8 error {e}");
        // Without a range the product stays f32.
        assert_eq!(ops(&quantize_int8(&m, &HashMap::new(), false)), ops(&m));
    }
}
