//! The programs mutations start from, and the vocabulary insertions draw on.

use std::path::{Path, PathBuf};

pub struct Program {
    pub path: PathBuf,
    pub text: String,
}

pub struct Corpus {
    pub programs: Vec<Program>,
    /// Tokens seen in the programs (identifiers, numbers, punctuation), plus the language's
    /// keywords and operators.
    pub vocabulary: Vec<String>,
}

/// Names, literals and comment marks that, with the lexer's keywords and punctuation, let
/// insertions build constructs the corpus does not happen to contain.
const GRAMMAR_EXTRAS: &[&str] = &[
    "assume",
    "max",
    "index",
    "count",
    "f32",
    "f64",
    "i32",
    "u32",
    "bool",
    "vec2",
    "vec3",
    "vec4",
    "tensor",
    "sum",
    "force",
    "select",
    "rsqrt",
    "sqrt",
    "dot",
    "cross",
    "normalize",
    "distance",
    "length",
    "exp",
    "log",
    "pow",
    "rand_uniform",
    "rand_normal",
    "rand_in_sphere",
    "load",
    "std::potentials",
    "std::integrators",
    "/*",
    "*/",
    "//",
    "\n",
    "0",
    "1",
    "-1",
    "0.0",
    "1e-3",
    "1e38",
    "1e309",
    "3f64",
    "4294967296",
    "\"balls.csv\"",
    "\"missing.csv\"",
    "\"w.npy\"",
];

impl Corpus {
    /// The examples and the test programs of the repository at `root`.
    pub fn load(root: &Path) -> Result<Self, String> {
        let mut programs = Vec::new();
        for dir in ["examples", "tests/programs"] {
            let dir = root.join(dir);
            let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
            let mut paths: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "aii"))
                .collect();
            paths.sort();
            for path in paths {
                let text =
                    std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                programs.push(Program { path, text });
            }
        }
        if programs.is_empty() {
            return Err(format!("no .aii programs under {}", root.display()));
        }
        use aiic_compiler::syntax::lexer::{KEYWORDS, PUNCTUATION};
        let grammar = KEYWORDS.iter().chain(PUNCTUATION).chain(GRAMMAR_EXTRAS);
        let mut vocabulary: Vec<String> = grammar.map(|s| s.to_string()).collect();
        for p in &programs {
            vocabulary.extend(crate::mutate::tokens(&p.text).into_iter().map(|r| p.text[r].to_string()));
        }
        vocabulary.retain(|t| !t.trim().is_empty() || t == "\n");
        vocabulary.sort();
        vocabulary.dedup();
        Ok(Corpus { programs, vocabulary })
    }

    /// The repository this crate belongs to.
    pub fn repository() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }
}
