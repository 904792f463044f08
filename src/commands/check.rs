use crate::{exit, load, ProgramArgs};
use aiic_compiler::passes::conserve::explain as explain_proofs;

pub fn run(args: &ProgramArgs, explain: bool, color: bool) -> u8 {
    let compiled = load::compile(args, load::Need::Checked, color);
    if explain {
        // Explain what was proved even when a proof failed: that is when it is most useful.
        let proofs = match &compiled {
            Ok(c) => c.proofs.as_ref(),
            Err(_) => None,
        };
        if let Some(p) = proofs {
            print!("{}", explain_proofs(p));
        }
        if let Some(m) = compiled.as_ref().ok().and_then(|c| c.module.as_ref()) {
            print!("{}", aiic_compiler::passes::measure::describe(m));
        }
    }
    match compiled {
        Ok(c) => {
            let m = c.program.as_ref().map_or(0, |p| p.laws.len());
            eprintln!("{}: ok ({} law{} declared)", args.file.display(), m, if m == 1 { "" } else { "s" });
            exit::OK
        }
        Err(code) => code,
    }
}
