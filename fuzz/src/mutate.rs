//! Edits that turn a real program into a case: token insertions, deletions and replacements,
//! splices from other programs, duplicated and swapped stretches, odd Unicode and extreme
//! numbers. A few edits per case keep many cases close enough to valid programs to reach the
//! later passes, code generation and the run.

use crate::corpus::Corpus;
use crate::rng::Rng;
use std::ops::Range;

/// Characters that trip up code that assumes one byte per character, one column per character,
/// or printable text: zero-width and direction marks, a BOM, combining marks, characters whose
/// case mapping changes length, astral characters, control characters and line separators.
const ODD: &[&str] = &[
    "\u{200B}",
    "\u{200D}",
    "\u{202E}",
    "\u{2066}",
    "\u{FEFF}",
    "\u{0301}",
    "\u{0338}",
    "İ",
    "ß",
    "ǅ",
    "ﬃ",
    "é",
    "α",
    "Δ",
    "𝑥",
    "😀",
    "👩‍🔬",
    "\u{10FFFF}",
    "\u{FFFD}",
    "\u{0}",
    "\u{7}",
    "\u{1B}[31m",
    "\r",
    "\r\n",
    "\t",
    "\u{2028}",
    "\u{85}",
    "\u{A0}",
    "＋",
    "；",
    "｛",
    "\\",
    "\"",
    "'",
    "`",
    "#",
    "$",
    "~",
    "^",
    "?",
];

/// Numbers at the edges of f32, f64 and the integer types, and malformed ones.
const NUMBERS: &[&str] = &[
    "0",
    "0.0",
    "-0.0",
    "1",
    "-1",
    "2",
    "1e38",
    "3.5e38",
    "-3.5e38",
    "1e-45",
    "1e-50",
    "1e308",
    "1e309",
    "4294967295",
    "4294967296",
    "2147483648",
    "9223372036854775807",
    "18446744073709551616",
    "1.",
    ".5",
    "1e",
    "1e+",
    "00001",
    "1_000",
    "0x10",
    "3f64",
    "3f32",
    "1.5f16",
    "1e-3f64",
    "999999999999999999999999",
];

/// Byte ranges of the tokens of `text`, whitespace runs included: identifiers and numbers (with
/// `.` inside), strings, comments, two-character operators, and single characters.
pub fn tokens(text: &str) -> Vec<Range<usize>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let c = b[i];
        if c.is_ascii_alphanumeric() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                i += 1;
            }
        } else if c.is_ascii_whitespace() {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                i += 1;
            }
            i = (i + 1).min(b.len());
        } else if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if i + 1 < b.len()
            && [b"==", b"!=", b"<=", b">=", b"&&", b"||", b"+=", b"-=", b"*=", b"/=", b"->", b"::"]
                .contains(&&[c, b[i + 1]])
        {
            i += 2;
        } else {
            i += 1;
            while i < b.len() && !text.is_char_boundary(i) {
                i += 1;
            }
        }
        out.push(start..i);
    }
    out
}

/// One to four edits of program `from`.
pub fn mutate(rng: &mut Rng, corpus: &Corpus, from: usize) -> String {
    let mut text = corpus.programs[from].text.clone();
    let edits = 1 + [0, 0, 0, 0, 0, 1, 1, 2][rng.below(8)];
    for _ in 0..edits {
        edit(rng, corpus, &mut text);
    }
    text
}

fn edit(rng: &mut Rng, corpus: &Corpus, text: &mut String) {
    let toks = tokens(text);
    if toks.is_empty() {
        text.push_str(rng.pick(&corpus.vocabulary).as_str());
        return;
    }
    // Edits aim at tokens that are not whitespace, where most of the meaning is.
    let solid: Vec<&Range<usize>> = toks.iter().filter(|r| !text[(*r).clone()].trim().is_empty()).collect();
    let at = if solid.is_empty() { toks[rng.below(toks.len())].clone() } else { (*rng.pick(&solid)).clone() };
    let is_word = |t: &str| t.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let is_op = |t: &str| !t.is_empty() && t.chars().all(|c| "+-*/%=!<>&|@".contains(c));
    match rng.below(14) {
        // Insert a token of the vocabulary before or after a token.
        0 => {
            let tok = format!(" {} ", rng.pick(&corpus.vocabulary));
            let pos = if rng.chance(128) { at.start } else { at.end };
            text.insert_str(pos, &tok);
        }
        // Replace a name with another name, or an operator with another operator: edits that
        // often still parse and reach the checker's, the prover's and the backends' rules.
        6..=8 => {
            let want: &dyn Fn(&str) -> bool = if rng.below(3) == 0 { &is_op } else { &is_word };
            let pool: Vec<&String> = corpus.vocabulary.iter().filter(|t| want(t)).collect();
            let targets: Vec<&Range<usize>> = solid.iter().copied().filter(|r| want(&text[(*r).clone()])).collect();
            if let (false, false) = (targets.is_empty(), pool.is_empty()) {
                let r = (*rng.pick(&targets)).clone();
                text.replace_range(r, rng.pick(&pool).as_str());
            }
        }
        // Duplicate a whole line (a field, a statement, a law twice).
        10 => {
            let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
            let a = rng.below(lines.len());
            lines.insert(a, lines[a]);
            *text = lines.concat();
        }
        // Duplicate a stretch of tokens in place.
        11 => {
            let first = toks.iter().position(|r| *r == at).unwrap_or(0);
            let last = (first + rng.below(16)).min(toks.len() - 1);
            let piece = text[toks[first].start..toks[last].end].to_string();
            text.insert_str(toks[last].end, &piece);
        }
        // Delete one to four tokens.
        2 => {
            let first = toks.iter().position(|r| *r == at).unwrap_or(0);
            let last = (first + rng.below(4)).min(toks.len() - 1);
            text.replace_range(toks[first].start..toks[last].end, "");
        }
        // Replace a token with another of the vocabulary.
        1 => text.replace_range(at, rng.pick(&corpus.vocabulary).as_str()),
        // Replace a number (or any token) with an extreme or malformed number.
        3..=5 => {
            let numbers: Vec<&Range<usize>> =
                solid.iter().copied().filter(|r| text.as_bytes()[r.start].is_ascii_digit()).collect();
            let r = if numbers.is_empty() { at } else { (*rng.pick(&numbers)).clone() };
            let number: &&str = rng.pick(NUMBERS);
            text.replace_range(r, number);
        }
        // Splice a stretch of tokens of another program (or this one) in, here or instead of one.
        9 => {
            let other = &corpus.programs[rng.below(corpus.programs.len())].text;
            let theirs = tokens(other);
            let from = rng.below(theirs.len());
            let to = (from + 1 + rng.below(24)).min(theirs.len() - 1);
            let piece = other[theirs[from].start..theirs[to].end].to_string();
            if rng.chance(128) {
                text.insert_str(at.start, &piece);
            } else {
                text.replace_range(at, &piece);
            }
        }
        // Insert odd Unicode inside or next to a token.
        12 => {
            let mut pos = at.start + rng.below(at.end - at.start + 1);
            while !text.is_char_boundary(pos) {
                pos -= 1;
            }
            let odd: &&str = rng.pick(ODD);
            text.insert_str(pos, odd);
        }
        // Swap two lines, or delete one.
        _ => {
            let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
            let a = rng.below(lines.len());
            if rng.chance(128) {
                let b = rng.below(lines.len());
                lines.swap(a, b);
            } else {
                lines.remove(a);
            }
            *text = lines.concat();
        }
    }
}
