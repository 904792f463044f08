//! Finds the modules a program uses. The standard library is compiled into the binary from the
//! `.aii` files under `stdlib/`, so an installed `aiic` needs no files beside it.

use crate::diag::Diagnostic;
use crate::source::{FileId, SourceMap};
use crate::syntax::ast;
use crate::syntax::parse;

/// `(module name, source)`; `prelude` modules are visible without `use`.
pub const STDLIB: &[(&str, bool, &str)] = &[
    ("constants", true, include_str!("../../../stdlib/constants.aii")),
    ("integrators", true, include_str!("../../../stdlib/integrators.aii")),
    ("collisions", true, include_str!("../../../stdlib/collisions.aii")),
    ("potentials", false, include_str!("../../../stdlib/potentials.aii")),
];

pub struct Module {
    pub name: String,
    pub file: FileId,
    pub ast: ast::File,
    pub prelude: bool,
}

type Parsed = (Option<ast::File>, Vec<Diagnostic>);

/// Parses every stdlib module. Errors in them are bugs of aiic, but still come back as diagnostics.
pub fn load_stdlib(sources: &mut SourceMap, diags: &mut Vec<Diagnostic>) -> Vec<Module> {
    // The stdlib never changes, and parsing it costs more than most programs do: its trees are
    // kept per file id (spans carry the id; every compilation adds the stdlib at the same ids).
    static PARSED: std::sync::Mutex<Vec<(FileId, Parsed)>> = std::sync::Mutex::new(Vec::new());
    let mut out = Vec::new();
    for (name, prelude, text) in STDLIB {
        let file = sources.add(format!("std/{name}.aii"), None, text.to_string());
        let kept =
            PARSED.lock().ok().and_then(|p| p.iter().find(|(f, _)| *f == file).map(|(_, parsed)| parsed.clone()));
        let (ast, errs) = kept.unwrap_or_else(|| {
            let parsed = parse(file, text);
            if let Ok(mut p) = PARSED.lock() {
                p.push((file, parsed.clone()));
            }
            parsed
        });
        diags.extend(errs);
        if let Some(ast) = ast {
            out.push(Module { name: name.to_string(), file, ast, prelude: *prelude });
        }
    }
    out
}
