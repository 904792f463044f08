//! Whether a device runs aiic's cooperative-matrix kernels (f16 16×16×16 products accumulated in
//! f32, per subgroup of 32), and the features a device must be created with to run them.

use super::Instance;
use ash::vk;

/// Why the device cannot run the kernels, or `Ok` if it can.
pub fn support(inst: &Instance, pd: vk::PhysicalDevice) -> Result<(), String> {
    let i = &inst.instance;
    // SAFETY: plain queries of a device of this instance.
    let extensions = unsafe { i.enumerate_device_extension_properties(pd) }.map_err(|e| e.to_string())?;
    let has = extensions.iter().any(|e| e.extension_name_as_c_str() == Ok(ash::khr::cooperative_matrix::NAME));
    if !has {
        return Err("no VK_KHR_cooperative_matrix".into());
    }
    let mut coop = vk::PhysicalDeviceCooperativeMatrixFeaturesKHR::default();
    let mut f16 = vk::PhysicalDeviceShaderFloat16Int8Features::default();
    let mut features = vk::PhysicalDeviceFeatures2::default().push_next(&mut coop).push_next(&mut f16);
    // SAFETY: as above; the chain lives across the call.
    unsafe { i.get_physical_device_features2(pd, &mut features) };
    if coop.cooperative_matrix != vk::TRUE || f16.shader_float16 != vk::TRUE {
        return Err("cooperative matrices or f16 arithmetic not enabled by the driver".into());
    }
    let mut subgroup = vk::PhysicalDeviceSubgroupProperties::default();
    let mut props = vk::PhysicalDeviceProperties2::default().push_next(&mut subgroup);
    // SAFETY: as above.
    unsafe { i.get_physical_device_properties2(pd, &mut props) };
    if subgroup.subgroup_size != 32 {
        return Err(format!("subgroups of {}, not 32", subgroup.subgroup_size));
    }
    let ext = ash::khr::cooperative_matrix::Instance::new(&inst.entry, i);
    // SAFETY: as above.
    let shapes = unsafe { ext.get_physical_device_cooperative_matrix_properties(pd) }.map_err(|e| e.to_string())?;
    let (h, f) = (vk::ComponentTypeKHR::FLOAT16, vk::ComponentTypeKHR::FLOAT32);
    let fits = shapes.iter().any(|s| {
        (s.m_size, s.n_size, s.k_size) == (16, 16, 16)
            && (s.a_type, s.b_type, s.c_type, s.result_type) == (h, h, f, f)
            && s.scope == vk::ScopeKHR::SUBGROUP
    });
    if !fits {
        return Err("no 16x16x16 f16 product with f32 accumulators".into());
    }
    Ok(())
}
