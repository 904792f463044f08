//! Tokens of `.aii`, produced by logos. Nested block comments need a callback, since a regular
//! expression cannot count nesting depth.

use crate::diag::Diagnostic;
use crate::source::{FileId, Span};
use logos::{Lexer, Logos};
use std::fmt;

fn block_comment(lex: &mut Lexer<'_, Token>) -> logos::FilterResult<(), ()> {
    let rest = lex.remainder();
    let bytes = rest.as_bytes();
    let mut depth = 1usize;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if bytes[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                lex.bump(i);
                return logos::FilterResult::Skip;
            }
        } else {
            i += 1;
        }
    }
    lex.bump(bytes.len());
    logos::FilterResult::Error(())
}

#[derive(Logos, Debug, Clone, PartialEq, Eq, Hash)]
#[logos(skip r"[ \t\r\n\f]+")]
#[logos(skip r"//[^\n]*")]
pub enum Token {
    #[token("/*", block_comment)]
    BlockComment,

    #[token("system")]
    System,
    #[token("agent")]
    Agent,
    #[token("property")]
    Property,
    #[token("state")]
    State,
    #[token("accum")]
    Accum,
    #[token("derive")]
    Derive,
    #[token("const")]
    Const,
    #[token("param")]
    Param,
    #[token("conserve")]
    Conserve,
    #[token("potential")]
    Potential,
    #[token("interaction")]
    Interaction,
    #[token("each")]
    Each,
    #[token("pairs")]
    Pairs,
    #[token("within")]
    Within,
    #[token("step")]
    Step,
    #[token("integrate")]
    Integrate,
    #[token("init")]
    Init,
    #[token("spawn")]
    Spawn,
    #[token("use")]
    Use,
    #[token("let")]
    Let,
    #[token("if")]
    If,
    #[token("else")]
    Else,
    #[token("return")]
    Return,
    #[token("fn")]
    Fn,
    #[token("external")]
    External,
    #[token("tolerance")]
    Tolerance,
    #[token("model")]
    Model,
    #[token("from")]
    From,
    #[token("with")]
    With,
    #[token("as")]
    As,
    #[token("true")]
    True,
    #[token("false")]
    False,

    #[regex(r"[A-Za-z_][A-Za-z0-9_]*", |lex| lex.slice().to_string())]
    Ident(String),
    /// The literal's text, suffix included; the parser turns it into a value.
    #[regex(r"[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?(f32|f64|f16|i32|u32)?", |lex| lex.slice().to_string())]
    Number(String),
    #[regex(r#""([^"\\\n]|\\.)*""#, |lex| { let s = lex.slice(); s[1..s.len() - 1].to_string() })]
    Str(String),

    #[token("+=")]
    PlusEq,
    #[token("-=")]
    MinusEq,
    #[token("*=")]
    StarEq,
    #[token("/=")]
    SlashEq,
    #[token("==")]
    EqEq,
    #[token("!=")]
    NotEq,
    #[token("<=")]
    Le,
    #[token(">=")]
    Ge,
    #[token("&&")]
    AndAnd,
    #[token("||")]
    OrOr,
    #[token("->")]
    Arrow,
    #[token("::")]
    ColonColon,
    #[token("+")]
    Plus,
    #[token("-")]
    Minus,
    #[token("*")]
    Star,
    #[token("/")]
    Slash,
    #[token("%")]
    Percent,
    #[token("<")]
    Lt,
    #[token(">")]
    Gt,
    #[token("!")]
    Bang,
    #[token("=")]
    Eq,
    #[token(":")]
    Colon,
    #[token(";")]
    Semi,
    #[token(",")]
    Comma,
    #[token(".")]
    Dot,
    #[token("@")]
    At,
    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Token::Ident(s) => return write!(f, "identifier `{s}`"),
            Token::Number(s) => return write!(f, "number `{s}`"),
            Token::Str(s) => return write!(f, "string \"{s}\""),
            Token::BlockComment => "comment",
            Token::System => "system",
            Token::Agent => "agent",
            Token::Property => "property",
            Token::State => "state",
            Token::Accum => "accum",
            Token::Derive => "derive",
            Token::Const => "const",
            Token::Param => "param",
            Token::Conserve => "conserve",
            Token::Potential => "potential",
            Token::Interaction => "interaction",
            Token::Each => "each",
            Token::Pairs => "pairs",
            Token::Within => "within",
            Token::Step => "step",
            Token::Integrate => "integrate",
            Token::Init => "init",
            Token::Spawn => "spawn",
            Token::Use => "use",
            Token::Let => "let",
            Token::If => "if",
            Token::Else => "else",
            Token::Return => "return",
            Token::Fn => "fn",
            Token::External => "external",
            Token::Tolerance => "tolerance",
            Token::Model => "model",
            Token::From => "from",
            Token::With => "with",
            Token::As => "as",
            Token::True => "true",
            Token::False => "false",
            Token::PlusEq => "+=",
            Token::MinusEq => "-=",
            Token::StarEq => "*=",
            Token::SlashEq => "/=",
            Token::EqEq => "==",
            Token::NotEq => "!=",
            Token::Le => "<=",
            Token::Ge => ">=",
            Token::AndAnd => "&&",
            Token::OrOr => "||",
            Token::Arrow => "->",
            Token::ColonColon => "::",
            Token::Plus => "+",
            Token::Minus => "-",
            Token::Star => "*",
            Token::Slash => "/",
            Token::Percent => "%",
            Token::Lt => "<",
            Token::Gt => ">",
            Token::Bang => "!",
            Token::Eq => "=",
            Token::Colon => ":",
            Token::Semi => ";",
            Token::Comma => ",",
            Token::Dot => ".",
            Token::At => "@",
            Token::LParen => "(",
            Token::RParen => ")",
            Token::LBrace => "{",
            Token::RBrace => "}",
            Token::LBracket => "[",
            Token::RBracket => "]",
        };
        write!(f, "`{s}`")
    }
}

/// How every keyword is written, for tools that build programs from tokens (the fuzzers).
pub const KEYWORDS: &[&str] = &[
    "system",
    "agent",
    "property",
    "state",
    "accum",
    "derive",
    "const",
    "param",
    "conserve",
    "potential",
    "interaction",
    "each",
    "pairs",
    "within",
    "step",
    "integrate",
    "init",
    "spawn",
    "use",
    "let",
    "if",
    "else",
    "return",
    "fn",
    "external",
    "tolerance",
    "model",
    "from",
    "with",
    "as",
    "true",
    "false",
];

/// How every operator and punctuation token is written (comments excepted).
pub const PUNCTUATION: &[&str] = &[
    "+=", "-=", "*=", "/=", "==", "!=", "<=", ">=", "&&", "||", "->", "::", "+", "-", "*", "/", "%", "<", ">", "!",
    "=", ":", ";", ",", ".", "@", "(", ")", "{", "}", "[", "]",
];

/// Tokens with spans, and a diagnostic for every stretch of text that is not a token.
pub fn lex(file: FileId, text: &str) -> (Vec<(Token, Span)>, Vec<Diagnostic>) {
    let mut tokens = Vec::new();
    let mut errors = Vec::new();
    let mut lexer = Token::lexer(text);
    while let Some(result) = lexer.next() {
        let range = lexer.span();
        let span = Span::new(file, range.start, range.end);
        match result {
            Ok(tok) => tokens.push((tok, span)),
            Err(()) => {
                let slice = &text[range.clone()];
                let d = if slice.starts_with("/*") {
                    Diagnostic::error(
                        "E0002",
                        Span::new(file, range.start, range.start + 2),
                        "unterminated block comment",
                    )
                    .with_label("this comment is never closed")
                    .with_hint("close it with `*/` (block comments nest: every `/*` needs its own `*/`)")
                } else if slice.starts_with('"') {
                    Diagnostic::error("E0003", span, "unterminated string literal")
                        .with_hint("close the string with `\"` on the same line")
                } else {
                    Diagnostic::error("E0001", span, format!("unexpected character `{}`", slice.escape_debug()))
                        .with_label("not part of any token")
                };
                errors.push(d);
            }
        }
    }
    (tokens, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Token> {
        let (t, e) = lex(FileId(0), s);
        assert!(e.is_empty(), "{e:?}");
        t.into_iter().map(|(t, _)| t).collect()
    }

    /// The spellings the fuzzers build programs from are the lexer's own tokens, one each.
    #[test]
    fn every_listed_spelling_is_one_token() {
        for s in KEYWORDS.iter().chain(PUNCTUATION) {
            let t = toks(s);
            assert_eq!(t.len(), 1, "{s}: {t:?}");
            assert!(!matches!(t[0], Token::Ident(_) | Token::Number(_) | Token::Str(_)), "{s}: {t:?}");
        }
    }

    #[test]
    fn numbers_keep_their_suffix() {
        assert_eq!(
            toks("1 1.0 1e-3 6.674e-11 2f64 3.5f16"),
            ["1", "1.0", "1e-3", "6.674e-11", "2f64", "3.5f16"].map(|s| Token::Number(s.into())).to_vec()
        );
    }

    #[test]
    fn nested_comments_are_skipped() {
        assert_eq!(toks("a /* x /* y */ z */ b // c\n d").len(), 3);
    }

    #[test]
    fn unterminated_comment_is_reported() {
        let (_, e) = lex(FileId(0), "a /* /* */ b");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].code, "E0002");
    }

    #[test]
    fn field_access_after_number_is_not_a_float() {
        assert_eq!(toks("a.x"), vec![Token::Ident("a".into()), Token::Dot, Token::Ident("x".into())]);
    }
}
