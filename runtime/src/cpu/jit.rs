//! Compiles the CLIF text of an artifact's CPU kernels into machine code for this processor.

use super::abi::LIBM;
use cranelift_codegen::ir::{types, AbiParam, Signature};
use cranelift_codegen::isa::CallConv;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module};

extern "C" fn aiic_expf(x: f32) -> f32 {
    x.exp()
}
extern "C" fn aiic_logf(x: f32) -> f32 {
    x.ln()
}
extern "C" fn aiic_sinf(x: f32) -> f32 {
    x.sin()
}
extern "C" fn aiic_cosf(x: f32) -> f32 {
    x.cos()
}
extern "C" fn aiic_tanhf(x: f32) -> f32 {
    x.tanh()
}
extern "C" fn aiic_powf(x: f32, y: f32) -> f32 {
    x.powf(y)
}
extern "C" fn aiic_fmodf(x: f32, y: f32) -> f32 {
    x % y
}
extern "C" fn aiic_exp(x: f64) -> f64 {
    x.exp()
}
extern "C" fn aiic_log(x: f64) -> f64 {
    x.ln()
}
extern "C" fn aiic_sin(x: f64) -> f64 {
    x.sin()
}
extern "C" fn aiic_cos(x: f64) -> f64 {
    x.cos()
}
extern "C" fn aiic_tanh(x: f64) -> f64 {
    x.tanh()
}
extern "C" fn aiic_pow(x: f64, y: f64) -> f64 {
    x.powf(y)
}
extern "C" fn aiic_fmod(x: f64, y: f64) -> f64 {
    x % y
}

fn libm_address(name: &str) -> *const u8 {
    match name {
        "aiic_expf" => aiic_expf as *const u8,
        "aiic_logf" => aiic_logf as *const u8,
        "aiic_sinf" => aiic_sinf as *const u8,
        "aiic_cosf" => aiic_cosf as *const u8,
        "aiic_tanhf" => aiic_tanhf as *const u8,
        "aiic_powf" => aiic_powf as *const u8,
        "aiic_fmodf" => aiic_fmodf as *const u8,
        "aiic_exp" => aiic_exp as *const u8,
        "aiic_log" => aiic_log as *const u8,
        "aiic_sin" => aiic_sin as *const u8,
        "aiic_cos" => aiic_cos as *const u8,
        "aiic_tanh" => aiic_tanh as *const u8,
        "aiic_pow" => aiic_pow as *const u8,
        _ => aiic_fmod as *const u8,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JitError {
    #[error("this processor is not supported by Cranelift: {0}")]
    Host(String),
    #[error("kernel {kernel}: {message}")]
    Kernel { kernel: usize, message: String },
}

/// Machine code of the CPU kernels; keeps the memory it lives in.
pub struct Compiled {
    _module: JITModule,
    /// Entry point of each kernel, by kernel index (None for kernels that run on the host).
    pub entries: Vec<Option<*const u8>>,
}

// The code is immutable once finalized; calling it from several threads is safe.
unsafe impl Send for Compiled {}
unsafe impl Sync for Compiled {}

/// Compiles kernels given as CLIF text, indexed like the module's kernels.
pub fn compile(texts: &[Option<String>]) -> Result<Compiled, JitError> {
    let mut flags = settings::builder();
    let host = |e: &dyn std::fmt::Display| JitError::Host(e.to_string());
    flags.set("opt_level", "speed").map_err(|e| host(&e))?;
    flags.set("is_pic", "false").map_err(|e| host(&e))?;
    flags.set("use_colocated_libcalls", "false").map_err(|e| host(&e))?;
    let isa =
        cranelift_native::builder().map_err(|e| host(&e))?.finish(settings::Flags::new(flags)).map_err(|e| host(&e))?;
    let mut jb = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
    for (name, _, _) in LIBM {
        jb.symbol(*name, libm_address(name));
    }
    let mut module = JITModule::new(jb);
    // Imports first, in table order, so that `u0:N` in the kernels names LIBM[N].
    for (name, wide, arity) in LIBM {
        let t = if *wide { types::F64 } else { types::F32 };
        let mut sig = Signature::new(CallConv::SystemV);
        for _ in 0..*arity {
            sig.params.push(AbiParam::new(t));
        }
        sig.returns.push(AbiParam::new(t));
        module.declare_function(name, Linkage::Import, &sig).map_err(|e| host(&e))?;
    }
    let mut ids = Vec::new();
    for (kernel, text) in texts.iter().enumerate() {
        let Some(text) = text else {
            ids.push(None);
            continue;
        };
        let err = |message: String| JitError::Kernel { kernel, message };
        let mut funcs = cranelift_reader::parse_functions(text).map_err(|e| err(e.to_string()))?;
        if funcs.len() != 1 {
            return Err(err(format!("expected one function, found {}", funcs.len())));
        }
        let func = funcs.remove(0);
        let id = module
            .declare_function(&format!("aiic_kernel_{kernel}"), Linkage::Local, &func.signature)
            .map_err(|e| err(e.to_string()))?;
        let mut ctx = module.make_context();
        ctx.func = func;
        module.define_function(id, &mut ctx).map_err(|e| err(format!("{e:?}")))?;
        ids.push(Some(id));
    }
    module.finalize_definitions().map_err(|e| host(&e))?;
    let entries = ids.iter().map(|id| id.map(|id| module.get_finalized_function(id))).collect();
    Ok(Compiled { _module: module, entries })
}
