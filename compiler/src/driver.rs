//! One call from source text to a kernel IR module, collecting every diagnostic on the way.

use crate::diag::{Diagnostic, Diagnostics};
use crate::ir::Module;
use crate::sema::{check_program, hir::Program, loader, CheckOptions};
use crate::source::SourceMap;
use std::path::Path;

pub struct Compiled {
    pub sources: SourceMap,
    /// Errors and warnings of parsing and checking.
    pub diags: Diagnostics,
    /// Why the checked program cannot be lowered to kernels (features without an executor yet):
    /// `check` reports these as notes, commands that run or emit code as errors.
    pub lower_diags: Vec<Diagnostic>,
    pub program: Option<Program>,
    pub module: Option<Module>,
    /// The conservation proofs: what each law needed and how it was discharged.
    pub proofs: Option<crate::passes::conserve::Report>,
}

/// Parses, checks and lowers `text` (named `name`). Stops at the first stage with errors.
pub fn compile_source(name: &str, path: Option<&Path>, text: String, options: &CheckOptions) -> Compiled {
    let mut sources = SourceMap::new();
    let file = sources.add(name, path, text.clone());
    let (ast, parse_diags) = crate::syntax::parse(file, &text);
    let mut diags = Diagnostics::default();
    diags.list.extend(parse_diags);
    let mut std_diags = Vec::new();
    let modules = loader::load_stdlib(&mut sources, &mut std_diags);
    diags.list.extend(std_diags);
    let mut out = Compiled { sources, diags, lower_diags: Vec::new(), program: None, module: None, proofs: None };
    let Some(ast) = ast else { return out };
    if out.diags.has_errors() {
        return out;
    }
    let (program, check_diags) = check_program(&out.sources, &ast, &modules, options);
    out.diags.list.extend(check_diags.list);
    let Some(program) = program else { return out };
    match crate::lower::lower_program(&program) {
        Ok(mut m) => {
            let mut report = crate::passes::conserve::prove(&m, &out.sources);
            // After the proofs, which read the laws as written: this adds scratch columns and kernels.
            crate::passes::measure::plan(&mut m);
            out.diags.list.append(&mut report.diags);
            out.proofs = Some(report);
            out.module = Some(m);
        }
        Err(ds) => out.lower_diags = ds,
    }
    out.program = Some(program);
    out
}

/// Reads and compiles a file; a missing or unreadable file is an error, not a panic.
pub fn compile_file(path: &Path, options: &CheckOptions) -> Result<Compiled, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut options = options.clone();
    if options.base_dir.as_os_str().is_empty() {
        options.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    }
    Ok(compile_source(&path.display().to_string(), Some(path), text, &options))
}

/// Renders diagnostics as the command line shows them.
pub fn render(c: &Compiled, diags: &[Diagnostic], color: bool) -> String {
    diags.iter().map(|d| d.render(&c.sources, color)).collect::<Vec<_>>().join("")
}
