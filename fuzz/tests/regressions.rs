//! Every finding of past fuzzing campaigns, replayed; and a short campaign of fixed seed.

use aiic_fuzz::{case, exercise, Corpus, Reached};
use std::path::PathBuf;

fn regressions() -> PathBuf {
    Corpus::repository().join("fuzz/regressions")
}

#[test]
fn every_kept_finding_is_handled_without_a_panic() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(regressions())
        .expect("fuzz/regressions exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "aii"))
        .collect();
    files.sort();
    // Cases that reference spawn files resolve them next to the test programs.
    let base = Corpus::repository().join("tests/programs");
    for f in &files {
        let bytes = std::fs::read(f).expect("readable");
        let text = String::from_utf8(bytes).expect("findings are kept as UTF-8 text");
        let outcome = std::panic::catch_unwind(|| exercise(&text, &base, true));
        assert!(outcome.is_ok(), "{} panics again", f.display());
    }
    eprintln!("{} kept findings replayed", files.len());
}

/// A few hundred cases on every `cargo test` (the long campaigns run with `bench/fuzz.sh`);
/// `AIIC_FUZZ_SEED` picks other cases.
#[test]
fn a_short_campaign_finds_nothing() {
    let corpus = Corpus::load(&Corpus::repository()).expect("corpus");
    let seed = std::env::var("AIIC_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20_261_202);
    let cases = std::env::var("AIIC_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(400u64);
    let mut reached = [0usize; 3];
    for i in 0..cases {
        let (text, from) = case(&corpus, seed, i);
        let dir = corpus.programs[from].path.parent().expect("dir").to_path_buf();
        match std::panic::catch_unwind(|| exercise(&text, &dir, aiic_fuzz::is_deep(i))) {
            Ok(r) => reached[r as usize] += 1,
            Err(_) => {
                let name = aiic_fuzz::finding_name("panic", &text);
                let _ = std::fs::write(regressions().join(&name), &text);
                panic!("case {i} of seed {seed} panics; kept as fuzz/regressions/{name}");
            }
        }
    }
    eprintln!("{cases} cases: {} diagnosed, {} compiled, {} ran", reached[0], reached[1], reached[2]);
    // The mutations must leave many cases close enough to run, or the later passes go untested.
    assert!(reached[Reached::Ran as usize] as u64 * 20 >= cases, "only {} of {cases} cases ran", reached[2]);
}
