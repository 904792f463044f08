//! IR → Cranelift IR (CLIF) for the CPU executor.
//!
//! Map kernels loop over agents four at a time in `f32x4` lanes, with a scalar loop for the rest.
//! All-pairs kernels loop over rows `i` and, inside, over columns `j` four at a time: values that
//! depend only on `a` are computed once per row and splatted; the changes to `a` are summed in
//! vector registers and added once per row; the changes to `b` go to contiguous lanes of the
//! thread's change buffers. Neighbour kernels run a list of pairs, one at a time. Kernels that use
//! types or operations without a vector form (f64, integer division, transcendental calls) run
//! in scalar form throughout. The calling convention is `aiic_runtime::cpu::abi`.

use crate::ir::{BinOp, Kernel, Module, Op, Pattern, Scalar, TensorPlan, UnOp, V};
use aiic_runtime::cpu::abi;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    types, AbiParam, Block, ExtFuncData, ExternalName, FuncRef, Function, InstBuilder, MemFlagsData, Signature, Type,
    UserExternalName, UserFuncName, Value,
};
use cranelift_codegen::isa::CallConv;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use std::collections::HashMap;

/// Whether a kernel runs on the CPU executor (spawns and law terms run on the host interpreter).
pub fn is_cpu_kernel(k: &Kernel) -> bool {
    matches!(
        k.pattern,
        Pattern::Map { .. } | Pattern::Integrate { .. } | Pattern::AllPairs { .. } | Pattern::Neighbors { .. }
    ) && k.outputs == 0
}

fn val_ty(s: Scalar) -> Type {
    match s {
        Scalar::F64 => types::F64,
        Scalar::I32 | Scalar::U32 => types::I32,
        Scalar::Bool => types::I8,
        _ => types::F32,
    }
}

fn vec_ty(s: Scalar) -> Type {
    match s {
        Scalar::I32 | Scalar::U32 | Scalar::Bool => types::I32X4,
        _ => types::F32X4,
    }
}

fn col_ty(s: Scalar) -> Type {
    match s {
        Scalar::F64 => types::F64,
        Scalar::I32 | Scalar::U32 | Scalar::Bool => types::I32,
        _ => types::F32,
    }
}

/// A kernel can run four agents at a time when every value is 32 bits wide and every operation
/// has a lane-wise form.
fn vectorizable(k: &Kernel) -> bool {
    k.insts.iter().all(|i| {
        i.ty != Scalar::F64
            && match i.op {
                Op::Un(u, _) => !matches!(u, UnOp::Exp | UnOp::Log | UnOp::Sin | UnOp::Cos | UnOp::Tanh),
                Op::Bin(b, _, _) => !(matches!(b, BinOp::Pow | BinOp::Rem) || b == BinOp::Div && i.ty.is_int()),
                Op::Cast(a) => k.insts[a as usize].ty != Scalar::F64,
                Op::Param(_) | Op::Const(_) | Op::Load { .. } | Op::Select(..) => true,
                Op::Store { .. } | Op::Accum { .. } | Op::Check { .. } => true,
                _ => false,
            }
    })
}

/// 0: uniform; 1: depends on the first agent only; 2: on the second.
fn levels(k: &Kernel) -> Vec<u8> {
    let mut lv = vec![0u8; k.insts.len()];
    for (i, inst) in k.insts.iter().enumerate() {
        lv[i] = match inst.op {
            Op::Load { slot, .. } => slot + 1,
            ref op => op.args().iter().map(|&a| lv[a as usize]).max().unwrap_or(0),
        };
    }
    lv
}

pub(super) struct Em<'a, 'b> {
    m: &'a Module,
    pub(super) k: &'a Kernel,
    pub(super) b: FunctionBuilder<'b>,
    slots: Vec<usize>,
    pub(super) cols: HashMap<(u8, u32), Value>,
    deltas: HashMap<(u8, u32), Value>,
    /// Compensation buffers of compensated integrator updates, by column.
    pub(super) comps: HashMap<u32, Value>,
    pub(super) uniforms: Value,
    /// The kernel's context argument (column tables and the rest of `abi::Ctx`).
    pub(super) ctx: Value,
    /// `abi::Ctx::uniforms_f32`, which tensor loops read their weights from.
    pub(super) uniforms_f32: Value,
    fail: Value,
    libm: HashMap<u32, FuncRef>,
    /// Scalar values of uniform and first-agent instructions.
    s: HashMap<V, Value>,
    /// Vector values (in a vector loop body), including splats of scalar ones.
    v: HashMap<V, Value>,
}

impl<'a, 'b> Em<'a, 'b> {
    /// The same 128 bits as a vector of type `ty` (a comparison mask as floats, float bits as
    /// integers): lane for lane, as Cranelift requires vector bitcasts to state.
    pub(super) fn reinterpret(&mut self, ty: types::Type, x: Value) -> Value {
        self.b.ins().bitcast(ty, MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little), x)
    }

    pub(super) fn col_scalar(&self, slot: u8, col: u32) -> Scalar {
        self.m.column_types[self.slots[slot as usize]][col as usize]
    }

    fn base(&mut self, ctx: Value, field: i32, col: u32) -> Value {
        let table = self.b.ins().load(types::I64, MemFlagsData::new().with_notrap(), ctx, field);
        self.b.ins().load(types::I64, MemFlagsData::new().with_notrap(), table, (col as i32) * 8)
    }

    pub(super) fn addr(&mut self, base: Value, idx: Value, bytes: i64) -> Value {
        let off = self.b.ins().imul_imm_s(idx, bytes);
        self.b.ins().iadd(base, off)
    }

    pub(super) fn libm_call(&mut self, name: &str, wide: bool, args: &[Value]) -> Result<Value, String> {
        let index = abi::libm_index(name, wide).ok_or_else(|| format!("no math function {name}"))?;
        let fr = match self.libm.get(&index) {
            Some(f) => *f,
            None => {
                let t = if wide { types::F64 } else { types::F32 };
                let mut sig = Signature::new(CallConv::SystemV);
                for _ in args {
                    sig.params.push(AbiParam::new(t));
                }
                sig.returns.push(AbiParam::new(t));
                let sigref = self.b.func.import_signature(sig);
                let name = self.b.func.declare_imported_user_function(UserExternalName { namespace: 0, index });
                let f = self.b.func.import_function(ExtFuncData {
                    name: ExternalName::user(name),
                    signature: sigref,
                    colocated: false,
                    patchable: false,
                });
                self.libm.insert(index, f);
                f
            }
        };
        let call = self.b.ins().call(fr, args);
        Ok(self.b.inst_results(call)[0])
    }

    fn bool_to_i32(&mut self, x: Value) -> Value {
        self.b.ins().uextend(types::I32, x)
    }

    /// Emits one value-producing instruction in scalar form. `idx` gives the agent index of each slot.
    fn scalar(&mut self, v: V, idx: &[Value]) -> Result<(), String> {
        let inst = &self.k.insts[v as usize];
        let ty = inst.ty;
        let t = val_ty(ty);
        let get = |me: &Self, a: V| me.s[&a];
        let out = match inst.op {
            Op::Const(c) => match t {
                types::F32 => self.b.ins().f32const(c as f32),
                types::F64 => self.b.ins().f64const(c),
                types::I8 => self.b.ins().iconst(types::I8, i64::from(c != 0.0)),
                _ => self.b.ins().iconst(types::I32, c as i64),
            },
            Op::Param(p) => {
                let x = self.b.ins().load(types::F64, MemFlagsData::new().with_notrap(), self.uniforms, (p as i32) * 8);
                match t {
                    types::F64 => x,
                    types::F32 => self.b.ins().fdemote(types::F32, x),
                    types::I8 => {
                        let z = self.b.ins().f64const(0.0);
                        self.b.ins().fcmp(FloatCC::NotEqual, x, z)
                    }
                    _ => self.b.ins().fcvt_to_sint_sat(types::I32, x),
                }
            }
            Op::Load { slot, col } => {
                let cs = self.col_scalar(slot, col);
                let base = self.cols[&(slot, col)];
                let addr = self.addr(base, idx[slot as usize], abi::column_bytes(cs));
                let x = self.b.ins().load(col_ty(cs), MemFlagsData::new().with_notrap(), addr, 0);
                if ty == Scalar::Bool {
                    self.b.ins().icmp_imm_s(IntCC::NotEqual, x, 0)
                } else {
                    x
                }
            }
            Op::Un(u, a) => {
                let x = get(self, a);
                let float = t.is_float();
                match u {
                    UnOp::Neg if float => self.b.ins().fneg(x),
                    UnOp::Neg => self.b.ins().ineg(x),
                    UnOp::Not => self.b.ins().bxor_imm_s(x, 1),
                    UnOp::Sqrt => self.b.ins().sqrt(x),
                    UnOp::Rsqrt => {
                        let s = self.b.ins().sqrt(x);
                        let one = if t == types::F64 { self.b.ins().f64const(1.0) } else { self.b.ins().f32const(1.0) };
                        self.b.ins().fdiv(one, s)
                    }
                    UnOp::Abs if float => self.b.ins().fabs(x),
                    UnOp::Abs => self.b.ins().iabs(x),
                    UnOp::Floor if float => self.b.ins().floor(x),
                    UnOp::Floor => x,
                    UnOp::Exp => self.libm_call("exp", t == types::F64, &[x])?,
                    UnOp::Log => self.libm_call("log", t == types::F64, &[x])?,
                    UnOp::Sin => self.libm_call("sin", t == types::F64, &[x])?,
                    UnOp::Cos => self.libm_call("cos", t == types::F64, &[x])?,
                    UnOp::Tanh => self.libm_call("tanh", t == types::F64, &[x])?,
                }
            }
            Op::Bin(op, a, c) => {
                let (x, y) = (get(self, a), get(self, c));
                let at = self.b.func.dfg.value_type(x);
                let float = at.is_float();
                match op {
                    BinOp::Add if float => self.b.ins().fadd(x, y),
                    BinOp::Sub if float => self.b.ins().fsub(x, y),
                    BinOp::Mul if float => self.b.ins().fmul(x, y),
                    BinOp::Div if float => self.b.ins().fdiv(x, y),
                    BinOp::Min if float => self.b.ins().fmin(x, y),
                    BinOp::Max if float => self.b.ins().fmax(x, y),
                    BinOp::Pow => self.libm_call("pow", at == types::F64, &[x, y])?,
                    BinOp::Rem if float => self.libm_call("fmod", at == types::F64, &[x, y])?,
                    BinOp::Add => self.b.ins().iadd(x, y),
                    BinOp::Sub => self.b.ins().isub(x, y),
                    BinOp::Mul => self.b.ins().imul(x, y),
                    BinOp::Min => self.b.ins().smin(x, y),
                    BinOp::Max => self.b.ins().smax(x, y),
                    BinOp::Div | BinOp::Rem => {
                        // Integer division by zero gives zero rather than a trap.
                        let zero = self.b.ins().icmp_imm_s(IntCC::Equal, y, 0);
                        let one = self.b.ins().iconst(at, 1);
                        let safe = self.b.ins().select(zero, one, y);
                        let q = if op == BinOp::Div { self.b.ins().sdiv(x, safe) } else { self.b.ins().srem(x, safe) };
                        let z = self.b.ins().iconst(at, 0);
                        self.b.ins().select(zero, z, q)
                    }
                    BinOp::And => self.b.ins().band(x, y),
                    BinOp::Or => self.b.ins().bor(x, y),
                    cmp if float => self.b.ins().fcmp(float_cc(cmp), x, y),
                    cmp => self.b.ins().icmp(int_cc(cmp), x, y),
                }
            }
            Op::Select(c, a, d) => {
                let (c, x, y) = (get(self, c), get(self, a), get(self, d));
                self.b.ins().select(c, x, y)
            }
            Op::Cast(a) => {
                let x = get(self, a);
                let from = self.b.func.dfg.value_type(x);
                self.cast_scalar(x, from, t)
            }
            _ => return Err(format!("instruction %{v} has no CPU form")),
        };
        self.s.insert(v, out);
        Ok(())
    }

    fn cast_scalar(&mut self, x: Value, from: Type, to: Type) -> Value {
        if from == to {
            return x;
        }
        match (from, to) {
            (types::F32, types::F64) => self.b.ins().fpromote(types::F64, x),
            (types::F64, types::F32) => self.b.ins().fdemote(types::F32, x),
            (f, types::I8) if f.is_float() => {
                let z = if f == types::F64 { self.b.ins().f64const(0.0) } else { self.b.ins().f32const(0.0) };
                self.b.ins().fcmp(FloatCC::NotEqual, x, z)
            }
            (_, types::I8) => self.b.ins().icmp_imm_s(IntCC::NotEqual, x, 0),
            (f, types::I32) if f.is_float() => self.b.ins().fcvt_to_sint_sat(types::I32, x),
            (types::I8, types::I32) => self.b.ins().uextend(types::I32, x),
            (types::I8, t) => {
                let w = self.b.ins().uextend(types::I32, x);
                self.b.ins().fcvt_from_sint(t, w)
            }
            (_, t) => self.b.ins().fcvt_from_sint(t, x),
        }
    }

    /// The vector form of a value: its lanes if it varies, else a splat of its scalar form.
    fn vget(&mut self, a: V) -> Value {
        if let Some(x) = self.v.get(&a) {
            return *x;
        }
        let x = self.s[&a];
        let ty = self.k.insts[a as usize].ty;
        let x = if ty == Scalar::Bool {
            // Lane masks are all ones or all zeros.
            let w = self.b.ins().uextend(types::I32, x);
            self.b.ins().ineg(w)
        } else {
            x
        };
        let out = self.b.ins().splat(vec_ty(ty), x);
        self.v.insert(a, out);
        out
    }

    /// Emits one value-producing instruction in `f32x4` form; `idx` is the scalar index of each
    /// slot (the first lane's agent for varying slots).
    fn vector(&mut self, v: V, idx: &[Value], varying: u8) -> Result<(), String> {
        let inst = &self.k.insts[v as usize];
        let ty = inst.ty;
        let vt = vec_ty(ty);
        let out = match inst.op {
            Op::Load { slot, col } if slot == varying => {
                let cs = self.col_scalar(slot, col);
                let base = self.cols[&(slot, col)];
                let addr = self.addr(base, idx[slot as usize], 4);
                let x = self.b.ins().load(
                    if cs.is_float() { types::F32X4 } else { types::I32X4 },
                    MemFlagsData::new().with_notrap(),
                    addr,
                    0,
                );
                if ty == Scalar::Bool {
                    let z = self.b.ins().iconst(types::I32, 0);
                    let zv = self.b.ins().splat(types::I32X4, z);
                    self.b.ins().icmp(IntCC::NotEqual, x, zv)
                } else {
                    x
                }
            }
            Op::Un(u, a) => {
                let x = self.vget(a);
                let float = vt == types::F32X4;
                match u {
                    UnOp::Neg if float => self.b.ins().fneg(x),
                    UnOp::Neg => self.b.ins().ineg(x),
                    UnOp::Not => self.b.ins().bnot(x),
                    UnOp::Sqrt => self.b.ins().sqrt(x),
                    UnOp::Rsqrt => {
                        let s = self.b.ins().sqrt(x);
                        let one = self.b.ins().f32const(1.0);
                        let ones = self.b.ins().splat(types::F32X4, one);
                        self.b.ins().fdiv(ones, s)
                    }
                    UnOp::Abs if float => self.b.ins().fabs(x),
                    UnOp::Abs => self.b.ins().iabs(x),
                    UnOp::Floor if float => self.b.ins().floor(x),
                    UnOp::Floor => x,
                    _ => return Err(format!("%{v} has no vector form")),
                }
            }
            Op::Bin(op, a, c) => {
                let (x, y) = (self.vget(a), self.vget(c));
                let float = self.b.func.dfg.value_type(x) == types::F32X4;
                match op {
                    BinOp::Add if float => self.b.ins().fadd(x, y),
                    BinOp::Sub if float => self.b.ins().fsub(x, y),
                    BinOp::Mul if float => self.b.ins().fmul(x, y),
                    BinOp::Div if float => self.b.ins().fdiv(x, y),
                    BinOp::Min if float => self.b.ins().fmin(x, y),
                    BinOp::Max if float => self.b.ins().fmax(x, y),
                    BinOp::Add => self.b.ins().iadd(x, y),
                    BinOp::Sub => self.b.ins().isub(x, y),
                    BinOp::Mul => self.b.ins().imul(x, y),
                    BinOp::Min => self.b.ins().smin(x, y),
                    BinOp::Max => self.b.ins().smax(x, y),
                    BinOp::And => self.b.ins().band(x, y),
                    BinOp::Or => self.b.ins().bor(x, y),
                    cmp if float => self.b.ins().fcmp(float_cc(cmp), x, y),
                    cmp if matches!(cmp, BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge) => {
                        self.b.ins().icmp(int_cc(cmp), x, y)
                    }
                    _ => return Err(format!("%{v} has no vector form")),
                }
            }
            Op::Select(c, a, d) => {
                let (m, x, y) = (self.vget(c), self.vget(a), self.vget(d));
                let xt = self.b.func.dfg.value_type(x);
                let mask = if xt == types::F32X4 { self.reinterpret(types::F32X4, m) } else { m };
                self.b.ins().bitselect(mask, x, y)
            }
            Op::Cast(a) => {
                let x = self.vget(a);
                let from_ty = self.k.insts[a as usize].ty;
                match (from_ty, ty) {
                    (f, t) if f == t || (f.is_float() && t.is_float()) => x,
                    (Scalar::Bool, t) => {
                        let one = self.b.ins().iconst(types::I32, 1);
                        let ones = self.b.ins().splat(types::I32X4, one);
                        let bits = self.b.ins().band(x, ones);
                        if t.is_float() {
                            self.b.ins().fcvt_from_sint(types::F32X4, bits)
                        } else {
                            bits
                        }
                    }
                    (f, Scalar::Bool) if f.is_float() => {
                        let z = self.b.ins().f32const(0.0);
                        let zv = self.b.ins().splat(types::F32X4, z);
                        self.b.ins().fcmp(FloatCC::NotEqual, x, zv)
                    }
                    (_, Scalar::Bool) => {
                        let z = self.b.ins().iconst(types::I32, 0);
                        let zv = self.b.ins().splat(types::I32X4, z);
                        self.b.ins().icmp(IntCC::NotEqual, x, zv)
                    }
                    (f, _) if f.is_float() => self.b.ins().fcvt_to_sint_sat(types::I32X4, x),
                    _ => self.b.ins().fcvt_from_sint(types::F32X4, x),
                }
            }
            _ => {
                // Uniform and first-agent values are splatted on use.
                return Ok(());
            }
        };
        self.v.insert(v, out);
        Ok(())
    }

    /// A run-time check: on failure, record the message (the first failure wins) and go on.
    fn check(&mut self, ok: Value, msg: u32, vector: bool) {
        let ok = if vector { self.b.ins().vall_true(ok) } else { ok };
        let fail_blk = self.b.create_block();
        let cont = self.b.create_block();
        self.b.ins().brif(ok, cont, &[], fail_blk, &[]);
        self.b.switch_to_block(fail_blk);
        self.b.seal_block(fail_blk);
        let code = self.b.ins().iconst(types::I32, i64::from(msg) + 1);
        self.b.ins().store(MemFlagsData::new().with_notrap(), code, self.fail, 0);
        self.b.ins().jump(cont, &[]);
        self.b.switch_to_block(cont);
        self.b.seal_block(cont);
    }

    fn store_value(&mut self, value: Value, cs: Scalar) -> Value {
        let vt = self.b.func.dfg.value_type(value);
        if vt == types::I8 {
            return self.bool_to_i32(value);
        }
        if vt == types::I32X4 && cs == Scalar::Bool {
            let one = self.b.ins().iconst(types::I32, 1);
            let ones = self.b.ins().splat(types::I32X4, one);
            return self.b.ins().band(value, ones);
        }
        let want = col_ty(cs);
        if vt.is_float() && want.is_float() && vt != want {
            return self.cast_scalar(value, vt, want);
        }
        value
    }
}

fn float_cc(op: BinOp) -> FloatCC {
    match op {
        BinOp::Eq => FloatCC::Equal,
        BinOp::Ne => FloatCC::NotEqual,
        BinOp::Lt => FloatCC::LessThan,
        BinOp::Le => FloatCC::LessThanOrEqual,
        BinOp::Gt => FloatCC::GreaterThan,
        _ => FloatCC::GreaterThanOrEqual,
    }
}

fn int_cc(op: BinOp) -> IntCC {
    match op {
        BinOp::Eq => IntCC::Equal,
        BinOp::Ne => IntCC::NotEqual,
        BinOp::Lt => IntCC::SignedLessThan,
        BinOp::Le => IntCC::SignedLessThanOrEqual,
        BinOp::Gt => IntCC::SignedGreaterThan,
        _ => IntCC::SignedGreaterThanOrEqual,
    }
}

/// Generates the CLIF function of one kernel.
pub fn emit_kernel(m: &Module, k: &Kernel, index: u32) -> Result<Function, String> {
    let nparams = match k.pattern {
        Pattern::Map { .. } | Pattern::Integrate { .. } => 3,
        Pattern::AllPairs { .. } => 5,
        Pattern::Neighbors { .. } => 3,
        _ => return Err(format!("kernel `{}` does not run on the CPU executor", k.name)),
    };
    let mut sig = Signature::new(CallConv::SystemV);
    for _ in 0..nparams {
        sig.params.push(AbiParam::new(types::I64));
    }
    let mut func = Function::with_name_signature(UserFuncName::user(1, index), sig);
    let mut fctx = FunctionBuilderContext::new();
    let b = FunctionBuilder::new(&mut func, &mut fctx);
    let mut em = Em {
        m,
        k,
        b,
        slots: k.pattern.slots(),
        cols: HashMap::new(),
        deltas: HashMap::new(),
        comps: HashMap::new(),
        uniforms: Value::from_u32(0),
        ctx: Value::from_u32(0),
        uniforms_f32: Value::from_u32(0),
        fail: Value::from_u32(0),
        libm: HashMap::new(),
        s: HashMap::new(),
        v: HashMap::new(),
    };
    let entry = em.b.create_block();
    em.b.append_block_params_for_function_params(entry);
    em.b.switch_to_block(entry);
    em.b.seal_block(entry);
    let params: Vec<Value> = em.b.block_params(entry).to_vec();
    let ctx = params[0];
    em.ctx = ctx;
    em.uniforms = em.b.ins().load(types::I64, MemFlagsData::new().with_notrap(), ctx, abi::UNIFORMS);
    em.fail = em.b.ins().load(types::I64, MemFlagsData::new().with_notrap(), ctx, abi::FAIL);
    for inst in &k.insts {
        match inst.op {
            Op::Load { slot, col } | Op::Store { slot, col, .. } if !em.cols.contains_key(&(slot, col)) => {
                let base = em.base(ctx, if slot == 0 { abi::COLS_A } else { abi::COLS_B }, col);
                em.cols.insert((slot, col), base);
            }
            Op::Accum { slot, col, .. } => {
                let base = em.base(ctx, if slot == 0 { abi::DELTA_A } else { abi::DELTA_B }, col);
                em.deltas.insert((slot, col), base);
            }
            _ => {}
        }
    }
    if matches!(k.pattern, Pattern::Map { .. } | Pattern::Integrate { .. }) {
        let agent = em.slots[0];
        for (a, col) in aiic_runtime::cpu::abi::compensated_columns(m) {
            let stored = k.insts.iter().any(|i| matches!(i.op, Op::Store { col: c, .. } if c == col));
            if a == agent && stored {
                let base = em.base(ctx, abi::COMP, col);
                em.comps.insert(col, base);
            }
        }
    }
    let lv = levels(k);
    // Uniform values, once per call; a tensor kernel reads its weights where it uses them.
    let tensor = super::cpu_tensor::plan(&em);
    if tensor.is_none() && k.insts.iter().any(|i| matches!(i.op, Op::Tensor(_))) {
        return Err(format!("kernel `{}`: its tensor plan does not run on the CPU", k.name));
    }
    for (v, &l) in lv.iter().enumerate() {
        if l == 0 && !k.insts[v].op.is_effect() && tensor.is_none() {
            em.scalar(v as V, &[])?;
        }
    }
    match k.pattern {
        Pattern::Map { .. } | Pattern::Integrate { .. } => map_body(&mut em, &lv, tensor, params[1], params[2])?,
        Pattern::AllPairs { a, b: bt } => pairs_body(&mut em, &lv, a == bt, &params[1..5])?,
        _ => list_body(&mut em, params[1], params[2])?,
    }
    em.b.finalize(cranelift_codegen::isa::TargetFrontendConfig {
        default_call_conv: CallConv::SystemV,
        pointer_width: target_lexicon::PointerWidth::U64,
        page_size_align_log2: 12,
    });
    Ok(func)
}

/// `for i in [begin, end)`: four agents at a time, then one at a time.
/// Emits a loop's test in `head` (`var < limit`, else on to `out`) and continues in `body`,
/// returning the loop variable's value there.
pub(super) fn enter_loop(em: &mut Em, head: Block, var: Variable, limit: Value, body: Block, out: Block) -> Value {
    em.b.switch_to_block(head);
    let at = em.b.use_var(var);
    let more = em.b.ins().icmp(IntCC::SignedLessThan, at, limit);
    em.b.ins().brif(more, body, &[], out, &[]);
    em.b.switch_to_block(body);
    em.b.seal_block(body);
    em.b.use_var(var)
}

/// `old + inc` with Kahan's compensation: the part of `inc` lost to rounding is kept in the
/// column's compensation buffer and fed into the next update.
pub(super) fn compensated_add(em: &mut Em, col: u32, idx: Value, old: Value, inc: Value, vector: bool) -> Value {
    let base = em.comps[&col];
    let addr = em.addr(base, idx, 4);
    compensated_add_at(em, addr, old, inc, vector)
}

/// [`compensated_add`] with the compensation's element at `addr`.
pub(super) fn compensated_add_at(em: &mut Em, addr: Value, old: Value, inc: Value, vector: bool) -> Value {
    let t = if vector { types::F32X4 } else { types::F32 };
    let c = em.b.ins().load(t, MemFlagsData::new().with_notrap(), addr, 0);
    let y = em.b.ins().fsub(inc, c);
    let sum = em.b.ins().fadd(old, y);
    let grown = em.b.ins().fsub(sum, old);
    let lost = em.b.ins().fsub(grown, y);
    em.b.ins().store(MemFlagsData::new().with_notrap(), lost, addr, 0);
    sum
}

/// A plain store makes the column's compensation meaningless: it starts again from zero.
pub(super) fn reset_comp(em: &mut Em, col: u32, idx: Value, vector: bool) {
    let Some(&base) = em.comps.get(&col) else { return };
    let addr = em.addr(base, idx, 4);
    reset_comp_at(em, addr, vector);
}

/// [`reset_comp`] with the compensation's element at `addr`.
pub(super) fn reset_comp_at(em: &mut Em, addr: Value, vector: bool) {
    let zero = em.b.ins().f32const(0.0);
    let zero = if vector { em.b.ins().splat(types::F32X4, zero) } else { zero };
    em.b.ins().store(MemFlagsData::new().with_notrap(), zero, addr, 0);
}

/// The loop of a map or integrate kernel; `tensor`, its plan where the matrix work runs as loops
/// over the layers, sixteen agents at a time (`cpu_tensor`), whatever it calls.
fn map_body(em: &mut Em, lv: &[u8], tensor: Option<TensorPlan>, begin: Value, end: Value) -> Result<(), String> {
    let vec = tensor.is_some() || vectorizable(em.k);
    if tensor.is_some() {
        em.uniforms_f32 = em.b.ins().load(types::I64, MemFlagsData::new().with_notrap(), em.ctx, abi::UNIFORMS_F32);
    }
    let comp = aiic_runtime::cpu::abi::compensated_stores(em.m, em.k);
    let i = em.b.declare_var(types::I64);
    em.b.def_var(i, begin);
    let span = em.b.ins().isub(end, begin);
    let step = if tensor.is_some() { super::cpu_tensor::AGENTS } else { abi::LANES };
    // Tensor steps run to the end of the range rounded up: the columns are padded for it
    // (`abi::TENSOR_AGENTS`), so no scalar remainder is needed.
    let span = if tensor.is_some() { em.b.ins().iadd_imm_s(span, step - 1) } else { span };
    let whole = if vec { em.b.ins().band_imm_s(span, !(step - 1)) } else { em.b.ins().iconst(types::I64, 0) };
    let vend = em.b.ins().iadd(begin, whole);
    let (vhead, vbody, shead, sbody, exit) =
        (em.b.create_block(), em.b.create_block(), em.b.create_block(), em.b.create_block(), em.b.create_block());
    em.b.ins().jump(vhead, &[]);

    let iv = enter_loop(em, vhead, i, vend, vbody, shead);
    if let Some(t) = &tensor {
        super::cpu_tensor::block(em, t, iv)?;
        let next = em.b.ins().iadd_imm_s(iv, super::cpu_tensor::AGENTS);
        em.b.def_var(i, next);
    } else if vec {
        em.v.clear();
        for (v, inst) in em.k.insts.iter().enumerate() {
            if lv[v] == 0 {
                continue;
            }
            match inst.op {
                Op::Store { col, value, .. } => {
                    let cs = em.col_scalar(0, col);
                    let x = match comp.iter().find(|c| c.0 == col) {
                        Some(&(_, old, inc)) => {
                            let (o, d) = (em.vget(old), em.vget(inc));
                            compensated_add(em, col, iv, o, d, true)
                        }
                        None => {
                            reset_comp(em, col, iv, true);
                            em.vget(value)
                        }
                    };
                    let x = em.store_value(x, cs);
                    let base = em.cols[&(0, col)];
                    let addr = em.addr(base, iv, 4);
                    em.b.ins().store(MemFlagsData::new().with_notrap(), x, addr, 0);
                }
                Op::Check { cond, msg } => {
                    let c = em.vget(cond);
                    em.check(c, msg, true);
                }
                _ => em.vector(v as V, &[iv], 0)?,
            }
        }
        let next = em.b.ins().iadd_imm_s(iv, abi::LANES);
        em.b.def_var(i, next);
    }
    em.b.ins().jump(vhead, &[]);
    em.b.seal_block(vhead);

    if tensor.is_some() {
        em.b.switch_to_block(shead);
        em.b.seal_block(shead);
        em.b.ins().jump(exit, &[]);
        em.b.switch_to_block(exit);
        em.b.seal_block(exit);
        em.b.ins().return_(&[]);
        return Ok(());
    }
    let iv = enter_loop(em, shead, i, end, sbody, exit);
    let uniform: HashMap<V, Value> = em.s.clone();
    for (v, inst) in em.k.insts.iter().enumerate() {
        if lv[v] == 0 && !inst.op.is_effect() {
            continue;
        }
        match inst.op {
            Op::Store { col, value, .. } => {
                let cs = em.col_scalar(0, col);
                let x = match comp.iter().find(|c| c.0 == col) {
                    Some(&(_, old, inc)) => {
                        let (o, d) = (em.s[&old], em.s[&inc]);
                        compensated_add(em, col, iv, o, d, false)
                    }
                    None => {
                        reset_comp(em, col, iv, false);
                        em.s[&value]
                    }
                };
                let x = em.store_value(x, cs);
                let base = em.cols[&(0, col)];
                let addr = em.addr(base, iv, abi::column_bytes(cs));
                em.b.ins().store(MemFlagsData::new().with_notrap(), x, addr, 0);
            }
            Op::Check { cond, msg } => {
                let c = em.s[&cond];
                em.check(c, msg, false);
            }
            _ => em.scalar(v as V, &[iv])?,
        }
    }
    em.s = uniform;
    let next = em.b.ins().iadd_imm_s(iv, 1);
    em.b.def_var(i, next);
    em.b.ins().jump(shead, &[]);
    em.b.seal_block(shead);
    em.b.switch_to_block(exit);
    em.b.seal_block(exit);
    em.b.ins().return_(&[]);
    Ok(())
}

/// Adds `x` to the change buffer of `(slot, col)` at `idx` (`lanes` consecutive elements).
fn add_delta(em: &mut Em, slot: u8, col: u32, idx: Value, x: Value, vector: bool) {
    let cs = em.col_scalar(slot, col);
    let base = em.deltas[&(slot, col)];
    let addr = em.addr(base, idx, abi::column_bytes(cs));
    let t = if vector { em.b.func.dfg.value_type(x) } else { col_ty(cs) };
    let old = em.b.ins().load(t, MemFlagsData::new().with_notrap(), addr, 0);
    let x = if !vector { em.store_value(x, cs) } else { x };
    let sum = if t.is_float() || t == types::F32X4 { em.b.ins().fadd(old, x) } else { em.b.ins().iadd(old, x) };
    em.b.ins().store(MemFlagsData::new().with_notrap(), sum, addr, 0);
}

/// A pair's change, or zero where the guard excludes the pair.
fn guarded(em: &mut Em, x: Value, guard: Option<Value>, vector: bool) -> Value {
    let Some(g) = guard else { return x };
    let t = em.b.func.dfg.value_type(x);
    if vector {
        let zero = if t == types::F32X4 {
            let z = em.b.ins().f32const(0.0);
            em.b.ins().splat(types::F32X4, z)
        } else {
            let z = em.b.ins().iconst(types::I32, 0);
            em.b.ins().splat(types::I32X4, z)
        };
        let mask = if t == types::F32X4 { em.reinterpret(types::F32X4, g) } else { g };
        em.b.ins().bitselect(mask, x, zero)
    } else {
        let zero = match t {
            types::F32 => em.b.ins().f32const(0.0),
            types::F64 => em.b.ins().f64const(0.0),
            t => em.b.ins().iconst(t, 0),
        };
        em.b.ins().select(g, x, zero)
    }
}

/// Rows `i` of a tile; inside, columns `j` four at a time, then one at a time.
fn pairs_body(em: &mut Em, lv: &[u8], same: bool, p: &[Value]) -> Result<(), String> {
    let (ib, ie, jb, je) = (p[0], p[1], p[2], p[3]);
    let vec = vectorizable(em.k);
    let accums: Vec<(u32, V)> =
        em.k.insts
            .iter()
            .filter_map(|i| match i.op {
                Op::Accum { slot: 0, col, value } => Some((col, value)),
                _ => None,
            })
            .collect();
    let i = em.b.declare_var(types::I64);
    let j = em.b.declare_var(types::I64);
    // Per row: the changes to `a` summed in a vector and a scalar accumulator per column.
    let mut acc_v = Vec::new();
    let mut acc_s = Vec::new();
    for (col, _) in accums.iter() {
        let cs = em.col_scalar(0, *col);
        let av = em.b.declare_var(if cs.is_float() { types::F32X4 } else { types::I32X4 });
        let asv = em.b.declare_var(col_ty(cs));
        acc_v.push(av);
        acc_s.push(asv);
    }
    em.b.def_var(i, ib);
    let (ihead, ibody, jvhead, jvbody, jshead, jsbody, idone, exit) = (
        em.b.create_block(),
        em.b.create_block(),
        em.b.create_block(),
        em.b.create_block(),
        em.b.create_block(),
        em.b.create_block(),
        em.b.create_block(),
        em.b.create_block(),
    );
    em.b.ins().jump(ihead, &[]);
    let iv = enter_loop(em, ihead, i, ie, ibody, exit);
    let uniform: HashMap<V, Value> = em.s.clone();
    for (v, inst) in em.k.insts.iter().enumerate() {
        if lv[v] == 1 && !inst.op.is_effect() {
            em.scalar(v as V, &[iv])?;
        }
    }
    let row: HashMap<V, Value> = em.s.clone();
    for (n, (col, _)) in accums.iter().enumerate() {
        let cs = em.col_scalar(0, *col);
        let (zv, zs) = if cs.is_float() {
            let z = em.b.ins().f32const(0.0);
            (em.b.ins().splat(types::F32X4, z), if cs == Scalar::F64 { em.b.ins().f64const(0.0) } else { z })
        } else {
            let z = em.b.ins().iconst(types::I32, 0);
            (em.b.ins().splat(types::I32X4, z), z)
        };
        em.b.def_var(acc_v[n], zv);
        em.b.def_var(acc_s[n], zs);
    }
    let start = if same {
        let next = em.b.ins().iadd_imm_s(iv, 1);
        em.b.ins().smax(next, jb)
    } else {
        jb
    };
    let start = em.b.ins().smin(start, je);
    em.b.def_var(j, start);
    let span = em.b.ins().isub(je, start);
    let whole = if vec { em.b.ins().band_imm_s(span, !(abi::LANES - 1)) } else { em.b.ins().iconst(types::I64, 0) };
    let vend = em.b.ins().iadd(start, whole);
    // Splats of the row's values, hoisted out of the column loop.
    em.v.clear();
    if vec {
        let needed: Vec<V> =
            em.k.insts
                .iter()
                .enumerate()
                .filter(|(v, _)| lv[*v] == 2)
                .flat_map(|(_, i)| i.op.args())
                .filter(|a| lv[*a as usize] < 2)
                .collect();
        for a in needed {
            em.vget(a);
        }
    }
    em.b.ins().jump(jvhead, &[]);

    let jv = enter_loop(em, jvhead, j, vend, jvbody, jshead);
    if vec {
        let hoisted = em.v.clone();
        for (v, inst) in em.k.insts.iter().enumerate() {
            if lv[v] == 2 && !inst.op.is_effect() {
                em.vector(v as V, &[iv, jv], 1)?;
            }
        }
        let guard = em.k.guard.map(|g| em.vget(g));
        for inst in &em.k.insts {
            match inst.op {
                Op::Check { cond, msg } => {
                    let c = em.vget(cond);
                    em.check(c, msg, true);
                }
                Op::Accum { slot: 1, col, value } => {
                    let x = em.vget(value);
                    let x = guarded(em, x, guard, true);
                    add_delta(em, 1, col, jv, x, true);
                }
                _ => {}
            }
        }
        for (n, (_, value)) in accums.iter().enumerate() {
            let x = em.vget(*value);
            let x = guarded(em, x, guard, true);
            let old = em.b.use_var(acc_v[n]);
            let t = em.b.func.dfg.value_type(x);
            let sum = if t == types::F32X4 { em.b.ins().fadd(old, x) } else { em.b.ins().iadd(old, x) };
            em.b.def_var(acc_v[n], sum);
        }
        em.v = hoisted;
        let next = em.b.ins().iadd_imm_s(jv, abi::LANES);
        em.b.def_var(j, next);
    }
    em.b.ins().jump(jvhead, &[]);
    em.b.seal_block(jvhead);

    let jv = enter_loop(em, jshead, j, je, jsbody, idone);
    for (v, inst) in em.k.insts.iter().enumerate() {
        if lv[v] == 2 && !inst.op.is_effect() {
            em.scalar(v as V, &[iv, jv])?;
        }
    }
    let guard = em.k.guard.map(|g| em.s[&g]);
    for inst in &em.k.insts {
        match inst.op {
            Op::Check { cond, msg } => {
                let c = em.s[&cond];
                em.check(c, msg, false);
            }
            Op::Accum { slot: 1, col, value } => {
                let x = em.s[&value];
                let x = guarded(em, x, guard, false);
                add_delta(em, 1, col, jv, x, false);
            }
            _ => {}
        }
    }
    for (n, (col, value)) in accums.iter().enumerate() {
        let cs = em.col_scalar(0, *col);
        let x = em.s[value];
        let x = guarded(em, x, guard, false);
        let x = em.store_value(x, cs);
        let old = em.b.use_var(acc_s[n]);
        let sum = if col_ty(cs).is_float() { em.b.ins().fadd(old, x) } else { em.b.ins().iadd(old, x) };
        em.b.def_var(acc_s[n], sum);
    }
    em.s = row.clone();
    let next = em.b.ins().iadd_imm_s(jv, 1);
    em.b.def_var(j, next);
    em.b.ins().jump(jshead, &[]);
    em.b.seal_block(jshead);

    em.b.switch_to_block(idone);
    em.b.seal_block(idone);
    for (n, (col, _)) in accums.iter().enumerate() {
        let cs = em.col_scalar(0, *col);
        let v4 = em.b.use_var(acc_v[n]);
        let mut total = em.b.use_var(acc_s[n]);
        if vec {
            for lane in 0..abi::LANES as u8 {
                let x = em.b.ins().extractlane(v4, lane);
                let x = if cs == Scalar::F64 { em.b.ins().fpromote(types::F64, x) } else { x };
                total = if col_ty(cs).is_float() { em.b.ins().fadd(total, x) } else { em.b.ins().iadd(total, x) };
            }
        }
        add_delta(em, 0, *col, iv, total, false);
    }
    em.s = uniform;
    let next = em.b.ins().iadd_imm_s(iv, 1);
    em.b.def_var(i, next);
    em.b.ins().jump(ihead, &[]);
    em.b.seal_block(ihead);
    em.b.switch_to_block(exit);
    em.b.seal_block(exit);
    em.b.ins().return_(&[]);
    Ok(())
}

/// A list of `(i, j)` pairs found by the neighbour search.
fn list_body(em: &mut Em, pairs: Value, count: Value) -> Result<(), String> {
    let n = em.b.declare_var(types::I64);
    let zero = em.b.ins().iconst(types::I64, 0);
    em.b.def_var(n, zero);
    let (head, body, exit) = (em.b.create_block(), em.b.create_block(), em.b.create_block());
    em.b.ins().jump(head, &[]);
    let nv = enter_loop(em, head, n, count, body, exit);
    let at = em.b.ins().imul_imm_s(nv, 8);
    let at = em.b.ins().iadd(pairs, at);
    let i32v = em.b.ins().load(types::I32, MemFlagsData::new().with_notrap(), at, 0);
    let j32v = em.b.ins().load(types::I32, MemFlagsData::new().with_notrap(), at, 4);
    let iv = em.b.ins().uextend(types::I64, i32v);
    let jv = em.b.ins().uextend(types::I64, j32v);
    let uniform: HashMap<V, Value> = em.s.clone();
    let lv = levels(em.k);
    for (v, inst) in em.k.insts.iter().enumerate() {
        if lv[v] > 0 && !inst.op.is_effect() {
            em.scalar(v as V, &[iv, jv])?;
        }
    }
    let guard = em.k.guard.map(|g| em.s[&g]);
    for inst in &em.k.insts {
        match inst.op {
            Op::Check { cond, msg } => {
                let c = em.s[&cond];
                em.check(c, msg, false);
            }
            Op::Accum { slot, col, value } => {
                let x = em.s[&value];
                let x = guarded(em, x, guard, false);
                add_delta(em, slot, col, if slot == 0 { iv } else { jv }, x, false);
            }
            _ => {}
        }
    }
    em.s = uniform;
    let next = em.b.ins().iadd_imm_s(nv, 1);
    em.b.def_var(n, next);
    em.b.ins().jump(head, &[]);
    em.b.seal_block(head);
    em.b.switch_to_block(exit);
    em.b.seal_block(exit);
    em.b.ins().return_(&[]);
    Ok(())
}

/// The CLIF text of every CPU kernel of a module, in kernel order (`None` for host kernels).
pub fn emit_module(m: &Module) -> Result<Vec<Option<String>>, String> {
    m.kernels
        .iter()
        .enumerate()
        .map(|(i, k)| {
            if !is_cpu_kernel(k) {
                return Ok(None);
            }
            let f = emit_kernel(m, k, i as u32).map_err(|e| format!("kernel `{}`: {e}", k.name))?;
            let flags = cranelift_codegen::settings::Flags::new(cranelift_codegen::settings::builder());
            cranelift_codegen::verify_function(&f, &flags)
                .map_err(|e| format!("kernel `{}`: Cranelift verifier: {e}", k.name))?;
            Ok(Some(format!("; kernel {}\n{}", k.name, f.display())))
        })
        .collect()
}
