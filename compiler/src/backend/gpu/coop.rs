//! Cooperative-matrix SPIR-V for the matrix work of an `each` kernel ([`TensorPlan`]) on Vulkan
//! (`VK_KHR_cooperative_matrix`): square products (16×16×16 on GPUs, 8×8×8 on lavapipe) of f16
//! operands accumulated in f32, all layers of a model fused in one kernel, written word by word
//! ([`Asm`]) because naga cannot touch the elements of a matrix or convert one. The executor
//! takes the first variant ([`variants`]) its device can run.
//!
//! - Each subgroup takes [`ROW_TILES`] row tiles of agents at a time (32 on a GPU).
//!   Their inputs are converted to f16 and staged row-major in the subgroup's own slice of
//!   workgroup memory, from which the A operands of the first layer are loaded.
//! - The weights (f16, each layer's K × N B operand row-major) and biases (f32) are copied once
//!   per workgroup into workgroup memory where they fit, and read from device memory otherwise.
//!   NVIDIA's Vulkan driver keeps about 48 KiB of workgroup memory on a multiprocessor whatever
//!   a kernel declares (on an H100, a workgroup of one subgroup ran as fast with 47 KiB as with
//!   25 KiB, and 3.6× slower with 47 KiB than with 9 KiB), so the copy and the staging decide
//!   the subgroups in flight: up to [`MAX_SUBGROUPS`] share one copy.
//! - A layer's accumulators start at its biases (a load of stride 0 repeats them in every row);
//!   the activation is applied to the accumulators' elements in registers (it is elementwise, so
//!   which element an invocation holds does not matter; tanh in f16, which the next layer rounds
//!   to anyway), and the result becomes the next layer's A operand: directly, where the device
//!   converts accumulators into operands (`VK_NV_cooperative_matrix2`), or through the staging
//!   slice as f16 otherwise.
//! - The last layer's accumulators go through the staging slice in f32, and each invocation
//!   writes the output columns of its agents (with Kahan's update where the scalar kernel keeps
//!   one).
//! - Subgroups share nothing: every barrier is a subgroup barrier. A workgroup skips the tiles
//!   past the last agent.
//! - Input widths, hidden widths and the output width are padded with zero weights to 16.

use super::ast::Binding;
use super::mma::MmaKernel;
use super::spirv_asm::Asm;
use aiic_runtime::gpu::{coop_layers, CoopKernel, CoopLayer};
use aiic_runtime::ir::{Activation, Precision, Scalar, TensorPlan};
use spirv_headers::{
    BuiltIn, Capability, CooperativeMatrixLayout, CooperativeMatrixUse, Decoration, GlslStd450Op as GLOp,
    MemorySemantics, Op, Scope, StorageClass,
};

/// Row tiles of the A operand a subgroup takes at a time: each B operand serves them all, and
/// their operands stay in registers (two measured fastest on an H100).
pub const ROW_TILES: u32 = 2;
/// Tiles each subgroup takes in turn: a workgroup covers `subgroups × TILES × rows` agents.
pub const TILES: u32 = 16;
/// The most subgroups a workgroup has: they share the workgroup's copy of the weights.
pub const MAX_SUBGROUPS: u32 = 8;
/// Workgroup memory of the variants that copy the weights there: what NVIDIA's Vulkan drivers
/// offer. A device with less runs a variant that reads them from device memory.
pub const STAGED_BUDGET: u32 = 48 * 1024;
/// Workgroup memory of the variants that read their weights from device memory: what Vulkan
/// guarantees.
pub const STREAMED_BUDGET: u32 = 16 * 1024;
/// The widest padded layer input or output: wider layers would hold more operands in registers
/// than a subgroup has, and run the f32 kernel.
pub const MAX_WIDTH: u32 = 256;
/// The SPIR-V version of the kernels: the accumulator conversions of
/// `SPV_NV_cooperative_matrix2` require 1.6; without them, 1.3 is enough.
pub const VERSION_CONVERT: (u8, u8) = (1, 6);
pub const VERSION: (u8, u8) = (1, 3);

/// Elements of padding after each staged row: 16 bytes, which puts the 8 rows a matrix load
/// reads at once in different banks.
const PAD_HALVES: u32 = 8;

/// The `NonPrivatePointer` memory operand: accesses to workgroup memory that other invocations
/// of the subgroup or workgroup read or wrote. The Vulkan memory model, which cooperative
/// matrices require, orders only such accesses across invocations at a barrier.
const NON_PRIVATE: u32 = spirv_headers::MemoryAccess::NON_PRIVATE_POINTER.bits();

/// Whether `plan` has a cooperative-matrix kernel, or why not.
pub fn supported(plan: &TensorPlan) -> Result<(), String> {
    if plan.precision != Precision::F16 {
        return Err(format!("precision {} has no cooperative-matrix kernel (f16 has)", plan.precision.name()));
    }
    let ls = coop_layers(&plan.layers);
    if let Some((l, g)) = plan.layers.iter().zip(&ls).find(|(_, g)| g.k.max(g.n) > MAX_WIDTH) {
        return Err(format!("a layer of {}x{} is wider than {MAX_WIDTH} (padded to {})", l.rows, l.cols, g.k.max(g.n)));
    }
    Ok(())
}

/// The variants of a kernel the executor chooses from, best first: 16×16×16 products (GPUs),
/// then 8×8×8 (lavapipe), each with accumulators converted in registers before through
/// workgroup memory, each with its weights copied to workgroup memory (where they fit in
/// [`STAGED_BUDGET`]) before read from device memory (sized for [`STREAMED_BUDGET`]).
pub fn variants(plan: &TensorPlan) -> Vec<CoopKernel> {
    let ls = coop_layers(&plan.layers);
    let mut out = Vec::new();
    for (shape, conversions) in [(16, true), (16, false), (8, true), (8, false)] {
        for staged_weights in [true, false] {
            let v = CoopKernel { subgroups: 1, shape, rows: shape * ROW_TILES, conversions, shared: 0, staged_weights };
            if let Some(subgroups) = subgroups(&ls, v) {
                let weights = if staged_weights { SharedWeights::of(&ls).bytes } else { 0 };
                out.push(CoopKernel { subgroups, shared: subgroups * stage_quads(&ls, v) * 16 + weights, ..v });
            }
        }
    }
    out
}

/// The suffix of the name of variant `v`'s kernel: its product shape, whether it converts
/// accumulators and whether it reads its weights from device memory.
pub fn variant_name(v: &CoopKernel) -> String {
    let converting = if v.conversions { ".converting" } else { "" };
    let streamed = if v.staged_weights { "" } else { ".streamed" };
    format!(".{0}x{0}x{0}{converting}{streamed}", v.shape)
}

/// A workgroup's copy of the weights in workgroup memory: each layer's K × N B operand with rows
/// padded by 16 bytes (so that the rows a matrix load reads at once fall in different banks),
/// then the biases.
#[derive(Debug, Clone, PartialEq)]
struct SharedWeights {
    /// Where each layer's operand starts, in halves.
    at: Vec<u32>,
    /// Halves of all operands.
    halves: u32,
    /// Biases (f32) after them.
    biases: u32,
    bytes: u32,
}

impl SharedWeights {
    fn of(ls: &[CoopLayer]) -> Self {
        let mut at = Vec::new();
        let mut halves = 0;
        for l in ls {
            at.push(halves);
            halves += l.k * (l.stride + PAD_HALVES);
        }
        let biases = ls.iter().map(|l| l.n).sum::<u32>();
        SharedWeights { at, halves, biases, bytes: halves * 2 + biases * 4 }
    }
}

/// How many subgroups a workgroup of variant `v` has: as many as fit in its budget beside its
/// copy of the weights, up to [`MAX_SUBGROUPS`]; none where the weights leave no room for one,
/// and one where a variant that reads them from device memory needs more than its budget for
/// one subgroup's staging (inputs of more than about 240 features), which a device then runs
/// only within its own limit.
/// NVIDIA's driver keeps about 48 KiB of workgroup memory on a multiprocessor, so subgroups that
/// share one copy of the weights are what fills it.
fn subgroups(ls: &[CoopLayer], v: CoopKernel) -> Option<u32> {
    let staging = stage_quads(ls, v) * 16;
    let room = if v.staged_weights { STAGED_BUDGET.checked_sub(SharedWeights::of(ls).bytes)? } else { STREAMED_BUDGET };
    (room >= staging || !v.staged_weights).then(|| (room / staging).clamp(1, MAX_SUBGROUPS))
}

/// Quads (16 bytes) of a staged row of `width` f16 values.
fn quads_f16(width: u32) -> u32 {
    (width + PAD_HALVES) / 8
}

/// Quads of a staged row of the last layer's outputs (up to 16 f32), padded by 16 bytes.
const OUT_QUADS: u32 = 5;

/// Quads of workgroup memory a subgroup stages through.
fn stage_quads(ls: &[CoopLayer], v: CoopKernel) -> u32 {
    let hidden = ls[..ls.len() - 1].iter().map(|l| quads_f16(l.n)).max().unwrap_or(0);
    let widest = quads_f16(ls[0].k).max(OUT_QUADS).max(if v.conversions { 0 } else { hidden });
    v.rows * widest
}

/// The ids of the types and constants the kernel uses.
struct Types {
    void: u32,
    bool_: u32,
    u32_: u32,
    f32_: u32,
    v2f32: u32,
    v3u32: u32,
    v4u32: u32,
    /// Square cooperative matrices of the variant's shape: f16 A and B operands, f32 and f16
    /// accumulators.
    a16: u32,
    b16: u32,
    c32: u32,
    c16: u32,
    glsl: u32,
}

/// The kernel being written: the module, its types and the values every part uses.
struct Gen<'a> {
    asm: Asm,
    t: Types,
    k: &'a MmaKernel,
    /// The variant's product shape, and the agents a subgroup takes at a time.
    shape: u32,
    rows: u32,
    /// The storage-buffer variable of each binding.
    buffers: Vec<u32>,
    stage: u32,
    /// Values of the entry block: the subgroup's lane, its size, its first staging quad, the
    /// agent count.
    lane: u32,
    size: u32,
    stage0: u32,
    count: u32,
    /// The workgroup's copy of the weights, and its two arrays (operands, biases), where the
    /// variant reads them there.
    copy: Option<(SharedWeights, u32, u32)>,
}

/// The SPIR-V words of variant `v` of the tensor kernel `k` with these bindings.
pub fn spirv(k: &MmaKernel, bindings: &[Binding], v: CoopKernel) -> Vec<u32> {
    let convert = v.conversions;
    let mut asm = Asm::new();
    for c in [
        Capability::Shader,
        Capability::Float16,
        Capability::VulkanMemoryModel,
        Capability::CooperativeMatrixKHR,
        Capability::GroupNonUniform,
    ] {
        asm.capability(c);
    }
    asm.extension("SPV_KHR_cooperative_matrix");
    if convert {
        asm.capability(Capability::CooperativeMatrixConversionsNV);
        asm.extension("SPV_NV_cooperative_matrix2");
    } else {
        asm.extension("SPV_KHR_vulkan_memory_model");
    }
    let glsl = asm.import("GLSL.std.450");
    let t = types(&mut asm, glsl, v.shape);
    let mut g = Gen {
        asm,
        t,
        k,
        shape: v.shape,
        rows: v.rows,
        buffers: Vec::new(),
        stage: 0,
        lane: 0,
        size: 0,
        stage0: 0,
        count: 0,
        copy: None,
    };
    g.declare(bindings, v);
    let main = g.asm.id();
    let fn_ty = g.asm.ty(Op::TypeFunction, &[g.t.void]);
    g.body(v);
    let model = [spirv_headers::AddressingModel::Logical as u32, spirv_headers::MemoryModel::Vulkan as u32];
    g.asm.finish(if convert { VERSION_CONVERT } else { VERSION }, &model, main, fn_ty, g.t.void)
}

fn types(asm: &mut Asm, glsl: u32, shape: u32) -> Types {
    let void = asm.ty(Op::TypeVoid, &[]);
    let bool_ = asm.ty(Op::TypeBool, &[]);
    let u32_ = asm.ty(Op::TypeInt, &[32, 0]);
    let f32_ = asm.ty(Op::TypeFloat, &[32]);
    let f16_ = asm.ty(Op::TypeFloat, &[16]);
    let v2f32 = asm.ty(Op::TypeVector, &[f32_, 2]);
    let v3u32 = asm.ty(Op::TypeVector, &[u32_, 3]);
    let v4u32 = asm.ty(Op::TypeVector, &[u32_, 4]);
    let c = |asm: &mut Asm, v: u32| asm.constant(Op::Constant, u32_, &[v]);
    let (scope, side) = (c(asm, Scope::Subgroup as u32), c(asm, shape));
    let coop = |asm: &mut Asm, comp: u32, usage: CooperativeMatrixUse| {
        let usage = c(asm, usage as u32);
        asm.ty(Op::TypeCooperativeMatrixKHR, &[comp, scope, side, side, usage])
    };
    let a16 = coop(asm, f16_, CooperativeMatrixUse::MatrixAKHR);
    let b16 = coop(asm, f16_, CooperativeMatrixUse::MatrixBKHR);
    let c32 = coop(asm, f32_, CooperativeMatrixUse::MatrixAccumulatorKHR);
    let c16 = coop(asm, f16_, CooperativeMatrixUse::MatrixAccumulatorKHR);
    Types { void, bool_, u32_, f32_, v2f32, v3u32, v4u32, a16, b16, c32, c16, glsl }
}

impl Gen<'_> {
    fn u(&mut self, v: u32) -> u32 {
        self.asm.constant(Op::Constant, self.t.u32_, &[v])
    }

    fn f(&mut self, v: f32) -> u32 {
        self.asm.constant(Op::Constant, self.t.f32_, &[v.to_bits()])
    }

    fn ptr(&mut self, class: StorageClass, ty: u32) -> u32 {
        self.asm.ty(Op::TypePointer, &[class as u32, ty])
    }

    /// The storage buffers, the builtins the kernel reads, its workgroup size and its staging.
    fn declare(&mut self, bindings: &[Binding], v: CoopKernel) {
        for (n, b) in bindings.iter().enumerate() {
            // The layer weights are f16 read in quads; columns, biases and sizes are words.
            let elem = if Some(n) == self.k.weights {
                self.t.v4u32
            } else if b.elem == Scalar::U32 {
                self.t.u32_
            } else {
                self.t.f32_
            };
            let array = self.asm.ty(Op::TypeRuntimeArray, &[elem]);
            let block = self.asm.ty(Op::TypeStruct, &[array]);
            let ptr = self.ptr(StorageClass::StorageBuffer, block);
            let var = self.asm.global(ptr, StorageClass::StorageBuffer);
            self.asm.decorate(var, Decoration::DescriptorSet, &[0]);
            self.asm.decorate(var, Decoration::Binding, &[n as u32]);
            if b.read_only {
                self.asm.decorate(var, Decoration::NonWritable, &[]);
            }
            self.buffers.push(var);
        }
        // Array strides and block layouts, once per distinct type.
        let mut decorated = Vec::new();
        for elem in [(self.t.u32_, 4), (self.t.f32_, 4), (self.t.v4u32, 16)] {
            let array = self.asm.ty(Op::TypeRuntimeArray, &[elem.0]);
            let block = self.asm.ty(Op::TypeStruct, &[array]);
            if !decorated.contains(&array) {
                decorated.push(array);
                self.asm.decorate(array, Decoration::ArrayStride, &[elem.1]);
                self.asm.decorate(block, Decoration::Block, &[]);
                self.asm.member_decorate(block, 0, Decoration::Offset, &[0]);
            }
        }
        let ls = coop_layers(&self.k.plan.layers);
        let len = self.u(v.subgroups * stage_quads(&ls, v));
        let array = self.asm.ty(Op::TypeArray, &[self.t.v4u32, len]);
        let ptr = self.ptr(StorageClass::Workgroup, array);
        self.stage = self.asm.global(ptr, StorageClass::Workgroup);
        if v.staged_weights {
            let copy = SharedWeights::of(&ls);
            let quads = self.u(copy.halves / 8);
            let array = self.asm.ty(Op::TypeArray, &[self.t.v4u32, quads]);
            let ptr = self.ptr(StorageClass::Workgroup, array);
            let weights = self.asm.global(ptr, StorageClass::Workgroup);
            let n = self.u(copy.biases);
            let array = self.asm.ty(Op::TypeArray, &[self.t.f32_, n]);
            let ptr = self.ptr(StorageClass::Workgroup, array);
            let biases = self.asm.global(ptr, StorageClass::Workgroup);
            self.copy = Some((copy, weights, biases));
        }
        // The workgroup size is specialization constant 0: the executor sets it to the
        // variant's subgroups × its device's subgroup size.
        let x = self.asm.spec_constant(Op::SpecConstant, self.t.u32_, &[v.subgroups * 32]);
        self.asm.decorate(x, Decoration::SpecId, &[0]);
        let one = self.u(1);
        let size = self.asm.spec_constant(Op::SpecConstantComposite, self.t.v3u32, &[x, one, one]);
        self.asm.decorate(size, Decoration::BuiltIn, &[BuiltIn::WorkgroupSize as u32]);
    }

    fn builtin(&mut self, b: BuiltIn, ty: u32) -> u32 {
        let ptr = self.ptr(StorageClass::Input, ty);
        let var = self.asm.global(ptr, StorageClass::Input);
        self.asm.decorate(var, Decoration::BuiltIn, &[b as u32]);
        self.asm.op(Op::Load, ty, &[var])
    }

    fn bin(&mut self, op: Op, ty: u32, a: u32, b: u32) -> u32 {
        self.asm.op(op, ty, &[a, b])
    }

    fn add(&mut self, a: u32, b: u32) -> u32 {
        self.bin(Op::IAdd, self.t.u32_, a, b)
    }

    fn mul(&mut self, a: u32, b: u32) -> u32 {
        self.bin(Op::IMul, self.t.u32_, a, b)
    }

    fn add_c(&mut self, a: u32, c: u32) -> u32 {
        let c = self.u(c);
        self.add(a, c)
    }

    fn less(&mut self, a: u32, b: u32) -> u32 {
        self.bin(Op::ULessThan, self.t.bool_, a, b)
    }

    fn ext(&mut self, ty: u32, op: GLOp, args: &[u32]) -> u32 {
        let mut operands = vec![self.t.glsl, op as u32];
        operands.extend_from_slice(args);
        self.asm.op(Op::ExtInst, ty, &operands)
    }

    /// Element `index` of binding `n` (of element type `ty`).
    fn element(&mut self, n: usize, ty: u32, index: u32) -> u32 {
        let ptr = self.ptr(StorageClass::StorageBuffer, ty);
        let zero = self.u(0);
        let buffer = self.buffers[n];
        self.asm.op(Op::AccessChain, ptr, &[buffer, zero, index])
    }

    /// Quad `index` of the staging array, or word `word` of it.
    fn stage_quad(&mut self, index: u32) -> u32 {
        let ptr = self.ptr(StorageClass::Workgroup, self.t.v4u32);
        self.asm.op(Op::AccessChain, ptr, &[self.stage, index])
    }

    fn stage_word(&mut self, index: u32, word: u32) -> u32 {
        let ptr = self.ptr(StorageClass::Workgroup, self.t.u32_);
        let word = self.u(word);
        self.asm.op(Op::AccessChain, ptr, &[self.stage, index, word])
    }

    /// Orders the subgroup's accesses to its staging slice before what follows.
    fn barrier(&mut self) {
        self.control_barrier(Scope::Subgroup);
    }

    /// A control barrier of `scope` that makes the workgroup memory its invocations wrote
    /// available and visible to them (the Vulkan memory model orders only non-private accesses,
    /// see [`NON_PRIVATE`]).
    fn control_barrier(&mut self, scope: Scope) {
        let scope = self.u(scope as u32);
        let semantics = MemorySemantics::ACQUIRE_RELEASE
            | MemorySemantics::WORKGROUP_MEMORY
            | MemorySemantics::MAKE_AVAILABLE
            | MemorySemantics::MAKE_VISIBLE;
        let semantics = self.u(semantics.bits());
        self.asm.exec(Op::ControlBarrier, &[scope, scope, semantics]);
    }

    /// A load through a pointer into workgroup memory, which other invocations wrote.
    fn shared_load(&mut self, ty: u32, ptr: u32) -> u32 {
        self.asm.op(Op::Load, ty, &[ptr, NON_PRIVATE])
    }

    /// A store through a pointer into workgroup memory, which other invocations read.
    fn shared_store(&mut self, ptr: u32, value: u32) {
        self.asm.exec(Op::Store, &[ptr, value, NON_PRIVATE]);
    }

    /// A cooperative load from workgroup memory (`shared`) or from a buffer.
    fn coop_load(&mut self, ty: u32, ptr: u32, layout: CooperativeMatrixLayout, stride: u32, shared: bool) -> u32 {
        let layout = self.u(layout as u32);
        let stride = self.u(stride);
        let mut operands = vec![ptr, layout, stride];
        operands.extend(shared.then_some(NON_PRIVATE));
        self.asm.op(Op::CooperativeMatrixLoadKHR, ty, &operands)
    }

    /// A cooperative store to the staging slice, in workgroup memory.
    fn coop_store(&mut self, ptr: u32, value: u32, stride: u32) {
        let layout = self.u(CooperativeMatrixLayout::RowMajorKHR as u32);
        let stride = self.u(stride);
        self.asm.exec(Op::CooperativeMatrixStoreKHR, &[ptr, value, layout, stride, NON_PRIVATE]);
    }

    /// `if cond { then() }`.
    fn when(&mut self, cond: u32, then: impl FnOnce(&mut Self)) {
        let (body, merge) = (self.asm.id(), self.asm.id());
        self.asm.exec(Op::SelectionMerge, &[merge, 0]);
        self.asm.exec(Op::BranchConditional, &[cond, body, merge]);
        self.asm.block(body);
        then(self);
        self.asm.exec(Op::Branch, &[merge]);
        self.asm.block(merge);
    }

    /// `for (i = start; i < end; i += step) body(i)` over `u32`s.
    fn range(&mut self, start: u32, end: u32, step: u32, body: impl FnOnce(&mut Self, u32)) {
        let ptr = self.ptr(StorageClass::Function, self.t.u32_);
        let var = self.asm.local(ptr);
        self.asm.exec(Op::Store, &[var, start]);
        let (header, inner, cont, merge) = (self.asm.id(), self.asm.id(), self.asm.id(), self.asm.id());
        self.asm.exec(Op::Branch, &[header]);
        self.asm.block(header);
        let i = self.asm.op(Op::Load, self.t.u32_, &[var]);
        let go = self.less(i, end);
        self.asm.exec(Op::LoopMerge, &[merge, cont, 0]);
        self.asm.exec(Op::BranchConditional, &[go, inner, merge]);
        self.asm.block(inner);
        body(self, i);
        self.asm.exec(Op::Branch, &[cont]);
        self.asm.block(cont);
        let i = self.asm.op(Op::Load, self.t.u32_, &[var]);
        let next = self.add(i, step);
        self.asm.exec(Op::Store, &[var, next]);
        self.asm.exec(Op::Branch, &[header]);
        self.asm.block(merge);
    }

    fn body(&mut self, v: CoopKernel) {
        let entry = self.asm.id();
        self.asm.block(entry);
        let t = &self.t;
        let (u32_, v3u32) = (t.u32_, t.v3u32);
        let sg = self.builtin(BuiltIn::SubgroupId, u32_);
        self.lane = self.builtin(BuiltIn::SubgroupLocalInvocationId, u32_);
        self.size = self.builtin(BuiltIn::SubgroupSize, u32_);
        let wid = self.builtin(BuiltIn::WorkgroupId, v3u32);
        let nw = self.builtin(BuiltIn::NumWorkgroups, v3u32);
        let (wx, wy) =
            (self.asm.op(Op::CompositeExtract, u32_, &[wid, 0]), self.asm.op(Op::CompositeExtract, u32_, &[wid, 1]));
        let nx = self.asm.op(Op::CompositeExtract, u32_, &[nw, 0]);
        let grp = self.mul(wy, nx);
        let grp = self.add(grp, wx);
        let sizes = self.k.sizes;
        let agent = self.u(self.k.agent as u32);
        let at = self.element(sizes, u32_, agent);
        self.count = self.asm.op(Op::Load, u32_, &[at]);
        let ls = coop_layers(&self.k.plan.layers);
        let quads = self.u(stage_quads(&ls, v));
        self.stage0 = self.mul(sg, quads);
        let (zero, one, tiles) = (self.u(0), self.u(1), self.u(TILES));
        if self.copy.is_some() {
            self.copy_weights(&ls, v.subgroups);
        }
        self.range(zero, tiles, one, |g, it| {
            // The workgroup's tiles start at agent (grp · TILES + it) · subgroups · rows, this
            // subgroup's at `sg · rows` from there. The test is the same in every subgroup of the
            // workgroup: lavapipe's matrices go wrong where one subgroup skips them.
            let group = g.mul(grp, tiles);
            let group = g.add(group, it);
            let span = g.u(v.subgroups * g.rows);
            let group = g.mul(group, span);
            let rows = g.u(g.rows);
            let own = g.mul(sg, rows);
            let first = g.add(group, own);
            let live = g.less(group, g.count);
            g.when(live, |g| g.tile(first, &ls, v.conversions));
        });
        self.asm.exec(Op::Return, &[]);
    }

    /// The model on the agents from `first`.
    fn tile(&mut self, first: u32, ls: &[CoopLayer], convert: bool) {
        let (side, tiles) = (self.shape, ROW_TILES);
        // a[t][m]: the A operand of k-tile t and row tile m.
        let mut a = self.stage_inputs(first, ls[0].k);
        let last = ls.len() - 1;
        for (li, l) in ls.iter().enumerate() {
            let mut next = vec![Vec::new(); (l.n / side) as usize];
            for nt in 0..l.n / side {
                let mut c: Vec<u32> = (0..tiles).map(|_| self.coop_load_bias(l.b_at + nt * side)).collect();
                for (t, a) in a.iter().enumerate() {
                    let t = t as u32;
                    let b = self.load_b(li, l, t, nt);
                    for (c, a) in c.iter_mut().zip(a) {
                        *c = self.asm.op(Op::CooperativeMatrixMulAddKHR, self.t.c32, &[*a, b, *c]);
                    }
                }
                if li == last {
                    self.store_outputs(first, nt, &c);
                    continue;
                }
                let row = quads_f16(l.n);
                for (m, c) in c.into_iter().enumerate() {
                    if self.k.plan.act == Activation::Tanh {
                        // tanh in f16, whose result is rounded to f16 anyway: NVIDIA's driver
                        // computes it in one instruction for two values (1.34× the whole kernel
                        // on an H100, against 1 − 2 / (e²ˣ + 1) in f32).
                        let h = self.asm.op(Op::FConvert, self.t.c16, &[c]);
                        let h = self.tanh16(h);
                        if convert {
                            next[nt as usize].push(self.asm.op(Op::CooperativeMatrixConvertNV, self.t.a16, &[h]));
                        } else {
                            let q = self.add_c(self.stage0, m as u32 * side * row + nt * side / 8);
                            let ptr = self.stage_quad(q);
                            self.coop_store(ptr, h, row);
                        }
                        continue;
                    }
                    let c = self.activate(c);
                    if convert {
                        next[nt as usize].push(self.asm.op(Op::FConvert, self.t.a16, &[c]));
                    } else {
                        let h = self.asm.op(Op::FConvert, self.t.c16, &[c]);
                        let q = self.add_c(self.stage0, m as u32 * side * row + nt * side / 8);
                        let ptr = self.stage_quad(q);
                        self.coop_store(ptr, h, row);
                    }
                }
            }
            if li == last {
                break;
            }
            a = if convert {
                next
            } else {
                self.barrier();
                let a = self.load_a(l.n, quads_f16(l.n));
                self.barrier();
                a
            };
        }
    }

    /// Copies the weights and biases into the workgroup's copy, each invocation every
    /// workgroup-size-th quad, and waits for the whole workgroup.
    fn copy_weights(&mut self, ls: &[CoopLayer], subgroups: u32) {
        let Some((copy, weights, biases)) = self.copy.clone() else { return };
        let lid = self.builtin(BuiltIn::LocalInvocationIndex, self.t.u32_);
        let wg = self.u(subgroups);
        let wg = self.mul(wg, self.size);
        for (l, at) in ls.iter().zip(&copy.at) {
            let n = self.u(l.k * l.stride / 8);
            let per = l.stride / 8;
            self.range(lid, n, wg, |g, q| {
                let perc = g.u(per);
                let r = g.bin(Op::UDiv, g.t.u32_, q, perc);
                let j = g.bin(Op::UMod, g.t.u32_, q, perc);
                let src = g.add_c(q, l.w_at / 8);
                let sp = g.element(g.k.weights.expect("weights binding"), g.t.v4u32, src);
                let val = g.asm.op(Op::Load, g.t.v4u32, &[sp]);
                let rs = g.u((l.stride + PAD_HALVES) / 8);
                let d = g.mul(r, rs);
                let d = g.add(d, j);
                let d = g.add_c(d, at / 8);
                let ptr = g.ptr(StorageClass::Workgroup, g.t.v4u32);
                let dp = g.asm.op(Op::AccessChain, ptr, &[weights, d]);
                g.shared_store(dp, val);
            });
        }
        let n = self.u(copy.biases);
        self.range(lid, n, wg, |g, i| {
            let sp = g.element(g.k.biases.expect("biases binding"), g.t.f32_, i);
            let val = g.asm.op(Op::Load, g.t.f32_, &[sp]);
            let ptr = g.ptr(StorageClass::Workgroup, g.t.f32_);
            let dp = g.asm.op(Op::AccessChain, ptr, &[biases, i]);
            g.shared_store(dp, val);
        });
        self.control_barrier(Scope::Workgroup);
    }

    /// The B operand of k-tile `t` and n-tile `nt` of layer `li`, from the workgroup's copy or
    /// from device memory.
    fn load_b(&mut self, li: usize, l: &CoopLayer, t: u32, nt: u32) -> u32 {
        let side = self.shape;
        if let Some((copy, weights, _)) = &self.copy {
            let (stride, weights) = (l.stride + PAD_HALVES, *weights);
            let q = self.u((copy.at[li] + t * side * stride + nt * side) / 8);
            let ptr = self.ptr(StorageClass::Workgroup, self.t.v4u32);
            let ptr = self.asm.op(Op::AccessChain, ptr, &[weights, q]);
            return self.coop_load(self.t.b16, ptr, CooperativeMatrixLayout::RowMajorKHR, stride / 8, true);
        }
        let quad = self.u((l.w_at + t * side * l.stride + nt * side) / 8);
        let ptr = self.element(self.k.weights.expect("weights binding"), self.t.v4u32, quad);
        self.coop_load(self.t.b16, ptr, CooperativeMatrixLayout::RowMajorKHR, l.stride / 8, false)
    }

    /// The A operands of `k` staged inputs in rows of `row` quads: one per k-tile and row tile.
    fn load_a(&mut self, k: u32, row: u32) -> Vec<Vec<u32>> {
        let side = self.shape;
        (0..k / side)
            .map(|t| {
                (0..ROW_TILES)
                    .map(|m| {
                        let q = self.add_c(self.stage0, m * side * row + t * side / 8);
                        let ptr = self.stage_quad(q);
                        self.coop_load(self.t.a16, ptr, CooperativeMatrixLayout::RowMajorKHR, row, true)
                    })
                    .collect()
            })
            .collect()
    }

    /// The f32 biases of a tile's outputs from `at` in every row.
    fn coop_load_bias(&mut self, at: u32) -> u32 {
        let index = self.u(at);
        if let Some((_, _, biases)) = self.copy {
            let ptr = self.ptr(StorageClass::Workgroup, self.t.f32_);
            let ptr = self.asm.op(Op::AccessChain, ptr, &[biases, index]);
            return self.coop_load(self.t.c32, ptr, CooperativeMatrixLayout::RowMajorKHR, 0, true);
        }
        let ptr = self.element(self.k.biases.expect("biases binding"), self.t.f32_, index);
        self.coop_load(self.t.c32, ptr, CooperativeMatrixLayout::RowMajorKHR, 0, false)
    }

    /// Stages the inputs of the agents from `first` as f16 rows of `k` (zero past the last input
    /// and the last agent) and loads them as the first layer's A operands.
    fn stage_inputs(&mut self, first: u32, k: u32) -> Vec<Vec<u32>> {
        let (rows, row) = (self.u(self.rows), quads_f16(k));
        let (lane, size) = (self.lane, self.size);
        self.range(lane, rows, size, |g, r| {
            let agent = g.add(first, r);
            let ok = g.less(agent, g.count);
            let zero = g.u(0);
            let index = g.asm.op(Op::Select, g.t.u32_, &[ok, agent, zero]);
            let zero_f = g.f(0.0);
            let mut values = Vec::new();
            for c in 0..k as usize {
                let v = match g.k.inputs.get(c).copied() {
                    Some(n) => {
                        let ptr = g.element(n, g.t.f32_, index);
                        let v = g.asm.op(Op::Load, g.t.f32_, &[ptr]);
                        g.asm.op(Op::Select, g.t.f32_, &[ok, v, zero_f])
                    }
                    None => zero_f,
                };
                values.push(v);
            }
            let row = g.u(row);
            let base = g.mul(r, row);
            let base = g.add(base, g.stage0);
            for (o, eight) in values.chunks(8).enumerate() {
                let words: Vec<u32> = eight
                    .chunks(2)
                    .map(|p| {
                        let pair = g.asm.op(Op::CompositeConstruct, g.t.v2f32, p);
                        g.ext(g.t.u32_, GLOp::PackHalf2x16, &[pair])
                    })
                    .collect();
                let quad = g.asm.op(Op::CompositeConstruct, g.t.v4u32, &words);
                let q = g.add_c(base, o as u32);
                let ptr = g.stage_quad(q);
                g.shared_store(ptr, quad);
            }
        });
        self.barrier();
        let a = self.load_a(k, row);
        self.barrier();
        a
    }

    /// tanh of every element of the f16 accumulator `c`.
    fn tanh16(&mut self, c: u32) -> u32 {
        let f16_ = self.asm.ty(Op::TypeFloat, &[16]);
        self.elementwise(c, self.t.c16, f16_, |g, x| g.ext(f16_, GLOp::Tanh, &[x]))
    }

    /// Applies the activation to every element of accumulator `c`.
    fn activate(&mut self, c: u32) -> u32 {
        let act = self.k.plan.act;
        if act == Activation::Identity {
            return c;
        }
        self.elementwise(c, self.t.c32, self.t.f32_, |g, x| g.scalar_activation(act, x))
    }

    /// `f` of every element of `c`, a matrix of type `matrix` with elements of type `elem`: which
    /// elements an invocation holds is the implementation's, so only elementwise work can be
    /// done this way.
    fn elementwise(&mut self, c: u32, matrix: u32, elem: u32, f: impl Fn(&mut Self, u32) -> u32) -> u32 {
        let ptr = self.ptr(StorageClass::Function, matrix);
        let var = self.asm.local(ptr);
        self.asm.exec(Op::Store, &[var, c]);
        let len = self.asm.op(Op::CooperativeMatrixLengthKHR, self.t.u32_, &[matrix]);
        let (zero, one) = (self.u(0), self.u(1));
        self.range(zero, len, one, |g, e| {
            let ptr = g.ptr(StorageClass::Function, elem);
            let p = g.asm.op(Op::AccessChain, ptr, &[var, e]);
            let x = g.asm.op(Op::Load, elem, &[p]);
            let y = f(g, x);
            g.asm.exec(Op::Store, &[p, y]);
        });
        self.asm.op(Op::Load, matrix, &[var])
    }

    /// tanh is 1 − 2 / (e²ˣ + 1), within about 1e-7 of tanh (far below the f16 it is rounded
    /// to): an exponential and a division, where NVIDIA's driver's tanh made a kernel 1.6×
    /// slower on an H100.
    fn scalar_activation(&mut self, act: Activation, x: u32) -> u32 {
        let f = self.t.f32_;
        let one = self.f(1.0);
        let tanh = |g: &mut Self, y: u32| {
            let two = g.f(2.0);
            let y2 = g.bin(Op::FMul, f, two, y);
            let e = g.ext(f, GLOp::Exp, &[y2]);
            let d = g.bin(Op::FAdd, f, e, one);
            let q = g.bin(Op::FDiv, f, two, d);
            g.bin(Op::FSub, f, one, q)
        };
        // 1 + e^(−x)
        let denominator = |g: &mut Self| {
            let n = g.asm.op(Op::FNegate, f, &[x]);
            let e = g.ext(f, GLOp::Exp, &[n]);
            g.bin(Op::FAdd, f, one, e)
        };
        match act {
            Activation::Identity => x,
            Activation::Tanh => tanh(self, x),
            Activation::Relu => {
                let zero = self.f(0.0);
                self.ext(f, GLOp::FMax, &[x, zero])
            }
            Activation::Sigmoid => {
                let d = denominator(self);
                self.bin(Op::FDiv, f, one, d)
            }
            Activation::Silu => {
                let d = denominator(self);
                self.bin(Op::FDiv, f, x, d)
            }
            Activation::Gelu => {
                let c = self.f((2.0 / std::f64::consts::PI).sqrt() as f32);
                let k = self.f(0.044715);
                let x3 = self.bin(Op::FMul, f, x, x);
                let x3 = self.bin(Op::FMul, f, x3, x);
                let inner = self.bin(Op::FMul, f, k, x3);
                let inner = self.bin(Op::FAdd, f, x, inner);
                let inner = self.bin(Op::FMul, f, c, inner);
                let t = tanh(self, inner);
                let half = self.f(0.5);
                let hx = self.bin(Op::FMul, f, half, x);
                let s = self.bin(Op::FAdd, f, one, t);
                self.bin(Op::FMul, f, hx, s)
            }
        }
    }

    /// Stores n-tile `nt` of the last layer's accumulators `c` (one per row tile) through the
    /// staging slice into the output columns of the agents from `first`.
    fn store_outputs(&mut self, first: u32, nt: u32, c: &[u32]) {
        let side = self.shape;
        for (m, c) in c.iter().enumerate() {
            let q = self.add_c(self.stage0, m as u32 * side * OUT_QUADS);
            let ptr = self.stage_quad(q);
            self.coop_store(ptr, *c, OUT_QUADS);
        }
        self.barrier();
        let (rows, lane, size) = (self.u(self.rows), self.lane, self.size);
        self.range(lane, rows, size, |g, r| {
            let agent = g.add(first, r);
            let ok = g.less(agent, g.count);
            g.when(ok, |g| {
                let quads = g.u(OUT_QUADS);
                let base = g.mul(r, quads);
                let base = g.add(base, g.stage0);
                for j in 0..side {
                    let col = (nt * side + j) as usize;
                    if col >= g.k.outputs.len() {
                        break;
                    }
                    let q = g.add_c(base, j / 4);
                    let ptr = g.stage_word(q, j % 4);
                    let word = g.shared_load(g.t.u32_, ptr);
                    let v = g.asm.op(Op::Bitcast, g.t.f32_, &[word]);
                    g.store(agent, col, v);
                }
            });
        });
        self.barrier();
    }

    /// Writes `v` to output column `col` of `agent`: `v`, or for `+=` the column plus `v` (with
    /// Kahan's update where the column has a compensation).
    fn store(&mut self, agent: u32, col: usize, v: u32) {
        let f = self.t.f32_;
        let out = self.element(self.k.outputs[col], f, agent);
        let comp = self.k.comps.get(col).copied().flatten().map(|n| self.element(n, f, agent));
        match (self.k.plan.accumulate, comp) {
            (false, None) => self.asm.exec(Op::Store, &[out, v]),
            (false, Some(c)) => {
                let zero = self.f(0.0);
                self.asm.exec(Op::Store, &[out, v]);
                self.asm.exec(Op::Store, &[c, zero]);
            }
            (true, None) => {
                let old = self.asm.op(Op::Load, f, &[out]);
                let sum = self.bin(Op::FAdd, f, old, v);
                self.asm.exec(Op::Store, &[out, sum]);
            }
            (true, Some(c)) => {
                let old = self.asm.op(Op::Load, f, &[out]);
                let kc = self.asm.op(Op::Load, f, &[c]);
                let y = self.bin(Op::FSub, f, v, kc);
                let t = self.bin(Op::FAdd, f, old, y);
                self.asm.exec(Op::Store, &[out, t]);
                let d = self.bin(Op::FSub, f, t, old);
                let d2 = self.bin(Op::FSub, f, d, y);
                self.asm.exec(Op::Store, &[c, d2]);
                // Kahan's update is only as good as the order of its operations.
                for id in [y, t, d, d2] {
                    self.asm.decorate(id, Decoration::NoContraction, &[]);
                }
            }
        }
    }
}
