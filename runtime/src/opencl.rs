//! The OpenCL executor: the ICD loader is opened at run time (opencl3's dynamic loading), the
//! program is built for the chosen device with its workgroup size as the macro `WG` (the build
//! log is shown on failure), and built binaries are cached per device and source.

use crate::backend::Backend;
use crate::gpu::{self, Buf, GpuOp, GpuPlan, Launch};
use crate::ir::interp::RunError;
use crate::ir::Module;
use crate::World;
use opencl3::command_queue::{CommandQueue, CL_QUEUE_PROFILING_ENABLE};
use opencl3::context::Context;
use opencl3::device::{Device, CL_DEVICE_TYPE_ALL, CL_DEVICE_TYPE_GPU};
use opencl3::kernel::{ExecuteKernel, Kernel};
use opencl3::memory::{Buffer, ClMem, CL_MEM_READ_WRITE};
use opencl3::program::Program;
use opencl3::types::CL_BLOCKING;
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ClError {
    #[error("no OpenCL runtime on this machine (the ICD loader libOpenCL could not be loaded)")]
    NoRuntime,
    #[error("no OpenCL platform on this machine (the ICD loader found no driver; install one, e.g. pocl-opencl-icd)")]
    NoPlatform,
    #[error("no OpenCL device: {0}")]
    NoDevice(String),
    #[error("building the OpenCL program for {device} failed:\n{log}")]
    Build { device: String, log: String },
    #[error("{0}")]
    Call(String),
}

impl ClError {
    /// Whether this only says that OpenCL is not installed here (no loader, no platform), rather
    /// than that an installed loader or driver failed.
    pub fn is_absent(&self) -> bool {
        matches!(self, ClError::NoRuntime | ClError::NoPlatform)
    }
}

fn call<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> ClError + '_ {
    move |e| ClError::Call(format!("{what}: {e}"))
}

/// An OpenCL device as `aiic devices` lists it.
pub struct DeviceInfo {
    pub name: String,
    pub platform: String,
    pub version: String,
    pub is_gpu: bool,
}

fn devices() -> Result<Vec<(Device, DeviceInfo)>, ClError> {
    use cl3::error_codes::{CL_DEVICE_NOT_FOUND, CL_PLATFORM_NOT_FOUND_KHR};
    if !cl3::is_opencl_runtime_available() {
        return Err(ClError::NoRuntime);
    }
    let platforms = match opencl3::platform::get_platforms() {
        Ok(p) => p,
        // The ICD loader's answer when no platform (driver) is registered.
        Err(e) if e.0 == CL_PLATFORM_NOT_FOUND_KHR => return Err(ClError::NoPlatform),
        Err(e) => return Err(call("listing OpenCL platforms")(e)),
    };
    let mut out = Vec::new();
    for p in platforms {
        let platform = p.name().map_err(call("reading an OpenCL platform's name"))?;
        let ids = match p.get_devices(CL_DEVICE_TYPE_ALL) {
            Ok(ids) => ids,
            Err(e) if e.0 == CL_DEVICE_NOT_FOUND => Vec::new(),
            Err(e) => return Err(ClError::Call(format!("listing the devices of OpenCL platform {platform}: {e}"))),
        };
        for id in ids {
            let d = Device::new(id);
            let what = format!("reading a device of OpenCL platform {platform}");
            let info = DeviceInfo {
                name: d.name().map_err(call(&what))?,
                platform: platform.clone(),
                version: d.version().map_err(call(&what))?,
                is_gpu: d.dev_type().map_err(call(&what))? & CL_DEVICE_TYPE_GPU != 0,
            };
            out.push((d, info));
        }
    }
    // GPUs first, in platform order.
    out.sort_by_key(|(_, i)| !i.is_gpu);
    Ok(out)
}

/// The OpenCL devices of this machine, GPUs first, or why there are none.
pub fn list_devices() -> Result<Vec<DeviceInfo>, ClError> {
    Ok(devices()?.into_iter().map(|(_, i)| i).collect())
}

/// The OpenCL devices, none (OpenCL not installed), or the failure of an installed loader or driver.
pub fn probe() -> crate::probe::Probe<DeviceInfo> {
    crate::probe::Probe::classify(list_devices(), ClError::is_absent, "the OpenCL platforms offer no device")
}

pub struct OpenClBackend<'m> {
    module: &'m Module,
    plan: GpuPlan,
    name: String,
    wg: usize,
    queue: CommandQueue,
    kernels: Vec<Kernel>,
    buffers: HashMap<Buf, Buffer<u8>>,
    counts: Vec<usize>,
    host: gpu::HostCopy,
    hosted: Option<crate::onnx::hosted::Hosted>,
    _context: Context,
}

/// Where built programs are kept, per device and source.
fn cache_path(device: &str, source: &str, wg: usize) -> Option<PathBuf> {
    use std::hash::{Hash, Hasher};
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (device, source, wg, env!("CARGO_PKG_VERSION")).hash(&mut h);
    Some(base.join("aiic").join("opencl").join(format!("{:016x}.bin", h.finish())))
}

impl<'m> OpenClBackend<'m> {
    /// Builds `source` for device `device` (GPUs first; 0 by default) and uploads `world`.
    pub fn new(
        module: &'m Module,
        plan: GpuPlan,
        source: &str,
        world: &World,
        device: Option<usize>,
        workgroup: Option<usize>,
    ) -> Result<Self, ClError> {
        let list = devices()?;
        let pick = device.unwrap_or(0);
        let (dev, info) = list
            .into_iter()
            .nth(pick)
            .ok_or_else(|| ClError::NoDevice(format!("--device {pick}: see `aiic devices`")))?;
        let context = Context::from_device(&dev).map_err(call("creating an OpenCL context"))?;
        let max_wg = dev.max_work_group_size().map_err(call("reading the device limits"))?;
        let local = dev.local_mem_size().map_err(call("reading the device limits"))? as usize;
        let tile: usize = plan.kernels.iter().map(|k| k.shared_bytes as usize).max().unwrap_or(0);
        let most = world.agents.iter().map(|a| a.count).max().unwrap_or(0);
        let fits = |w: usize| w <= max_wg && w * tile <= local && w.is_multiple_of(gpu::TILE_UNROLL as usize);
        let wg = match workgroup {
            Some(w) if fits(w) => w,
            Some(w) => return Err(ClError::NoDevice(format!("{}: a workgroup of {w} exceeds its limits", info.name))),
            None => [256usize, 128, 64]
                .into_iter()
                .find(|&w| fits(w) && most / w >= 128)
                .or_else(|| [64usize, 32, 16, 8, 4].into_iter().find(|&w| fits(w)))
                .ok_or_else(|| ClError::NoDevice(format!("{}: too little local memory", info.name)))?,
        };
        // Laws are measured in f64; a device without it measures them on the host instead.
        let mut plan = plan;
        let fp64 = dev.extensions().map_err(call("reading the device extensions"))?.contains("cl_khr_fp64");
        if !fp64 {
            plan.drop_laws();
        }
        let options = format!("-D WG={wg}");
        // A program built before for this device and source is loaded from its binary.
        let cached = cache_path(&info.name, source, wg);
        let from_cache = cached.as_ref().and_then(|p| std::fs::read(p).ok()).and_then(|bin| {
            // SAFETY: the binary was written by this code for this device and source.
            let mut p = unsafe { Program::create_from_binary(&context, &[dev.id()], &[&bin]) }.ok()?;
            p.build(&[dev.id()], &options).ok()?;
            Some(p)
        });
        let program = match from_cache {
            Some(p) => p,
            None => {
                let p = Program::create_and_build_from_source(&context, source, &options)
                    .map_err(|log| ClError::Build { device: info.name.clone(), log })?;
                if let (Some(path), Ok(bins)) = (&cached, p.get_binaries()) {
                    if let (Some(dir), Some(bin)) = (path.parent(), bins.first()) {
                        let _ = std::fs::create_dir_all(dir);
                        let _ = crate::artifact::write_atomic(path, bin);
                    }
                }
                p
            }
        };
        let kernels = (0..plan.kernels.len())
            .map(|n| Kernel::create(&program, &format!("aiic_k{n}")).map_err(call("finding a kernel in the program")))
            .collect::<Result<Vec<_>, _>>()?;
        let queue = CommandQueue::create_default(&context, CL_QUEUE_PROFILING_ENABLE)
            .map_err(call("creating a command queue"))?;
        let counts: Vec<usize> = world.agents.iter().map(|a| a.count).collect();
        let mut me = OpenClBackend {
            module,
            plan,
            name: info.name,
            wg,
            queue,
            kernels,
            buffers: HashMap::new(),
            counts,
            host: gpu::HostCopy::new(world.clone()),
            hosted: (!module.hosted.is_empty())
                .then(|| crate::onnx::hosted::Hosted::new(module, crate::onnx::hosted::host_engine())),
            _context: context,
        };
        me.upload()?;
        Ok(me)
    }

    fn upload(&mut self) -> Result<(), ClError> {
        for b in self.plan.buffers() {
            let bytes = gpu::initial_bytes(self.module, &self.plan, b, &self.host.world);
            // SAFETY: a buffer of the context, filled by the blocking write below.
            let mut buf =
                unsafe { Buffer::<u8>::create(&self._context, CL_MEM_READ_WRITE, bytes.len(), std::ptr::null_mut()) }
                    .map_err(call("allocating a buffer"))?;
            // SAFETY: `bytes` outlives the blocking write.
            unsafe { self.queue.enqueue_write_buffer(&mut buf, CL_BLOCKING, 0, &bytes, &[]) }
                .map_err(call("uploading the state"))?;
            self.buffers.insert(b, buf);
        }
        Ok(())
    }

    fn enqueue(&mut self, ops: &[GpuOp]) -> Result<Option<opencl3::event::Event>, ClError> {
        let mut last = None;
        for op in ops {
            match op {
                GpuOp::Zero(b) => {
                    let buf = self.buffers.get_mut(b).ok_or_else(|| ClError::Call(format!("no buffer {b:?}")))?;
                    let size = buf.size().map_err(call("sizing a buffer"))?;
                    // SAFETY: the pattern outlives the call (it is copied when enqueued).
                    last = Some(
                        unsafe { self.queue.enqueue_fill_buffer(buf, &[0u8], 0, size, &[]) }
                            .map_err(call("clearing a buffer"))?,
                    );
                }
                GpuOp::Launch(k) => {
                    let dk = &self.plan.kernels[*k];
                    let (x, y) = match dk.launch {
                        Launch::Agents { agent } => {
                            let groups = self.counts[agent].div_ceil(self.wg * dk.rows as usize);
                            let x = groups.min(65_535);
                            (x, groups.div_ceil(x.max(1)))
                        }
                        Launch::Single => (1, 1),
                        Launch::Groups(g) => (g as usize, 1),
                    };
                    if x == 0 {
                        continue;
                    }
                    let mut exec = ExecuteKernel::new(&self.kernels[*k]);
                    for b in &dk.bindings {
                        // SAFETY: the kernel takes one global pointer per binding, in this order.
                        unsafe { exec.set_arg(&self.buffers[b]) };
                    }
                    exec.set_global_work_sizes(&[x * self.wg, y]).set_local_work_sizes(&[self.wg, 1]);
                    // SAFETY: every argument is set and every buffer holds what the plan sizes.
                    last = Some(
                        unsafe { exec.enqueue_nd_range(&self.queue) }
                            .map_err(|e| ClError::Call(format!("launching kernel `{}`: {e}", dk.name)))?,
                    );
                }
                GpuOp::Host { .. } => {
                    self.queue.finish().map_err(call("running the kernels before a model"))?;
                    let (module, counts) = (self.module, self.counts.clone());
                    gpu::run_hosted(self, module, op, &counts).map_err(|e| ClError::Call(e.to_string()))?;
                    last = None;
                }
            }
        }
        Ok(last)
    }

    /// Runs the plan's search for non-finite values: whether it and the fail word found
    /// nothing, so that the state need not be read back (false where the plan has no search).
    fn clean_on_device(&mut self) -> Result<bool, ClError> {
        if self.plan.finite.is_empty() {
            return Ok(false);
        }
        let ops = self.plan.finite.clone();
        self.enqueue(&ops)?;
        let mut words = Vec::new();
        for b in [Buf::NonFinite, Buf::Fail] {
            let Some(buf) = self.buffers.get(&b) else { continue };
            let mut word = [0u8; 4];
            // SAFETY: a blocking read of the buffer's first word.
            unsafe { self.queue.enqueue_read_buffer(buf, CL_BLOCKING, 0, &mut word, &[]) }
                .map_err(call("reading a word back"))?;
            words.extend(word);
        }
        Ok(words.iter().all(|b| *b == 0))
    }

    fn failure(&self, e: ClError) -> RunError {
        RunError::Invalid(format!("OpenCL ({}): {e}", self.name))
    }

    fn download(&mut self) -> Result<(), RunError> {
        let (buffers, queue, name) = (&self.buffers, &self.queue, &self.name);
        gpu::read_back(self.module, &self.plan, &mut self.host, |b| {
            let Some(buf) = buffers.get(b) else { return Ok(None) };
            let host = read_whole(queue, buf)
                .map_err(|e| RunError::Invalid(format!("OpenCL ({name}): reading the state back: {e}")))?;
            Ok(Some(host))
        })
    }
}

/// A whole buffer's bytes, read after the work queued before (the read blocks).
fn read_whole(queue: &CommandQueue, buf: &Buffer<u8>) -> Result<Vec<u8>, opencl3::error_codes::ClError> {
    let mut host = vec![0u8; buf.size()?];
    // SAFETY: a blocking read into a slice of the buffer's size.
    unsafe { queue.enqueue_read_buffer(buf, CL_BLOCKING, 0, &mut host, &[]) }?;
    Ok(host)
}

/// Reads and writes of whole buffers, for hosted models' runs between kernels.
impl gpu::Trial for OpenClBackend<'_> {
    type Error = ClError;

    fn plan(&mut self) -> &mut GpuPlan {
        &mut self.plan
    }

    fn launch_once(&mut self, k: usize) -> Result<(), ClError> {
        self.enqueue(&[GpuOp::Launch(k)])?;
        self.queue.finish().map_err(call("running a kernel"))
    }

    fn hosted(&mut self) -> &mut Option<crate::onnx::hosted::Hosted> {
        &mut self.hosted
    }

    fn read(&mut self, b: &Buf) -> Result<Vec<u8>, ClError> {
        let buf = self.buffers.get(b).ok_or_else(|| ClError::Call(format!("no buffer {b:?}")))?;
        read_whole(&self.queue, buf).map_err(call("reading a buffer"))
    }

    fn write(&mut self, b: &Buf, bytes: &[u8]) -> Result<(), ClError> {
        let buf = self.buffers.get_mut(b).ok_or_else(|| ClError::Call(format!("no buffer {b:?}")))?;
        // SAFETY: `bytes` outlives the blocking write, which is no larger than the buffer.
        unsafe { self.queue.enqueue_write_buffer(buf, CL_BLOCKING, 0, bytes, &[]) }
            .map_err(call("writing a buffer"))?;
        Ok(())
    }
}

impl Backend for OpenClBackend<'_> {
    fn name(&self) -> String {
        format!("opencl ({})", self.name)
    }

    fn step(&mut self) -> Result<(), RunError> {
        // The schedule is lent out for the call rather than copied each step.
        let ops = std::mem::take(&mut self.plan.step);
        let queued = self.enqueue(&ops);
        self.plan.step = ops;
        queued.map_err(|e| self.failure(e))?;
        // Keep a bounded amount of work queued.
        if self.host.world.step % 8 == 7 {
            self.queue.finish().map_err(|e| self.failure(call("running the step")(e)))?;
        }
        self.host.ran(1);
        Ok(())
    }

    fn prime(&mut self) -> Result<(), RunError> {
        let ops = self.plan.prime.clone();
        self.enqueue(&ops).map_err(|e| self.failure(e))?;
        self.host.fresh = false;
        Ok(())
    }

    fn notes(&self) -> Vec<String> {
        self.hosted.as_ref().map(|h| h.notes(self.module)).unwrap_or_default()
    }

    fn world(&mut self) -> Result<&World, RunError> {
        if !self.host.fresh {
            self.download()?;
        }
        Ok(&self.host.world)
    }

    fn find_non_finite(&mut self) -> Result<Option<(usize, usize, String)>, RunError> {
        if self.host.scan_due() {
            if self.clean_on_device().map_err(|e| self.failure(e))? {
                self.host.clean();
            } else {
                self.download()?;
            }
        }
        Ok(self.host.scan())
    }

    fn finish(&mut self) -> Result<(), RunError> {
        self.queue.finish().map_err(|e| self.failure(call("running the step")(e)))
    }

    fn laws(&mut self) -> Result<Option<Vec<crate::monitor::LawSample>>, RunError> {
        if self.plan.laws.len() != self.module.laws.len() {
            return Ok(None);
        }
        let ops = gpu::law_ops(&self.plan);
        self.enqueue(&ops).map_err(|e| self.failure(e))?;
        let (buffers, queue, name) = (&self.buffers, &self.queue, &self.name);
        gpu::law_samples(self.module, &self.plan, |b| {
            let failed = |e: opencl3::error_codes::ClError| {
                RunError::Invalid(format!("OpenCL ({name}): reading the law sums: {e}"))
            };
            let buf = buffers.get(b).ok_or_else(|| RunError::Invalid(format!("OpenCL ({name}): no buffer {b:?}")))?;
            // After the queued sums: the read blocks.
            read_whole(queue, buf).map_err(failed)
        })
        .map(Some)
    }

    fn device_seconds(&mut self, steps: u64) -> Option<Result<f64, RunError>> {
        // A step that runs a model on the host is not the device's alone to time.
        if gpu::has_host(&self.plan.step) {
            return None;
        }
        let run = |me: &mut Self| -> Result<f64, RunError> {
            me.finish()?;
            let ops = me.plan.step.clone();
            let mut total = 0u64;
            for _ in 0..steps {
                // The step's commands run in order: time each and add them up.
                for op in &ops {
                    if let Some(ev) = me.enqueue(std::slice::from_ref(op)).map_err(|e| me.failure(e))? {
                        ev.wait().map_err(|e| me.failure(call("timing")(e)))?;
                        let (s, e) = (ev.profiling_command_start(), ev.profiling_command_end());
                        if let (Ok(s), Ok(e)) = (s, e) {
                            total += e.saturating_sub(s);
                        }
                    }
                }
                me.host.ran(1);
            }
            Ok(total as f64 * 1e-9)
        };
        Some(run(self))
    }
}
