//! An ONNX graph under construction: typed values, nodes, constants, inputs and outputs, and a
//! text listing of it for the snapshots.

use aiic_runtime::onnx::pb;
use pb::attribute_proto::AttributeType;
use pb::tensor_proto::DataType;
use pb::tensor_shape_proto::{dimension, Dimension};
use std::collections::HashMap;
use std::fmt::Write;

/// The element types the graphs compute in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Elem {
    F32,
    F64,
    I32,
    I64,
    Bool,
}

impl Elem {
    pub fn code(self) -> i32 {
        (match self {
            Elem::F32 => DataType::Float,
            Elem::F64 => DataType::Double,
            Elem::I32 => DataType::Int32,
            Elem::I64 => DataType::Int64,
            Elem::Bool => DataType::Bool,
        }) as i32
    }

    fn name(self) -> &'static str {
        match self {
            Elem::F32 => "float",
            Elem::F64 => "double",
            Elem::I32 => "int32",
            Elem::I64 => "int64",
            Elem::Bool => "bool",
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, Elem::F32 | Elem::F64)
    }
}

/// A dimension of a graph input or output: named (the agents, a block, the pairs) or fixed.
#[derive(Debug, Clone, PartialEq)]
pub enum Dim {
    Named(&'static str),
    Fixed(i64),
}

/// A value of the graph: its name and element type.
#[derive(Debug, Clone, PartialEq)]
pub struct Val {
    pub name: String,
    pub elem: Elem,
}

/// An attribute of a node.
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

#[derive(Default)]
pub struct Graph {
    nodes: Vec<pb::NodeProto>,
    inits: Vec<pb::TensorProto>,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: Vec<pb::ValueInfoProto>,
    next: u32,
    /// Scalar constants made so far, by element type and bits.
    scalars: HashMap<(Elem, u64), String>,
    /// While set, nodes are named `REGION/OUTPUT`: the model compilation pipeline converts the
    /// nodes of the `model` region (an `mlp` or `@`) to f16 or int8.
    pub region: Option<&'static str>,
}

/// The type of a graph input or output.
pub(crate) fn value_info(name: &str, elem: Elem, dims: &[Dim]) -> pb::ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Named(n) => dimension::Value::DimParam(n.to_string()),
                Dim::Fixed(v) => dimension::Value::DimValue(*v),
            }),
            denotation: String::new(),
        })
        .collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem.code(),
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

impl Graph {
    fn fresh(&mut self) -> String {
        self.next += 1;
        format!("t{}", self.next)
    }

    /// A graph input of this element type and shape.
    pub fn input(&mut self, name: &str, elem: Elem, dims: &[Dim]) -> Val {
        self.inputs.push(value_info(name, elem, dims));
        Val { name: name.into(), elem }
    }

    /// Makes `v` a graph output named `name`, of this shape.
    pub fn output(&mut self, v: &Val, name: &str, dims: &[Dim]) {
        self.nodes.push(pb::NodeProto {
            input: vec![v.name.clone()],
            output: vec![name.into()],
            op_type: "Identity".into(),
            ..Default::default()
        });
        self.outputs.push(value_info(name, v.elem, dims));
    }

    /// A node of one output of element type `elem`.
    pub fn node(&mut self, op: &str, inputs: &[&Val], attrs: Vec<(&str, Attr)>, elem: Elem) -> Val {
        let out = self.fresh();
        let attribute = attrs
            .into_iter()
            .map(|(name, a)| {
                let mut p = pb::AttributeProto { name: name.into(), ..Default::default() };
                match a {
                    Attr::Int(i) => {
                        p.r#type = AttributeType::Int as i32;
                        p.i = i;
                    }
                    Attr::Ints(v) => {
                        p.r#type = AttributeType::Ints as i32;
                        p.ints = v;
                    }
                    Attr::Float(f) => {
                        p.r#type = AttributeType::Float as i32;
                        p.f = f;
                    }
                }
                p
            })
            .collect();
        self.nodes.push(pb::NodeProto {
            name: self.region.map(|r| format!("{r}/{out}")).unwrap_or_default(),
            input: inputs.iter().map(|v| v.name.clone()).collect(),
            output: vec![out.clone()],
            op_type: op.into(),
            attribute,
            ..Default::default()
        });
        Val { name: out, elem }
    }

    /// A node whose output has the element type of its first input.
    pub fn op(&mut self, op: &str, inputs: &[&Val]) -> Val {
        let elem = inputs[0].elem;
        self.node(op, inputs, Vec::new(), elem)
    }

    /// A scalar constant of element type `elem` with value `x`.
    pub fn scalar(&mut self, elem: Elem, x: f64) -> Val {
        let bits = match elem {
            Elem::F32 => (x as f32).to_bits() as u64,
            Elem::F64 => x.to_bits(),
            Elem::I32 => x as i32 as u32 as u64,
            Elem::I64 => x as i64 as u64,
            Elem::Bool => u64::from(x != 0.0),
        };
        if let Some(name) = self.scalars.get(&(elem, bits)) {
            return Val { name: name.clone(), elem };
        }
        let name = self.fresh();
        let mut t = pb::TensorProto { name: name.clone(), data_type: elem.code(), ..Default::default() };
        match elem {
            Elem::F32 => t.float_data = vec![x as f32],
            Elem::F64 => t.double_data = vec![x],
            Elem::I32 | Elem::Bool => t.int32_data = vec![bits as i32],
            Elem::I64 => t.int64_data = vec![x as i64],
        }
        self.inits.push(t);
        self.scalars.insert((elem, bits), name.clone());
        Val { name, elem }
    }

    /// A constant tensor of i64s, one-dimensional (axes, shapes).
    pub fn ints(&mut self, values: &[i64]) -> Val {
        let name = self.fresh();
        self.inits.push(pb::TensorProto {
            name: name.clone(),
            data_type: Elem::I64.code(),
            dims: vec![values.len() as i64],
            int64_data: values.to_vec(),
            ..Default::default()
        });
        Val { name, elem: Elem::I64 }
    }

    /// A constant tensor of f32s of this shape, row-major.
    pub fn floats(&mut self, dims: &[i64], values: Vec<f32>) -> Val {
        let name = self.fresh();
        self.inits.push(pb::TensorProto {
            name: name.clone(),
            data_type: Elem::F32.code(),
            dims: dims.to_vec(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        Val { name, elem: Elem::F32 }
    }

    /// `v` as element type `elem` (itself where it already is).
    pub fn cast(&mut self, v: &Val, elem: Elem) -> Val {
        if v.elem == elem {
            return v.clone();
        }
        self.node("Cast", &[v], vec![("to", Attr::Int(elem.code() as i64))], elem)
    }

    /// Drops the nodes whose outputs nothing reads (values a kernel computed for a branch it
    /// did not take, a plain sum beside its compensated one) and the constants they read:
    /// engines run every node they are given.
    fn prune(&mut self) {
        let mut live: std::collections::HashSet<String> = self.outputs.iter().map(|o| o.name.clone()).collect();
        let mut keep = vec![false; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate().rev() {
            if n.output.iter().any(|o| live.contains(o)) {
                keep[i] = true;
                live.extend(n.input.iter().cloned());
            }
        }
        let mut k = keep.into_iter();
        self.nodes.retain(|_| k.next().unwrap_or(true));
        self.inits.retain(|t| live.contains(&t.name));
    }

    /// The model: this graph under the default ONNX domain at `opset`.
    pub fn finish(mut self, name: &str, opset: i64) -> pb::ModelProto {
        self.prune();
        pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: opset }],
            producer_name: "aiic".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(pb::GraphProto {
                name: name.into(),
                node: self.nodes,
                initializer: self.inits,
                input: self.inputs,
                output: self.outputs,
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// A listing of a model, one line an input, constant, node and output: what the snapshots keep.
pub fn text(model: &pb::ModelProto) -> String {
    let mut out = String::new();
    let Some(g) = &model.graph else { return out };
    let opset = model.opset_import.first().map_or(0, |o| o.version);
    let _ = writeln!(out, "graph {} (opset {opset})", g.name);
    let ty = |v: &pb::ValueInfoProto| -> String {
        let Some(pb::type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
            return "?".into();
        };
        let elem = [Elem::F32, Elem::F64, Elem::I32, Elem::I64, Elem::Bool]
            .into_iter()
            .find(|e| e.code() == t.elem_type)
            .map_or("?", Elem::name);
        let dims: Vec<String> = t
            .shape
            .iter()
            .flat_map(|s| &s.dim)
            .map(|d| match &d.value {
                Some(dimension::Value::DimParam(p)) => p.clone(),
                Some(dimension::Value::DimValue(v)) => v.to_string(),
                None => "?".into(),
            })
            .collect();
        format!("{elem}[{}]", dims.join(", "))
    };
    for i in &g.input {
        let _ = writeln!(out, "  in  {}: {}", i.name, ty(i));
    }
    for t in &g.initializer {
        let elem = [Elem::F32, Elem::F64, Elem::I32, Elem::I64, Elem::Bool]
            .into_iter()
            .find(|e| e.code() == t.data_type)
            .map_or("?", Elem::name);
        let n: i64 = t.dims.iter().product();
        let values = if !t.float_data.is_empty() {
            format!("{:?}", t.float_data)
        } else if !t.double_data.is_empty() {
            format!("{:?}", t.double_data)
        } else if !t.int32_data.is_empty() {
            format!("{:?}", t.int32_data)
        } else if !t.int64_data.is_empty() {
            format!("{:?}", t.int64_data)
        } else {
            format!("{} values", n)
        };
        let _ = writeln!(out, "  const {}: {elem}{:?} = {values}", t.name, t.dims);
    }
    for n in &g.node {
        let attrs: Vec<String> = n
            .attribute
            .iter()
            .map(|a| match AttributeType::from_i32(a.r#type).ok_or(()) {
                Ok(AttributeType::Int) => format!("{}={}", a.name, a.i),
                Ok(AttributeType::Ints) => format!("{}={:?}", a.name, a.ints),
                Ok(AttributeType::Float) => format!("{}={:?}", a.name, a.f),
                _ => format!("{}=?", a.name),
            })
            .collect();
        let attrs = if attrs.is_empty() { String::new() } else { format!(" {{{}}}", attrs.join(", ")) };
        let region = n.name.split_once('/').map(|(r, _)| format!("  [{r}]")).unwrap_or_default();
        let _ = writeln!(out, "  {} = {}({}){attrs}{region}", n.output.join(", "), n.op_type, n.input.join(", "));
    }
    for o in &g.output {
        let _ = writeln!(out, "  out {}: {}", o.name, ty(o));
    }
    out
}
