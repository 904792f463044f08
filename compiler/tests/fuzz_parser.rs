//! Property-based fuzzing of the front end: whatever the text, compiling it returns diagnostics
//! or a program, and never panics. Runs a short campaign in `cargo test`; raise PROPTEST_CASES
//! for a longer one. A failing input is kept in `fuzz_parser.proptest-regressions` beside this
//! file and tried first on every later run. (The mutation campaigns over whole programs, through
//! code generation and a run, are the `aiic-fuzz` crate's.)

mod common;
use common::*;
use proptest::prelude::*;

/// Names, literals and comment marks the token soup draws on besides the language's keywords
/// and punctuation (`syntax::lexer::KEYWORDS`, `PUNCTUATION`).
const EXTRAS: &[&str] = &[
    "S",
    "Body",
    "a",
    "b",
    "x",
    "position",
    "velocity",
    "force",
    "mass",
    "f32",
    "vec3",
    "tensor",
    "vec",
    "sum",
    "dt",
    "gravity",
    "elastic_collision",
    "1",
    "2.5",
    "1e-3",
    "3f64",
    "\"f.csv\"",
    "/*",
    "*/",
    "//",
    "\n",
];

fn tokens() -> Vec<&'static str> {
    let lexer = (aiic_compiler::syntax::lexer::KEYWORDS.iter()).chain(aiic_compiler::syntax::lexer::PUNCTUATION);
    lexer.chain(EXTRAS).copied().collect()
}

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(tokens()), 0..120).prop_map(|t| t.join(" "))
}

/// An example with a few random edits: deletions, duplications and insertions of tokens.
fn mutated_example() -> impl Strategy<Value = String> {
    let edits =
        prop::collection::vec((any::<prop::sample::Index>(), 0usize..12, prop::sample::select(tokens()), 0u8..3), 1..6);
    (prop::sample::select(EXAMPLES), edits).prop_map(|(name, edits)| {
        let mut text = example(name);
        for (at, len, tok, kind) in edits {
            let mut i = at.index(text.len().max(1));
            while i > 0 && !text.is_char_boundary(i) {
                i -= 1;
            }
            let mut j = (i + len).min(text.len());
            while j < text.len() && !text.is_char_boundary(j) {
                j += 1;
            }
            match kind {
                0 => text.replace_range(i..j, ""),
                1 => text.insert_str(i, tok),
                _ => {
                    let piece = text[i..j].to_string();
                    text.insert_str(j, &piece);
                }
            }
        }
        text
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200),
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_tokens_never_panic(src in token_soup()) {
        let c = compile(&src);
        for d in &c.diags.list {
            let _ = d.render(&c.sources, false);
        }
    }

    #[test]
    fn mutated_examples_never_panic(src in mutated_example()) {
        let c = compile(&src);
        for d in c.diags.list.iter().chain(&c.lower_diags) {
            let _ = d.render(&c.sources, false);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(src in "\\PC{0,300}") {
        let _ = compile(&src);
    }
}
