//! The `.aiib` artifact: a directory holding `manifest.json` (the checked kernel IR, its
//! schedule and laws), `tensors.f64` (the elements of its tensor parameters), `hosted_N.onnx`
//! (the ONNX models it runs as they are) and one file per
//! kernel per target (`cpu/<kernel>.clif`, `onnx/<kernel>.onnx`). It is written to a temporary directory and renamed
//! into place, so a failed build never leaves half of one.

use crate::gpu::GpuPlan;
use crate::ir::Module;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bumped when the manifest changes incompatibly.
pub const FORMAT: u32 = 3;
/// The file of the tensor parameters' elements: raw little-endian f64, tensor after tensor.
const TENSORS: &str = "tensors.f64";

#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The aiic version that built it.
    pub aiic: String,
    pub source: String,
    pub module: Module,
    /// Per target, the file of each kernel (by kernel index), relative to the artifact.
    pub targets: BTreeMap<String, Vec<Option<String>>>,
    /// Per GPU target, the plan of device kernels and the file of each (by device kernel index).
    #[serde(default)]
    pub gpu: BTreeMap<String, GpuFiles>,
    /// The ONNX graphs (`--target onnx`): their plan and the file of each.
    #[serde(default)]
    pub onnx: Option<OnnxFiles>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct OnnxFiles {
    pub plan: crate::onnx::plan::OnnxPlan,
    pub files: Vec<String>,
}

/// ONNX graphs: their plan and each graph's bytes (by graph of the plan, then the step's).
pub struct OnnxGraphs {
    pub plan: crate::onnx::plan::OnnxPlan,
    pub graphs: Vec<Vec<u8>>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct GpuFiles {
    pub plan: GpuPlan,
    /// One file per device kernel, or one module holding every kernel (CUDA).
    pub files: Vec<String>,
    /// Threads per block a whole-module target was written for.
    #[serde(default)]
    pub block: Option<u32>,
}

/// A GPU target's code: its plan, the code of each device kernel (or one module of them all)
/// and, for a module, the threads per block it was written for.
pub struct GpuTarget {
    pub plan: GpuPlan,
    pub code: Vec<Vec<u8>>,
    pub block: Option<u32>,
}

pub type GpuCode = BTreeMap<String, GpuTarget>;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not an aiic artifact ({message})")]
    Format { path: PathBuf, message: String },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ArtifactError + '_ {
    move |source| ArtifactError::Io { path: path.to_path_buf(), source }
}

/// Writes an artifact; `code` maps a target to the text of each kernel (by kernel index).
pub fn write(
    path: &Path,
    source: &str,
    module: &Module,
    code: &BTreeMap<String, Vec<Option<String>>>,
    gpu_code: &GpuCode,
    onnx_code: Option<&OnnxGraphs>,
) -> Result<(), ArtifactError> {
    let tmp = path.with_extension("aiib.partial");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let mut targets = BTreeMap::new();
    for (target, kernels) in code {
        let dir = tmp.join(target);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut names = Vec::new();
        for (i, text) in kernels.iter().enumerate() {
            names.push(match text {
                Some(text) => {
                    let name = format!(
                        "{target}/{:03}_{}.{}",
                        i,
                        module.kernels[i].name.replace(['.', '/'], "_"),
                        target_ext(target)
                    );
                    let file = tmp.join(&name);
                    std::fs::write(&file, text).map_err(io(&file))?;
                    Some(name)
                }
                None => None,
            });
        }
        targets.insert(target.clone(), names);
    }
    let mut gpu = BTreeMap::new();
    for (target, g) in gpu_code {
        let dir = tmp.join(target);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut files = Vec::new();
        for (n, bytes) in g.code.iter().enumerate() {
            let stem = match g.block {
                Some(_) => "module".to_string(),
                None => g.plan.kernels.get(n).map_or(n.to_string(), |k| k.name.replace(['.', '/'], "_")),
            };
            let name = format!("{target}/{n:03}_{stem}.{}", target_ext(target));
            let file = tmp.join(&name);
            std::fs::write(&file, bytes).map_err(io(&file))?;
            files.push(name);
        }
        gpu.insert(target.clone(), GpuFiles { plan: g.plan.clone(), files, block: g.block });
    }
    let onnx = match onnx_code {
        Some(o) => {
            let dir = tmp.join("onnx");
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            let mut files = Vec::new();
            for (n, bytes) in o.graphs.iter().enumerate() {
                let stem = o.plan.kernels.get(n).map_or("step".into(), |k| k.name.replace(['.', '/'], "_"));
                let name = format!("onnx/{n:03}_{stem}.onnx");
                let file = tmp.join(&name);
                std::fs::write(&file, bytes).map_err(io(&file))?;
                files.push(name);
            }
            Some(OnnxFiles { plan: o.plan.clone(), files })
        }
        None => None,
    };
    let manifest = Manifest {
        format: FORMAT,
        aiic: env!("CARGO_PKG_VERSION").to_string(),
        source: source.to_string(),
        module: module.clone(),
        targets,
        gpu,
        onnx,
    };
    let json = serde_json::to_string_pretty(&manifest)
        .map_err(|e| ArtifactError::Format { path: path.to_path_buf(), message: e.to_string() })?;
    let mpath = tmp.join("manifest.json");
    std::fs::write(&mpath, json).map_err(io(&mpath))?;
    // Tensor parameters as raw little-endian f64, in order: millions of elements are no JSON.
    let tpath = tmp.join(TENSORS);
    let bytes: Vec<u8> = module.tensors.iter().flat_map(|t| t.values.iter().flat_map(|v| v.to_le_bytes())).collect();
    std::fs::write(&tpath, bytes).map_err(io(&tpath))?;
    for (i, h) in module.hosted.iter().enumerate() {
        let hpath = tmp.join(hosted_file(i));
        std::fs::write(&hpath, &h.bytes).map_err(io(&hpath))?;
    }
    if path.exists() {
        std::fs::remove_dir_all(path).map_err(io(path))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The file of hosted model `i` (see `ir::HostedModel`), as it was read.
fn hosted_file(i: usize) -> String {
    format!("hosted_{i}.onnx")
}

fn target_ext(target: &str) -> &'static str {
    match target {
        "cpu" => "clif",
        "cuda" => "ptx",
        "opencl" => "cl",
        _ => "spv",
    }
}

/// Per target, the code of each kernel by kernel index (None where the kernel runs on the host).
pub type TargetCode = BTreeMap<String, Vec<Option<String>>>;

/// Reads an artifact: the manifest and the code of each target it holds.
pub fn read(path: &Path) -> Result<(Manifest, TargetCode, GpuCode, Option<OnnxGraphs>), ArtifactError> {
    let mpath = path.join("manifest.json");
    let text = std::fs::read_to_string(&mpath).map_err(io(&mpath))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| ArtifactError::Format { path: mpath.clone(), message: e.to_string() })?;
    if manifest.format != FORMAT {
        return Err(ArtifactError::Format {
            path: mpath,
            message: format!("format {} (this aiic reads format {FORMAT}); rebuild it", manifest.format),
        });
    }
    let mut manifest = manifest;
    let tpath = path.join(TENSORS);
    let want: usize = manifest.module.tensors.iter().map(|t| t.shape.iter().product::<u32>() as usize).sum();
    let bytes = if want == 0 { Vec::new() } else { std::fs::read(&tpath).map_err(io(&tpath))? };
    if bytes.len() != want * 8 {
        return Err(ArtifactError::Format {
            path: tpath,
            message: format!("{} bytes for {want} tensor elements", bytes.len()),
        });
    }
    let mut values = bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
    for t in &mut manifest.module.tensors {
        let n = t.shape.iter().product::<u32>() as usize;
        t.values = values.by_ref().take(n).collect();
    }
    for (i, h) in manifest.module.hosted.iter_mut().enumerate() {
        let hpath = path.join(hosted_file(i));
        h.bytes = std::fs::read(&hpath).map_err(io(&hpath))?;
    }
    let mut code = BTreeMap::new();
    for (target, names) in &manifest.targets {
        let mut texts = Vec::new();
        for name in names {
            texts.push(match name {
                Some(n) => {
                    let f = path.join(n);
                    Some(std::fs::read_to_string(&f).map_err(io(&f))?)
                }
                None => None,
            });
        }
        code.insert(target.clone(), texts);
    }
    let mut gpu = BTreeMap::new();
    for (target, g) in &manifest.gpu {
        let bytes = read_files(path, &g.files)?;
        let expected = if g.block.is_some() { 1 } else { g.plan.kernels.len() };
        if bytes.len() != expected {
            return Err(ArtifactError::Format {
                path: mpath.clone(),
                message: format!("{target}: {} files for {} kernels", bytes.len(), g.plan.kernels.len()),
            });
        }
        gpu.insert(target.clone(), GpuTarget { plan: g.plan.clone(), code: bytes, block: g.block });
    }
    let onnx = match &manifest.onnx {
        Some(o) => {
            let graphs = read_files(path, &o.files)?;
            let expected = o.plan.kernels.len() + usize::from(o.plan.step.is_some());
            if graphs.len() != expected {
                return Err(ArtifactError::Format {
                    path: mpath.clone(),
                    message: format!("onnx: {} files for {expected} graphs", graphs.len()),
                });
            }
            Some(OnnxGraphs { plan: o.plan.clone(), graphs })
        }
        None => None,
    };
    for k in &manifest.module.kernels {
        crate::ir::verify::verify(k)
            .map_err(|e| ArtifactError::Format { path: mpath.clone(), message: format!("kernel `{}`: {e}", k.name) })?;
    }
    Ok((manifest, code, gpu, onnx))
}

/// The bytes of each of these files of the artifact at `path`.
fn read_files(path: &Path, names: &[String]) -> Result<Vec<Vec<u8>>, ArtifactError> {
    names
        .iter()
        .map(|n| {
            let f = path.join(n);
            std::fs::read(&f).map_err(io(&f))
        })
        .collect()
}

/// Writes a file under a hidden temporary name beside it and renames it into place, so that a
/// reader never sees half of it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ArtifactError> {
    let name = path.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(path)(e)
    })
}
