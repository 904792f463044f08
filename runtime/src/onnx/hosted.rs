//! Hosted models (see [`crate::ir::HostedModel`]): ONNX graphs aiic could not read into its IR,
//! run as they are on the host over the agents' columns, which every executor copies in and out
//! of wherever its state lives ([`crate::ir::Sched::Model`]).

use super::engine::{Available, Data, Engine, HostTensor, Session};
use crate::host::HostColumn;
use crate::ir::interp::RunError;
use crate::ir::Module;

/// The engine hosted models run on outside the ONNX targets: ONNX Runtime on the CPU where it
/// is installed, else tract.
pub fn host_engine() -> Engine {
    Available::probe().engine("onnx").unwrap_or(Engine::Tract)
}

/// Each hosted model's session, loaded by `load_all` or on its first run.
pub struct Hosted {
    engine: Engine,
    sessions: Vec<Option<Box<dyn Session>>>,
}

impl Hosted {
    pub fn new(module: &Module, engine: Engine) -> Self {
        Hosted { engine, sessions: module.hosted.iter().map(|_| None).collect() }
    }

    /// What the user is told: each hosted model, where it runs and why.
    pub fn notes(&self, module: &Module) -> Vec<String> {
        module
            .hosted
            .iter()
            .map(|h| {
                let batch = match h.batch {
                    0 => String::new(),
                    b => format!(
                        "; it was exported for batches of {b} agents, so it runs once per {b} (export it with a dynamic first axis to run all of them at once)"
                    ),
                };
                format!(
                    "model `{}` ({}) runs as an ONNX graph through {} on the host, its {} input and {} output columns copied every step: aiic cannot read it into its own code ({}){batch}",
                    h.name,
                    h.file,
                    self.engine.name(),
                    h.inputs,
                    h.outputs,
                    h.reason
                )
            })
            .collect()
    }

    /// Loads every model into the engine now rather than at its first run, so that an engine
    /// that refuses one says so before the first step.
    pub fn load_all(&mut self, module: &Module) -> Result<(), String> {
        for (i, h) in module.hosted.iter().enumerate() {
            if self.sessions[i].is_none() {
                let s = self.engine.load(&readable_ir(&h.bytes));
                self.sessions[i] = Some(s.map_err(|e| format!("model `{}` on {}: {e}", h.name, self.engine.name()))?);
            }
        }
        Ok(())
    }

    /// Runs hosted model `model` on the first `n` agents of `cols`: its input features are
    /// columns `which`, in order. Its output, a column per lane.
    pub fn run<C: HostColumn>(
        &mut self,
        module: &Module,
        model: usize,
        cols: &[C],
        which: &[u32],
        n: usize,
    ) -> Result<Vec<Vec<f32>>, RunError> {
        if self.sessions[model].is_none() {
            self.load_all(module).map_err(RunError::Invalid)?;
        }
        let h = &module.hosted[model];
        let fail = |e: String| RunError::Invalid(format!("model `{}` on {}: {e}", h.name, self.engine.name()));
        let Some(session) = self.sessions[model].as_mut() else { unreachable!("loaded above") };
        let (inputs, outputs) = (h.inputs as usize, h.outputs as usize);
        let mut lanes = vec![Vec::with_capacity(n); outputs];
        if n == 0 {
            return Ok(lanes);
        }
        let rows = pack(cols, which, n);
        // A model exported with a fixed batch runs in batches of that size, the last one padded;
        // any other takes all the rows in one call, as they are.
        let chunks: Vec<Vec<f32>> = match h.batch as usize {
            0 => vec![rows],
            b => rows
                .chunks(b * inputs)
                .map(|c| {
                    let mut c = c.to_vec();
                    c.resize(b * inputs, 0.0);
                    c
                })
                .collect(),
        };
        let mut done = 0;
        for chunk in chunks {
            let rows_in = chunk.len() / inputs.max(1);
            let take = rows_in.min(n - done);
            let result = session
                .run(vec![HostTensor { shape: vec![rows_in, inputs], data: Data::F32(chunk) }])
                .map_err(|e| fail(e.to_string()))?;
            let y = result.into_iter().next().ok_or_else(|| fail("it gave no output".into()))?;
            if y.data.len() != rows_in * outputs {
                return Err(fail(format!(
                    "it gave {} values (shape {:?}) for {rows_in} rows of {outputs}",
                    y.data.len(),
                    y.shape
                )));
            }
            for i in 0..take {
                for (l, lane) in lanes.iter_mut().enumerate() {
                    lane.push(y.data.get(i * outputs + l) as f32);
                }
            }
            done += take;
        }
        Ok(lanes)
    }
}

/// The model with the IR version its operator set needs, where it claims a newer one: the
/// `onnx` package stamps the newest IR version it knows (14 for onnx 1.19 and later), which
/// runtimes a little older refuse (ONNX Runtime 1.30 reads up to 13), though a model of opset 17
/// uses nothing past IR 8. Only that number changes in the bytes: decoding and encoding the
/// whole model would drop what tract's copy of the schema lacks. Unchanged where the opset is
/// newer than the table below.
pub fn readable_ir(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let Ok(m) = super::decode(bytes) else { return bytes.into() };
    let opset = m.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map(|o| o.version);
    // ONNX's versioning table: the IR version each release's newest opset came with.
    let needs: u64 = match opset {
        Some(..=8) => 3,
        Some(9) => 4,
        Some(10) => 5,
        Some(11) => 6,
        Some(12..=14) => 7,
        Some(15..=18) => 8,
        Some(19..=20) => 9,
        Some(21..=22) => 10,
        Some(23) => 11,
        _ => return bytes.into(),
    };
    if m.ir_version <= needs as i64 {
        return bytes.into();
    }
    match ir_version_at(bytes) {
        Some(at) => {
            let mut out = bytes[..at.start].to_vec();
            let mut v = needs;
            while v >= 0x80 {
                out.push((v as u8 & 0x7f) | 0x80);
                v >>= 7;
            }
            out.push(v as u8);
            out.extend_from_slice(&bytes[at.end..]);
            out.into()
        }
        None => bytes.into(),
    }
}

/// Where the value of `ModelProto.ir_version` (field 1, a varint) lies in the model's bytes.
fn ir_version_at(bytes: &[u8]) -> Option<std::ops::Range<usize>> {
    let varint = |at: &mut usize| -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *bytes.get(*at)?;
            *at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    };
    let mut at = 0;
    while at < bytes.len() {
        let tag = varint(&mut at)?;
        let start = at;
        match tag & 7 {
            0 => {
                varint(&mut at)?;
                if tag >> 3 == 1 {
                    return Some(start..at);
                }
            }
            1 => at += 8,
            2 => at += varint(&mut at)? as usize,
            5 => at += 4,
            _ => return None,
        }
    }
    None
}

/// The input rows of a hosted model: lane `l` of row `i` is agent `i`'s value of column
/// `which[l]`, in f32.
fn pack<C: HostColumn>(cols: &[C], which: &[u32], n: usize) -> Vec<f32> {
    let mut rows = vec![0.0f32; n * which.len()];
    for (l, &c) in which.iter().enumerate() {
        for i in 0..n {
            rows[i * which.len() + l] = cols[c as usize].get(i) as f32;
        }
    }
    rows
}

/// What a hosted model takes and gives: `(inputs, outputs, batch)` for one f32 input
/// `[batch, inputs]` and one f32 output `[batch, outputs]`, `batch` 0 where the model takes any
/// number of rows; or why the model is not of that form.
pub fn signature(bytes: &[u8]) -> Result<(u32, u32, u32), String> {
    use super::pb;
    let model = super::decode(bytes).map_err(|e| format!("not an ONNX model ({e})"))?;
    let g = model.graph.ok_or("the model has no graph")?;
    // Weights in a file beside the model cannot travel with the program, nor be found from
    // bytes in memory.
    let external = pb::tensor_proto::DataLocation::External as i32;
    if let Some(t) = g.initializer.iter().find(|t| t.data_location == Some(external) || !t.external_data.is_empty()) {
        return Err(format!(
            "its constant `{}` is stored in a separate file (external data); save the model with its weights inside it (`onnx.save(model, path, save_as_external_data=False)`)",
            t.name
        ));
    }
    let inits: Vec<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&pb::ValueInfoProto> = g.input.iter().filter(|i| !inits.contains(&i.name.as_str())).collect();
    let ([input], [output]) = (inputs.as_slice(), g.output.as_slice()) else {
        return Err(format!(
            "it has {} inputs and {} outputs; a model aiic runs as it is takes one matrix of agents' values and gives one",
            inputs.len(),
            g.output.len()
        ));
    };
    // Each dimension: Some(size), or None where it is named rather than fixed.
    let dims = |v: &pb::ValueInfoProto| -> Option<(i32, Vec<Option<u32>>)> {
        let Some(pb::type_proto::Value::TensorType(t)) = v.r#type.as_ref()?.value.as_ref() else { return None };
        let dims = t.shape.as_ref()?.dim.iter().map(|d| match d.value {
            Some(pb::tensor_shape_proto::dimension::Value::DimValue(n)) if n > 0 => Some(n as u32),
            _ => None,
        });
        Some((t.elem_type, dims.collect()))
    };
    let float = pb::tensor_proto::DataType::Float as i32;
    let (batch, width) = match dims(input) {
        Some((t, d)) if t == float && d.len() == 2 && d[1].is_some() => (d[0].unwrap_or(0), d[1].unwrap_or(0)),
        _ => {
            return Err(format!(
                "its input `{}` is not an f32 matrix [agents, features] of a fixed number of features",
                input.name
            ))
        }
    };
    let out = match dims(output) {
        Some((t, d)) if t == float && d.len() == 2 && d[1].is_some() => d[1].unwrap_or(0),
        Some((t, _)) if t != float => return Err(format!("its output `{}` is not f32", output.name)),
        // The output's shape is not written down: infer it from the input's.
        _ => output_width(bytes, batch.max(1), width)?,
    };
    Ok((width, out, batch))
}

/// The width of a model's output on `[rows, width]` inputs, by tract's shape inference.
fn output_width(bytes: &[u8], rows: u32, width: u32) -> Result<u32, String> {
    use tract_onnx::prelude::*;
    let shape = (|| -> TractResult<Option<Vec<usize>>> {
        let model = tract_onnx::onnx().model_for_read(&mut &bytes[..])?;
        let fact: InferenceFact = f32::fact([rows as usize, width as usize]).into();
        let typed = model.with_input_fact(0, fact)?.into_typed()?;
        let out = typed.output_fact(0)?;
        Ok(out.shape.as_concrete().map(|s| s.to_vec()))
    })()
    .map_err(|e| format!("its output's shape cannot be inferred ({e})"))?;
    match shape.as_deref() {
        Some([_, w]) => Ok(*w as u32),
        _ => Err(format!("its output is not a matrix [agents, values] (shape {shape:?})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(ir: i64, opset: i64) -> Vec<u8> {
        let m = super::super::pb::ModelProto {
            ir_version: ir,
            opset_import: vec![super::super::pb::OperatorSetIdProto { domain: String::new(), version: opset }],
            ..Default::default()
        };
        super::super::encode(&m)
    }

    fn ir(bytes: &[u8]) -> i64 {
        super::super::decode(bytes).map(|m| m.ir_version).unwrap_or(-1)
    }

    #[test]
    fn a_newer_ir_stamp_comes_down_to_what_the_opset_needs() {
        assert_eq!(ir(&readable_ir(&model(14, 17))), 8);
        assert_eq!(ir(&readable_ir(&model(14, 21))), 10);
        assert_eq!(ir(&readable_ir(&model(7, 17))), 7, "never raised");
        assert_eq!(ir(&readable_ir(&model(14, 40))), 14, "an opset past the table is left alone");
        assert_eq!(&*readable_ir(b"not a model"), b"not a model");
    }

    /// `y = 2x` over `[4, 3]` rows: a model exported with a fixed batch of 4.
    fn doubling() -> Vec<u8> {
        use super::super::pb;
        let io = |name: &str| pb::ValueInfoProto {
            name: name.into(),
            r#type: Some(pb::TypeProto {
                value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                    elem_type: pb::tensor_proto::DataType::Float as i32,
                    shape: Some(pb::TensorShapeProto {
                        dim: [4, 3]
                            .map(|d| pb::tensor_shape_proto::Dimension {
                                value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(d)),
                                denotation: String::new(),
                            })
                            .to_vec(),
                    }),
                })),
                denotation: String::new(),
            }),
            ..Default::default()
        };
        let two = pb::TensorProto {
            name: "two".into(),
            data_type: pb::tensor_proto::DataType::Float as i32,
            float_data: vec![2.0],
            ..Default::default()
        };
        let m = pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: 17 }],
            graph: Some(pb::GraphProto {
                node: vec![pb::NodeProto {
                    op_type: "Mul".into(),
                    input: vec!["x".into(), "two".into()],
                    output: vec!["y".into()],
                    ..Default::default()
                }],
                initializer: vec![two],
                input: vec![io("x")],
                output: vec![io("y")],
                ..Default::default()
            }),
            ..Default::default()
        };
        super::super::encode(&m)
    }

    #[test]
    fn a_model_of_a_fixed_batch_runs_in_batches_the_last_one_padded() {
        let bytes = doubling();
        assert_eq!(signature(&bytes), Ok((3, 3, 4)));
        let module = Module {
            hosted: vec![crate::ir::HostedModel {
                name: "double".into(),
                file: "double.onnx".into(),
                reason: String::new(),
                inputs: 3,
                outputs: 3,
                batch: 4,
                bytes,
            }],
            ..serde_json::from_str(r#"{"name":"m","agents":[],"column_types":[],"uniforms":[],"kernels":[],"init":[],"prime":[],"step":[],"laws":[],"interactions":[],"integrations":[]}"#)
                .expect("an empty module")
        };
        let mut hosted = Hosted::new(&module, Engine::Tract);
        assert!(hosted.notes(&module)[0].contains("batches of 4 agents"));
        // 10 agents: batches of 4, 4 and 2 (padded to 4); columns 1, 0, 2 as the features.
        let cols: Vec<Vec<f64>> = (0..3).map(|c| (0..10).map(|i| (10 * c + i) as f64).collect()).collect();
        let lanes = hosted.run(&module, 0, &cols, &[1, 0, 2], 10).expect("run");
        assert_eq!(lanes.len(), 3);
        for (lane, col) in lanes.iter().zip([1, 0, 2]) {
            let want: Vec<f32> = cols[col].iter().map(|&x| 2.0 * x as f32).collect();
            assert_eq!(lane, &want);
        }
        assert!(hosted.run(&module, 0, &cols, &[1, 0, 2], 0).expect("no agents").iter().all(Vec::is_empty));
    }

    #[test]
    fn only_the_ir_version_changes_in_the_bytes() {
        let mut m = super::super::decode(&model(14, 17)).expect("model");
        m.producer_name = "a writer".into();
        m.doc_string = "x".repeat(300);
        let before = super::super::encode(&m);
        let after = readable_ir(&before);
        assert_eq!(after.len(), before.len(), "one varint byte for another");
        let diff: Vec<usize> = (0..before.len()).filter(|&i| before[i] != after[i]).collect();
        assert_eq!(diff.len(), 1, "{diff:?}");
        assert_eq!(ir(&after), 8);
    }
}
