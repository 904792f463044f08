//! The chumsky grammar of `.aii`. Errors recover at item and statement boundaries so that one
//! run reports several mistakes.

// chumsky's error type is large by design and parsers return it by value.
#![allow(clippy::result_large_err)]

use super::ast::*;
use super::lexer::{lex, Token};
use crate::diag::Diagnostic;
use crate::source::{FileId, Span};
use chumsky::error::SimpleReason;
use chumsky::prelude::*;
use chumsky::Stream;

type Err = Simple<Token, Span>;

fn ident() -> impl Parser<Token, Ident, Error = Err> + Clone {
    filter_map(|span: Span, tok| match tok {
        Token::Ident(name) => Ok(Ident { name, span }),
        _ => Err(Simple::expected_input_found(span, Vec::new(), Some(tok))),
    })
    .labelled("identifier")
}

/// The name of a named argument: an identifier, or a keyword that reads naturally there
/// (`@precision(auto, tolerance: 1e-3)`, `transfer(x, from: a.q, to: b.q)`).
fn arg_name() -> impl Parser<Token, Ident, Error = Err> + Clone {
    ident()
        .or(just(Token::Tolerance).map_with_span(|_, span| Ident { name: "tolerance".into(), span }))
        .or(just(Token::From).map_with_span(|_, span| Ident { name: "from".into(), span }))
}

/// An identifier with a fixed spelling that is not a keyword (`sum`, `on`, `assume`, `max`).
fn word(w: &'static str) -> impl Parser<Token, Span, Error = Err> + Clone {
    filter_map(move |span: Span, tok| match &tok {
        Token::Ident(name) if name == w => Ok(span),
        _ => Err(Simple::expected_input_found(span, vec![Some(Token::Ident(w.to_string()))], Some(tok))),
    })
}

fn number_kind(text: &str) -> ExprKind {
    let (body, suffix) = match ["f32", "f64", "f16", "i32", "u32"].iter().find(|s| text.ends_with(*s)) {
        Some(s) => (&text[..text.len() - s.len()], Some(s.to_string())),
        None => (text, None),
    };
    let integer = !body.contains(['.', 'e', 'E']);
    ExprKind::Number { text: body.to_string(), integer, suffix }
}

fn number() -> impl Parser<Token, Expr, Error = Err> + Clone {
    filter_map(|span: Span, tok| match tok {
        Token::Number(text) => Ok(Expr { kind: number_kind(&text), span }),
        _ => Err(Simple::expected_input_found(span, Vec::new(), Some(tok))),
    })
    .labelled("number")
}

fn string() -> impl Parser<Token, (String, Span), Error = Err> + Clone {
    filter_map(|span: Span, tok| match tok {
        Token::Str(s) => Ok((s, span)),
        _ => Err(Simple::expected_input_found(span, Vec::new(), Some(tok))),
    })
    .labelled("string")
}

fn type_expr() -> impl Parser<Token, TypeExpr, Error = Err> + Clone {
    recursive(|ty| {
        let dim = number().or(ident().map(|i| Expr { span: i.span, kind: ExprKind::Name(i.name) }));
        let generic_arg = number().map(Ok).or(ty.clone().map(Err));
        let generic = ident()
            .then(generic_arg.separated_by(just(Token::Comma)).delimited_by(just(Token::Lt), just(Token::Gt)))
            .then(
                dim.separated_by(just(Token::Comma))
                    .delimited_by(just(Token::LBracket), just(Token::RBracket))
                    .or_not(),
            )
            .map_with_span(|((name, args), dims), span| {
                let mut types = Vec::new();
                let mut consts = Vec::new();
                for a in args {
                    match a {
                        Ok(c) => consts.push(c),
                        Err(t) => types.push(t),
                    }
                }
                TypeExpr::Generic { name, args: types, consts, dims: dims.unwrap_or_default(), span }
            });
        let tuple = ty
            .separated_by(just(Token::Comma))
            .allow_trailing()
            .delimited_by(just(Token::LParen), just(Token::RParen))
            .map_with_span(TypeExpr::Tuple);
        choice((
            just(Token::Agent).map_with_span(|_, s| TypeExpr::AnyAgent(s)),
            generic,
            ident().map(TypeExpr::Named),
            tuple,
        ))
    })
    .labelled("type")
}

fn binders() -> impl Parser<Token, Vec<ParamDecl>, Error = Err> + Clone {
    ident()
        .then_ignore(just(Token::Colon))
        .then(type_expr())
        .map(|(name, ty)| ParamDecl { name, ty })
        .separated_by(just(Token::Comma))
        .allow_trailing()
        .delimited_by(just(Token::LParen), just(Token::RParen))
}

/// `sum(b: Body) x * y` binds the whole product `x * y`, as Σ does in print.
fn absorb(lhs: Expr, op: BinOp, rhs: Expr) -> Expr {
    match lhs.kind {
        ExprKind::Quant { q, binders, body } => {
            let span = lhs.span.to(rhs.span);
            let body = Box::new(absorb(*body, op, rhs));
            Expr { kind: ExprKind::Quant { q, binders, body }, span }
        }
        ExprKind::Unary(UnOp::Neg, inner) if matches!(inner.kind, ExprKind::Quant { .. }) => {
            let span = lhs.span.to(rhs.span);
            Expr { kind: ExprKind::Unary(UnOp::Neg, Box::new(absorb(*inner, op, rhs))), span }
        }
        kind => {
            let lhs = Expr { kind, span: lhs.span };
            let span = lhs.span.to(rhs.span);
            Expr { kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)), span }
        }
    }
}

fn binary(op: BinOp, lhs: Expr, rhs: Expr) -> Expr {
    let span = lhs.span.to(rhs.span);
    Expr { kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)), span }
}

/// A block whose last statement is an `if … else …` with values is that value (as in Rust).
fn finish_block(mut stmts: Vec<Stmt>, tail: Option<Expr>, span: Span) -> Block {
    let mut tail = tail.map(Box::new);
    if tail.is_none() {
        if let Some(Stmt::If { els: Some(els), then, .. }) = stmts.last() {
            if then.tail.is_some() && els.tail.is_some() {
                if let Some(Stmt::If { cond, then, els: Some(els), span }) = stmts.pop() {
                    tail = Some(Box::new(Expr { kind: ExprKind::If { cond: Box::new(cond), then, els }, span }));
                }
            }
        }
    }
    Block { stmts, tail, span }
}

struct Grammar {
    expr: Recursive<'static, Token, Expr, Err>,
    block: Recursive<'static, Token, Block, Err>,
}

fn grammar() -> Grammar {
    let mut expr = Recursive::<Token, Expr, Err>::declare();
    let mut block = Recursive::<Token, Block, Err>::declare();

    let arg =
        arg_name().then_ignore(just(Token::Colon)).or_not().then(expr.clone()).map(|(name, value)| Arg { name, value });
    let args = arg
        .separated_by(just(Token::Comma))
        .allow_trailing()
        .delimited_by(just(Token::LParen), just(Token::RParen))
        .boxed();

    let paren = expr
        .clone()
        .separated_by(just(Token::Comma))
        .allow_trailing()
        .delimited_by(just(Token::LParen), just(Token::RParen))
        .map_with_span(|mut items, span| {
            if items.len() == 1 {
                let mut e: Expr = items.remove(0);
                e.span = span;
                // Parentheses end a sum's reach: `(sum(b: B) x) * y` multiplies the whole sum.
                if matches!(e.kind, ExprKind::Quant { .. }) {
                    return Expr {
                        kind: ExprKind::Block(Block { stmts: Vec::new(), tail: Some(Box::new(e)), span }),
                        span,
                    };
                }
                e
            } else {
                Expr { kind: ExprKind::Tuple(items), span }
            }
        })
        .recover_with(nested_delimiters(
            Token::LParen,
            Token::RParen,
            [(Token::LBracket, Token::RBracket), (Token::LBrace, Token::RBrace)],
            |span| Expr { kind: ExprKind::Error, span },
        ));

    let if_expr = just(Token::If)
        .ignore_then(expr.clone())
        .then(block.clone())
        .then_ignore(just(Token::Else))
        .then(block.clone())
        .map_with_span(|((cond, then), els), span| Expr {
            kind: ExprKind::If { cond: Box::new(cond), then, els },
            span,
        });

    let atom = choice((
        number(),
        just(Token::True).map_with_span(|_, span| Expr { kind: ExprKind::Bool(true), span }),
        just(Token::False).map_with_span(|_, span| Expr { kind: ExprKind::Bool(false), span }),
        string().map(|(s, span)| Expr { kind: ExprKind::Str(s), span }),
        ident().map(|i| Expr { kind: ExprKind::Name(i.name), span: i.span }),
        if_expr,
        block.clone().map(|b| Expr { span: b.span, kind: ExprKind::Block(b) }),
        paren,
    ))
    .boxed();

    #[derive(Clone)]
    enum Post {
        Field(Ident),
        Call(Vec<Arg>, Span),
        Index(Vec<Expr>, Span),
    }
    let postfix = atom
        .then(
            choice((
                just(Token::Dot).ignore_then(ident()).map(Post::Field),
                args.clone().map_with_span(Post::Call),
                expr.clone()
                    .separated_by(just(Token::Comma))
                    .delimited_by(just(Token::LBracket), just(Token::RBracket))
                    .map_with_span(Post::Index),
            ))
            .repeated(),
        )
        .foldl(|lhs, post| match post {
            Post::Field(f) => {
                let span = lhs.span.to(f.span);
                Expr { kind: ExprKind::Field(Box::new(lhs), f), span }
            }
            Post::Call(args, s) => {
                let span = lhs.span.to(s);
                Expr { kind: ExprKind::Call { callee: Box::new(lhs), args }, span }
            }
            Post::Index(idx, s) => {
                let span = lhs.span.to(s);
                Expr { kind: ExprKind::Index(Box::new(lhs), idx), span }
            }
        })
        .boxed();

    #[derive(Clone)]
    enum Prefix {
        Un(UnOp),
        Quant(Quantifier, Vec<ParamDecl>),
    }
    let prefix = choice((
        just(Token::Minus).to(Prefix::Un(UnOp::Neg)),
        just(Token::Bang).to(Prefix::Un(UnOp::Not)),
        just(Token::Pairs).ignore_then(binders()).map(|b| Prefix::Quant(Quantifier::Pairs, b)),
        word("sum").ignore_then(binders()).map(|b| Prefix::Quant(Quantifier::Sum, b)),
    ))
    .map_with_span(|p, s| (p, s));
    let unary = prefix
        .repeated()
        .then(postfix)
        .foldr(|(p, s), rhs| {
            let span = s.to(rhs.span);
            let kind = match p {
                Prefix::Un(op) => ExprKind::Unary(op, Box::new(rhs)),
                Prefix::Quant(q, binders) => ExprKind::Quant { q, binders, body: Box::new(rhs) },
            };
            Expr { kind, span }
        })
        .boxed();

    let cast = unary
        .then(just(Token::As).ignore_then(type_expr()).repeated())
        .foldl(|e, ty| {
            let span = e.span.to(ty.span());
            Expr { kind: ExprKind::Cast(Box::new(e), ty), span }
        })
        .boxed();

    let product_op = choice((
        just(Token::Star).to(BinOp::Mul),
        just(Token::Slash).to(BinOp::Div),
        just(Token::Percent).to(BinOp::Rem),
        just(Token::At).to(BinOp::MatMul),
    ));
    let product = cast.clone().then(product_op.then(cast).repeated()).foldl(|l, (op, r)| absorb(l, op, r)).boxed();

    let sum_op = choice((just(Token::Plus).to(BinOp::Add), just(Token::Minus).to(BinOp::Sub)));
    let sum = product.clone().then(sum_op.then(product).repeated()).foldl(|l, (op, r)| binary(op, l, r)).boxed();

    let cmp_op = choice((
        just(Token::EqEq).to(BinOp::Eq),
        just(Token::NotEq).to(BinOp::Ne),
        just(Token::Le).to(BinOp::Le),
        just(Token::Ge).to(BinOp::Ge),
        just(Token::Lt).to(BinOp::Lt),
        just(Token::Gt).to(BinOp::Gt),
    ));
    let compare = sum
        .clone()
        .then(cmp_op.then(sum).or_not())
        .map(|(l, r)| match r {
            Some((op, r)) => binary(op, l, r),
            None => l,
        })
        .boxed();
    let and = compare
        .clone()
        .then(just(Token::AndAnd).to(BinOp::And).then(compare).repeated())
        .foldl(|l, (op, r)| binary(op, l, r))
        .boxed();
    let or =
        and.clone().then(just(Token::OrOr).to(BinOp::Or).then(and).repeated()).foldl(|l, (op, r)| binary(op, l, r));
    expr.define(or.labelled("expression"));

    // Statements.
    let pattern = choice((
        ident().map(Pattern::Name),
        ident()
            .separated_by(just(Token::Comma))
            .allow_trailing()
            .delimited_by(just(Token::LParen), just(Token::RParen))
            .map_with_span(Pattern::Tuple),
    ));
    let let_stmt = just(Token::Let)
        .ignore_then(pattern)
        .then(just(Token::Colon).ignore_then(type_expr()).or_not())
        .then_ignore(just(Token::Eq))
        .then(expr.clone())
        .then_ignore(just(Token::Semi))
        .map_with_span(|((pat, ty), value), span| Stmt::Let { pat, ty, value, span });
    let mut if_stmt = Recursive::<Token, Stmt, Err>::declare();
    if_stmt.define(
        just(Token::If)
            .ignore_then(expr.clone())
            .then(block.clone())
            .then(
                just(Token::Else)
                    .ignore_then(block.clone().or(if_stmt.clone().map_with_span(|s, span| Block {
                        stmts: vec![s],
                        tail: None,
                        span,
                    })))
                    .or_not(),
            )
            .map_with_span(|((cond, then), els), span| Stmt::If { cond, then, els, span }),
    );
    let assign_op = choice((
        just(Token::Eq).to(AssignOp::Set),
        just(Token::PlusEq).to(AssignOp::Add),
        just(Token::MinusEq).to(AssignOp::Sub),
        just(Token::StarEq).to(AssignOp::Mul),
        just(Token::SlashEq).to(AssignOp::Div),
    ));
    // An expression right before the block's `}` without `;` is the block's value (its tail).
    let end = just(Token::Semi).to(false).or(just(Token::RBrace).rewind().to(true));
    let expr_stmt = expr
        .clone()
        .then(assign_op.then(expr.clone()).then_ignore(just(Token::Semi)).map(Ok).or(end.map(Err)))
        .map_with_span(|(target, rest), span| match rest {
            Ok((op, value)) => (Stmt::Assign { target, op, value, span }, false),
            Err(tail) => (Stmt::Expr(target), tail),
        });
    let return_stmt =
        just(Token::Return).ignore_then(expr.clone()).then_ignore(just(Token::Semi)).map_with_span(Stmt::Return);
    // Recovery skips to the end of the broken statement, but never starts at a block's `}`:
    // that is where the statement list ends.
    let stmt = none_of([Token::RBrace])
        .rewind()
        .ignore_then(
            choice((
                let_stmt.map(|s| (s, false)),
                return_stmt.map(|s| (s, false)),
                if_stmt.map(|s| (s, false)),
                expr_stmt,
            ))
            .recover_with(skip_until([Token::Semi, Token::RBrace], |span| (Stmt::Error(span), false))),
        )
        .then_ignore(just(Token::Semi).or_not())
        .boxed();

    block.define(
        stmt.repeated()
            .delimited_by(just(Token::LBrace), just(Token::RBrace))
            .map_with_span(|mut items: Vec<(Stmt, bool)>, span| {
                let tail = match items.last() {
                    Some((Stmt::Expr(_), true)) => match items.pop() {
                        Some((Stmt::Expr(e), _)) => Some(e),
                        _ => None,
                    },
                    _ => None,
                };
                finish_block(items.into_iter().map(|(s, _)| s).collect(), tail, span)
            })
            .recover_with(nested_delimiters(
                Token::LBrace,
                Token::RBrace,
                [(Token::LParen, Token::RParen), (Token::LBracket, Token::RBracket)],
                |span| Block { stmts: vec![Stmt::Error(span)], tail: None, span },
            ))
            .labelled("block"),
    );

    Grammar { expr, block }
}

fn params() -> impl Parser<Token, Vec<ParamDecl>, Error = Err> + Clone {
    binders()
}

fn item(g: &Grammar) -> impl Parser<Token, Item, Error = Err> + Clone {
    let expr = g.expr.clone();
    let block = g.block.clone();

    let annotation = just(Token::At)
        .ignore_then(ident())
        .then(
            arg_name()
                .then_ignore(just(Token::Colon))
                .or_not()
                .then(expr.clone())
                .map(|(name, value)| Arg { name, value })
                .separated_by(just(Token::Comma))
                .allow_trailing()
                .delimited_by(just(Token::LParen), just(Token::RParen))
                .or_not(),
        )
        .map_with_span(|(name, args), span| Annotation { name, args: args.unwrap_or_default(), span });

    let value_decl = ident()
        .then_ignore(just(Token::Colon))
        .then(type_expr())
        .then_ignore(just(Token::Eq))
        .then(expr.clone())
        .then_ignore(just(Token::Semi))
        .map(|((name, ty), value)| ValueDecl { name, ty, value });
    let const_item = just(Token::Const).ignore_then(value_decl.clone()).map(ItemKind::Const);
    let param_item = just(Token::Param).ignore_then(value_decl).map(ItemKind::Param);

    let field_kind = choice((
        just(Token::Property).to(FieldKind::Property),
        just(Token::State).to(FieldKind::State),
        just(Token::Accum).to(FieldKind::Accum),
        just(Token::Derive).to(FieldKind::Derive),
    ));
    let field = field_kind
        .then(ident())
        .then_ignore(just(Token::Colon))
        .then(type_expr())
        .then(just(Token::Eq).ignore_then(expr.clone()).or_not())
        .then_ignore(just(Token::Semi))
        .map_with_span(|(((kind, name), ty), value), span| FieldDecl { kind, name, ty, value, span });
    let agent = just(Token::Agent)
        .ignore_then(ident())
        .then(field.repeated().delimited_by(just(Token::LBrace), just(Token::RBrace)))
        .map(|(name, fields)| ItemKind::Agent(AgentDecl { name, fields }));

    let fn_decl = ident()
        .then(params())
        .then(just(Token::Arrow).ignore_then(type_expr()).or_not())
        .then(block.clone())
        .map(|(((name, params), ret), body)| FnDecl { name, params, ret, body });
    let potential = just(Token::Potential).ignore_then(fn_decl.clone()).map(ItemKind::Potential);
    let function = just(Token::Fn).ignore_then(fn_decl).map(ItemKind::Fn);

    let kind = choice((
        just(Token::Each).to(InteractionKind::Each),
        just(Token::Pairs).to(InteractionKind::Pairs),
        just(Token::Within)
            .ignore_then(
                expr.clone()
                    .then(
                        just(Token::Comma)
                            .ignore_then(word("max"))
                            .ignore_then(just(Token::Colon))
                            .ignore_then(expr.clone())
                            .or_not(),
                    )
                    .then_ignore(just(Token::Comma).or_not())
                    .delimited_by(just(Token::LParen), just(Token::RParen)),
            )
            .map(|(r, max)| InteractionKind::Within { radius: Box::new(r), max: max.map(Box::new) }),
    ))
    .map_with_span(|k, s| (k, s));
    let interaction = just(Token::Interaction)
        .ignore_then(ident())
        .then(params())
        .then(kind)
        .then(just(Token::External).or_not())
        .then(block.clone())
        .map(|((((name, params), (kind, kind_span)), external), body)| {
            ItemKind::Interaction(InteractionDecl { name, params, kind, kind_span, external: external.is_some(), body })
        });

    let renames = ident()
        .then_ignore(just(Token::Colon))
        .then(ident())
        .separated_by(just(Token::Comma))
        .allow_trailing()
        .delimited_by(just(Token::LParen), just(Token::RParen));
    let integrator = just(Token::Integrate)
        .ignore_then(ident())
        .then(params())
        .then(word("on").ignore_then(renames).or_not())
        .then(block.clone())
        .map(|(((name, params), fields), body)| {
            ItemKind::Integrator(IntegratorDecl { name, params, fields: fields.unwrap_or_default(), body })
        });

    let conserve = just(Token::Conserve)
        .ignore_then(ident())
        .then_ignore(just(Token::Colon))
        .then(type_expr())
        .then_ignore(just(Token::Eq))
        .then(expr.clone())
        .then(just(Token::Tolerance).ignore_then(expr.clone()).or_not())
        .then(word("assume").or_not())
        .then_ignore(just(Token::Semi))
        .map(|((((name, ty), value), tolerance), assume)| {
            ItemKind::Conserve(ConserveDecl { name, ty, value, tolerance, assume: assume.is_some() })
        });

    let model = just(Token::Model)
        .ignore_then(ident())
        .then_ignore(just(Token::Eq))
        .then(expr.clone())
        .then_ignore(just(Token::Semi))
        .map(|(name, value)| ItemKind::Model(ModelDecl { name, value }));

    let names = ident().separated_by(just(Token::Comma)).allow_trailing();
    let step_stmt = choice((
        just(Token::Integrate)
            .ignore_then(ident())
            .then(
                expr.clone()
                    .separated_by(just(Token::Comma))
                    .allow_trailing()
                    .delimited_by(just(Token::LParen), just(Token::RParen)),
            )
            .then(word("on").ignore_then(names.clone().delimited_by(just(Token::LParen), just(Token::RParen))).or_not())
            .then(
                ident()
                    .then_ignore(just(Token::Semi))
                    .repeated()
                    .delimited_by(just(Token::LBrace), just(Token::RBrace)),
            )
            .map_with_span(|(((integrator, args), on), body), span| StepStmt::Integrate {
                integrator,
                args,
                on,
                body,
                span,
            }),
        ident().then_ignore(just(Token::Semi)).map(StepStmt::Run),
    ));
    let step = just(Token::Step)
        .ignore_then(step_stmt.repeated().delimited_by(just(Token::LBrace), just(Token::RBrace)))
        .map(ItemKind::Step);

    let spawn_fields = ident()
        .then_ignore(just(Token::Colon))
        .then(expr.clone())
        .separated_by(just(Token::Comma))
        .allow_trailing()
        .delimited_by(just(Token::LBrace), just(Token::RBrace));
    let spawn = just(Token::Spawn)
        .ignore_then(ident())
        .then(just(Token::Star).ignore_then(expr.clone()).or_not())
        .then(just(Token::From).ignore_then(string()).or_not())
        .then(spawn_fields.or_not())
        .then_ignore(just(Token::Semi).or_not())
        .map_with_span(|(((agent, count), from), fields), span| {
            InitStmt::Spawn(Spawn { agent, count, from, fields: fields.unwrap_or_default(), span })
        });
    let init_let = just(Token::Let)
        .ignore_then(ident())
        .then(just(Token::Colon).ignore_then(type_expr()).or_not())
        .then_ignore(just(Token::Eq))
        .then(expr)
        .then_ignore(just(Token::Semi))
        .map(|((name, ty), value)| InitStmt::Let { name, ty, value });
    let init = just(Token::Init)
        .ignore_then(choice((spawn, init_let)).repeated().delimited_by(just(Token::LBrace), just(Token::RBrace)))
        .map(ItemKind::Init);

    let item = annotation
        .repeated()
        .then(choice((
            const_item,
            param_item,
            agent,
            potential,
            function,
            interaction,
            integrator,
            conserve,
            model,
            step,
            init,
        )))
        .map_with_span(|(annotations, kind), span| Item { annotations, kind, span })
        .recover_with(nested_delimiters(
            Token::LBrace,
            Token::RBrace,
            [(Token::LParen, Token::RParen), (Token::LBracket, Token::RBracket)],
            |span| Item { annotations: Vec::new(), kind: ItemKind::Error, span },
        ))
        .recover_with(skip_then_retry_until([Token::RBrace]))
        .labelled("item");
    // Never start an item (or its recovery) at a `}`: that brace closes the enclosing system.
    none_of([Token::RBrace]).rewind().ignore_then(item)
}

#[allow(clippy::large_enum_variant)]
enum Top {
    Use(Use),
    System(System),
    Item(Item),
}

fn file_parser() -> impl Parser<Token, File, Error = Err> {
    let g = grammar();
    let item = item(&g).boxed();
    let use_decl = just(Token::Use)
        .ignore_then(ident().separated_by(just(Token::ColonColon)).at_least(1))
        .then(
            just(Token::ColonColon)
                .ignore_then(choice((
                    just(Token::Star).to(None),
                    ident()
                        .separated_by(just(Token::Comma))
                        .allow_trailing()
                        .delimited_by(just(Token::LBrace), just(Token::RBrace))
                        .map(Some),
                )))
                .or_not(),
        )
        .then_ignore(just(Token::Semi))
        .map_with_span(|(mut path, tail), span| match tail {
            Some(Some(names)) => Use { path, names, glob: false, span },
            Some(None) => Use { path, names: Vec::new(), glob: true, span },
            None => {
                let last = path.pop().into_iter().collect();
                Use { path, names: last, glob: false, span }
            }
        });
    let system = just(Token::System)
        .ignore_then(ident())
        .then(item.clone().repeated().delimited_by(just(Token::LBrace), just(Token::RBrace)))
        .map_with_span(|(name, items), span| System { name, items, span });
    choice((use_decl.map(Top::Use), system.map(Top::System), item.map(Top::Item))).repeated().then_ignore(end()).map(
        |tops| {
            let mut f = File { uses: Vec::new(), systems: Vec::new(), items: Vec::new() };
            for t in tops {
                match t {
                    Top::Use(u) => f.uses.push(u),
                    Top::System(s) => f.systems.push(s),
                    Top::Item(i) => f.items.push(i),
                }
            }
            f
        },
    )
}

fn describe(tok: &Option<Token>) -> String {
    match tok {
        Some(t) => t.to_string(),
        None => "end of file".to_string(),
    }
}

fn to_diagnostic(e: Err) -> Diagnostic {
    match e.reason() {
        SimpleReason::Unclosed { span, delimiter } => {
            Diagnostic::error("E0011", e.span(), format!("unclosed delimiter {delimiter}"))
                .with_label(format!("expected the closing delimiter here, found {}", describe(&e.found().cloned())))
                .with_note(*span, "opened here")
                .with_hint("add the missing closing delimiter")
        }
        SimpleReason::Custom(msg) => Diagnostic::error("E0010", e.span(), msg.clone()),
        SimpleReason::Unexpected => {
            let mut expected: Vec<String> = e.expected().map(describe).collect();
            expected.sort();
            expected.dedup();
            let found = describe(&e.found().cloned());
            let mut d = Diagnostic::error("E0010", e.span(), format!("unexpected {found}"));
            d = match e.label() {
                Some(label) => d.with_label(format!("while parsing {label}")),
                None => d.with_label("not expected here"),
            };
            if !expected.is_empty() {
                let list =
                    if expected.len() > 8 { format!("{}, …", expected[..8].join(", ")) } else { expected.join(", ") };
                d = d.with_hint(format!("expected one of {list}"));
            }
            d
        }
    }
}

/// Parses one file. The tree comes back whenever recovery produced one, even with errors.
/// Deeper nesting than this is refused before parsing: no program needs it, and the recursive
/// parser would exhaust its stack.
pub const MAX_NESTING: usize = 256;

fn too_deep(tokens: &[(Token, Span)]) -> Option<Diagnostic> {
    let mut depth = 0usize;
    for (t, span) in tokens {
        match t {
            Token::LParen | Token::LBrace | Token::LBracket => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(
                        Diagnostic::error("E0012", *span, format!("brackets nest more than {MAX_NESTING} deep"))
                            .with_hint("split the expression with `let` bindings"),
                    );
                }
            }
            Token::RParen | Token::RBrace | Token::RBracket => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

pub fn parse(file: FileId, text: &str) -> (Option<File>, Vec<Diagnostic>) {
    let (tokens, mut diags) = lex(file, text);
    if let Some(d) = too_deep(&tokens) {
        diags.push(d);
        return (None, diags);
    }
    let eoi = Span::new(file, text.len(), text.len());
    let stream = Stream::from_iter(eoi, tokens.into_iter());
    let (ast, errors) = file_parser().parse_recovery(stream);
    diags.extend(errors.into_iter().map(to_diagnostic));
    (ast, diags)
}

/// Parses a lone expression; used by `--set NAME=EXPR` and tests.
pub fn parse_expr(file: FileId, text: &str) -> Result<Expr, Vec<Diagnostic>> {
    let (tokens, diags) = lex(file, text);
    if !diags.is_empty() {
        return Err(diags);
    }
    let eoi = Span::new(file, text.len(), text.len());
    let g = grammar();
    g.expr
        .then_ignore(end())
        .parse(Stream::from_iter(eoi, tokens.into_iter()))
        .map_err(|es| es.into_iter().map(to_diagnostic).collect())
}

#[allow(dead_code)]
fn block_parser() -> Recursive<'static, Token, Block, Err> {
    grammar().block
}
