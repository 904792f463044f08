//! The IR verifier: runs after lowering in debug builds and in tests, so a malformed kernel is
//! caught where it is made rather than where it is run.

use super::{Kernel, Op, Pattern, Scalar};

pub fn verify(k: &Kernel) -> Result<(), String> {
    let slots = k.pattern.slots().len();
    let mut outputs = 0;
    for (i, inst) in k.insts.iter().enumerate() {
        for a in inst.op.args() {
            if a as usize >= i {
                return Err(format!("%{i} reads %{a}, which is not defined before it"));
            }
        }
        match &inst.op {
            Op::Load { slot, .. } | Op::Store { slot, .. } | Op::Accum { slot, .. } if *slot as usize >= slots => {
                return Err(format!("%{i} uses agent slot {slot}, but the kernel binds {slots}"));
            }
            Op::Store { .. } if k.pattern.is_pairwise() => {
                return Err(format!("%{i}: pair kernels accumulate, they do not store"))
            }
            Op::Accum { .. } if !k.pattern.is_pairwise() => return Err(format!("%{i}: only pair kernels accumulate")),
            Op::Index | Op::Count | Op::Rand { .. } if !matches!(k.pattern, Pattern::Spawn { .. }) => {
                return Err(format!("%{i}: spawn-only instruction outside a spawn kernel"));
            }
            Op::Select(c, _, _) if k.insts[*c as usize].ty != Scalar::Bool => {
                return Err(format!("%{i}: select on a non-bool"))
            }
            Op::Check { msg, .. } if *msg as usize >= k.messages.len() => {
                return Err(format!("%{i}: no message {msg}"))
            }
            Op::Reduce { out, .. } => outputs = outputs.max(out + 1),
            _ => {}
        }
    }
    if outputs > k.outputs {
        return Err(format!("kernel reduces into {outputs} outputs but declares {}", k.outputs));
    }
    if let Some(g) = k.guard {
        if g as usize >= k.insts.len() || k.insts[g as usize].ty != Scalar::Bool {
            return Err("the guard is not a bool value of the kernel".into());
        }
    }
    Ok(())
}
