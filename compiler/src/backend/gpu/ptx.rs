//! PTX for CUDA, written by aiic itself: the device kernels' structured programs lowered to
//! registers, predicated branches and loads, one `.entry` per device kernel in one module.
//!
//! Every `let` gets a fresh register; a `var` keeps one register and is updated with `mov`.
//! Loops and branches become labels and predicated branches; `if` and `while` conditions are
//! uniform across a block wherever a barrier is inside, as the generator arranges. Lanes of a
//! `vec4` workgroup tile read at one index are fetched with one `ld.shared.v4`.

use super::ast::{Bo, Kernel, Types, E, S};
use super::kernels::{generate, GpuCode, MatrixUnits, Options};
use aiic_runtime::ir::{Module, Scalar, UnOp};
use std::collections::HashMap;
use std::fmt::Write;

/// The PTX ISA version and the oldest target the text is written for; the runtime may raise the
/// target to the device's own.
pub const PTX_VERSION: &str = "7.0";
pub const PTX_TARGET: u32 = 80;
/// Threads per block the kernels are written for, unless asked otherwise.
pub const DEFAULT_BLOCK: u32 = 256;

/// A module's step as one PTX module.
pub struct PtxCode {
    pub code: GpuCode,
    pub text: String,
    /// Threads per block the text is written for.
    pub block: u32,
}

/// The entry point name of device kernel `n`.
pub fn entry_name(n: usize) -> String {
    format!("aiic_k{n}")
}

pub fn emit_module(m: &Module, block: u32) -> Result<PtxCode, String> {
    emit_module_with(m, block, Options::default())
}

pub fn emit_module_with(m: &Module, block: u32, opts: Options) -> Result<PtxCode, String> {
    // Tensor-core kernels are written per warp: whole warps only.
    let matrix = if block.is_multiple_of(32) { MatrixUnits::MmaSync } else { MatrixUnits::None };
    let code = generate(m, Options { matrix, ..opts })?;
    let mut text = format!(
        "// aiic: {} ({} device kernels, {block} threads per block)\n.version {PTX_VERSION}\n.target sm_{PTX_TARGET}\n.address_size 64\n",
        m.name,
        code.kernels.len()
    );
    for (n, k) in code.kernels.iter().enumerate() {
        text += "\n";
        text += &lower_kernel(k, &entry_name(n), block)?;
    }
    Ok(PtxCode { code, text, block })
}

/// A register class: its PTX type and name prefix.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Class {
    F32,
    F64,
    B32,
    Pred,
    B64,
}

impl Class {
    fn of(s: Scalar) -> Class {
        match s {
            Scalar::F64 => Class::F64,
            Scalar::Bool => Class::Pred,
            Scalar::I32 | Scalar::U32 => Class::B32,
            _ => Class::F32,
        }
    }
    fn prefix(self) -> &'static str {
        match self {
            Class::F32 => "%f",
            Class::F64 => "%fd",
            Class::B32 => "%r",
            Class::Pred => "%p",
            Class::B64 => "%rd",
        }
    }
    fn decl(self) -> &'static str {
        match self {
            Class::F32 => ".f32",
            Class::F64 => ".f64",
            Class::B32 => ".b32",
            Class::Pred => ".pred",
            Class::B64 => ".b64",
        }
    }
}

/// The PTX type suffix of a scalar for arithmetic.
fn ty(s: Scalar) -> &'static str {
    match s {
        Scalar::F64 => "f64",
        Scalar::I32 => "s32",
        Scalar::U32 => "u32",
        Scalar::Bool => "pred",
        _ => "f32",
    }
}

/// Bytes of one element of a scalar type in memory (booleans are words).
fn size(s: Scalar) -> u32 {
    if s == Scalar::F64 {
        8
    } else {
        4
    }
}

struct Lower<'a> {
    k: &'a Kernel,
    types: Types<'a>,
    body: String,
    counts: HashMap<Class, u32>,
    labels: u32,
    /// Name → register, innermost scope last.
    scopes: Vec<Vec<(String, String)>>,
    /// Registers of `var`s, which change: a `let` of one copies it.
    mutable: Vec<String>,
    /// Global base address of each buffer.
    bases: HashMap<String, String>,
    /// Lanes of a `vec4` tile element already loaded: (tile, index register) → four registers.
    lanes: HashMap<(String, String), [String; 4]>,
    block: u32,
    exact: bool,
}

pub fn lower_kernel(k: &Kernel, entry: &str, block: u32) -> Result<String, String> {
    if let Some(g) = &k.gemm {
        return Ok(super::gemm::lower(g, entry));
    }
    if let Some(mma) = &k.mma {
        return Ok(super::mma::lower(mma, &k.name, entry, k.bindings.len(), block));
    }
    let mut l = Lower {
        k,
        types: Types::new(k),
        body: String::new(),
        counts: HashMap::new(),
        labels: 0,
        scopes: vec![Vec::new()],
        mutable: Vec::new(),
        bases: HashMap::new(),
        lanes: HashMap::new(),
        block,
        exact: k.exact,
    };
    let mut params = Vec::new();
    for (n, b) in k.bindings.iter().enumerate() {
        params.push(format!("    .param .u64 {entry}_p{n}"));
        let r = l.reg(Class::B64);
        l.emit(&format!("ld.param.u64 {r}, [{entry}_p{n}];"));
        l.emit(&format!("cvta.to.global.u64 {r}, {r};"));
        l.bases.insert(b.name.clone(), r);
    }
    // Thread indices: blocks may be laid out in two dimensions when there are many.
    let (lid, grp, gid, t) = (l.reg(Class::B32), l.reg(Class::B32), l.reg(Class::B32), l.reg(Class::B32));
    l.emit(&format!("mov.u32 {lid}, %tid.x;"));
    l.emit(&format!("mov.u32 {grp}, %ctaid.y;"));
    l.emit(&format!("mov.u32 {t}, %nctaid.x;"));
    l.emit(&format!("mov.u32 {gid}, %ctaid.x;"));
    l.emit(&format!("mad.lo.u32 {grp}, {grp}, {t}, {gid};"));
    l.emit(&format!("mad.lo.u32 {gid}, {grp}, {block}, {lid};"));
    l.bind("#lid", lid);
    l.bind("#grp", grp);
    l.bind("#gid", gid);
    for s in &k.body {
        l.stmt(s)?;
    }
    l.emit("ret;");

    // `.maxntid` lets the JIT spend registers only as far as a block of `block` threads fits.
    let mut out =
        format!("// {}\n.visible .entry {entry}(\n{}\n)\n.maxntid {block}, 1, 1\n{{\n", k.name, params.join(",\n"));
    let mut classes: Vec<(&Class, &u32)> = l.counts.iter().collect();
    classes.sort_by_key(|(c, _)| c.prefix());
    for (c, n) in classes {
        let _ = writeln!(out, "    .reg {} {}<{}>;", c.decl(), c.prefix(), n);
    }
    for s in &k.shared {
        let _ = writeln!(out, "    .shared .align 16 .b8 {}[{}];", s.name, s.bytes() * block);
    }
    for s in &k.body {
        declare_arrays(s, &mut out);
    }
    out += &l.body;
    out += "}\n";
    Ok(out)
}

fn declare_arrays(s: &S, out: &mut String) {
    match s {
        S::Array(n, _, len) => {
            let _ = writeln!(out, "    .local .align 4 .b8 {n}[{}];", 4 * len);
        }
        S::If(_, a, b) => a.iter().chain(b).for_each(|s| declare_arrays(s, out)),
        S::While(_, a) | S::Block(a) => a.iter().for_each(|s| declare_arrays(s, out)),
        _ => {}
    }
}

impl Lower<'_> {
    fn emit(&mut self, line: &str) {
        self.body += "    ";
        self.body += line;
        self.body += "\n";
    }

    fn reg(&mut self, c: Class) -> String {
        let n = self.counts.entry(c).or_insert(0);
        *n += 1;
        format!("{}{}", c.prefix(), *n - 1)
    }

    fn label(&mut self, what: &str) -> String {
        self.labels += 1;
        format!("${what}{}", self.labels)
    }

    fn bind(&mut self, name: &str, reg: String) {
        if let Some(s) = self.scopes.last_mut() {
            s.push((name.to_string(), reg));
        }
    }

    fn lookup(&self, name: &str) -> Result<String, String> {
        self.scopes
            .iter()
            .rev()
            .flat_map(|s| s.iter().rev())
            .find(|(n, _)| n == name)
            .map(|(_, r)| r.clone())
            .ok_or_else(|| format!("kernel `{}`: `{name}` used before it is declared", self.k.name))
    }

    fn push(&mut self) {
        self.scopes.push(Vec::new());
        self.types.push();
    }

    fn pop(&mut self) {
        self.scopes.pop();
        self.types.pop();
        self.lanes.clear();
    }

    /// The float operation suffix: `.rn` keeps ptxas from fusing or reordering in exact kernels.
    fn rn(&self) -> &'static str {
        if self.exact {
            ".rn"
        } else {
            ""
        }
    }

    fn stmt(&mut self, s: &S) -> Result<(), String> {
        match s {
            S::Let(n, t, x) => {
                let r = self.expr(x)?;
                let r = if self.mutable.contains(&r) { self.copy(&r, *t) } else { r };
                self.types.declare(n, *t);
                self.bind(n, r);
            }
            S::Var(n, t, x) => {
                let v = self.expr(x)?;
                let r = self.copy(&v, *t);
                self.mutable.push(r.clone());
                self.types.declare(n, *t);
                self.bind(n, r);
            }
            S::Set(n, x) => {
                let v = self.expr(x)?;
                let r = self.lookup(n)?;
                let t = self.types.var(n);
                self.emit(&format!("mov.{} {r}, {v};", mov_ty(t)));
                self.lanes.clear();
            }
            S::Store(b, i, x) => {
                let t = self.types.of(x);
                let v = self.expr(x)?;
                let a = self.global_addr(b, i)?;
                let v = if t == Scalar::Bool { self.pred_to_word(&v) } else { v };
                self.emit(&format!("st.global.{} [{a}], {v};", mem_ty(t)));
            }
            S::AtomicStore(b, i, x) => {
                let v = self.expr(x)?;
                let a = self.global_addr(b, i)?;
                self.emit(&format!("st.volatile.global.u32 [{a}], {v};"));
            }
            S::ShStore(n, i, x) => {
                let a = self.shared_addr(n, i)?;
                match x {
                    E::Vec4(parts) => {
                        let mut regs = Vec::new();
                        for p in parts {
                            regs.push(self.expr(p)?);
                        }
                        self.emit(&format!("st.shared.v4.f32 [{a}], {{{}}};", regs.join(", ")));
                    }
                    _ => {
                        let t = self.types.of(x);
                        let v = self.expr(x)?;
                        self.emit(&format!("st.shared.{} [{a}], {v};", mem_ty(t)));
                    }
                }
                self.lanes.clear();
            }
            S::Array(n, _, _) => {
                let r = self.reg(Class::B64);
                self.emit(&format!("mov.u64 {r}, {n};"));
                self.bases.insert(format!("#local {n}"), r);
            }
            S::ArrStore(n, i, x) => {
                let t = self.types.of(x);
                let v = self.expr(x)?;
                let a = self.local_addr(n, i)?;
                self.emit(&format!("st.local.{} [{a}], {v};", mem_ty(t)));
            }
            S::If(c, t, f) => {
                let p = self.expr(c)?;
                let (els, end) = (self.label("else"), self.label("endif"));
                self.emit(&format!("@!{p} bra {els};"));
                self.block(t)?;
                self.emit(&format!("bra {end};"));
                self.body += &format!("{els}:\n");
                self.block(f)?;
                self.body += &format!("{end}:\n");
                self.lanes.clear();
            }
            S::While(c, b) => {
                let (top, end) = (self.label("loop"), self.label("endloop"));
                self.lanes.clear();
                self.body += &format!("{top}:\n");
                let p = self.expr(c)?;
                self.emit(&format!("@!{p} bra {end};"));
                self.block(b)?;
                self.emit(&format!("bra {top};"));
                self.body += &format!("{end}:\n");
                self.lanes.clear();
            }
            S::Block(b) => self.block(b)?,
            S::Barrier => {
                self.emit("bar.sync 0;");
                self.lanes.clear();
            }
        }
        Ok(())
    }

    fn block(&mut self, list: &[S]) -> Result<(), String> {
        self.push();
        for s in list {
            self.stmt(s)?;
        }
        self.pop();
        Ok(())
    }

    fn copy(&mut self, v: &str, t: Scalar) -> String {
        let r = self.reg(Class::of(t));
        self.emit(&format!("mov.{} {r}, {v};", mov_ty(t)));
        r
    }

    fn pred_to_word(&mut self, p: &str) -> String {
        let r = self.reg(Class::B32);
        self.emit(&format!("selp.u32 {r}, 1, 0, {p};"));
        r
    }

    fn index_times(&mut self, i: &E, bytes: u32) -> Result<String, String> {
        let iv = self.expr(i)?;
        let r = self.reg(Class::B64);
        self.emit(&format!("mul.wide.u32 {r}, {iv}, {bytes};"));
        Ok(r)
    }

    fn global_addr(&mut self, b: &str, i: &E) -> Result<String, String> {
        let elem = self.k.bindings.iter().find(|x| x.name == b).map_or(Scalar::U32, |x| x.elem);
        let off = self.index_times(i, size(elem))?;
        let base = self.bases.get(b).cloned().ok_or_else(|| format!("no buffer `{b}`"))?;
        self.emit(&format!("add.s64 {off}, {base}, {off};"));
        Ok(off)
    }

    fn local_addr(&mut self, n: &str, i: &E) -> Result<String, String> {
        let off = self.index_times(i, 4)?;
        let base = self.bases.get(&format!("#local {n}")).cloned().ok_or_else(|| format!("no array `{n}`"))?;
        self.emit(&format!("add.s64 {off}, {base}, {off};"));
        Ok(off)
    }

    fn shared_addr(&mut self, n: &str, i: &E) -> Result<String, String> {
        let iv = self.expr(i)?;
        Ok(self.shared_at(n, &iv))
    }

    /// The shared-memory address of element `iv` (a register) of workgroup array `n`.
    fn shared_at(&mut self, n: &str, iv: &str) -> String {
        let bytes = self.k.shared.iter().find(|s| s.name == n).map_or(4, |s| s.bytes());
        let r = self.reg(Class::B32);
        self.emit(&format!("mov.u32 {r}, {n};"));
        self.emit(&format!("mad.lo.u32 {r}, {iv}, {bytes}, {r};"));
        r
    }

    fn literal(&mut self, x: &E) -> Option<(String, Scalar)> {
        Some(match x {
            E::F(v, Scalar::F64) => (format!("0d{:016X}", v.to_bits()), Scalar::F64),
            E::F(v, _) => (format!("0f{:08X}", (*v as f32).to_bits()), Scalar::F32),
            E::I(v) => ((*v as i32).to_string(), Scalar::I32),
            E::U(v) => ((*v as u32).to_string(), Scalar::U32),
            E::Wg => (self.block.to_string(), Scalar::U32),
            _ => return None,
        })
    }

    /// Evaluates an expression into a register (or a predicate), returning its name.
    fn expr(&mut self, x: &E) -> Result<String, String> {
        if let Some((lit, t)) = self.literal(x) {
            let r = self.reg(Class::of(t));
            self.emit(&format!("mov.{} {r}, {lit};", mov_ty(t)));
            return Ok(r);
        }
        let t = self.types.of(x);
        Ok(match x {
            E::B(b) => {
                let (w, r) = (self.reg(Class::B32), self.reg(Class::Pred));
                self.emit(&format!("mov.u32 {w}, {};", u32::from(*b)));
                self.emit(&format!("setp.ne.u32 {r}, {w}, 0;"));
                r
            }
            E::Gid => self.lookup("#gid")?,
            E::Lid => self.lookup("#lid")?,
            E::Grp => self.lookup("#grp")?,
            E::Var(n) => self.lookup(n)?,
            E::Un(op, s, a) => {
                let a = self.expr(a)?;
                self.unary(*op, *s, &a)
            }
            E::Bin(op, a, b) => {
                let at = self.types.of(a);
                let (a, b) = (self.expr(a)?, self.expr(b)?);
                self.binary(*op, at, &a, &b)?
            }
            E::Sel(c, a, b) => {
                let (c, a, b) = (self.expr(c)?, self.expr(a)?, self.expr(b)?);
                let r = self.reg(Class::of(t));
                if t == Scalar::Bool {
                    let (x, y) = (self.reg(Class::Pred), self.reg(Class::Pred));
                    self.emit(&format!("and.pred {x}, {c}, {a};"));
                    self.emit(&format!("not.pred {y}, {c};"));
                    self.emit(&format!("and.pred {y}, {y}, {b};"));
                    self.emit(&format!("or.pred {r}, {x}, {y};"));
                } else {
                    self.emit(&format!("selp.{} {r}, {a}, {b}, {c};", mem_ty(t)));
                }
                r
            }
            E::Cast(to, a) => {
                let from = self.types.of(a);
                let a = self.expr(a)?;
                self.convert(from, *to, &a)
            }
            E::Ld(b, i) => {
                let ro = self.k.bindings.iter().find(|x| x.name == *b).is_some_and(|x| x.read_only);
                let addr = self.global_addr(b, i)?;
                let r = self.reg(Class::of(t));
                let nc = if ro { ".nc" } else { "" };
                self.emit(&format!("ld.global{nc}.{} {r}, [{addr}];", mem_ty(t)));
                r
            }
            E::Sh(n, i, lane) => {
                let iv = self.expr(i)?;
                match lane {
                    Some(l) => {
                        let key = (n.clone(), iv.clone());
                        if let Some(regs) = self.lanes.get(&key) {
                            return Ok(regs[*l as usize & 3].clone());
                        }
                        let a = self.shared_at(n, &iv);
                        let regs =
                            [self.reg(Class::F32), self.reg(Class::F32), self.reg(Class::F32), self.reg(Class::F32)];
                        self.emit(&format!("ld.shared.v4.f32 {{{}}}, [{a}];", regs.join(", ")));
                        let out = regs[*l as usize & 3].clone();
                        self.lanes.insert(key, regs);
                        out
                    }
                    None => {
                        let a = self.shared_at(n, &iv);
                        let r = self.reg(Class::of(t));
                        self.emit(&format!("ld.shared.{} {r}, [{a}];", mem_ty(t)));
                        r
                    }
                }
            }
            E::Arr(n, s, i) => {
                let a = self.local_addr(n, i)?;
                let r = self.reg(Class::of(*s));
                self.emit(&format!("ld.local.{} {r}, [{a}];", mem_ty(*s)));
                r
            }
            E::AtomicAdd(b, i, v) => {
                let v = self.expr(v)?;
                let a = self.global_addr(b, i)?;
                let r = self.reg(Class::B32);
                self.emit(&format!("atom.global.add.u32 {r}, [{a}], {v};"));
                r
            }
            E::AtomicLoad(b, i) => {
                let a = self.global_addr(b, i)?;
                let r = self.reg(Class::B32);
                self.emit(&format!("ld.volatile.global.u32 {r}, [{a}];"));
                r
            }
            E::Vec4(_) => return Err("a vec4 value outside a tile store".into()),
            E::F(..) | E::I(_) | E::U(_) | E::Wg => return Err("a literal without a register".into()),
        })
    }

    fn unary(&mut self, op: UnOp, s: Scalar, a: &str) -> String {
        let r = self.reg(Class::of(if op == UnOp::Not { Scalar::Bool } else { s }));
        let t = ty(s);
        match (op, s) {
            (UnOp::Not, _) => self.emit(&format!("not.pred {r}, {a};")),
            (UnOp::Neg, _) => self.emit(&format!("neg.{t} {r}, {a};")),
            (UnOp::Abs, _) => self.emit(&format!("abs.{t} {r}, {a};")),
            (UnOp::Sqrt, _) => self.emit(&format!("sqrt.rn.{t} {r}, {a};")),
            (UnOp::Floor, Scalar::F32 | Scalar::F64) => self.emit(&format!("cvt.rmi.{t}.{t} {r}, {a};")),
            (UnOp::Floor, _) => self.emit(&format!("mov.b32 {r}, {a};")),
            (UnOp::Rsqrt, Scalar::F64) => {
                let q = self.reg(Class::F64);
                self.emit(&format!("sqrt.rn.f64 {q}, {a};"));
                self.emit(&format!("rcp.rn.f64 {r}, {q};"));
            }
            (UnOp::Rsqrt, _) => self.emit(&format!("rsqrt.approx.f32 {r}, {a};")),
            (_, Scalar::F64) => {
                // Transcendentals of f64 are computed in f32, as on Vulkan.
                let (x, y) = (self.reg(Class::F32), self.reg(Class::F32));
                self.emit(&format!("cvt.rn.f32.f64 {x}, {a};"));
                self.transcendental(op, &x, &y);
                self.emit(&format!("cvt.f64.f32 {r}, {y};"));
            }
            _ => self.transcendental(op, a, &r),
        }
        r
    }

    /// exp, log, sin, cos, tanh of an f32 from the hardware's base-2 and trigonometric units.
    fn transcendental(&mut self, op: UnOp, a: &str, r: &str) {
        const LOG2E: &str = "0f3FB8AA3B";
        const LN2: &str = "0f3F317218";
        let t = self.reg(Class::F32);
        match op {
            UnOp::Exp => {
                self.emit(&format!("mul.f32 {t}, {a}, {LOG2E};"));
                self.emit(&format!("ex2.approx.f32 {r}, {t};"));
            }
            UnOp::Log => {
                self.emit(&format!("lg2.approx.f32 {t}, {a};"));
                self.emit(&format!("mul.f32 {r}, {t}, {LN2};"));
            }
            UnOp::Sin => self.emit(&format!("sin.approx.f32 {r}, {a};")),
            UnOp::Cos => self.emit(&format!("cos.approx.f32 {r}, {a};")),
            _ => {
                // tanh x = 1 - 2 / (exp(2x) + 1), exact at both ends.
                self.emit(&format!("mul.f32 {t}, {a}, 0f4038AA3B;"));
                self.emit(&format!("ex2.approx.f32 {t}, {t};"));
                self.emit(&format!("add.f32 {t}, {t}, 0f3F800000;"));
                self.emit(&format!("rcp.rn.f32 {t}, {t};"));
                self.emit(&format!("fma.rn.f32 {r}, {t}, 0fC0000000, 0f3F800000;"));
            }
        }
    }

    fn binary(&mut self, op: Bo, at: Scalar, a: &str, b: &str) -> Result<String, String> {
        let t = ty(at);
        let float = at.is_float();
        let rn = if float { self.rn() } else { "" };
        if op.is_comparison() {
            let r = self.reg(Class::Pred);
            let cmp = match op {
                Bo::Eq => "eq",
                Bo::Ne => "ne",
                Bo::Lt => "lt",
                Bo::Le => "le",
                Bo::Gt => "gt",
                _ => "ge",
            };
            let t = if at == Scalar::Bool { "u32" } else { t };
            if at == Scalar::Bool {
                let (x, y) = (self.pred_to_word(a), self.pred_to_word(b));
                self.emit(&format!("setp.{cmp}.{t} {r}, {x}, {y};"));
            } else {
                self.emit(&format!("setp.{cmp}.{t} {r}, {a}, {b};"));
            }
            return Ok(r);
        }
        let r = self.reg(Class::of(at));
        match op {
            Bo::Add => self.emit(&format!("add{rn}.{t} {r}, {a}, {b};")),
            Bo::Sub => self.emit(&format!("sub{rn}.{t} {r}, {a}, {b};")),
            Bo::Mul if float => self.emit(&format!("mul{rn}.{t} {r}, {a}, {b};")),
            Bo::Mul => self.emit(&format!("mul.lo.{t} {r}, {a}, {b};")),
            Bo::Div if float => self.emit(&format!("div.rn.{t} {r}, {a}, {b};")),
            Bo::Div => self.emit(&format!("div.{t} {r}, {a}, {b};")),
            Bo::Rem => self.emit(&format!("rem.{t} {r}, {a}, {b};")),
            Bo::FMod => {
                // x - y·trunc(x / y), as C's fmod for moderate quotients.
                let q = self.reg(Class::of(at));
                self.emit(&format!("div.rn.{t} {q}, {a}, {b};"));
                self.emit(&format!("cvt.rzi.{t}.{t} {q}, {q};"));
                self.emit(&format!("mul.rn.{t} {q}, {q}, {b};"));
                self.emit(&format!("sub.rn.{t} {r}, {a}, {q};"));
            }
            Bo::Pow => {
                // exp2(y·log2 x), in f32.
                let (x, y) = (self.reg(Class::F32), self.reg(Class::F32));
                let (a32, b32) = if at == Scalar::F64 {
                    let (p, q) = (self.reg(Class::F32), self.reg(Class::F32));
                    self.emit(&format!("cvt.rn.f32.f64 {p}, {a};"));
                    self.emit(&format!("cvt.rn.f32.f64 {q}, {b};"));
                    (p, q)
                } else {
                    (a.to_string(), b.to_string())
                };
                self.emit(&format!("lg2.approx.f32 {x}, {a32};"));
                self.emit(&format!("mul.f32 {x}, {x}, {b32};"));
                if at == Scalar::F64 {
                    self.emit(&format!("ex2.approx.f32 {y}, {x};"));
                    self.emit(&format!("cvt.f64.f32 {r}, {y};"));
                } else {
                    self.emit(&format!("ex2.approx.f32 {r}, {x};"));
                }
            }
            Bo::Min => self.emit(&format!("min.{t} {r}, {a}, {b};")),
            Bo::Max => self.emit(&format!("max.{t} {r}, {a}, {b};")),
            Bo::And => self.emit(&format!("and.pred {r}, {a}, {b};")),
            Bo::Or => self.emit(&format!("or.pred {r}, {a}, {b};")),
            Bo::BitAnd => self.emit(&format!("and.b32 {r}, {a}, {b};")),
            Bo::BitXor => self.emit(&format!("xor.b32 {r}, {a}, {b};")),
            _ => return Err(format!("operator {op:?} has no PTX form")),
        }
        Ok(r)
    }

    fn convert(&mut self, from: Scalar, to: Scalar, a: &str) -> String {
        if from == to {
            return a.to_string();
        }
        let r = self.reg(Class::of(to));
        let (f, t) = (ty(from), ty(to));
        match (from.is_float(), to.is_float()) {
            (true, true) if to == Scalar::F64 => self.emit(&format!("cvt.f64.f32 {r}, {a};")),
            (true, true) => self.emit(&format!("cvt.rn.f32.f64 {r}, {a};")),
            (true, false) => self.emit(&format!("cvt.rzi.{t}.{f} {r}, {a};")),
            (false, true) => self.emit(&format!("cvt.rn.{t}.{f} {r}, {a};")),
            (false, false) => self.emit(&format!("mov.b32 {r}, {a};")),
        }
        r
    }
}

/// The type of a `mov` (and of memory accesses of booleans, stored as words).
fn mov_ty(s: Scalar) -> &'static str {
    match s {
        Scalar::F64 => "f64",
        Scalar::Bool => "pred",
        Scalar::I32 | Scalar::U32 => "b32",
        _ => "f32",
    }
}

fn mem_ty(s: Scalar) -> &'static str {
    match s {
        Scalar::F64 => "f64",
        Scalar::I32 => "s32",
        Scalar::U32 | Scalar::Bool => "u32",
        _ => "f32",
    }
}
