//! Mutation fuzzing of the whole compiler: real programs (the examples and the test programs)
//! with a few random edits each, put through everything `aiic check` and a short `aiic run` do.
//!
//! Each case is a pure function of a seed and its index, so a campaign's finding can be made
//! again from two numbers; findings are kept as files under `regressions/`, which `cargo test`
//! replays.

pub mod corpus;
pub mod exercise;
pub mod mutate;
pub mod rng;

pub use corpus::Corpus;
pub use exercise::{exercise, Reached};

/// Case `index` of the campaign with `seed`: the mutated text and the corpus entry it came from.
pub fn case(corpus: &Corpus, seed: u64, index: u64) -> (String, usize) {
    let mut rng = rng::Rng::new(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let from = rng.below(corpus.programs.len());
    (mutate::mutate(&mut rng, corpus, from), from)
}

/// One case in `DEEP_EVERY` goes through code generation and the CPU backend as well.
pub const DEEP_EVERY: u64 = 8;

/// Whether case `index` is a deep one.
pub fn is_deep(index: u64) -> bool {
    index.is_multiple_of(DEEP_EVERY)
}

/// A stable name for a finding: its kind and a hash of its text (FNV-1a, stable across builds).
pub fn finding_name(kind: &str, text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{kind}-{h:016x}.aii")
}
