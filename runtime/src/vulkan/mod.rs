//! The Vulkan executor: Vulkan is loaded at run time (no link-time dependency), devices are
//! listed discrete GPUs first, and SPIR-V kernels run as compute pipelines.

pub mod coop;
pub mod exec;
pub mod stats;

use ash::vk;
use std::ffi::CStr;

#[derive(Debug, thiserror::Error)]
pub enum VkError {
    #[error("no Vulkan loader on this machine ({0}); install the Vulkan loader (libvulkan1) and a driver")]
    NoLoader(String),
    #[error("no Vulkan driver on this machine (the loader found none); install one, e.g. mesa-vulkan-drivers")]
    NoDriver,
    #[error("no Vulkan device: {0}")]
    NoDevice(String),
    #[error("{what}: {result}")]
    Call { what: String, result: vk::Result },
    #[error("{0}")]
    Unsupported(String),
}

impl VkError {
    pub fn call(what: impl Into<String>) -> impl FnOnce(vk::Result) -> VkError {
        let what = what.into();
        move |result| VkError::Call { what, result }
    }

    /// Whether this only says that Vulkan is not installed here (no loader, no driver), rather
    /// than that an installed loader or driver failed.
    pub fn is_absent(&self) -> bool {
        matches!(self, VkError::NoLoader(_) | VkError::NoDriver)
    }

    /// Whether the GPU itself failed (lost, or out of memory), rather than the request.
    pub fn is_device_failure(&self) -> bool {
        matches!(
            self,
            VkError::Call {
                result: vk::Result::ERROR_DEVICE_LOST
                    | vk::Result::ERROR_OUT_OF_DEVICE_MEMORY
                    | vk::Result::ERROR_OUT_OF_HOST_MEMORY,
                ..
            }
        )
    }
}

/// A device as `aiic devices` lists it.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    pub name: String,
    pub kind: &'static str,
    pub api: String,
    pub f64: bool,
    /// A CPU implementation (lavapipe, SwiftShader): slower than aiic's own CPU backend.
    pub is_cpu: bool,
    /// Storage buffers a shader may bind (`maxPerStageDescriptorStorageBuffers`): aiic binds one
    /// per column a kernel touches.
    pub storage_buffers: u32,
}

/// The loaded library and an instance; validation layers are enabled with `AIIC_VALIDATION=1`
/// where installed, and their reports printed to stderr.
pub struct Instance {
    pub entry: ash::Entry,
    pub instance: ash::Instance,
    debug: Option<(ash::ext::debug_utils::Instance, vk::DebugUtilsMessengerEXT)>,
}

unsafe extern "system" fn report(
    severity: vk::DebugUtilsMessageSeverityFlagsEXT,
    _types: vk::DebugUtilsMessageTypeFlagsEXT,
    data: *const vk::DebugUtilsMessengerCallbackDataEXT<'_>,
    _user: *mut std::ffi::c_void,
) -> vk::Bool32 {
    // SAFETY: the layer passes a valid callback structure whose message is a C string.
    let msg = unsafe { data.as_ref().and_then(|d| d.message_as_c_str()).map(|m| m.to_string_lossy().into_owned()) };
    let level = if severity.contains(vk::DebugUtilsMessageSeverityFlagsEXT::ERROR) { "error" } else { "warning" };
    eprintln!("vulkan validation {level}: {}", msg.unwrap_or_default());
    vk::FALSE
}

impl Instance {
    /// Whether the Khronos validation layer is loaded and reports to stderr.
    pub fn validating(&self) -> bool {
        self.debug.is_some()
    }

    pub fn new() -> Result<Self, VkError> {
        // SAFETY: loading the system's Vulkan loader runs its initialisation, as any Vulkan program does.
        let entry = unsafe { ash::Entry::load() }.map_err(|e| VkError::NoLoader(e.to_string()))?;
        let app = vk::ApplicationInfo::default()
            .application_name(c"aiic")
            .engine_name(c"aiic")
            // The tensor kernels need Vulkan 1.3 where the device has it (SPIR-V 1.6, the memory
            // model, subgroup size control); the other kernels need 1.1, which every device with a
            // lower version is used as.
            .api_version(vk::API_VERSION_1_3);
        let want_validation = std::env::var("AIIC_VALIDATION").is_ok_and(|v| v == "1");
        let layer = c"VK_LAYER_KHRONOS_validation";
        // SAFETY: plain queries of the loader.
        let layers = unsafe { entry.enumerate_instance_layer_properties() }.unwrap_or_default();
        let has_layer = layers.iter().any(|l| l.layer_name_as_c_str().is_ok_and(|n| n == layer));
        if want_validation && !has_layer {
            eprintln!("note: AIIC_VALIDATION=1 but the Khronos validation layer is not installed");
        }
        let validate = want_validation && has_layer;
        let layer_ptrs = if validate { vec![layer.as_ptr()] } else { Vec::new() };
        let ext_ptrs = if validate { vec![ash::ext::debug_utils::NAME.as_ptr()] } else { Vec::new() };
        let info = vk::InstanceCreateInfo::default()
            .application_info(&app)
            .enabled_layer_names(&layer_ptrs)
            .enabled_extension_names(&ext_ptrs);
        // SAFETY: the create info and the strings it points to outlive the call.
        let instance = unsafe { entry.create_instance(&info, None) }.map_err(|r| match r {
            vk::Result::ERROR_INCOMPATIBLE_DRIVER => VkError::NoDriver,
            r => VkError::Call { what: "creating a Vulkan instance".into(), result: r },
        })?;
        let debug = if validate {
            let du = ash::ext::debug_utils::Instance::new(&entry, &instance);
            let info = vk::DebugUtilsMessengerCreateInfoEXT::default()
                .message_severity(
                    vk::DebugUtilsMessageSeverityFlagsEXT::ERROR | vk::DebugUtilsMessageSeverityFlagsEXT::WARNING,
                )
                .message_type(
                    vk::DebugUtilsMessageTypeFlagsEXT::GENERAL
                        | vk::DebugUtilsMessageTypeFlagsEXT::VALIDATION
                        | vk::DebugUtilsMessageTypeFlagsEXT::PERFORMANCE,
                )
                .pfn_user_callback(Some(report));
            // SAFETY: the callback is a plain function that lives for the whole program.
            let messenger = unsafe { du.create_debug_utils_messenger(&info, None) };
            match messenger {
                Ok(m) => Some((du, m)),
                Err(r) => {
                    // SAFETY: nothing else was made from the instance yet.
                    unsafe { instance.destroy_instance(None) };
                    return Err(VkError::call("connecting to the validation layer")(r));
                }
            }
        } else {
            None
        };
        Ok(Instance { entry, instance, debug })
    }

    /// Physical devices, discrete GPUs first, then integrated, virtual and CPU ones.
    pub fn devices(&self) -> Result<Vec<(vk::PhysicalDevice, DeviceInfo)>, VkError> {
        // SAFETY: plain queries of a live instance.
        let list =
            unsafe { self.instance.enumerate_physical_devices() }.map_err(VkError::call("listing Vulkan devices"))?;
        let mut out: Vec<(u8, vk::PhysicalDevice, DeviceInfo)> = list
            .into_iter()
            .map(|pd| {
                // SAFETY: `pd` came from this instance.
                let (props, feats) = unsafe {
                    (self.instance.get_physical_device_properties(pd), self.instance.get_physical_device_features(pd))
                };
                let (rank, kind) = match props.device_type {
                    vk::PhysicalDeviceType::DISCRETE_GPU => (0, "discrete GPU"),
                    vk::PhysicalDeviceType::INTEGRATED_GPU => (1, "integrated GPU"),
                    vk::PhysicalDeviceType::VIRTUAL_GPU => (2, "virtual GPU"),
                    vk::PhysicalDeviceType::CPU => (3, "CPU"),
                    _ => (4, "other"),
                };
                let name = props.device_name_as_c_str().map(CStr::to_string_lossy).unwrap_or_default().into_owned();
                let v = props.api_version;
                let api = format!("Vulkan {}.{}", vk::api_version_major(v), vk::api_version_minor(v));
                let info = DeviceInfo {
                    name,
                    kind,
                    api,
                    f64: feats.shader_float64 == vk::TRUE,
                    is_cpu: rank == 3,
                    storage_buffers: props.limits.max_per_stage_descriptor_storage_buffers,
                };
                (rank, pd, info)
            })
            .collect();
        out.sort_by_key(|(rank, _, _)| *rank);
        Ok(out.into_iter().map(|(_, pd, info)| (pd, info)).collect())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: everything made from the instance was destroyed by its owners first.
        unsafe {
            if let Some((du, m)) = self.debug.take() {
                du.destroy_debug_utils_messenger(m, None);
            }
            self.instance.destroy_instance(None);
        }
    }
}

/// The process's instance, made on first use and kept for the life of the process: a driver
/// that is unloaded with its last instance and loaded again with the next (NVIDIA's) takes static
/// thread-local storage each time, and fails to load after a few dozen times.
pub fn shared_instance() -> Result<std::sync::Arc<Instance>, VkError> {
    static SHARED: std::sync::Mutex<Option<std::sync::Arc<Instance>>> = std::sync::Mutex::new(None);
    let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = slot.as_ref() {
        return Ok(i.clone());
    }
    let made = std::sync::Arc::new(Instance::new()?);
    *slot = Some(made.clone());
    Ok(made)
}

/// The Vulkan devices of this machine, or why there are none.
pub fn list_devices() -> Result<Vec<DeviceInfo>, VkError> {
    let inst = shared_instance()?;
    Ok(inst.devices()?.into_iter().map(|(_, d)| d).collect())
}

/// The Vulkan devices, none (Vulkan not installed), or the failure of an installed loader or driver.
pub fn probe() -> crate::probe::Probe<DeviceInfo> {
    crate::probe::Probe::classify(list_devices(), VkError::is_absent, "the Vulkan loader found no device")
}
