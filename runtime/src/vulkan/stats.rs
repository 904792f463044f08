//! What the driver says it made of each kernel (`VK_KHR_pipeline_executable_properties`):
//! registers, workgroup memory, spills and the like, in the driver's own words. Asked for with
//! `AIIC_VK_STATS=1`, and shown as notes by `aiic run` and `aiic bench`: the Vulkan counterpart
//! of `ptxas -v`.

use super::Instance;
use ash::vk;

/// Whether `AIIC_VK_STATS` asks for the statistics.
pub fn wanted() -> bool {
    std::env::var_os("AIIC_VK_STATS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Whether the device can report them.
pub fn supported(inst: &Instance, pd: vk::PhysicalDevice) -> bool {
    // SAFETY: a plain query of a device of this instance.
    let Ok(extensions) = (unsafe { inst.instance.enumerate_device_extension_properties(pd) }) else {
        return false;
    };
    extensions.iter().any(|e| e.extension_name_as_c_str() == Ok(ash::khr::pipeline_executable_properties::NAME))
}

/// One line per executable of `pipeline`: its name and every statistic the driver reports.
pub fn describe(inst: &Instance, device: &ash::Device, pipeline: vk::Pipeline) -> Result<Vec<String>, vk::Result> {
    let ext = ash::khr::pipeline_executable_properties::Device::new(&inst.instance, device);
    let info = vk::PipelineInfoKHR::default().pipeline(pipeline);
    // SAFETY: `pipeline` was created on `device` with statistics captured.
    let executables = unsafe { ext.get_pipeline_executable_properties(&info) }?;
    let mut lines = Vec::new();
    for (n, e) in executables.iter().enumerate() {
        let which = vk::PipelineExecutableInfoKHR::default().pipeline(pipeline).executable_index(n as u32);
        // SAFETY: as above, for an executable index the driver listed.
        let stats = unsafe { ext.get_pipeline_executable_statistics(&which) }?;
        let values: Vec<String> = stats
            .iter()
            .map(|s| {
                let name = s.name_as_c_str().map(|c| c.to_string_lossy().into_owned()).unwrap_or_default();
                // SAFETY: the union member read is the one `format` names.
                let value = unsafe {
                    match s.format {
                        vk::PipelineExecutableStatisticFormatKHR::BOOL32 => (s.value.b32 != 0).to_string(),
                        vk::PipelineExecutableStatisticFormatKHR::INT64 => s.value.i64.to_string(),
                        vk::PipelineExecutableStatisticFormatKHR::UINT64 => s.value.u64.to_string(),
                        vk::PipelineExecutableStatisticFormatKHR::FLOAT64 => format!("{:.3}", s.value.f64),
                        _ => "?".into(),
                    }
                };
                format!("{name} {value}")
            })
            .collect();
        let name = e.name_as_c_str().map(|c| c.to_string_lossy().into_owned()).unwrap_or_default();
        lines.push(format!("{name}: {}", values.join(", ")));
    }
    Ok(lines)
}
