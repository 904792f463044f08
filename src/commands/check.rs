use crate::{exit, load, ProgramArgs};

pub fn run(args: &ProgramArgs, color: bool) -> u8 {
    match load::compile(args, load::Need::Checked, color) {
        Ok(c) => {
            let m = c.program.as_ref().map_or(0, |p| p.laws.len());
            eprintln!("{}: ok ({} law{} declared)", args.file.display(), m, if m == 1 { "" } else { "s" });
            exit::OK
        }
        Err(code) => code,
    }
}
