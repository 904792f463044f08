//! The CUDA executor: the driver is loaded at run time through cudarc, the module's PTX is
//! compiled by the driver for the device, and the step is captured once as a CUDA graph and
//! replayed, which removes the per-launch cost that dominates small systems.

use crate::backend::Backend;
use crate::gpu::{self, Buf, GpuOp, GpuPlan, Launch};
use crate::ir::interp::RunError;
use crate::ir::Module;
use crate::World;
use cudarc::driver::{
    sys, CudaContext, CudaFunction, CudaGraph, CudaSlice, CudaStream, DriverError, LaunchConfig, PinnedHostSlice,
    PushKernelArg,
};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    #[error("no CUDA driver on this machine (libcuda could not be loaded)")]
    NoDriver,
    #[error("no CUDA device: {0}")]
    NoDevice(String),
    #[error("the driver could not compile the PTX: {0}")]
    Jit(String),
    #[error("{what}: {err}")]
    Call { what: String, err: DriverError },
    /// A hosted model's run between the kernels failed.
    #[error("{0}")]
    Hosted(String),
}

impl CudaError {
    /// Whether this only says that CUDA is not usable here because nothing is installed (no
    /// driver library, or a driver that sees no device), rather than that the driver failed.
    pub fn is_absent(&self) -> bool {
        matches!(
            self,
            CudaError::NoDriver | CudaError::Call { err: DriverError(sys::CUresult::CUDA_ERROR_NO_DEVICE), .. }
        )
    }
}

fn call(what: impl Into<String>) -> impl FnOnce(DriverError) -> CudaError {
    let what = what.into();
    move |err| CudaError::Call { what, err }
}

/// A CUDA device as `aiic devices` lists it.
pub struct DeviceInfo {
    pub name: String,
    pub compute: (i32, i32),
    pub memory_gib: f64,
}

/// How many CUDA devices there are (0 without a driver), without opening any.
pub fn device_count() -> usize {
    // SAFETY: only looks for the driver library.
    if !unsafe { sys::is_culib_present() } {
        return 0;
    }
    CudaContext::device_count().map_or(0, |n| n.max(0) as usize)
}

/// The CUDA devices of this machine, or why there are none.
pub fn list_devices() -> Result<Vec<DeviceInfo>, CudaError> {
    // SAFETY: only looks for the driver library.
    if !unsafe { sys::is_culib_present() } {
        return Err(CudaError::NoDriver);
    }
    let n = CudaContext::device_count().map_err(call("counting CUDA devices"))?;
    (0..n as usize)
        .map(|i| {
            let ctx = CudaContext::new(i).map_err(call(format!("opening CUDA device {i}")))?;
            let name = ctx.name().map_err(call("reading the device name"))?;
            let compute = ctx.compute_capability().map_err(call("reading the compute capability"))?;
            let memory_gib = ctx.total_mem().map_err(call("reading the memory size"))? as f64 / (1u64 << 30) as f64;
            Ok(DeviceInfo { name, compute, memory_gib })
        })
        .collect()
}

/// The CUDA devices, none (no driver or device), or the failure of an installed driver.
pub fn probe() -> crate::probe::Probe<DeviceInfo> {
    crate::probe::Probe::classify(list_devices(), CudaError::is_absent, "the CUDA driver found no device")
}

pub struct CudaBackend<'m> {
    module: &'m Module,
    plan: GpuPlan,
    name: String,
    block: u32,
    max_grid: u32,
    stream: Arc<CudaStream>,
    functions: Vec<CudaFunction>,
    buffers: HashMap<Buf, CudaSlice<u8>>,
    graph: Option<CudaGraph>,
    counts: Vec<usize>,
    host: gpu::HostCopy,
    /// Page-locked copies of the state buffers a frame reads, and the step of the frame in
    /// flight in them (see `begin_frame`).
    frame: HashMap<Buf, PinnedHostSlice<u8>>,
    frame_step: Option<u64>,
    ctx: Arc<CudaContext>,
    notes: Vec<String>,
    hosted: Option<crate::onnx::hosted::Hosted>,
}

impl<'m> CudaBackend<'m> {
    /// Opens device `device` (0 by default), compiles `ptx` (written for `block` threads per
    /// block) and uploads `world`.
    pub fn new(
        module: &'m Module,
        plan: GpuPlan,
        ptx: &str,
        block: u32,
        world: &World,
        device: Option<usize>,
    ) -> Result<Self, CudaError> {
        // SAFETY: only looks for the driver library.
        if !unsafe { sys::is_culib_present() } {
            return Err(CudaError::NoDriver);
        }
        let count = CudaContext::device_count().map_err(call("counting CUDA devices"))? as usize;
        let ordinal = device.unwrap_or(0);
        if ordinal >= count {
            return Err(CudaError::NoDevice(format!("--device {ordinal}: there are {count} CUDA devices")));
        }
        let ctx = CudaContext::new(ordinal).map_err(call("opening the CUDA device"))?;
        // SAFETY: one stream, ordered by itself; aiic needs no cross-stream tracking.
        unsafe { ctx.disable_event_tracking() };
        let name = ctx.name().map_err(call("reading the device name"))?;
        let (major, minor) = ctx.compute_capability().map_err(call("reading the compute capability"))?;
        // The text targets sm_80 and uses nothing newer: older chips get their own target.
        let cc = (major * 10 + minor) as u32;
        let text =
            if cc < 80 { ptx.replacen(".target sm_80", &format!(".target sm_{cc}"), 1) } else { ptx.to_string() };
        let cmodule = ctx.load_module(cudarc::nvrtc::Ptx::from_src(text)).map_err(|e| CudaError::Jit(e.to_string()))?;
        let mut functions = (0..plan.kernels.len())
            .map(|n| {
                cmodule
                    .load_function(&format!("aiic_k{n}"))
                    .map_err(call(format!("finding kernel `{}` in the PTX", plan.kernels[n].name)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut plan = plan;
        let mut notes = Vec::new();
        // Hopper variants (`wgmma`) live in modules of their own, for sm_90 only.
        for (n, f) in functions.iter_mut().enumerate() {
            let Some(h) = plan.kernels[n].hopper.clone() else { continue };
            if cc != 90 {
                continue;
            }
            let loaded = ctx
                .load_module(cudarc::nvrtc::Ptx::from_src(h.ptx))
                .map_err(|e| e.to_string())
                .and_then(|m| m.load_function(&format!("aiic_k{n}")).map_err(|e| e.to_string()));
            match loaded {
                Ok(hopper) => {
                    *f = hopper;
                    plan.kernels[n].tiles = Some(h.tiles);
                    notes.push(format!("`{}`: wgmma (sm_90a)", plan.kernels[n].name));
                }
                Err(e) => notes
                    .push(format!("`{}`: the sm_90a kernel did not load ({e}); mma.sync runs", plan.kernels[n].name)),
            }
        }
        // Dynamic workgroup memory past 48 KiB is allowed kernel by kernel.
        for (f, k) in functions.iter().zip(&plan.kernels) {
            if let Some(t) = k.tiles.as_ref().filter(|t| t.shared > 48 * 1024) {
                f.set_attribute(
                    sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    t.shared as i32,
                )
                .map_err(call(format!("allowing kernel `{}` {} bytes of shared memory", k.name, t.shared)))?;
            }
        }
        let max_grid = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X)
            .map_err(call("reading the grid limit"))?
            .max(1) as u32;
        let stream = ctx.new_stream().map_err(call("creating a stream"))?;
        let counts: Vec<usize> = world.agents.iter().map(|a| a.count).collect();
        let mut me = CudaBackend {
            module,
            plan,
            name,
            block,
            max_grid,
            stream,
            functions,
            buffers: HashMap::new(),
            graph: None,
            counts,
            host: gpu::HostCopy::new(world.clone()),
            frame: HashMap::new(),
            frame_step: None,
            ctx,
            notes,
            hosted: (!module.hosted.is_empty())
                .then(|| crate::onnx::hosted::Hosted::new(module, crate::onnx::hosted::host_engine())),
        };
        me.upload()?;
        me.choose_precisions()?;
        Ok(me)
    }

    fn read(&self, b: &Buf) -> Result<Vec<u8>, CudaError> {
        let dev = self.buffers.get(b).ok_or_else(|| CudaError::NoDevice(format!("no buffer {b:?}")))?;
        let mut host = vec![0u8; dev.len()];
        self.stream.memcpy_dtoh(dev, &mut host).map_err(call(format!("reading {b:?}")))?;
        Ok(host)
    }

    /// Settles each tensor interaction with a choice of kernels (`GpuPlan::choices`).
    fn choose_precisions(&mut self) -> Result<(), CudaError> {
        let settled = gpu::settle_choices(self, true, "tensor cores")?;
        self.notes.extend(settled);
        Ok(())
    }

    fn upload(&mut self) -> Result<(), CudaError> {
        for b in self.plan.buffers() {
            let bytes = gpu::initial_bytes(self.module, &self.plan, b, &self.host.world);
            let dev = self.stream.clone_htod(&bytes).map_err(call(format!("uploading {b:?}")))?;
            self.buffers.insert(b, dev);
        }
        self.run_upload_preludes()
    }

    /// Queues the preludes that run once per upload (`DeviceKernel::prelude_on_upload`).
    fn run_upload_preludes(&mut self) -> Result<(), CudaError> {
        let once: Vec<usize> =
            self.plan.kernels.iter().filter(|k| k.prelude_on_upload).filter_map(|k| k.prelude).collect();
        for p in once {
            self.launch(p)?;
        }
        Ok(())
    }

    /// Queues the commands of `ops` on the stream.
    fn enqueue(&mut self, ops: &[GpuOp]) -> Result<(), CudaError> {
        for op in ops {
            match op {
                GpuOp::Zero(b) => {
                    let buf = self.buffers.get_mut(b).ok_or_else(|| CudaError::NoDevice(format!("no buffer {b:?}")))?;
                    self.stream.memset_zeros(buf).map_err(call("clearing a buffer"))?;
                }
                GpuOp::Launch(k) => {
                    let dk = &self.plan.kernels[*k];
                    if let Some(p) = dk.prelude.filter(|_| !dk.prelude_on_upload) {
                        self.launch(p)?;
                    }
                    self.launch(*k)?;
                }
                GpuOp::Host { .. } => {
                    self.stream.synchronize().map_err(call("running the kernels before a model"))?;
                    let (module, counts) = (self.module, self.counts.clone());
                    gpu::run_hosted(self, module, op, &counts).map_err(|e| CudaError::Hosted(e.to_string()))?;
                }
            }
        }
        Ok(())
    }

    /// Queues device kernel `k`.
    fn launch(&mut self, k: usize) -> Result<(), CudaError> {
        let dk = &self.plan.kernels[k];
        let agents = match dk.launch {
            Launch::Agents { agent } => self.counts[agent],
            _ => 0,
        };
        let (x, y, block, shared) = match (&dk.tiles, dk.launch) {
            (Some(t), _) => (agents.div_ceil(t.agents as usize) as u32, t.y, t.block, t.shared),
            (None, Launch::Agents { .. }) => {
                let per = (self.block * dk.rows) as usize;
                let blocks = agents.div_ceil(per) as u64;
                let x = blocks.min(self.max_grid as u64);
                (x as u32, blocks.div_ceil(x.max(1)) as u32, self.block, 0)
            }
            (None, Launch::Single) => (1, 1, self.block, 0),
            (None, Launch::Groups(g)) => (g, 1, self.block, 0),
        };
        if x == 0 {
            return Ok(());
        }
        let cfg = LaunchConfig { grid_dim: (x, y, 1), block_dim: (block, 1, 1), shared_mem_bytes: shared };
        let mut args = self.stream.launch_builder(&self.functions[k]);
        for b in &dk.bindings {
            args.arg(&self.buffers[b]);
        }
        // SAFETY: the kernel takes one pointer per binding, in this order, and every buffer
        // holds the elements the plan sizes it for.
        unsafe { args.launch(cfg) }.map_err(call(format!("launching kernel `{}`", dk.name)))?;
        Ok(())
    }

    /// Runs the plan's search for non-finite values: whether it and the fail word found
    /// nothing, so that the state need not be read back (false where the plan has no search).
    fn clean_on_device(&mut self) -> Result<bool, CudaError> {
        if self.plan.finite.is_empty() {
            return Ok(false);
        }
        let ops = self.plan.finite.clone();
        self.enqueue(&ops)?;
        let mut words = self.read(&Buf::NonFinite)?;
        if self.buffers.contains_key(&Buf::Fail) {
            words.extend(self.read(&Buf::Fail)?);
        }
        Ok(words.iter().all(|b| *b == 0))
    }

    fn failure(&self, e: CudaError) -> RunError {
        RunError::Invalid(format!("CUDA ({}): {e}", self.name))
    }

    fn download(&mut self) -> Result<(), RunError> {
        self.stream.synchronize().map_err(|e| self.failure(call("running the step")(e)))?;
        let (buffers, stream, name) = (&self.buffers, &self.stream, &self.name);
        gpu::read_back(self.module, &self.plan, &mut self.host, |b| {
            let Some(dev) = buffers.get(b) else { return Ok(None) };
            let mut host = vec![0u8; dev.len()];
            stream
                .memcpy_dtoh(dev, &mut host)
                .map_err(|e| RunError::Invalid(format!("CUDA ({name}): reading the state back: {e}")))?;
            Ok(Some(host))
        })
    }
}

impl gpu::Trial for CudaBackend<'_> {
    type Error = CudaError;

    fn plan(&mut self) -> &mut GpuPlan {
        &mut self.plan
    }

    fn launch_once(&mut self, k: usize) -> Result<(), CudaError> {
        self.enqueue(&[GpuOp::Launch(k)])?;
        self.stream.synchronize().map_err(call("trying a tensor kernel"))
    }

    fn read(&mut self, b: &Buf) -> Result<Vec<u8>, CudaError> {
        CudaBackend::read(self, b)
    }

    fn hosted(&mut self) -> &mut Option<crate::onnx::hosted::Hosted> {
        &mut self.hosted
    }

    fn write(&mut self, b: &Buf, bytes: &[u8]) -> Result<(), CudaError> {
        let dev = self.buffers.get_mut(b).ok_or_else(|| CudaError::NoDevice(format!("no buffer {b:?}")))?;
        self.stream.memcpy_htod(bytes, dev).map_err(call("restoring the state"))?;
        self.run_upload_preludes()
    }
}

impl Backend for CudaBackend<'_> {
    fn name(&self) -> String {
        format!("cuda ({})", self.name)
    }

    fn step(&mut self) -> Result<(), RunError> {
        // A step that runs a model on the host between its kernels cannot be one graph.
        if self.graph.is_none() && !gpu::has_host(&self.plan.step) {
            // The step is the same every time: capture it once, replay it each step.
            let ops = self.plan.step.clone();
            let mode = sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL;
            self.stream.begin_capture(mode).map_err(|e| self.failure(call("capturing the step")(e)))?;
            let queued = self.enqueue(&ops);
            let graph = self.stream.end_capture(sys::CUgraphInstantiate_flags(0));
            queued.map_err(|e| self.failure(e))?;
            self.graph = graph.map_err(|e| self.failure(call("capturing the step")(e)))?;
        }
        match &self.graph {
            Some(g) => g.launch().map_err(|e| self.failure(call("running the step")(e)))?,
            None => {
                let ops = std::mem::take(&mut self.plan.step);
                let queued = self.enqueue(&ops);
                self.plan.step = ops;
                queued.map_err(|e| self.failure(e))?;
            }
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

    fn notes(&self) -> Vec<String> {
        let hosted = self.hosted.as_ref().map(|h| h.notes(self.module)).unwrap_or_default();
        self.notes.iter().cloned().chain(hosted).collect()
    }

    fn recheck_precisions(&mut self, step: u64) -> Result<Vec<String>, RunError> {
        if self.plan.choices.is_empty() {
            return Ok(Vec::new());
        }
        let notes = gpu::recheck_choices(self, step).map_err(|e| self.failure(e))?;
        if !notes.is_empty() {
            // The captured step launches the kernels it had.
            self.graph = None;
        }
        self.host.fresh = false;
        Ok(notes)
    }

    fn finish(&mut self) -> Result<(), RunError> {
        self.stream.synchronize().map_err(|e| self.failure(call("running the step")(e)))
    }

    fn begin_frame(&mut self) -> Result<Option<World>, RunError> {
        // The copies queue behind the steps already submitted and ahead of the next ones, into
        // page-locked memory, so the device keeps stepping while they travel.
        let wanted: Vec<Buf> = self
            .buffers
            .keys()
            .copied()
            .filter(|b| matches!(b, Buf::Col { .. } | Buf::Field { .. } | Buf::Comp { .. } | Buf::Fail))
            .collect();
        for b in wanted {
            let dev = &self.buffers[&b];
            if !self.frame.contains_key(&b) {
                // SAFETY: the memory is written by the copy below before it is read.
                let pinned = unsafe { self.ctx.alloc_pinned_with_flags::<u8>(dev.len(), 0) }
                    .map_err(|e| self.failure(call("allocating page-locked memory")(e)))?;
                self.frame.insert(b, pinned);
            }
            let host = self.frame.get_mut(&b).ok_or_else(|| RunError::Invalid("frame buffer".into()))?;
            self.stream
                .memcpy_dtoh(dev, host)
                .map_err(|e| RunError::Invalid(format!("CUDA ({}): copying a frame: {e}", self.name)))?;
        }
        self.frame_step = Some(self.host.world.step);
        Ok(None)
    }

    fn take_frame(&mut self) -> Result<Option<World>, RunError> {
        let Some(step) = self.frame_step.take() else { return Ok(None) };
        let mut copy = gpu::HostCopy::new(self.host.world.clone());
        let (frame, name) = (&self.frame, &self.name);
        gpu::read_back(self.module, &self.plan, &mut copy, |b| {
            let Some(host) = frame.get(b) else { return Ok(None) };
            let bytes =
                host.as_slice().map_err(|e| RunError::Invalid(format!("CUDA ({name}): waiting for a frame: {e}")))?;
            Ok(Some(bytes.to_vec()))
        })?;
        copy.world.step = step;
        Ok(Some(copy.world))
    }

    fn laws(&mut self) -> Result<Option<Vec<crate::monitor::LawSample>>, RunError> {
        if self.plan.laws.len() != self.module.laws.len() {
            return Ok(None);
        }
        let ops = gpu::law_ops(&self.plan);
        self.enqueue(&ops).map_err(|e| self.failure(e))?;
        self.stream.synchronize().map_err(|e| self.failure(call("measuring the laws")(e)))?;
        let (buffers, stream, name) = (&self.buffers, &self.stream, &self.name);
        gpu::law_samples(self.module, &self.plan, |b| {
            let dev = buffers.get(b).ok_or_else(|| RunError::Invalid(format!("CUDA ({name}): no buffer {b:?}")))?;
            let mut host = vec![0u8; dev.len()];
            stream
                .memcpy_dtoh(dev, &mut host)
                .map_err(|e| RunError::Invalid(format!("CUDA ({name}): reading the law sums: {e}")))?;
            Ok(host)
        })
        .map(Some)
    }

    fn device_seconds(&mut self, steps: u64) -> Option<Result<f64, RunError>> {
        // A step that runs a model on the host is not the device's alone to time.
        if gpu::has_host(&self.plan.step) {
            return None;
        }
        let run = |me: &mut Self| -> Result<f64, RunError> {
            let flags = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
            let start = me.stream.record_event(flags).map_err(|e| me.failure(call("timing")(e)))?;
            for _ in 0..steps {
                me.step()?;
            }
            let end = me.stream.record_event(flags).map_err(|e| me.failure(call("timing")(e)))?;
            end.synchronize().map_err(|e| me.failure(call("timing")(e)))?;
            let ms = start.elapsed_ms(&end).map_err(|e| me.failure(call("timing")(e)))?;
            Ok(ms as f64 * 1e-3)
        };
        Some(run(self))
    }
}
