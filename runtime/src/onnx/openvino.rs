//! OpenVINO, loaded at run time: it reads aiic's ONNX graphs with its ONNX front end and compiles
//! them for one of its devices (CPU, GPU, NPU).

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use super::engine::{python_package_dir, versioned_library, Data, HostTensor, OvDevice, Session};
use openvino::{Core, ElementType, Shape, Tensor};

/// Where OpenVINO's C library is, or why it was not found: `OPENVINO_C_LIBRARY`, then where the
/// `openvino` crate's finder looks (`OPENVINO_INSTALL_DIR`, the library path, the usual install
/// directories), then the `openvino` Python package (whose wheel carries it in `openvino/libs/`).
pub fn library() -> Result<PathBuf, String> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND.get_or_init(find_library).clone()
}

fn find_library() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("OPENVINO_C_LIBRARY").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("OPENVINO_C_LIBRARY names {}, which is no file", p.display()))
        };
    }
    if let Some(p) = openvino_sys::library::find() {
        return Ok(p);
    }
    python_package_dir("openvino")
        .and_then(|dir| versioned_library(&dir.join("libs"), "libopenvino_c.so"))
        .ok_or_else(|| "OpenVINO's library was not found (pip install openvino, or set OPENVINO_C_LIBRARY)".into())
}

/// One OpenVINO core per process: it holds the loaded device plugins, which are costly to load
/// again, and compiled models share them.
fn core() -> Result<&'static Mutex<Core>, String> {
    static CORE: OnceLock<Result<Mutex<Core>, String>> = OnceLock::new();
    CORE.get_or_init(|| {
        let lib = library()?;
        openvino_sys::library::load_from(&lib).map_err(|e| format!("loading {}: {e}", lib.display()))?;
        Core::new().map(Mutex::new).map_err(|e| format!("OpenVINO: {e}"))
    })
    .as_ref()
    .map_err(|e| e.clone())
}

/// The devices OpenVINO has here, or why it has none.
pub fn devices() -> Result<Vec<OvDevice>, String> {
    let core = core()?.lock().map_err(|_| "OpenVINO's core is poisoned".to_string())?;
    let names = core.available_devices().map_err(|e| format!("OpenVINO: {e}"))?;
    // Devices come as `GPU.0`, `GPU.1` where there are several of a kind.
    let found: Vec<String> =
        names.iter().map(|d| d.as_ref().split('.').next().unwrap_or_default().to_ascii_uppercase()).collect();
    Ok(OvDevice::ALL.into_iter().filter(|d| found.iter().any(|f| f == d.name())).collect())
}

struct OvSession {
    request: openvino::InferRequest,
    inputs: Vec<String>,
    outputs: usize,
}

pub(super) fn session(graph: &[u8], device: OvDevice) -> Result<Box<dyn Session>, String> {
    let fail = |e: openvino::InferenceError| format!("OpenVINO: {e}");
    let mut core = core()?.lock().map_err(|_| "OpenVINO's core is poisoned".to_string())?;
    let model = core.read_model_from_buffer(graph, None).map_err(fail)?;
    let inputs = (0..model.get_inputs_len().map_err(fail)?)
        .map(|i| model.get_input_by_index(i).and_then(|n| n.get_name()).map_err(fail))
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = model.get_outputs_len().map_err(fail)?;
    let device = match device {
        OvDevice::Cpu => openvino::DeviceType::CPU,
        OvDevice::Gpu => openvino::DeviceType::GPU,
        OvDevice::Npu => openvino::DeviceType::NPU,
    };
    // The graph's types are the precision aiic chose and measured: without this hint, the CPU
    // plugin computes f32 graphs in bf16 on processors with bf16 units, and the GPU plugin in f16.
    if device != openvino::DeviceType::NPU {
        core.set_property(&device, &openvino::RwPropertyKey::HintInferencePrecision, "f32").map_err(fail)?;
    }
    let mut compiled = core.compile_model(&model, device).map_err(fail)?;
    let request = compiled.create_infer_request().map_err(fail)?;
    Ok(Box::new(OvSession { request, inputs, outputs }))
}

/// Copies `values` into a new OpenVINO tensor of `shape`.
fn tensor<T: Copy>(ty: ElementType, shape: &[usize], values: &[T]) -> Result<Tensor, openvino::InferenceError> {
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let mut t = Tensor::new(ty, &Shape::new(&dims)?)?;
    t.get_data_mut::<T>()?.copy_from_slice(values);
    Ok(t)
}

impl Session for OvSession {
    fn run(&mut self, inputs: Vec<HostTensor>) -> Result<Vec<HostTensor>, String> {
        let fail = |e: openvino::InferenceError| format!("OpenVINO: {e}");
        for (name, t) in self.inputs.iter().zip(&inputs) {
            let v = match &t.data {
                Data::F32(d) => tensor(ElementType::F32, &t.shape, d),
                Data::F64(d) => tensor(ElementType::F64, &t.shape, d),
                Data::I32(d) => tensor(ElementType::I32, &t.shape, d),
                Data::I64(d) => tensor(ElementType::I64, &t.shape, d),
            }
            .map_err(fail)?;
            self.request.set_tensor(name, &v).map_err(fail)?;
        }
        self.request.infer().map_err(fail)?;
        (0..self.outputs)
            .map(|i| {
                let t = self.request.get_output_tensor_by_index(i).map_err(fail)?;
                // OpenVINO's C API fails to give the shape of a scalar (rank 0).
                let shape: Vec<usize> = match t.get_shape() {
                    Ok(s) => s.get_dimensions().iter().map(|&d| d as usize).collect(),
                    Err(_) if t.get_size().map_err(fail)? == 1 => Vec::new(),
                    Err(e) => return Err(fail(e)),
                };
                let data = match t.get_element_type().map_err(fail)? {
                    ElementType::F32 => Data::F32(t.get_data::<f32>().map_err(fail)?.to_vec()),
                    ElementType::F64 => Data::F64(t.get_data::<f64>().map_err(fail)?.to_vec()),
                    ElementType::I32 => Data::I32(t.get_data::<i32>().map_err(fail)?.to_vec()),
                    ElementType::I64 => Data::I64(t.get_data::<i64>().map_err(fail)?.to_vec()),
                    other => return Err(format!("OpenVINO: an output of type {other:?}")),
                };
                Ok(HostTensor { shape, data })
            })
            .collect()
    }
}
