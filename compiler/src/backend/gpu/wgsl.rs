//! WGSL, the language the SPIR-V kernels are written in before naga checks and translates them.

use super::ast::{Binding, Shared};
use super::dialect::Dialect;
use aiic_runtime::ir::{Scalar, UnOp};

/// The workgroup size as written in the WGSL, in three places only: the entry's workgroup size,
/// the length of workgroup arrays, and the initializer of the private variable [`WG_VAR`] that
/// kernels read it from. The SPIR-V pass turns those three into specialization constant 0 (see
/// `spirv::specialize_workgroup`); the same number elsewhere (a parameter's index) stays as is.
pub const WG_PLACEHOLDER: u32 = 977;

/// The variable kernels read their workgroup size from: a load, which naga cannot fold into
/// other constants.
pub const WG_VAR: &str = "aiic_wg";

pub struct Wgsl;

impl Dialect for Wgsl {
    fn ty(&self, s: Scalar) -> &'static str {
        match s {
            Scalar::F64 => "f64",
            Scalar::I32 => "i32",
            Scalar::U32 => "u32",
            Scalar::Bool => "bool",
            _ => "f32",
        }
    }

    fn float(&self, x: f64, s: Scalar) -> String {
        if s == Scalar::F64 {
            if x.is_finite() {
                let t = format!("{x:?}lf");
                return if x < 0.0 { format!("({t})") } else { t };
            }
            let bits = x.to_bits();
            return format!("bitcast<f64>(vec2<u32>({}u, {}u))", bits as u32, (bits >> 32) as u32);
        }
        let f = x as f32;
        if f.is_finite() {
            let t = format!("{f:?}f");
            if f < 0.0 {
                format!("({t})")
            } else {
                t
            }
        } else {
            format!("bitcast<f32>({}u)", f.to_bits())
        }
    }

    fn int(&self, x: i64) -> String {
        let x = x.clamp(i32::MIN as i64, i32::MAX as i64);
        if x == i32::MIN as i64 {
            "(-2147483647i - 1i)".into()
        } else if x < 0 {
            format!("({x}i)")
        } else {
            format!("{x}i")
        }
    }

    fn uint(&self, x: u64) -> String {
        format!("{x}u")
    }

    fn let_(&self, name: &str, s: Scalar, e: &str) -> String {
        format!("let {name}: {} = {e};", self.ty(s))
    }

    fn var(&self, name: &str, s: Scalar, e: &str) -> String {
        format!("var {name}: {} = {e};", self.ty(s))
    }

    fn array(&self, name: &str, s: Scalar, len: usize) -> String {
        format!("var {name}: array<{}, {len}>;", self.ty(s))
    }

    fn select(&self, cond: &str, t: &str, f: &str) -> String {
        format!("select({f}, {t}, {cond})")
    }

    fn cast(&self, to: Scalar, x: &str) -> String {
        format!("{}({x})", self.ty(to))
    }

    fn math(&self, op: UnOp, s: Scalar, x: &str) -> String {
        let f = match op {
            UnOp::Neg => return format!("(-{x})"),
            UnOp::Not => return format!("(!{x})"),
            UnOp::Sqrt => "sqrt",
            UnOp::Rsqrt => "inverseSqrt",
            UnOp::Abs => "abs",
            UnOp::Floor => "floor",
            UnOp::Exp => "exp",
            UnOp::Log => "log",
            UnOp::Sin => "sin",
            UnOp::Cos => "cos",
            UnOp::Tanh => "tanh",
        };
        // SPIR-V's extended instructions compute these in at most 32 bits.
        if s == Scalar::F64 && matches!(op, UnOp::Exp | UnOp::Log | UnOp::Sin | UnOp::Cos | UnOp::Tanh) {
            return format!("f64({f}(f32({x})))");
        }
        format!("{f}({x})")
    }

    fn pow(&self, x: &str, y: &str) -> String {
        format!("pow({x}, {y})")
    }

    fn fmod(&self, x: &str, y: &str) -> String {
        format!("({x} % {y})")
    }

    fn atomic_add(&self, buf: &str, idx: &str, v: &str) -> String {
        format!("atomicAdd(&{buf}[{idx}], {v})")
    }

    fn atomic_load(&self, buf: &str, idx: &str) -> String {
        format!("atomicLoad(&{buf}[{idx}])")
    }

    fn atomic_store(&self, buf: &str, idx: &str, v: &str) -> String {
        format!("atomicStore(&{buf}[{idx}], {v});")
    }

    fn barrier(&self) -> &'static str {
        "workgroupBarrier();"
    }

    fn wg(&self) -> String {
        WG_VAR.to_string()
    }

    fn vec4(&self, parts: &[String]) -> String {
        format!("vec4<f32>({})", parts.join(", "))
    }

    fn frame(&self, name: &str, entry: &str, bindings: &[Binding], shared: &[Shared], body: &str) -> String {
        let mut out = format!("// {name}\n");
        for (n, b) in bindings.iter().enumerate() {
            let elem = if b.atomic { "atomic<u32>".to_string() } else { self.ty(b.elem).to_string() };
            let access = if b.read_only { "read" } else { "read_write" };
            out += &format!("@group(0) @binding({n}) var<storage, {access}> {}: array<{elem}>;\n", b.name);
        }
        for s in shared {
            let elem = if s.lanes == 4 { format!("vec4<{}>", self.ty(s.elem)) } else { self.ty(s.elem).to_string() };
            out += &format!("var<workgroup> {}: array<{elem}, {WG_PLACEHOLDER}>;\n", s.name);
        }
        out += &format!("var<private> {WG_VAR}: u32 = {WG_PLACEHOLDER}u;\n");
        out += &format!(
            "\n@compute @workgroup_size({WG_PLACEHOLDER})\nfn {entry}(@builtin(local_invocation_id) lid3: vec3<u32>, \
             @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {{\n"
        );
        out += "  let lid = lid3.x;\n  let grp = wid.x + wid.y * nw.x;\n";
        out += &format!("  let gid = grp * {WG_VAR} + lid;\n");
        for line in body.lines() {
            out += &if line.is_empty() { "\n".to_string() } else { format!("  {line}\n") };
        }
        out + "}\n"
    }
}
