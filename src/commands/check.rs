use crate::{exit, load, ProgramArgs};

pub fn run(args: &ProgramArgs, color: bool) -> u8 {
    match load::compile(args, color) {
        Ok(c) => {
            let m = c.module.as_ref().map_or(0, |m| m.laws.len());
            eprintln!("{}: ok ({} law{} declared)", args.file.display(), m, if m == 1 { "" } else { "s" });
            exit::OK
        }
        Err(code) => code,
    }
}
