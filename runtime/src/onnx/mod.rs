//! Kernels as ONNX graphs: the plan that wires them to the agents' columns ([`plan`]), the
//! engines that run them (tract in-process, ONNX Runtime loaded at run time), and the executor
//! that runs a module's schedule with them ([`exec`]).

pub mod compile;
pub mod engine;
pub mod exec;
pub mod hosted;
pub mod openvino;
pub mod plan;

/// The ONNX protobuf messages, as tract's ONNX reader defines them (`onnx.proto3`).
pub use tract_onnx::pb;

/// The bytes of an ONNX model.
pub fn encode(model: &pb::ModelProto) -> Vec<u8> {
    use prost::Message;
    model.encode_to_vec()
}

/// A model from its bytes, or why they are not one.
pub fn decode(bytes: &[u8]) -> Result<pb::ModelProto, String> {
    use prost::Message;
    pb::ModelProto::decode(bytes).map_err(|e| e.to_string())
}

/// Whether a graph (its bytes) has an f64 input, output, constant or conversion to f64.
pub fn uses_f64(graph: &[u8]) -> bool {
    let Ok(m) = decode(graph) else { return false };
    let Some(g) = m.graph else { return false };
    let double = pb::tensor_proto::DataType::Double as i32;
    let typed = |v: &pb::ValueInfoProto| match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(pb::type_proto::Value::TensorType(t)) => t.elem_type == double,
        _ => false,
    };
    g.input.iter().chain(&g.output).any(typed)
        || g.initializer.iter().any(|t| t.data_type == double)
        || g.node.iter().any(|n| {
            n.attribute.iter().any(|a| {
                (a.name == "to" && a.i == double as i64) || a.t.as_ref().is_some_and(|t| t.data_type == double)
            })
        })
}
