//! The engines that run ONNX graphs: tract, in this process, and ONNX Runtime and OpenVINO,
//! whose shared libraries are loaded at run time (so that one aiic binary runs with or without
//! them, and with whichever execution providers and devices they have).

use std::path::PathBuf;
use std::sync::OnceLock;

/// Values of a tensor on the host.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

impl Data {
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::F64(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i` as f64.
    pub fn get(&self, i: usize) -> f64 {
        match self {
            Data::F32(v) => v[i] as f64,
            Data::F64(v) => v[i],
            Data::I32(v) => v[i] as f64,
            Data::I64(v) => v[i] as f64,
        }
    }
}

impl crate::host::HostColumn for Data {
    fn get(&self, i: usize) -> f64 {
        Data::get(self, i)
    }

    fn first_non_finite(&self, n: usize) -> Option<usize> {
        match self {
            Data::F32(v) => v[..n].iter().position(|x| !x.is_finite()),
            Data::F64(v) => v[..n].iter().position(|x| !x.is_finite()),
            Data::I32(_) | Data::I64(_) => None,
        }
    }
}

/// A tensor on the host: its shape and its values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Data,
}

impl HostTensor {
    /// A one-dimensional tensor.
    pub fn vector(data: Data) -> Self {
        HostTensor { shape: vec![data.len()], data }
    }
}

/// A tensor's values borrowed from the host's columns.
#[derive(Debug, Clone, Copy)]
pub enum DataRef<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
    I32(&'a [i32]),
    I64(&'a [i64]),
}

impl<'a> From<&'a Data> for DataRef<'a> {
    fn from(d: &'a Data) -> Self {
        match d {
            Data::F32(v) => DataRef::F32(v),
            Data::F64(v) => DataRef::F64(v),
            Data::I32(v) => DataRef::I32(v),
            Data::I64(v) => DataRef::I64(v),
        }
    }
}

/// A one-dimensional tensor borrowed from the host.
#[derive(Debug, Clone, Copy)]
pub struct HostView<'a> {
    pub data: DataRef<'a>,
}

impl HostView<'_> {
    fn copied(self) -> HostTensor {
        HostTensor::vector(match self.data {
            DataRef::F32(v) => Data::F32(v.to_vec()),
            DataRef::F64(v) => Data::F64(v.to_vec()),
            DataRef::I32(v) => Data::I32(v.to_vec()),
            DataRef::I64(v) => Data::I64(v.to_vec()),
        })
    }
}

/// A graph loaded into an engine, ready to run.
pub trait Session {
    /// Runs the graph on `inputs` (in the graph's input order); its outputs, in order.
    fn run(&mut self, inputs: Vec<HostTensor>) -> Result<Vec<HostTensor>, String>;
    /// Runs the graph on vectors borrowed from the host: an engine that reads host memory in
    /// place (ONNX Runtime's CPU provider) binds them without a copy; the others copy them.
    fn run_views(&mut self, inputs: &[HostView]) -> Result<Vec<HostTensor>, String> {
        self.run(inputs.iter().map(|v| v.copied()).collect())
    }
}

/// An ONNX Runtime execution provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Cpu,
    Cuda,
    TensorRt,
    CoreMl,
    Qnn,
    OpenVino,
    DirectMl,
}

impl Provider {
    pub const ALL: [Provider; 7] = [
        Provider::Cpu,
        Provider::Cuda,
        Provider::TensorRt,
        Provider::CoreMl,
        Provider::Qnn,
        Provider::OpenVino,
        Provider::DirectMl,
    ];

    /// The name `--target onnx:NAME` takes.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
            Provider::TensorRt => "tensorrt",
            Provider::CoreMl => "coreml",
            Provider::Qnn => "qnn",
            Provider::OpenVino => "openvino",
            Provider::DirectMl => "directml",
        }
    }

    /// The provider's name in ONNX Runtime's list of available providers.
    pub fn ort_name(self) -> &'static str {
        match self {
            Provider::Cpu => "CPUExecutionProvider",
            Provider::Cuda => "CUDAExecutionProvider",
            Provider::TensorRt => "TensorrtExecutionProvider",
            Provider::CoreMl => "CoreMLExecutionProvider",
            Provider::Qnn => "QNNExecutionProvider",
            Provider::OpenVino => "OpenVINOExecutionProvider",
            Provider::DirectMl => "DmlExecutionProvider",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Provider::ALL.into_iter().find(|p| p.name() == s)
    }

    /// Whether this provider runs on a neural processing unit (`--target npu`): Core ML is asked
    /// for the Neural Engine and QNN for the HTP. (ONNX Runtime's OpenVINO provider runs on
    /// OpenVINO's CPU; its NPU is reached through OpenVINO itself.)
    pub fn is_npu(self) -> bool {
        matches!(self, Provider::CoreMl | Provider::Qnn)
    }
}

/// An OpenVINO device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OvDevice {
    Cpu,
    Gpu,
    Npu,
}

impl OvDevice {
    pub const ALL: [OvDevice; 3] = [OvDevice::Cpu, OvDevice::Gpu, OvDevice::Npu];

    /// The device's name in OpenVINO (and in `--target openvino:NAME`).
    pub fn name(self) -> &'static str {
        match self {
            OvDevice::Cpu => "CPU",
            OvDevice::Gpu => "GPU",
            OvDevice::Npu => "NPU",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        OvDevice::ALL.into_iter().find(|d| d.name().eq_ignore_ascii_case(s))
    }
}

/// What runs a graph: tract, ONNX Runtime with one execution provider, or OpenVINO on one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Tract,
    Ort(Provider),
    OpenVino(OvDevice),
}

impl Engine {
    pub fn name(self) -> String {
        match self {
            Engine::Tract => "tract".into(),
            Engine::Ort(p) => format!("onnxruntime {}", p.name()),
            Engine::OpenVino(d) => format!("openvino {}", d.name()),
        }
    }

    /// Whether the engine computes f64 as f64 (OpenVINO's plugins compute it in f32 at most).
    pub fn computes_f64(self) -> bool {
        !matches!(self, Engine::OpenVino(_))
    }

    /// Whether the engine runs graphs on a neural processing unit.
    pub fn is_npu(self) -> bool {
        match self {
            Engine::Tract => false,
            Engine::Ort(p) => p.is_npu(),
            Engine::OpenVino(d) => d == OvDevice::Npu,
        }
    }

    /// Loads `graph` (the bytes of an ONNX model).
    pub fn load(self, graph: &[u8]) -> Result<Box<dyn Session>, String> {
        match self {
            Engine::Tract => tract_session(graph),
            Engine::Ort(p) => ort_session(graph, p),
            Engine::OpenVino(d) => super::openvino::session(graph, d),
        }
    }
}

/// The engines this machine has: ONNX Runtime's providers and OpenVINO's devices, each with why
/// it is missing where it is. Target selection works on this, so tests can fake it.
#[derive(Debug, Clone, PartialEq)]
pub struct Available {
    pub ort: Result<Vec<Provider>, String>,
    pub openvino: Result<Vec<OvDevice>, String>,
}

impl Available {
    /// What this machine has (the libraries are loaded once, on the first call).
    pub fn probe() -> Self {
        Available { ort: ort_providers(), openvino: super::openvino::devices() }
    }

    /// The engine of a target: `onnx` (ONNX Runtime on the CPU where installed, else tract),
    /// `onnx:tract`, `onnx:PROVIDER`, `openvino[:DEVICE]` (CPU unless named) or `npu` (the first
    /// NPU: Core ML's Neural Engine, then QNN's HTP, then OpenVINO's NPU). `Err` says what is
    /// missing, or (starting with "unknown") that the name is not one.
    pub fn engine(&self, target: &str) -> Result<Engine, String> {
        let (kind, sub) = match target.split_once(':') {
            Some((k, s)) => (k, Some(s)),
            None => (target, None),
        };
        match (kind, sub) {
            ("onnx", None) => Ok(if self.ort.is_ok() { Engine::Ort(Provider::Cpu) } else { Engine::Tract }),
            ("onnx", Some("tract")) => Ok(Engine::Tract),
            ("onnx", Some(name)) => {
                let provider = Provider::from_name(name).ok_or_else(|| {
                    let names: Vec<&str> = Provider::ALL.iter().map(|p| p.name()).collect();
                    format!("unknown ONNX provider `{name}`; providers: tract, {}", names.join(", "))
                })?;
                let have = self.ort.as_ref().map_err(|e| format!("--target {target}: {e}"))?;
                if !have.contains(&provider) {
                    let names: Vec<&str> = have.iter().map(|p| p.name()).collect();
                    return Err(format!(
                        "--target {target}: this ONNX Runtime has no {} execution provider (it has: {})",
                        provider.ort_name(),
                        names.join(", ")
                    ));
                }
                Ok(Engine::Ort(provider))
            }
            ("openvino", sub) => {
                let device = match sub {
                    None => OvDevice::Cpu,
                    Some(name) => OvDevice::from_name(name)
                        .ok_or_else(|| format!("unknown OpenVINO device `{name}`; devices: CPU, GPU, NPU"))?,
                };
                let have = self.openvino.as_ref().map_err(|e| format!("--target {target}: {e}"))?;
                if !have.contains(&device) {
                    let names: Vec<&str> = have.iter().map(|d| d.name()).collect();
                    return Err(format!(
                        "--target {target}: OpenVINO has no {} device here (it has: {})",
                        device.name(),
                        names.join(", ")
                    ));
                }
                Ok(Engine::OpenVino(device))
            }
            ("npu", None) => self.npu().ok_or_else(|| self.no_npu()),
            _ => Err(format!("unknown target `{target}`")),
        }
    }

    /// The first NPU present, in the order `--target npu` takes them.
    pub fn npu(&self) -> Option<Engine> {
        let ort = self.ort.as_deref().unwrap_or(&[]);
        [Provider::CoreMl, Provider::Qnn].into_iter().find(|p| ort.contains(p)).map(Engine::Ort).or_else(|| {
            let ov = self.openvino.as_deref().unwrap_or(&[]);
            ov.contains(&OvDevice::Npu).then_some(Engine::OpenVino(OvDevice::Npu))
        })
    }

    /// Where `--target auto` runs the kernels that call models: on the NPU, where there is one,
    /// when an interaction asks for it (`@accel(npu)`), or when the program calls models and no
    /// GPU runs the step.
    pub fn auto_models(&self, asks_npu: bool, calls_models: bool, gpu: bool) -> Option<Engine> {
        let npu = self.npu()?;
        (asks_npu || (calls_models && !gpu)).then_some(npu)
    }

    /// Why there is no NPU: what was looked for, and what each place said.
    pub fn no_npu(&self) -> String {
        let ort = match &self.ort {
            Ok(have) => {
                let names: Vec<&str> = have.iter().map(|p| p.ort_name()).collect();
                format!(
                    "ONNX Runtime has neither CoreMLExecutionProvider nor QNNExecutionProvider (it has: {})",
                    names.join(", ")
                )
            }
            Err(e) => e.clone(),
        };
        let ov = match &self.openvino {
            Ok(have) => {
                let names: Vec<&str> = have.iter().map(|d| d.name()).collect();
                format!("OpenVINO has no NPU device (it has: {})", names.join(", "))
            }
            Err(e) => e.clone(),
        };
        format!(
            "--target npu: no neural processing unit found; looked for Core ML's Neural Engine and Qualcomm's HTP through ONNX Runtime, and OpenVINO's NPU: {ort}; {ov}"
        )
    }
}

// --- tract -------------------------------------------------------------------------------------

struct TractSession {
    plan: tract_onnx::prelude::TypedRunnableModel<tract_onnx::prelude::TypedModel>,
}

fn tract_session(graph: &[u8]) -> Result<Box<dyn Session>, String> {
    use tract_onnx::prelude::*;
    let model = tract_onnx::onnx().model_for_read(&mut &graph[..]).map_err(|e| format!("tract: {e:?}"))?;
    let plan = model.into_optimized().and_then(|m| m.into_runnable()).map_err(|e| format!("tract: {e:?}"))?;
    Ok(Box::new(TractSession { plan }))
}

impl Session for TractSession {
    fn run(&mut self, inputs: Vec<HostTensor>) -> Result<Vec<HostTensor>, String> {
        use tract_onnx::prelude::*;
        let tensor = |t: HostTensor| -> Result<Tensor, String> {
            let shape = t.shape;
            let r = match t.data {
                Data::F32(v) => Tensor::from_shape(&shape, &v),
                Data::F64(v) => Tensor::from_shape(&shape, &v),
                Data::I32(v) => Tensor::from_shape(&shape, &v),
                Data::I64(v) => Tensor::from_shape(&shape, &v),
            };
            r.map_err(|e| format!("tract: {e:?}"))
        };
        let inputs: TVec<TValue> = inputs.into_iter().map(|t| tensor(t).map(TValue::from)).collect::<Result<_, _>>()?;
        let outputs = self.plan.run(inputs).map_err(|e| format!("tract: {e:?}"))?;
        outputs
            .iter()
            .map(|t| {
                let shape = t.shape().to_vec();
                let data = match t.datum_type() {
                    DatumType::F32 => Data::F32(t.as_slice::<f32>().map_err(|e| e.to_string())?.to_vec()),
                    DatumType::F64 => Data::F64(t.as_slice::<f64>().map_err(|e| e.to_string())?.to_vec()),
                    DatumType::I32 => Data::I32(t.as_slice::<i32>().map_err(|e| e.to_string())?.to_vec()),
                    DatumType::I64 => Data::I64(t.as_slice::<i64>().map_err(|e| e.to_string())?.to_vec()),
                    other => return Err(format!("tract: an output of type {other:?}")),
                };
                Ok(HostTensor { shape, data })
            })
            .collect()
    }
}

// --- ONNX Runtime ------------------------------------------------------------------------------

/// Where ONNX Runtime's shared library is, or why it was not found: `ORT_DYLIB_PATH`, then the
/// library path and the system's library directories, then the `onnxruntime` Python package
/// (whose wheel carries the library in `onnxruntime/capi/`).
pub fn ort_library() -> Result<PathBuf, String> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND.get_or_init(find_ort_library).clone()
}

fn find_ort_library() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("ORT_DYLIB_PATH names {}, which is no file", p.display()))
        };
    }
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("LD_LIBRARY_PATH").map(|v| std::env::split_paths(&v).collect()).unwrap_or_default();
    dirs.extend(
        ["/usr/local/lib", "/usr/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"].map(PathBuf::from),
    );
    if let Some(dir) = python_package_dir("onnxruntime") {
        dirs.push(dir.join("capi"));
    }
    for dir in dirs {
        if let Some(lib) = versioned_library(&dir, "libonnxruntime.so") {
            return Ok(lib);
        }
    }
    Err("ONNX Runtime's library was not found (pip install onnxruntime, or set ORT_DYLIB_PATH)".into())
}

/// `NAME` or the newest `NAME.VERSION` in `dir`.
pub(crate) fn versioned_library(dir: &std::path::Path, name: &str) -> Option<PathBuf> {
    let plain = dir.join(name);
    if plain.is_file() {
        return Some(plain);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|f| f.to_str()).is_some_and(|f| f.starts_with(&format!("{name}.")) && p.is_file())
        })
        .collect();
    found.sort();
    found.pop()
}

/// The directory of an installed Python package, as `python3` finds it.
pub(crate) fn python_package_dir(package: &str) -> Option<PathBuf> {
    let code = format!("import importlib.util as u, os; s = u.find_spec('{package}'); print(os.path.dirname(s.origin) if s and s.origin else '')");
    let out = std::process::Command::new("python3").args(["-c", &code]).output().ok()?;
    let dir = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !dir.is_empty()).then(|| PathBuf::from(dir))
}

/// Loads ONNX Runtime once per process.
fn ort_ready() -> Result<(), String> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    READY
        .get_or_init(|| {
            let lib = ort_library()?;
            let loaded = std::panic::catch_unwind(|| ort::init_from(lib.to_string_lossy().into_owned()).commit());
            match loaded {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("loading {}: {e}", lib.display())),
                Err(_) => Err(format!("{} is not an ONNX Runtime this aiic can use", lib.display())),
            }
        })
        .clone()
}

/// The execution providers of the ONNX Runtime found, or why there is none.
pub fn ort_providers() -> Result<Vec<Provider>, String> {
    use ort::execution_providers::*;
    ort_ready()?;
    let has = |ep: &dyn ExecutionProvider| ep.supported_by_platform() && ep.is_available().unwrap_or(false);
    Ok(Provider::ALL
        .into_iter()
        .filter(|p| match p {
            Provider::Cpu => true,
            Provider::Cuda => has(&CUDAExecutionProvider::default()),
            Provider::TensorRt => has(&TensorRTExecutionProvider::default()),
            Provider::CoreMl => has(&CoreMLExecutionProvider::default()),
            Provider::Qnn => has(&QNNExecutionProvider::default()),
            Provider::OpenVino => has(&OpenVINOExecutionProvider::default()),
            Provider::DirectMl => has(&DirectMLExecutionProvider::default()),
        })
        .collect())
}

/// QNN's backend for the Hexagon tensor processor (its NPU).
const QNN_HTP: &str = if cfg!(windows) { "QnnHtp.dll" } else { "libQnnHtp.so" };

struct OrtSession {
    session: ort::session::Session,
}

fn ort_session(graph: &[u8], provider: Provider) -> Result<Box<dyn Session>, String> {
    use ort::execution_providers::*;
    ort_ready()?;
    let fail = |e: ort::Error| format!("onnxruntime: {e}");
    let builder = ort::session::Session::builder().map_err(fail)?;
    let ep: Option<ExecutionProviderDispatch> = match provider {
        Provider::Cpu => None,
        Provider::Cuda => Some(CUDAExecutionProvider::default().build()),
        Provider::TensorRt => Some(TensorRTExecutionProvider::default().build()),
        Provider::CoreMl => Some(
            CoreMLExecutionProvider::default()
                .with_compute_units(coreml::CoreMLComputeUnits::CPUAndNeuralEngine)
                .with_static_input_shapes(true)
                .build(),
        ),
        Provider::Qnn => Some(QNNExecutionProvider::default().with_backend_path(QNN_HTP).build()),
        Provider::OpenVino => Some(OpenVINOExecutionProvider::default().build()),
        Provider::DirectMl => Some(DirectMLExecutionProvider::default().build()),
    };
    let builder = match ep {
        // An explicit provider must be there: ONNX Runtime would fall back to its CPU silently.
        Some(ep) => builder.with_execution_providers([ep.error_on_failure()]).map_err(fail)?,
        None => builder,
    };
    let session = builder.commit_from_memory(graph).map_err(fail)?;
    Ok(Box::new(OrtSession { session }))
}

impl Session for OrtSession {
    fn run(&mut self, inputs: Vec<HostTensor>) -> Result<Vec<HostTensor>, String> {
        use ort::value::{DynValue, Tensor};
        let fail = |e: ort::Error| format!("onnxruntime: {e}");
        let names: Vec<String> = self.session.inputs.iter().map(|i| i.name.clone()).collect();
        let mut values: Vec<(String, DynValue)> = Vec::with_capacity(inputs.len());
        for (name, t) in names.into_iter().zip(inputs) {
            let shape = t.shape;
            let v: DynValue = match t.data {
                Data::F32(d) => Tensor::from_array((shape, d)).map_err(fail)?.into_dyn(),
                Data::F64(d) => Tensor::from_array((shape, d)).map_err(fail)?.into_dyn(),
                Data::I32(d) => Tensor::from_array((shape, d)).map_err(fail)?.into_dyn(),
                Data::I64(d) => Tensor::from_array((shape, d)).map_err(fail)?.into_dyn(),
            };
            values.push((name, v));
        }
        let outputs = self.session.run(values).map_err(fail)?;
        ort_outputs(&outputs)
    }

    fn run_views(&mut self, inputs: &[HostView]) -> Result<Vec<HostTensor>, String> {
        use ort::session::SessionInputValue;
        use ort::value::TensorRef;
        let fail = |e: ort::Error| format!("onnxruntime: {e}");
        let names: Vec<String> = self.session.inputs.iter().map(|i| i.name.clone()).collect();
        let mut values: Vec<(String, SessionInputValue)> = Vec::with_capacity(inputs.len());
        for (name, t) in names.into_iter().zip(inputs) {
            let v: SessionInputValue = match t.data {
                DataRef::F32(d) => TensorRef::from_array_view(([d.len()], d)).map_err(fail)?.into_dyn().into(),
                DataRef::F64(d) => TensorRef::from_array_view(([d.len()], d)).map_err(fail)?.into_dyn().into(),
                DataRef::I32(d) => TensorRef::from_array_view(([d.len()], d)).map_err(fail)?.into_dyn().into(),
                DataRef::I64(d) => TensorRef::from_array_view(([d.len()], d)).map_err(fail)?.into_dyn().into(),
            };
            values.push((name, v));
        }
        let outputs = self.session.run(values).map_err(fail)?;
        ort_outputs(&outputs)
    }
}

/// A run's outputs, copied out of ONNX Runtime's memory.
fn ort_outputs(outputs: &ort::session::SessionOutputs) -> Result<Vec<HostTensor>, String> {
    let fail = |e: ort::Error| format!("onnxruntime: {e}");
    let mut out = Vec::with_capacity(outputs.len());
    for (_, v) in outputs.iter() {
        use ort::tensor::TensorElementType as T;
        let ty = v.dtype().tensor_type().ok_or("onnxruntime: an output that is no tensor")?;
        let (shape, data) = match ty {
            T::Float32 => {
                let (s, d) = v.try_extract_tensor::<f32>().map_err(fail)?;
                (s.to_vec(), Data::F32(d.to_vec()))
            }
            T::Float64 => {
                let (s, d) = v.try_extract_tensor::<f64>().map_err(fail)?;
                (s.to_vec(), Data::F64(d.to_vec()))
            }
            T::Int32 => {
                let (s, d) = v.try_extract_tensor::<i32>().map_err(fail)?;
                (s.to_vec(), Data::I32(d.to_vec()))
            }
            T::Int64 => {
                let (s, d) = v.try_extract_tensor::<i64>().map_err(fail)?;
                (s.to_vec(), Data::I64(d.to_vec()))
            }
            other => return Err(format!("onnxruntime: an output of type {other:?}")),
        };
        out.push(HostTensor { shape: shape.iter().map(|&d| d.max(0) as usize).collect(), data });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine with these ONNX Runtime providers and OpenVINO devices.
    fn machine(ort: &[Provider], ov: &[OvDevice]) -> Available {
        Available { ort: Ok(ort.to_vec()), openvino: Ok(ov.to_vec()) }
    }

    fn bare() -> Available {
        Available { ort: Err("no ONNX Runtime".into()), openvino: Err("no OpenVINO".into()) }
    }

    #[test]
    fn npu_takes_core_ml_then_qnn_then_openvino() {
        let all = machine(&[Provider::Cpu, Provider::Qnn, Provider::CoreMl], &[OvDevice::Cpu, OvDevice::Npu]);
        assert_eq!(all.engine("npu"), Ok(Engine::Ort(Provider::CoreMl)));
        let qnn = machine(&[Provider::Cpu, Provider::Qnn], &[OvDevice::Npu]);
        assert_eq!(qnn.engine("npu"), Ok(Engine::Ort(Provider::Qnn)));
        let intel = machine(&[Provider::Cpu, Provider::OpenVino], &[OvDevice::Cpu, OvDevice::Gpu, OvDevice::Npu]);
        assert_eq!(intel.engine("npu"), Ok(Engine::OpenVino(OvDevice::Npu)));
        assert!(Engine::OpenVino(OvDevice::Npu).is_npu() && Engine::Ort(Provider::CoreMl).is_npu());
    }

    #[test]
    fn no_npu_says_what_was_looked_for() {
        let cpu = machine(&[Provider::Cpu, Provider::DirectMl], &[OvDevice::Cpu]);
        let e = cpu.engine("npu").unwrap_err();
        for part in ["Core ML", "QNN", "OpenVINO has no NPU device (it has: CPU)", "DmlExecutionProvider"] {
            assert!(e.contains(part), "{e}");
        }
        let e = bare().engine("npu").unwrap_err();
        assert!(e.contains("no ONNX Runtime") && e.contains("no OpenVINO"), "{e}");
    }

    #[test]
    fn auto_sends_models_to_an_npu_when_asked_or_when_no_gpu_runs_the_step() {
        let mac = machine(&[Provider::Cpu, Provider::CoreMl], &[]);
        let npu = Some(Engine::Ort(Provider::CoreMl));
        assert_eq!(mac.auto_models(true, true, true), npu, "@accel(npu) takes it even beside a GPU");
        assert_eq!(mac.auto_models(false, true, false), npu, "models and no GPU");
        assert_eq!(mac.auto_models(false, true, true), None, "the GPU's tensor units run the models");
        assert_eq!(mac.auto_models(false, false, false), None, "nothing calls a model");
        let laptop = machine(&[Provider::Cpu], &[OvDevice::Cpu, OvDevice::Npu]);
        assert_eq!(laptop.auto_models(false, true, false), Some(Engine::OpenVino(OvDevice::Npu)));
        assert_eq!(machine(&[Provider::Cpu], &[OvDevice::Cpu]).auto_models(true, true, false), None, "no NPU");
    }

    #[test]
    fn named_providers_are_taken_only_where_present() {
        let win = machine(&[Provider::Cpu, Provider::DirectMl], &[]);
        assert_eq!(win.engine("onnx:directml"), Ok(Engine::Ort(Provider::DirectMl)));
        assert_eq!(win.engine("onnx"), Ok(Engine::Ort(Provider::Cpu)));
        let e = win.engine("onnx:qnn").unwrap_err();
        assert!(e.contains("no QNNExecutionProvider") && e.contains("directml"), "{e}");
        assert!(win.engine("onnx:npx").unwrap_err().starts_with("unknown ONNX provider"));
        assert_eq!(bare().engine("onnx"), Ok(Engine::Tract));
        assert_eq!(bare().engine("onnx:tract"), Ok(Engine::Tract));
        assert!(bare().engine("onnx:cpu").unwrap_err().contains("no ONNX Runtime"));
    }

    #[test]
    fn openvino_devices_are_named_in_any_case() {
        let intel = machine(&[], &[OvDevice::Cpu, OvDevice::Gpu]);
        assert_eq!(intel.engine("openvino"), Ok(Engine::OpenVino(OvDevice::Cpu)));
        assert_eq!(intel.engine("openvino:gpu"), Ok(Engine::OpenVino(OvDevice::Gpu)));
        assert!(intel.engine("openvino:NPU").unwrap_err().contains("no NPU device"));
        assert!(intel.engine("openvino:TPU").unwrap_err().starts_with("unknown OpenVINO device"));
        assert!(!Engine::OpenVino(OvDevice::Cpu).computes_f64() && Engine::Tract.computes_f64());
    }
}
