//! Whether a device runs aiic's cooperative-matrix kernels (square f16 products accumulated in
//! f32, per subgroup, in the Vulkan memory model; Vulkan 1.3, where all they use but the matrices
//! is core), and the features a device must be created with to run them.

use super::Instance;
use ash::vk;

/// What a device offers the cooperative-matrix kernels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coop {
    /// Invocations of a subgroup: a kernel's workgroup is a number of whole subgroups.
    pub subgroup: u32,
    /// `VK_NV_cooperative_matrix2`'s conversions of accumulators into operands.
    pub conversions: bool,
    /// Pipelines can require whole subgroups (`computeFullSubgroups`).
    pub full_subgroups: bool,
    /// Pipelines can require [`Coop::subgroup`] as their subgroup size, which a device whose
    /// subgroups vary in size must be told: the kernels' workgroups are whole subgroups of it.
    pub required_size: bool,
    /// The device's subgroups may be of other sizes than [`Coop::subgroup`].
    pub varying_size: bool,
    /// Sides of the square f16 products with f32 accumulators it offers a subgroup.
    pub shapes: Vec<u32>,
    /// Bytes of workgroup memory a workgroup may declare.
    pub max_shared: u32,
}

impl Coop {
    /// Whether the device runs this variant of a kernel.
    pub fn runs(&self, k: &crate::gpu::CoopKernel) -> bool {
        self.shapes.contains(&k.shape)
            && (self.conversions || !k.conversions)
            && k.shared <= self.max_shared
            && (self.required_size || !self.varying_size)
    }
}

/// `VkPhysicalDeviceCooperativeMatrix2FeaturesNV`, which this version of ash does not know.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Matrix2Features {
    pub s_type: vk::StructureType,
    pub p_next: *mut std::ffi::c_void,
    pub workgroup_scope: vk::Bool32,
    pub flexible_dimensions: vk::Bool32,
    pub reductions: vk::Bool32,
    pub conversions: vk::Bool32,
    pub per_element_operations: vk::Bool32,
    pub tensor_addressing: vk::Bool32,
    pub block_loads: vk::Bool32,
}

pub const MATRIX2_NAME: &std::ffi::CStr = c"VK_NV_cooperative_matrix2";

impl Default for Matrix2Features {
    fn default() -> Self {
        Matrix2Features {
            s_type: vk::StructureType::from_raw(1_000_593_000),
            p_next: std::ptr::null_mut(),
            workgroup_scope: vk::FALSE,
            flexible_dimensions: vk::FALSE,
            reductions: vk::FALSE,
            conversions: vk::FALSE,
            per_element_operations: vk::FALSE,
            tensor_addressing: vk::FALSE,
            block_loads: vk::FALSE,
        }
    }
}

// SAFETY: a `#[repr(C)]` Vulkan structure that begins with `sType` and `pNext`, valid in the
// chains of both.
unsafe impl vk::ExtendsPhysicalDeviceFeatures2 for Matrix2Features {}
unsafe impl vk::ExtendsDeviceCreateInfo for Matrix2Features {}

/// What the device offers the kernels, or why it cannot run them.
pub fn support(inst: &Instance, pd: vk::PhysicalDevice) -> Result<Coop, String> {
    let i = &inst.instance;
    // SAFETY: plain queries of a device of this instance.
    let extensions = unsafe { i.enumerate_device_extension_properties(pd) }.map_err(|e| e.to_string())?;
    let has = |name: &std::ffi::CStr| extensions.iter().any(|e| e.extension_name_as_c_str() == Ok(name));
    if !has(ash::khr::cooperative_matrix::NAME) {
        return Err("no VK_KHR_cooperative_matrix".into());
    }
    // SAFETY: as above.
    let api = unsafe { i.get_physical_device_properties(pd) }.api_version;
    if api < vk::API_VERSION_1_3 {
        return Err("Vulkan 1.3 is needed".into());
    }
    let mut coop = vk::PhysicalDeviceCooperativeMatrixFeaturesKHR::default();
    let mut f16 = vk::PhysicalDeviceShaderFloat16Int8Features::default();
    let mut model = vk::PhysicalDeviceVulkanMemoryModelFeatures::default();
    let mut sizes = vk::PhysicalDeviceSubgroupSizeControlFeatures::default();
    let mut matrix2 = Matrix2Features::default();
    let mut features = vk::PhysicalDeviceFeatures2::default()
        .push_next(&mut coop)
        .push_next(&mut f16)
        .push_next(&mut model)
        .push_next(&mut sizes);
    let matrix2_usable = has(MATRIX2_NAME);
    if matrix2_usable {
        features = features.push_next(&mut matrix2);
    }
    // SAFETY: as above; the chain lives across the call.
    unsafe { i.get_physical_device_features2(pd, &mut features) };
    if coop.cooperative_matrix != vk::TRUE || f16.shader_float16 != vk::TRUE {
        return Err("cooperative matrices or f16 arithmetic not enabled by the driver".into());
    }
    if model.vulkan_memory_model != vk::TRUE {
        return Err("no Vulkan memory model".into());
    }
    let mut subgroup = vk::PhysicalDeviceSubgroupProperties::default();
    let mut size_control = vk::PhysicalDeviceSubgroupSizeControlProperties::default();
    let mut props = vk::PhysicalDeviceProperties2::default().push_next(&mut subgroup).push_next(&mut size_control);
    // SAFETY: as above.
    unsafe { i.get_physical_device_properties2(pd, &mut props) };
    let max_shared = props.properties.limits.max_compute_shared_memory_size;
    if !subgroup.supported_stages.contains(vk::ShaderStageFlags::COMPUTE) {
        return Err("no subgroups in compute shaders".into());
    }
    let ext = ash::khr::cooperative_matrix::Instance::new(&inst.entry, i);
    // SAFETY: as above.
    let shapes = unsafe { ext.get_physical_device_cooperative_matrix_properties(pd) }.map_err(|e| e.to_string())?;
    let (h, f) = (vk::ComponentTypeKHR::FLOAT16, vk::ComponentTypeKHR::FLOAT32);
    let mut sides: Vec<u32> = shapes
        .iter()
        .filter(|s| {
            s.m_size == s.n_size
                && s.n_size == s.k_size
                && (s.a_type, s.b_type, s.c_type, s.result_type) == (h, h, f, f)
                && s.scope == vk::ScopeKHR::SUBGROUP
        })
        .map(|s| s.m_size)
        .collect();
    sides.sort_unstable();
    sides.dedup();
    if sides.is_empty() {
        return Err("no square f16 products with f32 accumulators".into());
    }
    Ok(Coop {
        subgroup: subgroup.subgroup_size,
        conversions: matrix2_usable && matrix2.conversions == vk::TRUE,
        full_subgroups: sizes.compute_full_subgroups == vk::TRUE,
        required_size: sizes.subgroup_size_control == vk::TRUE
            && size_control.required_subgroup_size_stages.contains(vk::ShaderStageFlags::COMPUTE),
        varying_size: size_control.min_subgroup_size != size_control.max_subgroup_size,
        shapes: sides,
        max_shared,
    })
}
