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

/// Parses every stdlib module. Errors in them are bugs of aiic, but still come back as diagnostics.
pub fn load_stdlib(sources: &mut SourceMap, diags: &mut Vec<Diagnostic>) -> Vec<Module> {
    let mut out = Vec::new();
    for (name, prelude, text) in STDLIB {
        let file = sources.add(format!("std/{name}.aii"), None, text.to_string());
        let (ast, errs) = parse(file, text);
        diags.extend(errs);
        if let Some(ast) = ast {
            out.push(Module { name: name.to_string(), file, ast, prelude: *prelude });
        }
    }
    out
}
