//! Kernels as ONNX graphs: the plan that wires them to the agents' columns ([`plan`]), the
//! engines that run them (tract in-process, ONNX Runtime loaded at run time), and the executor
//! that runs a module's schedule with them ([`exec`]).

pub mod engine;
pub mod exec;
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
