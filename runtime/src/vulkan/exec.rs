//! Runs a module's step as Vulkan compute pipelines.
//!
//! Every buffer lives in device memory and is filled and read through one host-visible staging
//! buffer. A step is recorded once into a command buffer (a barrier before each command) and
//! submitted again each step; the host waits only to read the state back, every few steps to
//! bound the work in flight, and for timing.

use super::{Instance, VkError};
use crate::backend::Backend;
use crate::gpu::{self, Buf, GpuOp, GpuPlan, Launch};
use crate::ir::interp::RunError;
use crate::ir::Module;
use crate::World;
use ash::vk;
use std::collections::HashMap;

/// Steps submitted before the host waits for them.
const IN_FLIGHT: u32 = 8;

pub struct Options {
    /// Index into the device list (`aiic devices`); the first (a discrete GPU if any) by default.
    pub device: Option<usize>,
    /// Workgroup size; by default the largest power of two up to 256 the device allows.
    pub workgroup: Option<u32>,
}

struct Buffer {
    buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    bytes: u64,
}

struct Pipeline {
    set_layout: vk::DescriptorSetLayout,
    layout: vk::PipelineLayout,
    pipeline: vk::Pipeline,
    set: vk::DescriptorSet,
}

/// Trips of a shader's loop nest after which Mesa's llvmpipe leaves the loop.
const LLVMPIPE_TRIPS: u64 = 65_535;

pub struct VulkanBackend<'m> {
    module: &'m Module,
    plan: GpuPlan,
    device_name: String,
    device: ash::Device,
    queue: vk::Queue,
    queue_family: u32,
    mem: vk::PhysicalDeviceMemoryProperties,
    buffers: HashMap<Buf, Buffer>,
    staging: Buffer,
    staging_ptr: *mut u8,
    pipelines: Vec<Pipeline>,
    desc_pool: vk::DescriptorPool,
    cmd_pool: vk::CommandPool,
    step_cb: vk::CommandBuffer,
    work_cb: vk::CommandBuffer,
    fence: vk::Fence,
    queries: Option<(vk::QueryPool, f64)>,
    wg: u32,
    max_groups: u32,
    counts: Vec<usize>,
    host: gpu::HostCopy,
    /// Steps submitted and not yet waited for.
    pending: u32,
    /// What the device offers the cooperative-matrix kernels, or why it cannot run them.
    coop: Result<super::coop::Coop, String>,
    /// Whether the driver's statistics of each kernel are captured (`AIIC_VK_STATS`).
    stats: bool,
    notes: Vec<String>,
    hosted: Option<crate::onnx::hosted::Hosted>,
    // Last, so that it is dropped after the device made from it.
    instance: std::sync::Arc<Instance>,
}

fn memory_type(mem: &vk::PhysicalDeviceMemoryProperties, bits: u32, want: vk::MemoryPropertyFlags) -> Option<u32> {
    (0..mem.memory_type_count)
        .find(|&i| bits & (1 << i) != 0 && mem.memory_types[i as usize].property_flags.contains(want))
}

impl<'m> VulkanBackend<'m> {
    /// Creates the device, uploads `world` and builds a pipeline per kernel (`spirv[k]` for
    /// `plan.kernels[k]`).
    pub fn new(
        module: &'m Module,
        plan: GpuPlan,
        spirv: &[Vec<u32>],
        world: &World,
        opts: &Options,
    ) -> Result<Self, VkError> {
        let instance = super::shared_instance()?;
        let devices = instance.devices()?;
        if devices.is_empty() {
            return Err(VkError::NoDevice("the Vulkan loader found no device".into()));
        }
        let pick = opts.device.unwrap_or(0);
        let (pd, info) = devices.get(pick).cloned().ok_or_else(|| {
            VkError::NoDevice(format!(
                "--device {pick}: there are {} Vulkan devices (see `aiic devices`)",
                devices.len()
            ))
        })?;
        let mut plan = plan;
        let mut spirv = spirv;
        // Laws are measured in f64; a device without it measures them on the host instead.
        let laws_from = plan.first_law_kernel();
        if !info.f64 && spirv.iter().take(laws_from).any(|w| declares_float64(w)) {
            return Err(VkError::Unsupported(format!("{} has no 64-bit floats, which this program uses", info.name)));
        }
        if !info.f64 {
            spirv = &spirv[..plan.drop_laws()];
        }
        let uses_f64 = spirv.iter().any(|w| declares_float64(w));
        let inst = &instance.instance;
        // SAFETY: queries of a device of this instance.
        let (props, families, mem) = unsafe {
            (
                inst.get_physical_device_properties(pd),
                inst.get_physical_device_queue_family_properties(pd),
                inst.get_physical_device_memory_properties(pd),
            )
        };
        let qfi = families
            .iter()
            .position(|f| f.queue_flags.contains(vk::QueueFlags::COMPUTE))
            .ok_or_else(|| VkError::Unsupported(format!("{} has no compute queue", info.name)))?
            as u32;
        let timestamps = families[qfi as usize].timestamp_valid_bits > 0 && props.limits.timestamp_period > 0.0;
        let limits = props.limits;
        // Every column a kernel touches is its own storage buffer.
        if let Some(k) = plan
            .kernels
            .iter()
            .find(|k| k.bindings.len() as u64 > limits.max_per_stage_descriptor_storage_buffers as u64)
        {
            return Err(VkError::Unsupported(format!(
                "{}: kernel `{}` binds {} buffers (one per column it reads or writes), more than the {} this device allows a shader; run it with --target cpu, cuda or opencl",
                info.name,
                k.name,
                k.bindings.len(),
                limits.max_per_stage_descriptor_storage_buffers
            )));
        }
        // Mesa's llvmpipe ends a shader's loop nest after 65,535 trips without a word
        // (`LP_MAX_TGSI_LOOP_ITERATIONS`); a layer's loops over rows and inputs are one nest.
        if info.is_cpu {
            let trips = |k: &gpu::DeviceKernel| -> u64 {
                let plan = k.source.and_then(|s| module.kernels.get(s)).and_then(|k| k.tensor.as_ref());
                match (plan, k.coop) {
                    (Some(p), None) => p.layers.iter().map(|l| l.rows as u64 * (l.cols as u64 + 1)).max().unwrap_or(0),
                    _ => 0,
                }
            };
            if let Some(k) = plan.kernels.iter().find(|k| trips(k) > LLVMPIPE_TRIPS) {
                return Err(VkError::Unsupported(format!(
                    "{}: kernel `{}` loops {} times over one layer, and this CPU driver stops a shader's loops after {LLVMPIPE_TRIPS}; run it with --target cpu, cuda or opencl",
                    info.name,
                    k.name,
                    trips(k)
                )));
            }
        }

        // The widest tile of workgroup memory any kernel needs decides the largest workgroup.
        let tile_bytes = plan_tile_bytes(&plan);
        let fits = |w: u32| {
            w.is_multiple_of(gpu::TILE_UNROLL)
                && w <= limits.max_compute_work_group_size[0]
                && w <= limits.max_compute_work_group_invocations
                && w as u64 * tile_bytes <= limits.max_compute_shared_memory_size as u64
        };
        let wg = match opts.workgroup {
            Some(w) if fits(w) => w,
            Some(w) => {
                return Err(VkError::Unsupported(format!(
                    "{}: a workgroup of {w} exceeds its limits or is not a multiple of {}",
                    info.name,
                    gpu::TILE_UNROLL
                )))
            }
            // Wide workgroups share each tile among more agents, but a GPU needs a few hundred
            // workgroups to fill: the widest that still makes 128 of them, at least 64 wide.
            None => {
                let most = world.agents.iter().map(|a| a.count).max().unwrap_or(0);
                let rows = plan.kernels.iter().filter(|k| k.coop.is_none()).map(|k| k.rows).max().unwrap_or(1) as usize;
                [512, 256, 128, 64]
                    .into_iter()
                    .find(|&w| fits(w) && most / (w as usize * rows) >= 128)
                    .or_else(|| [64, 32, 16, 8, 4].into_iter().find(|&w| fits(w)))
                    .ok_or_else(|| VkError::Unsupported(format!("{}: too little workgroup memory", info.name)))?
            }
        };

        let coop =
            if plan.choices.is_empty() { Err("no tensor kernels".into()) } else { super::coop::support(&instance, pd) };
        keep_runnable(&mut plan, &coop, |k, v| {
            // llvmpipe's limit binds the cooperative-matrix kernels too; those past it leave the
            // interaction to the f32 kernel.
            !info.is_cpu || coop.as_ref().is_ok_and(|c| coop_trips(module, k, v, c.subgroup) <= LLVMPIPE_TRIPS)
        });
        let priorities = [1.0f32];
        let queue_info = [vk::DeviceQueueCreateInfo::default().queue_family_index(qfi).queue_priorities(&priorities)];
        let features = vk::PhysicalDeviceFeatures { shader_float64: u32::from(uses_f64), ..Default::default() };
        let mut coop_features = vk::PhysicalDeviceCooperativeMatrixFeaturesKHR::default().cooperative_matrix(true);
        let mut f16_features = vk::PhysicalDeviceShaderFloat16Int8Features::default().shader_float16(true);
        let mut model_features = vk::PhysicalDeviceVulkanMemoryModelFeatures::default().vulkan_memory_model(true);
        let mut size_features = vk::PhysicalDeviceSubgroupSizeControlFeatures::default();
        let mut matrix2_features =
            super::coop::Matrix2Features { conversions: vk::TRUE, ..super::coop::Matrix2Features::default() };
        let mut stats_features =
            vk::PhysicalDevicePipelineExecutablePropertiesFeaturesKHR::default().pipeline_executable_info(true);
        let mut features2 = vk::PhysicalDeviceFeatures2::default().features(features);
        let stats = super::stats::wanted() && super::stats::supported(&instance, pd);
        let mut extensions = Vec::new();
        if let Ok(c) = &coop {
            extensions.push(ash::khr::cooperative_matrix::NAME.as_ptr());
            features2 =
                features2.push_next(&mut coop_features).push_next(&mut f16_features).push_next(&mut model_features);
            if c.full_subgroups || c.required_size {
                size_features =
                    size_features.compute_full_subgroups(c.full_subgroups).subgroup_size_control(c.required_size);
                features2 = features2.push_next(&mut size_features);
            }
            if c.conversions {
                extensions.push(super::coop::MATRIX2_NAME.as_ptr());
                features2 = features2.push_next(&mut matrix2_features);
            }
        }
        if stats {
            extensions.push(ash::khr::pipeline_executable_properties::NAME.as_ptr());
            features2 = features2.push_next(&mut stats_features);
        }
        let dinfo = vk::DeviceCreateInfo::default()
            .queue_create_infos(&queue_info)
            .enabled_extension_names(&extensions)
            .push_next(&mut features2);
        // SAFETY: the create info outlives the call; the device is destroyed in `drop`.
        let device =
            unsafe { inst.create_device(pd, &dinfo, None) }.map_err(VkError::call("creating the Vulkan device"))?;
        // SAFETY: queue 0 of the family the device was created with.
        let queue = unsafe { device.get_device_queue(qfi, 0) };
        let counts: Vec<usize> = world.agents.iter().map(|a| a.count).collect();

        let mut me = VulkanBackend {
            module,
            plan,
            device_name: info.name.clone(),
            device,
            queue,
            queue_family: qfi,
            mem,
            buffers: HashMap::new(),
            staging: Buffer { buffer: vk::Buffer::null(), memory: vk::DeviceMemory::null(), bytes: 0 },
            staging_ptr: std::ptr::null_mut(),
            pipelines: Vec::new(),
            desc_pool: vk::DescriptorPool::null(),
            cmd_pool: vk::CommandPool::null(),
            step_cb: vk::CommandBuffer::null(),
            work_cb: vk::CommandBuffer::null(),
            fence: vk::Fence::null(),
            queries: None,
            wg,
            max_groups: limits.max_compute_work_group_count[0].max(1),
            counts,
            host: gpu::HostCopy::new(world.clone()),
            pending: 0,
            coop,
            stats,
            notes: Vec::new(),
            hosted: (!module.hosted.is_empty())
                .then(|| crate::onnx::hosted::Hosted::new(module, crate::onnx::hosted::host_engine())),
            instance,
        };
        me.create_buffers()?;
        me.create_pipelines(spirv)?;
        me.create_commands(timestamps.then_some(limits.timestamp_period as f64))?;
        me.upload()?;
        me.choose_precisions()?;
        me.record_step()?;
        Ok(me)
    }

    /// Settles each tensor interaction with a cooperative-matrix kernel (`GpuPlan::choices`).
    fn choose_precisions(&mut self) -> Result<(), VkError> {
        if self.plan.choices.is_empty() {
            return Ok(());
        }
        // A device with cooperative matrices may still run none of a kernel's variants.
        let units = match &self.coop {
            Ok(_) => "cooperative matrices of the shapes and sizes aiic's kernels use".to_string(),
            Err(why) => format!("cooperative matrices ({why})"),
        };
        let settled = gpu::settle_choices(self, self.coop.is_ok(), &units)?;
        self.notes.extend(settled);
        Ok(())
    }

    /// Kernels this device does not build: the cooperative-matrix kernels no choice kept.
    fn unbuildable(&self) -> Vec<usize> {
        let kept: Vec<usize> = self.plan.choices.iter().flat_map(|c| c.candidates.iter().map(|x| x.1)).collect();
        (0..self.plan.kernels.len()).filter(|k| self.plan.kernels[*k].coop.is_some() && !kept.contains(k)).collect()
    }

    /// The workgroup size kernel `k` runs with.
    fn workgroup_of(&self, k: usize) -> u32 {
        match (self.plan.kernels[k].coop, &self.coop) {
            (Some(v), Ok(c)) => v.subgroups * c.subgroup,
            _ => self.wg,
        }
    }

    /// Agents a workgroup of kernel `k` covers (`Launch::Agents`).
    fn agents_per_workgroup(&self, k: usize) -> usize {
        let kernel = &self.plan.kernels[k];
        (kernel.coop.map_or_else(|| self.workgroup_of(k), |v| v.subgroups) * kernel.rows) as usize
    }

    fn buffer(
        &self,
        bytes: u64,
        usage: vk::BufferUsageFlags,
        props: vk::MemoryPropertyFlags,
        what: &str,
    ) -> Result<Buffer, VkError> {
        let d = &self.device;
        let info =
            vk::BufferCreateInfo::default().size(bytes.max(16)).usage(usage).sharing_mode(vk::SharingMode::EXCLUSIVE);
        // SAFETY: plain object creation on a live device; freed in `drop`.
        unsafe {
            let buffer =
                d.create_buffer(&info, None).map_err(VkError::call(format!("creating the buffer of {what}")))?;
            let req = d.get_buffer_memory_requirements(buffer);
            let ty = memory_type(&self.mem, req.memory_type_bits, props)
                .or_else(|| memory_type(&self.mem, req.memory_type_bits, vk::MemoryPropertyFlags::empty()))
                .ok_or_else(|| VkError::Unsupported(format!("no memory type can hold {what}")))?;
            let alloc = vk::MemoryAllocateInfo::default().allocation_size(req.size).memory_type_index(ty);
            let memory = match d.allocate_memory(&alloc, None) {
                Ok(m) => m,
                Err(r) => {
                    d.destroy_buffer(buffer, None);
                    return Err(VkError::Call { what: format!("allocating {bytes} bytes for {what}"), result: r });
                }
            };
            d.bind_buffer_memory(buffer, memory, 0).map_err(VkError::call(format!("binding the memory of {what}")))?;
            Ok(Buffer { buffer, memory, bytes: bytes.max(16) })
        }
    }

    fn describe(&self, b: Buf) -> String {
        let col = |agent: usize, col: u32| {
            let s = &self.module.agents[agent];
            let lane = s.fields.iter().flat_map(|f| f.lanes.iter()).nth(col as usize).cloned().unwrap_or_default();
            format!("{}.{lane}", s.name)
        };
        match b {
            Buf::Col { agent, col: c } => col(agent, c),
            Buf::Comp { agent, col: c } => format!("the compensation of {}", col(agent, c)),
            Buf::Delta { agent, col: c } => format!("the changes of {}", col(agent, c)),
            other => format!("{other:?}"),
        }
    }

    fn create_buffers(&mut self) -> Result<(), VkError> {
        let usage = vk::BufferUsageFlags::STORAGE_BUFFER
            | vk::BufferUsageFlags::TRANSFER_SRC
            | vk::BufferUsageFlags::TRANSFER_DST;
        let mut total = 0u64;
        for b in self.plan.buffers() {
            let (n, size) = self.plan.extent(self.module, b, &self.counts);
            let bytes = (n * size) as u64;
            let buf = self.buffer(bytes, usage, vk::MemoryPropertyFlags::DEVICE_LOCAL, &self.describe(b))?;
            total += buf.bytes;
            self.buffers.insert(b, buf);
        }
        let host = vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT;
        self.staging = self.buffer(
            total,
            vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST,
            host,
            "the staging buffer",
        )?;
        // SAFETY: host-visible memory of the staging buffer, mapped once for the backend's life.
        self.staging_ptr = unsafe {
            self.device
                .map_memory(self.staging.memory, 0, vk::WHOLE_SIZE, vk::MemoryMapFlags::empty())
                .map_err(VkError::call("mapping the staging buffer"))? as *mut u8
        };
        Ok(())
    }

    fn create_pipelines(&mut self, spirv: &[Vec<u32>]) -> Result<(), VkError> {
        let d = &self.device;
        let total: u32 = self.plan.kernels.iter().map(|k| k.bindings.len() as u32).sum();
        let sizes = [vk::DescriptorPoolSize { ty: vk::DescriptorType::STORAGE_BUFFER, descriptor_count: total.max(1) }];
        let pool_info =
            vk::DescriptorPoolCreateInfo::default().max_sets(self.plan.kernels.len().max(1) as u32).pool_sizes(&sizes);
        // SAFETY: object creation on a live device; everything is destroyed in `drop`.
        unsafe {
            self.desc_pool =
                d.create_descriptor_pool(&pool_info, None).map_err(VkError::call("creating the descriptor pool"))?;
            let entries = [vk::SpecializationMapEntry { constant_id: 0, offset: 0, size: 4 }];
            let skip = self.unbuildable();
            for (n, (k, words)) in self.plan.kernels.iter().zip(spirv).enumerate() {
                if skip.contains(&n) {
                    self.pipelines.push(Pipeline {
                        set_layout: vk::DescriptorSetLayout::null(),
                        layout: vk::PipelineLayout::null(),
                        pipeline: vk::Pipeline::null(),
                        set: vk::DescriptorSet::null(),
                    });
                    continue;
                }
                let wg_bytes = self.workgroup_of(n).to_le_bytes();
                let spec = vk::SpecializationInfo::default().map_entries(&entries).data(&wg_bytes);
                let what = |s: &str| format!("{s} of kernel `{}`", k.name);
                let bindings: Vec<vk::DescriptorSetLayoutBinding> = (0..k.bindings.len() as u32)
                    .map(|n| {
                        vk::DescriptorSetLayoutBinding::default()
                            .binding(n)
                            .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                            .descriptor_count(1)
                            .stage_flags(vk::ShaderStageFlags::COMPUTE)
                    })
                    .collect();
                let set_layout = d
                    .create_descriptor_set_layout(
                        &vk::DescriptorSetLayoutCreateInfo::default().bindings(&bindings),
                        None,
                    )
                    .map_err(VkError::call(what("creating the descriptor layout")))?;
                let layouts = [set_layout];
                let layout = d
                    .create_pipeline_layout(&vk::PipelineLayoutCreateInfo::default().set_layouts(&layouts), None)
                    .map_err(VkError::call(what("creating the pipeline layout")))?;
                let module = d
                    .create_shader_module(&vk::ShaderModuleCreateInfo::default().code(words), None)
                    .map_err(VkError::call(what("loading the SPIR-V")))?;
                let stage = vk::PipelineShaderStageCreateInfo::default()
                    .stage(vk::ShaderStageFlags::COMPUTE)
                    .module(module)
                    .name(c"main")
                    .specialization_info(&spec);
                let flags = if self.stats {
                    vk::PipelineCreateFlags::CAPTURE_STATISTICS_KHR
                } else {
                    vk::PipelineCreateFlags::empty()
                };
                // A cooperative matrix needs every invocation of its subgroup, and the workgroup
                // is whole subgroups of the size it was sized for.
                let mut required = vk::PipelineShaderStageRequiredSubgroupSizeCreateInfo::default();
                let stage = match &self.coop {
                    Ok(c) if k.coop.is_some() => {
                        let mut stage = stage;
                        if c.full_subgroups {
                            stage = stage.flags(vk::PipelineShaderStageCreateFlags::REQUIRE_FULL_SUBGROUPS);
                        }
                        if c.required_size {
                            required = required.required_subgroup_size(c.subgroup);
                            stage = stage.push_next(&mut required);
                        }
                        stage
                    }
                    _ => stage,
                };
                let info = [vk::ComputePipelineCreateInfo::default().flags(flags).stage(stage).layout(layout)];
                let made = d.create_compute_pipelines(vk::PipelineCache::null(), &info, None);
                d.destroy_shader_module(module, None);
                let pipeline = made.map_err(|(_, r)| VkError::Call { what: what("compiling"), result: r })?[0];
                if self.stats {
                    match super::stats::describe(&self.instance, d, pipeline) {
                        Ok(lines) => self.notes.extend(lines.iter().map(|l| format!("kernel `{}`: {l}", k.name))),
                        Err(r) => self.notes.push(format!("kernel `{}`: no statistics ({r})", k.name)),
                    }
                }
                let set = d
                    .allocate_descriptor_sets(
                        &vk::DescriptorSetAllocateInfo::default().descriptor_pool(self.desc_pool).set_layouts(&layouts),
                    )
                    .map_err(VkError::call(what("allocating the descriptor set")))?[0];
                let infos: Vec<[vk::DescriptorBufferInfo; 1]> = k
                    .bindings
                    .iter()
                    .map(|b| {
                        [vk::DescriptorBufferInfo { buffer: self.buffers[b].buffer, offset: 0, range: vk::WHOLE_SIZE }]
                    })
                    .collect();
                let writes: Vec<vk::WriteDescriptorSet> = infos
                    .iter()
                    .enumerate()
                    .map(|(n, info)| {
                        vk::WriteDescriptorSet::default()
                            .dst_set(set)
                            .dst_binding(n as u32)
                            .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                            .buffer_info(info)
                    })
                    .collect();
                d.update_descriptor_sets(&writes, &[]);
                self.pipelines.push(Pipeline { set_layout, layout, pipeline, set });
            }
        }
        Ok(())
    }

    fn create_commands(&mut self, ts_period: Option<f64>) -> Result<(), VkError> {
        let d = &self.device;
        // SAFETY: object creation on a live device; destroyed in `drop`.
        unsafe {
            self.cmd_pool = d
                .create_command_pool(
                    &vk::CommandPoolCreateInfo::default()
                        .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER)
                        .queue_family_index(self.queue_family),
                    None,
                )
                .map_err(VkError::call("creating the command pool"))?;
            let cbs = d
                .allocate_command_buffers(
                    &vk::CommandBufferAllocateInfo::default()
                        .command_pool(self.cmd_pool)
                        .level(vk::CommandBufferLevel::PRIMARY)
                        .command_buffer_count(2),
                )
                .map_err(VkError::call("allocating command buffers"))?;
            self.step_cb = cbs[0];
            self.work_cb = cbs[1];
            self.fence =
                d.create_fence(&vk::FenceCreateInfo::default(), None).map_err(VkError::call("creating a fence"))?;
            if let Some(period) = ts_period {
                let info = vk::QueryPoolCreateInfo::default().query_type(vk::QueryType::TIMESTAMP).query_count(2);
                if let Ok(pool) = d.create_query_pool(&info, None) {
                    self.queries = Some((pool, period));
                }
            }
        }
        Ok(())
    }

    /// A barrier that orders every earlier compute and transfer write before every later access.
    fn barrier(&self, cb: vk::CommandBuffer) {
        let all = vk::AccessFlags::SHADER_READ
            | vk::AccessFlags::SHADER_WRITE
            | vk::AccessFlags::TRANSFER_READ
            | vk::AccessFlags::TRANSFER_WRITE;
        let mb = [vk::MemoryBarrier::default()
            .src_access_mask(vk::AccessFlags::SHADER_WRITE | vk::AccessFlags::TRANSFER_WRITE)
            .dst_access_mask(all)];
        let stages = vk::PipelineStageFlags::COMPUTE_SHADER | vk::PipelineStageFlags::TRANSFER;
        // SAFETY: `cb` is recording.
        unsafe { self.device.cmd_pipeline_barrier(cb, stages, stages, vk::DependencyFlags::empty(), &mb, &[], &[]) };
    }

    /// Records the commands of one step into `cb`.
    fn record_ops(&self, cb: vk::CommandBuffer) {
        self.record(cb, &self.plan.step);
    }

    fn record(&self, cb: vk::CommandBuffer, ops: &[GpuOp]) {
        let d = &self.device;
        for op in ops {
            self.barrier(cb);
            // SAFETY: `cb` is recording; every handle belongs to this device.
            unsafe {
                match op {
                    GpuOp::Zero(b) => d.cmd_fill_buffer(cb, self.buffers[b].buffer, 0, vk::WHOLE_SIZE, 0),
                    GpuOp::Launch(k) => {
                        let (x, y) = match self.plan.kernels[*k].launch {
                            Launch::Agents { agent } => {
                                let groups = self.counts[agent].div_ceil(self.agents_per_workgroup(*k)) as u64;
                                let x = groups.min(self.max_groups as u64);
                                (x as u32, groups.div_ceil(x.max(1)) as u32)
                            }
                            Launch::Single => (1, 1),
                            Launch::Groups(g) => (g, 1),
                        };
                        if x == 0 {
                            continue;
                        }
                        let p = &self.pipelines[*k];
                        d.cmd_bind_pipeline(cb, vk::PipelineBindPoint::COMPUTE, p.pipeline);
                        d.cmd_bind_descriptor_sets(cb, vk::PipelineBindPoint::COMPUTE, p.layout, 0, &[p.set], &[]);
                        d.cmd_dispatch(cb, x, y, 1);
                    }
                    // Runs between command buffers (`run_with_host`).
                    GpuOp::Host { .. } => {}
                }
            }
        }
        self.barrier(cb);
    }

    fn record_step(&mut self) -> Result<(), VkError> {
        let cb = self.step_cb;
        // SAFETY: the command buffer is not in use (nothing was submitted from it yet).
        unsafe {
            self.device
                .begin_command_buffer(
                    cb,
                    &vk::CommandBufferBeginInfo::default().flags(vk::CommandBufferUsageFlags::SIMULTANEOUS_USE),
                )
                .map_err(VkError::call("recording the step"))?;
            self.record_ops(cb);
            self.device.end_command_buffer(cb).map_err(VkError::call("recording the step"))?;
        }
        Ok(())
    }

    /// Runs `ops` where some run a hosted model: each stretch of device work is submitted and
    /// waited for, then the model runs on the host.
    fn run_with_host(&mut self, ops: &[GpuOp], what: &str) -> Result<(), RunError> {
        for seg in gpu::segments(ops) {
            match seg {
                gpu::Segment::Device(list) => {
                    self.run_once(what, |me, cb| me.record(cb, list)).map_err(|e| self.failure(e))?
                }
                gpu::Segment::Host(op) => {
                    let (module, counts) = (self.module, self.counts.clone());
                    gpu::run_hosted(self, module, op, &counts)?;
                }
            }
        }
        Ok(())
    }

    /// Records `fill` into the work command buffer, runs it and waits for it.
    fn run_once(&mut self, what: &str, fill: impl FnOnce(&Self, vk::CommandBuffer)) -> Result<(), VkError> {
        self.wait()?;
        let cb = self.work_cb;
        // SAFETY: the queue is idle, so the work command buffer is not in use.
        unsafe {
            let d = &self.device;
            d.reset_command_buffer(cb, vk::CommandBufferResetFlags::empty()).map_err(VkError::call(what))?;
            d.begin_command_buffer(
                cb,
                &vk::CommandBufferBeginInfo::default().flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT),
            )
            .map_err(VkError::call(what))?;
            fill(self, cb);
            d.end_command_buffer(cb).map_err(VkError::call(what))?;
            let cbs = [cb];
            let submit = [vk::SubmitInfo::default().command_buffers(&cbs)];
            d.queue_submit(self.queue, &submit, self.fence).map_err(VkError::call(what))?;
            d.wait_for_fences(&[self.fence], true, u64::MAX).map_err(VkError::call(what))?;
            d.reset_fences(&[self.fence]).map_err(VkError::call(what))?;
        }
        Ok(())
    }

    /// Runs the plan's search for non-finite values: whether it and the fail word found
    /// nothing, so that the state need not be read back (false where the plan has no search).
    fn clean_on_device(&mut self) -> Result<bool, VkError> {
        if self.plan.finite.is_empty() {
            return Ok(false);
        }
        let ops = self.plan.finite.clone();
        self.run_once("looking for non-finite values", |me, cb| me.record(cb, &ops))?;
        let mut words = gpu::Trial::read(self, &Buf::NonFinite)?;
        if self.buffers.contains_key(&Buf::Fail) {
            words.extend(gpu::Trial::read(self, &Buf::Fail)?);
        }
        Ok(words.iter().all(|b| *b == 0))
    }

    /// Waits for every submitted step.
    fn wait(&mut self) -> Result<(), VkError> {
        if self.pending > 0 {
            // SAFETY: a live queue.
            unsafe { self.device.queue_wait_idle(self.queue) }.map_err(VkError::call("running the step"))?;
            self.pending = 0;
        }
        Ok(())
    }

    /// Copies the host's state, parameters and sizes into the device buffers.
    fn upload(&mut self) -> Result<(), VkError> {
        let mut at = 0usize;
        let mut copies: Vec<(vk::Buffer, vk::BufferCopy)> = Vec::new();
        for (b, buf) in &self.buffers {
            let mut bytes = gpu::initial_bytes(self.module, &self.plan, *b, &self.host.world);
            bytes.truncate(buf.bytes as usize);
            // SAFETY: the staging buffer holds the sum of every buffer's size.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.staging_ptr.add(at), bytes.len()) };
            if !bytes.is_empty() {
                copies.push((
                    buf.buffer,
                    vk::BufferCopy { src_offset: at as u64, dst_offset: 0, size: bytes.len() as u64 },
                ));
            }
            at += buf.bytes as usize;
        }
        let staging = self.staging.buffer;
        self.run_once("uploading the state", |me, cb| {
            for (dst, c) in &copies {
                // SAFETY: `cb` is recording; the regions lie inside both buffers.
                unsafe { me.device.cmd_copy_buffer(cb, staging, *dst, std::slice::from_ref(c)) };
            }
        })
    }

    /// Reads the state (and the failed-check word) back into `self.world`.
    fn download(&mut self) -> Result<(), RunError> {
        let mut want: Vec<Buf> = Vec::new();
        for (t, a) in self.host.world.agents.iter().enumerate() {
            let kinds = self.module.agents[t].column_kinds();
            for c in 0..a.columns.len() as u32 {
                // Scratch columns (integrator temporaries, law shares) are never shown or measured.
                if kinds.get(c as usize) == Some(&crate::FieldKind::Scratch) {
                    continue;
                }
                for b in [gpu::home(self.module, t, c).0, Buf::Comp { agent: t, col: c }] {
                    if self.buffers.contains_key(&b) && !want.contains(&b) {
                        want.push(b);
                    }
                }
            }
        }
        if self.buffers.contains_key(&Buf::Fail) {
            want.push(Buf::Fail);
        }
        let mut at = 0u64;
        let mut places: HashMap<Buf, u64> = HashMap::new();
        let mut copies = Vec::new();
        for b in &want {
            let buf = &self.buffers[b];
            places.insert(*b, at);
            copies.push((buf.buffer, vk::BufferCopy { src_offset: 0, dst_offset: at, size: buf.bytes }));
            at += buf.bytes;
        }
        let staging = self.staging.buffer;
        self.run_once("reading the state back", |me, cb| {
            me.barrier(cb);
            for (src, c) in &copies {
                // SAFETY: `cb` is recording; the regions lie inside both buffers.
                unsafe { me.device.cmd_copy_buffer(cb, *src, staging, std::slice::from_ref(c)) };
            }
        })
        .map_err(|e| self.failure(e))?;
        // SAFETY: the copies finished (`run_once` waited), and every region lies in the mapping.
        let bytes_at = |b: &Buf| unsafe {
            let buf = &self.buffers[b];
            std::slice::from_raw_parts(self.staging_ptr.add(places[b] as usize), buf.bytes as usize)
        };
        if let Some(word) =
            places.get(&Buf::Fail).map(|_| u32::from_le_bytes(bytes_at(&Buf::Fail)[..4].try_into().unwrap_or([0; 4])))
        {
            if let Some(msg) = gpu::fail_message(self.module, &self.plan, word) {
                return Err(RunError::Check(msg));
            }
        }
        for t in 0..self.host.world.agents.len() {
            for c in 0..self.host.world.agents[t].columns.len() {
                let (key, lane) = gpu::home(self.module, t, c as u32);
                if !places.contains_key(&key) {
                    continue;
                }
                let comp = places
                    .get(&Buf::Comp { agent: t, col: c as u32 })
                    .map(|_| bytes_at(&Buf::Comp { agent: t, col: c as u32 }));
                let s = self.module.column_types[t][c];
                let out = &mut self.host.world.agents[t].columns[c];
                let data = bytes_at(&key)[gpu::lane_bytes(s, out.len(), lane)].to_vec();
                gpu::column_values(s, &data, comp, out);
            }
        }
        self.host.fresh = true;
        Ok(())
    }

    fn failure(&self, e: VkError) -> RunError {
        if e.is_device_failure() {
            RunError::Invalid(format!(
                "the GPU ({}) failed: {e}; the state after the last finished output is kept",
                self.device_name
            ))
        } else {
            RunError::Invalid(e.to_string())
        }
    }
}

/// Keeps, of each tensor choice's candidates, the first variant of each precision the device
/// runs (and `fits` allows): the variants are listed best first.
fn keep_runnable(
    plan: &mut GpuPlan,
    coop: &Result<super::coop::Coop, String>,
    fits: impl Fn(&gpu::DeviceKernel, &gpu::CoopKernel) -> bool,
) {
    let kernels = &plan.kernels;
    for c in &mut plan.choices {
        let mut seen = Vec::new();
        c.candidates.retain(|&(p, k)| {
            let runs = matches!((coop, &kernels[k].coop), (Ok(d), Some(v)) if d.runs(v) && fits(&kernels[k], v));
            let first = runs && !seen.contains(&p);
            if first {
                seen.push(p);
            }
            first
        });
    }
}

/// An upper bound of the loop trips of one invocation of variant `v` of the cooperative-matrix
/// kernel `k` on subgroups of `subgroup`, as llvmpipe counts them (each run of a loop costs its
/// trips and one more, and all loops of a shader share one limit): the copy of the weights, then
/// the loop over tiles and in each tile the staging of the inputs, the elementwise activation of
/// every hidden accumulator and the output stores (the loops `compiler/src/backend/gpu/coop.rs`
/// writes).
fn coop_trips(module: &Module, k: &gpu::DeviceKernel, v: &gpu::CoopKernel, subgroup: u32) -> u64 {
    let Some(plan) = k.source.and_then(|s| module.kernels.get(s)).and_then(|k| k.tensor.as_ref()) else {
        return 0;
    };
    let ls = gpu::coop_layers(&plan.layers);
    let (s, shape, rows) = (u64::from(subgroup.max(1)), u64::from(v.shape), u64::from(v.rows.max(1)));
    let wg = u64::from(v.subgroups) * s;
    let run = |trips: u64| trips + 1;
    let copy = if v.staged_weights {
        let biases: u64 = ls.iter().map(|l| u64::from(l.n)).sum();
        ls.iter().map(|l| run((u64::from(l.k * l.stride) / 8).div_ceil(wg))).sum::<u64>() + run(biases.div_ceil(wg))
    } else {
        0
    };
    let per_row = run(rows.div_ceil(s));
    let elements = run((shape * shape).div_ceil(s));
    let last = ls.len().saturating_sub(1);
    let layers: u64 = ls
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let nt = u64::from(l.n) / shape;
            if i == last {
                nt * per_row
            } else {
                nt * (rows / shape) * elements
            }
        })
        .sum();
    let tiles = u64::from(k.rows) / rows;
    copy + run(tiles) + tiles * (per_row + layers)
}

/// Bytes of workgroup memory per thread of the kernel that needs the most.
fn plan_tile_bytes(plan: &GpuPlan) -> u64 {
    plan.kernels.iter().map(|k| k.shared_bytes as u64).max().unwrap_or(0)
}

impl gpu::Trial for VulkanBackend<'_> {
    type Error = VkError;

    fn plan(&mut self) -> &mut GpuPlan {
        &mut self.plan
    }

    fn launch_once(&mut self, k: usize) -> Result<(), VkError> {
        self.run_once("trying a tensor kernel", |me, cb| me.record(cb, &[GpuOp::Launch(k)]))
    }

    fn hosted(&mut self) -> &mut Option<crate::onnx::hosted::Hosted> {
        &mut self.hosted
    }

    fn read(&mut self, b: &Buf) -> Result<Vec<u8>, VkError> {
        let buf = self.buffers.get(b).ok_or_else(|| VkError::Unsupported(format!("no buffer {b:?}")))?;
        let (src, bytes, staging) = (buf.buffer, buf.bytes, self.staging.buffer);
        let region = vk::BufferCopy { src_offset: 0, dst_offset: 0, size: bytes };
        self.run_once("reading a buffer", |me, cb| {
            me.barrier(cb);
            // SAFETY: `cb` is recording; the staging buffer is at least as large as any buffer.
            unsafe { me.device.cmd_copy_buffer(cb, src, staging, &[region]) };
        })?;
        // SAFETY: the copy finished (`run_once` waited) into the mapped staging memory.
        Ok(unsafe { std::slice::from_raw_parts(self.staging_ptr, bytes as usize) }.to_vec())
    }

    fn write(&mut self, b: &Buf, bytes: &[u8]) -> Result<(), VkError> {
        let buf = self.buffers.get(b).ok_or_else(|| VkError::Unsupported(format!("no buffer {b:?}")))?;
        let (dst, size, staging) = (buf.buffer, (bytes.len() as u64).min(buf.bytes), self.staging.buffer);
        self.wait()?;
        // SAFETY: the queue is idle, and the staging buffer holds at least `size` bytes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.staging_ptr, size as usize) };
        let region = vk::BufferCopy { src_offset: 0, dst_offset: 0, size };
        self.run_once("restoring a buffer", |me, cb| {
            // SAFETY: `cb` is recording; the region lies inside both buffers.
            unsafe { me.device.cmd_copy_buffer(cb, staging, dst, &[region]) };
            me.barrier(cb);
        })
    }
}

impl Backend for VulkanBackend<'_> {
    fn name(&self) -> String {
        let layer = if self.instance.validating() { ", Khronos validation layer on" } else { "" };
        format!("vulkan ({}{layer})", self.device_name)
    }

    fn step(&mut self) -> Result<(), RunError> {
        if gpu::has_host(&self.plan.step) {
            let ops = self.plan.step.clone();
            self.run_with_host(&ops, "running a step")?;
            self.host.ran(1);
            return Ok(());
        }
        let cbs = [self.step_cb];
        let submit = [vk::SubmitInfo::default().command_buffers(&cbs)];
        // SAFETY: the step command buffer was recorded for simultaneous use.
        unsafe { self.device.queue_submit(self.queue, &submit, vk::Fence::null()) }
            .map_err(|r| self.failure(VkError::Call { what: "submitting a step".into(), result: r }))?;
        self.pending += 1;
        self.host.ran(1);
        if self.pending >= IN_FLIGHT {
            self.wait().map_err(|e| self.failure(e))?;
        }
        Ok(())
    }

    fn prime(&mut self) -> Result<(), RunError> {
        let ops = self.plan.prime.clone();
        if gpu::has_host(&ops) {
            self.run_with_host(&ops, "running the first force pass")?;
            self.host.fresh = false;
            return Ok(());
        }
        self.run_once("running the first force pass", |me, cb| me.record(cb, &ops)).map_err(|e| self.failure(e))?;
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

    fn finish(&mut self) -> Result<(), RunError> {
        self.wait().map_err(|e| self.failure(e))
    }

    fn notes(&self) -> Vec<String> {
        let hosted = self.hosted.as_ref().map(|h| h.notes(self.module)).unwrap_or_default();
        self.notes.iter().cloned().chain(hosted).collect()
    }

    fn recheck_precisions(&mut self, step: u64) -> Result<Vec<String>, RunError> {
        if self.plan.choices.is_empty() || self.coop.is_err() {
            return Ok(Vec::new());
        }
        let notes = gpu::recheck_choices(self, step).map_err(|e| self.failure(e))?;
        if !notes.is_empty() {
            self.wait().map_err(|e| self.failure(e))?;
            self.record_step().map_err(|e| self.failure(e))?;
        }
        Ok(notes)
    }

    fn laws(&mut self) -> Result<Option<Vec<crate::monitor::LawSample>>, RunError> {
        if self.plan.laws.len() != self.module.laws.len() {
            return Ok(None);
        }
        let ops = gpu::law_ops(&self.plan);
        let mut places: HashMap<Buf, u64> = HashMap::new();
        let mut copies = Vec::new();
        let mut at = 0u64;
        for t in self.plan.laws.iter().flatten() {
            let buf = &self.buffers[&t.partials];
            places.insert(t.partials, at);
            copies.push((buf.buffer, vk::BufferCopy { src_offset: 0, dst_offset: at, size: buf.bytes }));
            at += buf.bytes;
        }
        let staging = self.staging.buffer;
        self.run_once("measuring the laws", |me, cb| {
            me.record(cb, &ops);
            for (src, c) in &copies {
                // SAFETY: `cb` is recording; the regions lie inside both buffers.
                unsafe { me.device.cmd_copy_buffer(cb, *src, staging, std::slice::from_ref(c)) };
            }
        })
        .map_err(|e| self.failure(e))?;
        gpu::law_samples(self.module, &self.plan, |b| {
            let (Some(&at), Some(buf)) = (places.get(b), self.buffers.get(b)) else {
                return Err(RunError::Invalid(format!("Vulkan: no buffer {b:?}")));
            };
            // SAFETY: the copies finished (`run_once` waited), and the region lies in the mapping.
            Ok(unsafe { std::slice::from_raw_parts(self.staging_ptr.add(at as usize), buf.bytes as usize) }.to_vec())
        })
        .map(Some)
    }

    fn device_seconds(&mut self, steps: u64) -> Option<Result<f64, RunError>> {
        // A step that runs a model on the host is not the device's alone to time.
        if gpu::has_host(&self.plan.step) {
            return None;
        }
        let (pool, period) = self.queries?;
        let run = |me: &mut Self| -> Result<f64, VkError> {
            me.run_once("timing steps", |me, cb| unsafe {
                // SAFETY: `cb` is recording; the pool has two timestamp queries.
                me.device.cmd_reset_query_pool(cb, pool, 0, 2);
                me.barrier(cb);
                me.device.cmd_write_timestamp(cb, vk::PipelineStageFlags::TOP_OF_PIPE, pool, 0);
                for _ in 0..steps {
                    me.record_ops(cb);
                }
                me.device.cmd_write_timestamp(cb, vk::PipelineStageFlags::BOTTOM_OF_PIPE, pool, 1);
            })?;
            let mut ts = [0u64; 2];
            // SAFETY: both queries were written by the finished command buffer.
            unsafe { me.device.get_query_pool_results(pool, 0, &mut ts, vk::QueryResultFlags::TYPE_64) }
                .map_err(VkError::call("reading timestamps"))?;
            me.host.ran(steps);
            Ok(ts[1].saturating_sub(ts[0]) as f64 * period * 1e-9)
        };
        Some(run(self).map_err(|e| self.failure(e)))
    }
}

impl Drop for VulkanBackend<'_> {
    fn drop(&mut self) {
        // SAFETY: the device is idle after the wait, and each object is destroyed once.
        unsafe {
            let d = &self.device;
            let _ = d.device_wait_idle();
            for p in self.pipelines.iter().filter(|p| p.pipeline != vk::Pipeline::null()) {
                d.destroy_pipeline(p.pipeline, None);
                d.destroy_pipeline_layout(p.layout, None);
                d.destroy_descriptor_set_layout(p.set_layout, None);
            }
            if let Some((pool, _)) = self.queries {
                d.destroy_query_pool(pool, None);
            }
            d.destroy_fence(self.fence, None);
            d.destroy_command_pool(self.cmd_pool, None);
            d.destroy_descriptor_pool(self.desc_pool, None);
            for b in self.buffers.values().chain(std::iter::once(&self.staging)) {
                d.destroy_buffer(b.buffer, None);
                d.free_memory(b.memory, None);
            }
            d.destroy_device(None);
        }
    }
}

/// Whether a SPIR-V module declares the `Float64` capability (`OpCapability Float64`).
fn declares_float64(words: &[u32]) -> bool {
    const OP_CAPABILITY: u32 = 17;
    const FLOAT64: u32 = 10;
    let mut at = 5;
    while at + 1 < words.len() {
        let (count, op) = ((words[at] >> 16) as usize, words[at] & 0xffff);
        if op != OP_CAPABILITY {
            // Capabilities come first in a module.
            return false;
        }
        if words[at + 1] == FLOAT64 {
            return true;
        }
        at += count.max(1);
    }
    false
}
