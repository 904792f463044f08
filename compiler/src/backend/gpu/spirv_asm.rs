//! A SPIR-V module writer for the kernels naga cannot express: cooperative-matrix kernels that
//! touch the elements of a matrix and convert accumulators into operands. rspirv's grammar
//! predates cooperative matrices, so this writes the words itself, with the opcodes and enums of
//! the `spirv` crate (the SPIR-V headers as Rust).
//!
//! Types and constants are made once each (SPIR-V forbids two declarations of one non-aggregate
//! type); the code of the one function is appended in order, with its `Function` variables
//! gathered apart and placed at the head of its first block, where SPIR-V wants them.

use spirv_headers::{BuiltIn, Capability, Decoration, Op, StorageClass};
use std::collections::HashMap;

#[derive(Default)]
pub struct Asm {
    bound: u32,
    capabilities: Vec<u32>,
    extensions: Vec<u32>,
    imports: Vec<u32>,
    annotations: Vec<u32>,
    globals: Vec<u32>,
    /// The `Function` variables of the function being written.
    locals: Vec<u32>,
    code: Vec<u32>,
    /// Types and constants by their opcode and operands.
    made: HashMap<Vec<u32>, u32>,
    /// Global variables, for the entry point's interface.
    variables: Vec<(u32, StorageClass)>,
}

/// The words of a literal string: UTF-8, nul-terminated, padded to whole words.
pub fn string(s: &str) -> Vec<u32> {
    let mut bytes = s.as_bytes().to_vec();
    bytes.push(0);
    bytes.resize(bytes.len().div_ceil(4) * 4, 0);
    bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn push(section: &mut Vec<u32>, op: Op, operands: &[u32]) {
    section.push(((operands.len() as u32 + 1) << 16) | op as u32);
    section.extend_from_slice(operands);
}

impl Asm {
    pub fn new() -> Self {
        Asm { bound: 1, ..Default::default() }
    }

    pub fn id(&mut self) -> u32 {
        self.bound += 1;
        self.bound - 1
    }

    pub fn capability(&mut self, c: Capability) {
        if !self.capabilities.chunks(2).any(|w| w[1] == c as u32) {
            push(&mut self.capabilities, Op::Capability, &[c as u32]);
        }
    }

    pub fn extension(&mut self, name: &str) {
        push(&mut self.extensions, Op::Extension, &string(name));
    }

    /// Imports an extended instruction set; returns its id.
    pub fn import(&mut self, name: &str) -> u32 {
        let id = self.id();
        let mut operands = vec![id];
        operands.extend(string(name));
        push(&mut self.imports, Op::ExtInstImport, &operands);
        id
    }

    /// A type or constant: `op` with a result id followed by `operands`, made once.
    fn made(&mut self, op: Op, ty: Option<u32>, operands: &[u32]) -> u32 {
        let mut key = vec![op as u32];
        key.extend(ty);
        key.extend_from_slice(operands);
        if let Some(&id) = self.made.get(&key) {
            return id;
        }
        let id = self.id();
        let mut words: Vec<u32> = ty.into_iter().collect();
        words.push(id);
        words.extend_from_slice(operands);
        push(&mut self.globals, op, &words);
        self.made.insert(key, id);
        id
    }

    /// A type declaration (`OpTypeInt`, `OpTypePointer`, …), made once.
    pub fn ty(&mut self, op: Op, operands: &[u32]) -> u32 {
        self.made(op, None, operands)
    }

    /// A constant of type `ty` (`OpConstant`, `OpConstantComposite`, …), made once.
    pub fn constant(&mut self, op: Op, ty: u32, operands: &[u32]) -> u32 {
        self.made(op, Some(ty), operands)
    }

    /// A specialization constant: never shared, since each has its own `SpecId`.
    pub fn spec_constant(&mut self, op: Op, ty: u32, operands: &[u32]) -> u32 {
        let id = self.id();
        let mut words = vec![ty, id];
        words.extend_from_slice(operands);
        push(&mut self.globals, op, &words);
        id
    }

    pub fn decorate(&mut self, id: u32, d: Decoration, operands: &[u32]) {
        let mut words = vec![id, d as u32];
        words.extend_from_slice(operands);
        push(&mut self.annotations, Op::Decorate, &words);
    }

    pub fn member_decorate(&mut self, id: u32, member: u32, d: Decoration, operands: &[u32]) {
        let mut words = vec![id, member, d as u32];
        words.extend_from_slice(operands);
        push(&mut self.annotations, Op::MemberDecorate, &words);
    }

    /// A module-scope variable of pointer type `ptr`.
    pub fn global(&mut self, ptr: u32, class: StorageClass) -> u32 {
        let id = self.id();
        push(&mut self.globals, Op::Variable, &[ptr, id, class as u32]);
        self.variables.push((id, class));
        id
    }

    /// A `Function` variable of pointer type `ptr` of the function being written.
    pub fn local(&mut self, ptr: u32) -> u32 {
        let id = self.id();
        push(&mut self.locals, Op::Variable, &[ptr, id, StorageClass::Function as u32]);
        id
    }

    /// An instruction with a result of type `ty`; returns the result.
    pub fn op(&mut self, op: Op, ty: u32, operands: &[u32]) -> u32 {
        let id = self.id();
        let mut words = vec![ty, id];
        words.extend_from_slice(operands);
        push(&mut self.code, op, &words);
        id
    }

    /// An instruction without a result.
    pub fn exec(&mut self, op: Op, operands: &[u32]) {
        push(&mut self.code, op, operands);
    }

    /// Starts block `label`.
    pub fn block(&mut self, label: u32) {
        push(&mut self.code, Op::Label, &[label]);
    }

    /// The module: a compute entry point `main`, the function `code` was written for (of type
    /// `fn_ty`, returning `void`), in SPIR-V version `version` with the memory model `model`.
    pub fn finish(mut self, version: (u8, u8), model: &[u32], main: u32, fn_ty: u32, void: u32) -> Vec<u32> {
        // The interface names the variables the entry point uses: before SPIR-V 1.4, only its
        // inputs and outputs.
        let interface: Vec<u32> = self
            .variables
            .iter()
            .filter(|(_, c)| version >= (1, 4) || matches!(c, StorageClass::Input | StorageClass::Output))
            .map(|(id, _)| *id)
            .collect();
        let mut entry = vec![spirv_headers::ExecutionModel::GLCompute as u32, main];
        entry.extend(string("main"));
        entry.extend(interface);

        let mut function = Vec::new();
        push(&mut function, Op::Function, &[void, main, 0, fn_ty]);
        // The first instruction of `code` is the label of the first block: the variables follow it.
        function.extend_from_slice(&self.code[..2]);
        function.extend_from_slice(&self.locals);
        function.extend_from_slice(&self.code[2..]);
        push(&mut function, Op::FunctionEnd, &[]);

        let mut words = vec![
            spirv_headers::MAGIC_NUMBER,
            (u32::from(version.0) << 16) | (u32::from(version.1) << 8),
            0,
            self.bound,
            0,
        ];
        words.append(&mut self.capabilities);
        words.append(&mut self.extensions);
        words.append(&mut self.imports);
        push(&mut words, Op::MemoryModel, model);
        push(&mut words, Op::EntryPoint, &entry);
        words.append(&mut self.annotations);
        words.append(&mut self.globals);
        words.append(&mut function);
        words
    }
}

/// How the operands of an instruction read, for [`disassemble`].
#[derive(Clone, Copy, PartialEq)]
enum Form {
    /// Result type, result id, then ids.
    Typed,
    /// Result id, then literals (type declarations of scalars, `OpLabel`).
    Declares,
    /// Result id, then ids (composite types).
    DeclaresIds,
    /// No result, ids.
    Ids,
}

/// A listing of a module this writer makes, one instruction a line, with ids as `%n`, literal
/// numbers as numbers, strings quoted and the enumerants it writes by name: for `aiic emit
/// --target spirv-asm` and the snapshots, where rspirv cannot read the module. Operands of
/// instructions it does not write are listed as ids.
pub fn disassemble(words: &[u32]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if words.len() < 5 || words[0] != spirv_headers::MAGIC_NUMBER {
        return "; not a SPIR-V module\n".into();
    }
    let _ = writeln!(out, "; SPIR-V {}.{}, bound {}", (words[1] >> 16) & 0xff, (words[1] >> 8) & 0xff, words[3]);
    // f32 types, whose constants read better as numbers than as bits.
    let mut floats = Vec::new();
    let mut at = 5;
    while at < words.len() {
        let (count, code) = ((words[at] >> 16) as usize, words[at] & 0xffff);
        if count == 0 || at + count > words.len() {
            let _ = writeln!(out, "; malformed instruction at word {at}");
            break;
        }
        let operands = &words[at + 1..at + count];
        at += count;
        let Some(op) = Op::from_u32(code) else {
            let _ = writeln!(out, "Op{code} {operands:?}");
            continue;
        };
        if op == Op::TypeFloat && operands.get(1) == Some(&32) {
            floats.push(operands[0]);
        }
        if op == Op::Constant && floats.contains(&operands[0]) && operands.len() == 3 {
            let _ = writeln!(out, "%{} = OpConstant %{} {:?}", operands[1], operands[0], f32::from_bits(operands[2]));
            continue;
        }
        let _ = writeln!(out, "{}", line(op, operands));
    }
    out
}

fn line(op: Op, w: &[u32]) -> String {
    let id = |x: &u32| format!("%{x}");
    let ids = |s: &[u32]| s.iter().map(id).collect::<Vec<_>>().join(" ");
    let nums = |s: &[u32]| s.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
    let text = |s: &[u32]| {
        let bytes: Vec<u8> = s.iter().flat_map(|x| x.to_le_bytes()).take_while(|b| *b != 0).collect();
        format!("\"{}\"", String::from_utf8_lossy(&bytes))
    };
    let words_of_string = |s: &[u32]| s.iter().position(|x| x.to_le_bytes().contains(&0)).map_or(s.len(), |p| p + 1);
    let name = format!("Op{op:?}");
    let decoration = |w: &[u32]| {
        let d = Decoration::from_u32(w[0]);
        let rest = match d {
            Some(Decoration::BuiltIn) => BuiltIn::from_u32(w[1]).map_or_else(|| nums(&w[1..]), |b| format!("{b:?}")),
            _ => nums(&w[1..]),
        };
        format!("{} {rest}", d.map_or_else(|| w[0].to_string(), |d| format!("{d:?}"))).trim_end().to_string()
    };
    let class = |c: u32| StorageClass::from_u32(c).map_or_else(|| c.to_string(), |c| format!("{c:?}"));
    let form = match op {
        Op::Capability => {
            return format!("{name} {}", Capability::from_u32(w[0]).map_or_else(|| nums(w), |c| format!("{c:?}")))
        }
        Op::MemoryModel | Op::ExecutionMode => return format!("{name} {}", nums(w)),
        Op::Extension => return format!("{name} {}", text(w)),
        Op::ExtInstImport => return format!("%{} = {name} {}", w[0], text(&w[1..])),
        Op::EntryPoint => {
            let n = words_of_string(&w[2..]);
            return format!("{name} {} %{} {} {}", w[0], w[1], text(&w[2..]), ids(&w[2 + n..]));
        }
        Op::Decorate => return format!("{name} %{} {}", w[0], decoration(&w[1..])),
        Op::MemberDecorate => return format!("{name} %{} {} {}", w[0], w[1], decoration(&w[2..])),
        Op::Constant | Op::SpecConstant => return format!("%{} = {name} %{} {}", w[1], w[0], nums(&w[2..])),
        Op::Variable => return format!("%{} = {name} %{} {}", w[1], w[0], class(w[2])),
        Op::CompositeExtract => return format!("%{} = {name} %{} %{} {}", w[1], w[0], w[2], nums(&w[3..])),
        Op::ExtInst => {
            // Every set this writer imports is GLSL.std.450.
            let inst =
                spirv_headers::GlslStd450Op::from_u32(w[3]).map_or_else(|| w[3].to_string(), |o| format!("{o:?}"));
            return format!("%{} = {name} %{} %{} {inst} {}", w[1], w[0], w[2], ids(&w[4..]));
        }
        Op::Function => return format!("%{} = {name} %{} {} %{}", w[1], w[0], w[2], w[3]),
        // Memory operands are literals after the ids.
        Op::Load => return format!("%{} = {name} %{} %{} {}", w[1], w[0], w[2], nums(&w[3..])).trim_end().to_string(),
        Op::Store => return format!("{name} %{} %{} {}", w[0], w[1], nums(&w[2..])).trim_end().to_string(),
        Op::CooperativeMatrixLoadKHR => {
            return format!("%{} = {name} %{} {} {}", w[1], w[0], ids(&w[2..5]), nums(&w[5..])).trim_end().to_string()
        }
        Op::CooperativeMatrixStoreKHR => {
            return format!("{name} {} {}", ids(&w[..4]), nums(&w[4..])).trim_end().to_string()
        }
        Op::SelectionMerge => return format!("{name} %{} {}", w[0], w[1]),
        Op::LoopMerge => return format!("{name} %{} %{} {}", w[0], w[1], nums(&w[2..])),
        Op::TypeVoid | Op::TypeBool | Op::TypeInt | Op::TypeFloat | Op::Label => Form::Declares,
        Op::TypeVector => return format!("%{} = {name} %{} {}", w[0], w[1], nums(&w[2..])),
        Op::TypePointer => return format!("%{} = {name} {} %{}", w[0], class(w[1]), w[2]),
        Op::TypeArray | Op::TypeRuntimeArray | Op::TypeStruct | Op::TypeFunction | Op::TypeCooperativeMatrixKHR => {
            Form::DeclaresIds
        }
        Op::Branch | Op::BranchConditional | Op::Return | Op::FunctionEnd | Op::ControlBarrier => Form::Ids,
        _ => Form::Typed,
    };
    match form {
        Form::Typed => format!("%{} = {name} %{} {}", w[1], w[0], ids(&w[2..])),
        Form::Declares => format!("%{} = {name} {}", w[0], nums(&w[1..])),
        Form::DeclaresIds => format!("%{} = {name} {}", w[0], ids(&w[1..])),
        Form::Ids => format!("{name} {}", ids(w)).trim_end().to_string(),
    }
}
