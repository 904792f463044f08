//! Text to syntax tree: lexer (logos), parser (chumsky), tree, spans.

pub mod ast;
pub mod lexer;
pub mod parser;

pub use parser::{parse, parse_expr};
