//! SPIR-V for Vulkan: each kernel's WGSL is parsed and validated by naga, written as SPIR-V by
//! naga's writer, and its workgroup size turned into a specialization constant.

use super::dialect::print_kernel;
use super::kernels::{generate, GpuCode, Options};
use super::wgsl::{Wgsl, WG_PLACEHOLDER};
use aiic_runtime::ir::Module;
use rspirv::dr::{Instruction, Operand};
use rspirv::spirv::{BuiltIn, Decoration, ExecutionMode, Op};

/// The SPIR-V version written: Vulkan 1.1's, which every current driver takes.
pub const SPIRV_VERSION: (u8, u8) = (1, 3);

/// Specialization constant 0 of every kernel: its workgroup size (and the tile length).
pub const WG_SPEC_ID: u32 = 0;

/// A module's step as SPIR-V kernels, with the WGSL each came from.
pub struct SpirvCode {
    pub code: GpuCode,
    pub texts: Vec<String>,
    pub words: Vec<Vec<u32>>,
}

pub fn emit_module(m: &Module) -> Result<SpirvCode, String> {
    emit_module_with(m, Options::default())
}

pub fn emit_module_with(m: &Module, opts: Options) -> Result<SpirvCode, String> {
    let code = generate(m, opts)?;
    let texts: Vec<String> = code.kernels.iter().map(|k| print_kernel(&Wgsl, k, "main")).collect();
    let uses_f64 = texts.iter().any(|t| t.contains("f64"));
    let words = texts
        .iter()
        .zip(&code.kernels)
        .map(|(text, k)| compile(text, uses_f64, k.exact).map_err(|e| format!("kernel `{}`: {e}", k.name)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SpirvCode { code, texts, words })
}

/// WGSL → validated naga module → SPIR-V words; `exact` forbids the driver to fuse or reorder
/// float arithmetic (SPIR-V's `NoContraction`).
pub fn compile(wgsl: &str, f64: bool, exact: bool) -> Result<Vec<u32>, String> {
    let module = naga::front::wgsl::parse_str(wgsl).map_err(|e| e.emit_to_string(wgsl))?;
    let caps = if f64 { naga::valid::Capabilities::FLOAT64 } else { naga::valid::Capabilities::empty() };
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .map_err(|e| e.emit_to_string(wgsl))?;
    let mut opts = naga::back::spv::Options { lang_version: SPIRV_VERSION, ..Default::default() };
    opts.flags.remove(naga::back::spv::WriterFlags::DEBUG);
    // Kernels write every workgroup array before reading it.
    opts.zero_initialize_workgroup_memory = naga::back::spv::ZeroInitializeWorkgroupMemoryMode::None;
    let words = naga::back::spv::write_vec(&module, &info, &opts, None).map_err(|e| e.to_string())?;
    let words = specialize_workgroup(&words)?;
    if exact {
        no_contraction(&words)
    } else {
        Ok(words)
    }
}

/// Decorates every float addition, subtraction, multiplication and division `NoContraction`.
fn no_contraction(words: &[u32]) -> Result<Vec<u32>, String> {
    let mut m = rspirv::dr::load_words(words).map_err(|e| format!("reading SPIR-V: {e}"))?;
    let ids: Vec<u32> = m
        .functions
        .iter()
        .flat_map(|f| f.blocks.iter())
        .flat_map(|b| b.instructions.iter())
        .filter(|i| matches!(i.class.opcode, Op::FAdd | Op::FSub | Op::FMul | Op::FDiv | Op::FNegate))
        .filter_map(|i| i.result_id)
        .collect();
    for id in ids {
        m.annotations.push(Instruction::new(
            Op::Decorate,
            None,
            None,
            vec![Operand::IdRef(id), Operand::Decoration(Decoration::NoContraction)],
        ));
    }
    use rspirv::binary::Assemble;
    Ok(m.assemble())
}

/// Replaces the placeholder workgroup size by specialization constant [`WG_SPEC_ID`]: the
/// `LocalSize` mode becomes a `WorkgroupSize` built-in made of that constant, and every use of
/// the placeholder value (tile lengths, index arithmetic) reads the constant.
pub fn specialize_workgroup(words: &[u32]) -> Result<Vec<u32>, String> {
    let mut m = rspirv::dr::load_words(words).map_err(|e| format!("reading SPIR-V: {e}"))?;
    let find_type = |m: &rspirv::dr::Module, op: Op, operands: &[Operand]| {
        m.types_global_values.iter().find(|i| i.class.opcode == op && i.operands == operands).and_then(|i| i.result_id)
    };
    let u32_ty = find_type(&m, Op::TypeInt, &[Operand::LiteralBit32(32), Operand::LiteralBit32(0)])
        .ok_or("no u32 type in the kernel")?;
    let vec3_ty = find_type(&m, Op::TypeVector, &[Operand::IdRef(u32_ty), Operand::LiteralBit32(3)])
        .ok_or("no vec3<u32> type in the kernel")?;
    let mut bound = m.header.as_ref().map_or(1, |h| h.bound);
    let mut fresh = || {
        bound += 1;
        bound - 1
    };
    let wg = match m.types_global_values.iter_mut().find(|i| {
        i.class.opcode == Op::Constant
            && i.result_type == Some(u32_ty)
            && i.operands == [Operand::LiteralBit32(WG_PLACEHOLDER)]
    }) {
        Some(inst) => {
            *inst = Instruction::new(Op::SpecConstant, Some(u32_ty), inst.result_id, inst.operands.clone());
            inst.result_id.unwrap_or_default()
        }
        None => {
            let id = fresh();
            m.types_global_values.push(Instruction::new(
                Op::SpecConstant,
                Some(u32_ty),
                Some(id),
                vec![Operand::LiteralBit32(WG_PLACEHOLDER)],
            ));
            id
        }
    };
    let one = fresh();
    m.types_global_values.push(Instruction::new(Op::Constant, Some(u32_ty), Some(one), vec![Operand::LiteralBit32(1)]));
    let size = fresh();
    m.types_global_values.push(Instruction::new(
        Op::SpecConstantComposite,
        Some(vec3_ty),
        Some(size),
        vec![Operand::IdRef(wg), Operand::IdRef(one), Operand::IdRef(one)],
    ));
    m.annotations.push(Instruction::new(
        Op::Decorate,
        None,
        None,
        vec![Operand::IdRef(wg), Operand::Decoration(Decoration::SpecId), Operand::LiteralBit32(WG_SPEC_ID)],
    ));
    m.annotations.push(Instruction::new(
        Op::Decorate,
        None,
        None,
        vec![Operand::IdRef(size), Operand::Decoration(Decoration::BuiltIn), Operand::BuiltIn(BuiltIn::WorkgroupSize)],
    ));
    m.execution_modes.retain(|i| !i.operands.contains(&Operand::ExecutionMode(ExecutionMode::LocalSize)));
    if let Some(h) = m.header.as_mut() {
        h.bound = bound;
    }
    use rspirv::binary::Assemble;
    Ok(m.assemble())
}

/// SPIR-V disassembly, for `aiic emit --target spirv-asm` and the snapshots.
pub fn disassemble(words: &[u32]) -> String {
    use rspirv::binary::Disassemble;
    match rspirv::dr::load_words(words) {
        Ok(m) => m.disassemble(),
        Err(e) => format!("; unreadable SPIR-V: {e}"),
    }
}
