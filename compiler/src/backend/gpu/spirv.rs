//! SPIR-V for Vulkan: each kernel's WGSL is parsed and validated by naga, written as SPIR-V by
//! naga's writer, and its workgroup size turned into a specialization constant.

use super::coop;
use super::dialect::print_kernel;
use super::kernels::{generate, GpuCode, MatrixUnits, Options};
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
    let code = generate(m, Options { matrix: MatrixUnits::Cooperative, ..opts })?;
    let uses_f64 = code.kernels.iter().any(|k| k.mma.is_none() && print_kernel(&Wgsl, k, "main").contains("f64"));
    let mut texts = Vec::new();
    let mut words = Vec::new();
    for (k, dk) in code.kernels.iter().zip(&code.plan.kernels) {
        // Cooperative-matrix kernels are written as SPIR-V directly: there is no WGSL of them.
        if let Some(spec) = &k.mma {
            texts.push(format!("// {}: cooperative-matrix SPIR-V (see --target spirv-asm)\n", k.name));
            let variant = dk.coop.ok_or_else(|| format!("kernel `{}`: no cooperative-matrix variant", k.name))?;
            words.push(coop::spirv(spec, &k.bindings, variant));
            continue;
        }
        let text = print_kernel(&Wgsl, k, "main");
        words.push(compile(&text, uses_f64, k.exact).map_err(|e| format!("kernel `{}`: {e}", k.name))?);
        texts.push(text);
    }
    Ok(SpirvCode { code, texts, words })
}

/// WGSL → validated naga module → SPIR-V words; `exact` forbids the driver to fuse or reorder
/// float arithmetic (SPIR-V's `NoContraction`).
pub fn compile(wgsl: &str, f64: bool, exact: bool) -> Result<Vec<u32>, String> {
    use naga::valid::Capabilities;
    let module = naga::front::wgsl::parse_str(wgsl).map_err(|e| e.emit_to_string(wgsl))?;
    let caps = if f64 { Capabilities::FLOAT64 } else { Capabilities::empty() };
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

/// The instructions of a module as (first word, word count, opcode), after the header. Used for
/// the edits rspirv cannot make: it does not read cooperative-matrix types.
fn instructions(words: &[u32]) -> Result<Vec<(usize, usize, u32)>, String> {
    let mut out = Vec::new();
    let mut at = 5;
    while at < words.len() {
        let (count, op) = ((words[at] >> 16) as usize, words[at] & 0xffff);
        if count == 0 || at + count > words.len() {
            return Err(format!("malformed SPIR-V instruction at word {at}"));
        }
        out.push((at, count, op));
        at += count;
    }
    Ok(out)
}

/// Decorates every float addition, subtraction, multiplication, division and negation
/// `NoContraction`; the decorations go after the module's other annotations.
fn no_contraction(words: &[u32]) -> Result<Vec<u32>, String> {
    let preamble = [
        Op::Capability,
        Op::Extension,
        Op::ExtInstImport,
        Op::MemoryModel,
        Op::EntryPoint,
        Op::ExecutionMode,
        Op::ExecutionModeId,
        Op::String,
        Op::SourceExtension,
        Op::Source,
        Op::SourceContinued,
        Op::Name,
        Op::MemberName,
        Op::ModuleProcessed,
        Op::Decorate,
        Op::MemberDecorate,
        Op::DecorationGroup,
        Op::GroupDecorate,
        Op::GroupMemberDecorate,
        Op::DecorateId,
        Op::DecorateString,
        Op::MemberDecorateString,
    ]
    .map(|o| o as u32);
    let float_ops = [Op::FAdd, Op::FSub, Op::FMul, Op::FDiv, Op::FNegate].map(|o| o as u32);
    let list = instructions(words)?;
    let split = list.iter().find(|i| !preamble.contains(&i.2)).map_or(words.len(), |i| i.0);
    let decorations: Vec<u32> = list
        .iter()
        .filter(|i| float_ops.contains(&i.2) && i.1 > 2)
        .flat_map(|&(at, _, _)| [3 << 16 | Op::Decorate as u32, words[at + 2], Decoration::NoContraction as u32])
        .collect();
    let mut out = words[..split].to_vec();
    out.extend(decorations);
    out.extend_from_slice(&words[split..]);
    Ok(out)
}

/// Makes the workgroup size specialization constant [`WG_SPEC_ID`]: the `LocalSize` mode
/// becomes a `WorkgroupSize` built-in made of that constant, and the two other places the WGSL
/// writes the placeholder take it: the length of workgroup arrays and the initializer of the
/// private variable kernels read the size from. Other constants of the same value stay.
pub fn specialize_workgroup(words: &[u32]) -> Result<Vec<u32>, String> {
    use rspirv::spirv::StorageClass;
    let mut m = rspirv::dr::load_words(words).map_err(|e| format!("reading SPIR-V: {e}"))?;
    let find_type = |m: &rspirv::dr::Module, op: Op, operands: &[Operand]| {
        m.types_global_values.iter().find(|i| i.class.opcode == op && i.operands == operands).and_then(|i| i.result_id)
    };
    let u32_ty = find_type(&m, Op::TypeInt, &[Operand::LiteralBit32(32), Operand::LiteralBit32(0)])
        .ok_or("no u32 type in the kernel")?;
    let vec3_ty = find_type(&m, Op::TypeVector, &[Operand::IdRef(u32_ty), Operand::LiteralBit32(3)])
        .ok_or("no vec3<u32> type in the kernel")?;
    let placeholder = find_type(&m, Op::Constant, &[Operand::LiteralBit32(WG_PLACEHOLDER)]);
    let mut bound = m.header.as_ref().map_or(1, |h| h.bound);
    let mut fresh = || {
        bound += 1;
        bound - 1
    };
    let wg = fresh();
    let one = fresh();
    let size = fresh();
    // Arrays in workgroup memory: the pointee types of workgroup pointers.
    let shared: Vec<u32> = m
        .types_global_values
        .iter()
        .filter(|i| {
            i.class.opcode == Op::TypePointer
                && i.operands.first() == Some(&Operand::StorageClass(StorageClass::Workgroup))
        })
        .filter_map(|i| i.operands.get(1).and_then(|o| if let Operand::IdRef(t) = o { Some(*t) } else { None }))
        .collect();
    let at_placeholder = |o: &Operand| placeholder.is_some_and(|p| *o == Operand::IdRef(p));
    for inst in m.types_global_values.iter_mut() {
        let shared_array = inst.class.opcode == Op::TypeArray && inst.result_id.is_some_and(|id| shared.contains(&id));
        let private_init = inst.class.opcode == Op::Variable
            && inst.operands.first() == Some(&Operand::StorageClass(StorageClass::Private));
        if shared_array || private_init {
            if let Some(o) = inst.operands.get_mut(1).filter(|o| at_placeholder(o)) {
                *o = Operand::IdRef(wg);
            }
        }
    }
    // Each new instruction goes right after what it refers to, before any use.
    let after = |m: &rspirv::dr::Module, id: u32| {
        m.types_global_values.iter().position(|i| i.result_id == Some(id)).map_or(0, |p| p + 1)
    };
    let at = after(&m, u32_ty);
    m.types_global_values
        .insert(at, Instruction::new(Op::Constant, Some(u32_ty), Some(one), vec![Operand::LiteralBit32(1)]));
    m.types_global_values.insert(
        at,
        Instruction::new(Op::SpecConstant, Some(u32_ty), Some(wg), vec![Operand::LiteralBit32(WG_PLACEHOLDER)]),
    );
    let at = after(&m, vec3_ty).max(after(&m, one));
    m.types_global_values.insert(
        at,
        Instruction::new(
            Op::SpecConstantComposite,
            Some(vec3_ty),
            Some(size),
            vec![Operand::IdRef(wg), Operand::IdRef(one), Operand::IdRef(one)],
        ),
    );
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

/// SPIR-V disassembly, for `aiic emit --target spirv-asm` and the snapshots: rspirv's, or for
/// the cooperative-matrix kernels, which its grammar cannot read, [`spirv_asm::disassemble`].
pub fn disassemble(words: &[u32]) -> String {
    use rspirv::binary::Disassemble;
    match rspirv::dr::load_words(words) {
        Ok(m) => m.disassemble(),
        Err(_) => super::spirv_asm::disassemble(words),
    }
}
