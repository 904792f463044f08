//! OpenCL C: the device kernels printed as one program, a `__kernel aiic_kN` per device kernel.
//! The workgroup size is the macro `WG`, given when the program is built for a device.

use super::ast::{Binding, Shared};
use super::dialect::{print_kernel, Dialect};
use super::kernels::{generate, GpuCode, Options};
use aiic_runtime::ir::{Module, Scalar, UnOp};

pub struct OpenCl;

/// A module's step as one OpenCL C program.
pub struct OpenClCode {
    pub code: GpuCode,
    pub text: String,
}

/// The name of device kernel `n` in the program.
pub fn entry_name(n: usize) -> String {
    format!("aiic_k{n}")
}

pub fn emit_module(m: &Module, opts: Options) -> Result<OpenClCode, String> {
    let code = generate(m, opts)?;
    let mut text = format!("// aiic: {} ({} device kernels)\n", m.name, code.kernels.len());
    text += "#ifdef cl_khr_fp64\n#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n#endif\n";
    text += "#ifndef WG\n#define WG 256\n#endif\n";
    // Law kernels (the last ones) compute in f64: a device without it builds the rest, and
    // measures the laws on the host.
    let first_law = code.plan.first_law_kernel();
    for (n, k) in code.kernels.iter().enumerate() {
        text += "\n";
        if n == first_law {
            text += "#ifdef cl_khr_fp64\n\n";
        }
        text += &print_kernel(&OpenCl, k, &entry_name(n));
    }
    if first_law < code.kernels.len() {
        text += "\n#endif\n";
    }
    Ok(OpenClCode { code, text })
}

impl Dialect for OpenCl {
    fn ty(&self, s: Scalar) -> &'static str {
        match s {
            Scalar::F64 => "double",
            Scalar::I32 => "int",
            Scalar::U32 => "uint",
            Scalar::Bool => "bool",
            _ => "float",
        }
    }

    fn float(&self, x: f64, s: Scalar) -> String {
        if s == Scalar::F64 {
            if x.is_finite() {
                let t = format!("{x:?}");
                return if x < 0.0 { format!("({t})") } else { t };
            }
            return format!("as_double({}UL)", x.to_bits());
        }
        let f = x as f32;
        if !f.is_finite() {
            return format!("as_float({}u)", f.to_bits());
        }
        let t = format!("{f:?}f");
        if f < 0.0 {
            format!("({t})")
        } else {
            t
        }
    }

    fn int(&self, x: i64) -> String {
        let x = x.clamp(i32::MIN as i64, i32::MAX as i64);
        if x == i32::MIN as i64 {
            "(-2147483647 - 1)".into()
        } else if x < 0 {
            format!("({x})")
        } else {
            x.to_string()
        }
    }

    fn uint(&self, x: u64) -> String {
        format!("{x}u")
    }

    fn let_(&self, name: &str, s: Scalar, e: &str) -> String {
        format!("const {} {name} = {e};", self.ty(s))
    }

    fn var(&self, name: &str, s: Scalar, e: &str) -> String {
        format!("{} {name} = {e};", self.ty(s))
    }

    fn array(&self, name: &str, s: Scalar, len: usize) -> String {
        format!("{} {name}[{len}];", self.ty(s))
    }

    fn select(&self, cond: &str, t: &str, f: &str) -> String {
        format!("({cond} ? {t} : {f})")
    }

    fn cast(&self, to: Scalar, x: &str) -> String {
        format!("(({}){x})", self.ty(to))
    }

    fn math(&self, op: UnOp, s: Scalar, x: &str) -> String {
        let f = match op {
            UnOp::Neg => return format!("(-{x})"),
            UnOp::Not => return format!("(!{x})"),
            UnOp::Abs if !s.is_float() => return format!("((int)abs({x}))"),
            UnOp::Abs => "fabs",
            UnOp::Sqrt => "sqrt",
            UnOp::Rsqrt => "rsqrt",
            UnOp::Floor => "floor",
            UnOp::Exp => "exp",
            UnOp::Log => "log",
            UnOp::Sin => "sin",
            UnOp::Cos => "cos",
            UnOp::Tanh => "tanh",
        };
        format!("{f}({x})")
    }

    fn pow(&self, x: &str, y: &str) -> String {
        format!("pow({x}, {y})")
    }

    fn fmod(&self, x: &str, y: &str) -> String {
        format!("fmod({x}, {y})")
    }

    fn atomic_add(&self, buf: &str, idx: &str, v: &str) -> String {
        format!("atomic_add(&{buf}[{idx}], {v})")
    }

    fn atomic_load(&self, buf: &str, idx: &str) -> String {
        format!("{buf}[{idx}]")
    }

    fn atomic_store(&self, buf: &str, idx: &str, v: &str) -> String {
        format!("{buf}[{idx}] = {v};")
    }

    fn barrier(&self) -> &'static str {
        "barrier(CLK_LOCAL_MEM_FENCE);"
    }

    fn wg(&self) -> String {
        "WG".into()
    }

    fn vec4(&self, parts: &[String]) -> String {
        format!("(float4)({})", parts.join(", "))
    }

    fn frame(&self, name: &str, entry: &str, bindings: &[Binding], shared: &[Shared], body: &str) -> String {
        let params: Vec<String> = bindings
            .iter()
            .map(|b| {
                let (q, c) = if b.atomic { ("volatile ", "") } else { ("", if b.read_only { "const " } else { "" }) };
                format!("    __global {q}{c}{}* restrict {}", self.ty(b.elem), b.name)
            })
            .collect();
        let mut out = format!("// {name}\n__kernel void {entry}(\n{}\n) {{\n", params.join(",\n"));
        for s in shared {
            let elem = if s.lanes == 4 { "float4".to_string() } else { self.ty(s.elem).to_string() };
            out += &format!("  __local {elem} {}[WG];\n", s.name);
        }
        out += "  const uint lid = get_local_id(0);\n";
        out += "  const uint grp = get_group_id(0) + get_group_id(1) * get_num_groups(0);\n";
        out += "  const uint gid = grp * WG + lid;\n";
        for line in body.lines() {
            out += &if line.is_empty() { "\n".to_string() } else { format!("  {line}\n") };
        }
        out + "}\n"
    }
}
