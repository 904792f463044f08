//! The SPIR-V of every example: WGSL and disassembly kept under `snapshots/{wgsl,spirv}/`, naga's
//! validation (inside `emit_module`), and `spirv-val` where SPIRV-Tools is installed.

mod common;
#[path = "../../tests/support/require.rs"]
mod require;
use aiic_compiler::backend::gpu::spirv;
use common::*;

fn snapshot(name: &str) {
    let code = spirv::emit_module(&program(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let wgsl = code.texts.join("\n");
    let asm: Vec<String> = code
        .code
        .plan
        .kernels
        .iter()
        .zip(&code.words)
        .map(|(k, w)| format!("; kernel {}\n{}", k.name, spirv::disassemble(w)))
        .collect();
    insta::with_settings!({ snapshot_path => "../../snapshots/wgsl", prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!(name, wgsl);
    });
    insta::with_settings!({ snapshot_path => "../../snapshots/spirv", prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!(name, asm.join("\n"));
    });
}

macro_rules! example_spirv {
    ($($name:ident),*) => {$(
        #[test]
        fn $name() {
            snapshot(stringify!($name));
        }
    )*};
}

example_spirv!(nbody, kepler, lj_gas, billiards, springs, mixed_types, tensor_cores);

/// Whether SPIRV-Tools' validator is installed.
fn spirv_val() -> bool {
    std::process::Command::new("spirv-val").arg("--version").output().is_ok_and(|o| o.status.success())
}

#[test]
fn every_kernel_passes_spirv_val() {
    require::listed();
    if !spirv_val() {
        return require::skip("spirv-val", "spirv-val is not installed (Debian package spirv-tools)");
    }
    let dir = std::env::temp_dir().join(format!("aiic-spirv-val-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut checked = 0;
    for name in EXAMPLES.iter().chain(&["mixed_types"]) {
        let code = spirv::emit_module(&program(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (k, words) in code.code.plan.kernels.iter().zip(&code.words) {
            let path = dir.join(format!("{name}_{}.spv", k.name.replace(['.', '/'], "_")));
            std::fs::write(&path, words.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>()).expect("write");
            let out = std::process::Command::new("spirv-val")
                .args(["--target-env", "vulkan1.1"])
                .arg(&path)
                .output()
                .expect("spirv-val runs");
            assert!(
                out.status.success(),
                "{name}: kernel `{}` fails spirv-val:\n{}",
                k.name,
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(checked > 20, "only {checked} kernels checked");
}

/// A SPIR-V validator that knows cooperative matrices (SPIRV-Tools 2024 or later): the command
/// line in `AIIC_SPIRV_VAL`, else `spirv-val` if it is new enough; or why there is none.
fn coop_validator(sample: &std::path::Path) -> Result<Vec<String>, String> {
    let words: Vec<String> = match std::env::var("AIIC_SPIRV_VAL") {
        Ok(cmd) => cmd.split_whitespace().map(String::from).collect(),
        Err(_) => vec!["spirv-val".into()],
    };
    let out = std::process::Command::new(&words[0])
        .args(&words[1..])
        .args(["--target-env", "vulkan1.3"])
        .arg(sample)
        .output()
        .map_err(|e| format!("{}: {e}", words[0]))?;
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("Invalid capability operand") {
        return Err(format!("{} predates cooperative matrices (set AIIC_SPIRV_VAL to a newer one)", words[0]));
    }
    Ok(words)
}

/// The cooperative-matrix kernels of every tensor program, each variant, pass SPIRV-Tools'
/// validator: aiic writes their words itself, so this is the check of their types, operands,
/// capabilities and structured control flow (for Vulkan 1.3, which reads the SPIR-V 1.6 of the
/// variants that convert accumulators).
#[test]
fn cooperative_matrix_kernels_pass_spirv_val() {
    require::listed();
    let dir = std::env::temp_dir().join(format!("aiic-spirv-coop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut kernels = Vec::new();
    for name in ["tensor_cores", "learned_force"] {
        let code = spirv::emit_module(&program(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        for ((k, dk), words) in code.code.kernels.iter().zip(&code.code.plan.kernels).zip(&code.words) {
            if k.mma.is_none() {
                continue;
            }
            assert!(dk.coop.is_some(), "{name}: `{}` is no cooperative-matrix variant", k.name);
            let path = dir.join(format!("{name}_{}.spv", k.name.replace(['.', '/'], "_")));
            std::fs::write(&path, words.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>()).expect("write");
            kernels.push((format!("{name}: `{}`", k.name), path));
        }
    }
    assert!(kernels.len() >= 12, "only {} cooperative-matrix kernels", kernels.len());
    let validator = match coop_validator(&kernels[0].1) {
        Ok(v) => v,
        Err(why) => return require::skip("spirv-val-coop", why),
    };
    for (what, path) in &kernels {
        let out = std::process::Command::new(&validator[0])
            .args(&validator[1..])
            .args(["--target-env", "vulkan1.3"])
            .arg(path)
            .output()
            .expect("the validator runs");
        assert!(out.status.success(), "{what} fails spirv-val:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_workgroup_size_is_a_specialization_constant() {
    let code = spirv::emit_module(&program("nbody")).expect("spirv");
    for w in &code.words {
        let asm = spirv::disassemble(w);
        assert!(asm.contains("SpecId 0"), "{asm}");
        assert!(asm.contains("BuiltIn WorkgroupSize"), "{asm}");
        assert!(!asm.contains("LocalSize"), "{asm}");
    }
}

/// The workgroup size is specialized after naga folds constants, so no constant may hold a
/// multiple of the placeholder: with several agents per thread, offsets are added, not multiplied.
#[test]
fn no_constant_is_a_multiple_of_the_workgroup_placeholder() {
    use aiic_compiler::backend::gpu::{kernels::Options, wgsl::WG_PLACEHOLDER};
    for rows in [1, 2, 3] {
        let code = spirv::emit_module_with(&program("nbody"), Options { rows, ..Default::default() }).expect("spirv");
        for w in &code.words {
            let asm = spirv::disassemble(w);
            for k in 2..=4 {
                let multiple = format!(" {}\n", k * WG_PLACEHOLDER);
                assert!(!asm.contains(&multiple), "{rows} rows: a folded {k}·wg:\n{asm}");
            }
        }
    }
}

/// Bytes of the workgroup variables a module declares, read from its types.
fn workgroup_bytes(words: &[u32]) -> u32 {
    use std::collections::HashMap;
    const WORKGROUP: u32 = 4;
    let (mut sizes, mut constants, mut pointers) = (HashMap::new(), HashMap::new(), HashMap::new());
    let mut total = 0;
    let mut at = 5;
    while at < words.len() {
        let (count, op) = ((words[at] >> 16) as usize, words[at] & 0xffff);
        let w = &words[at + 1..at + count];
        match op {
            // OpTypeInt, OpTypeFloat
            21 | 22 => {
                sizes.insert(w[0], w[1] / 8);
            }
            // OpTypeVector
            23 => {
                sizes.insert(w[0], sizes[&w[1]] * w[2]);
            }
            // OpTypeArray
            28 => {
                sizes.insert(w[0], sizes[&w[1]] * constants[&w[2]]);
            }
            // OpTypePointer
            32 => {
                pointers.insert(w[0], (w[1], w[2]));
            }
            // OpConstant
            43 => {
                constants.insert(w[1], w[2]);
            }
            // OpVariable
            59 if w[2] == WORKGROUP => {
                let (class, pointee) = pointers[&w[0]];
                assert_eq!(class, WORKGROUP);
                total += sizes[&pointee];
            }
            _ => {}
        }
        at += count;
    }
    total
}

/// Every cooperative-matrix variant declares the workgroup memory its plan says it needs (the
/// executor runs a variant only where that fits the device), within the budget it was written
/// for but for a variant that reads its weights from device memory with one subgroup: there the
/// staging of a wide input alone can need more.
#[test]
fn cooperative_matrix_variants_fit_their_budgets() {
    use aiic_compiler::backend::gpu::coop::{STAGED_BUDGET, STREAMED_BUDGET};
    for name in ["tensor_cores", "learned_force"] {
        let code = spirv::emit_module(&program(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut staged = (false, false);
        for (k, words) in code.code.plan.kernels.iter().zip(&code.words) {
            let Some(v) = k.coop else { continue };
            if v.staged_weights {
                staged.0 = true;
            } else {
                staged.1 = true;
            }
            let declared = workgroup_bytes(words);
            assert_eq!(
                declared, v.shared,
                "{name}: `{}` declares {declared} bytes, its plan says {}",
                k.name, v.shared
            );
            let budget = if v.staged_weights { STAGED_BUDGET } else { STREAMED_BUDGET };
            assert!(v.shared <= budget || (!v.staged_weights && v.subgroups == 1), "{name}: `{}`: {v:?}", k.name);
            assert!(v.subgroups >= 1 && v.rows % v.shape == 0, "{name}: `{}`: {v:?}", k.name);
        }
        assert!(staged.0 && staged.1, "{name}: variants of both kinds");
    }
}
