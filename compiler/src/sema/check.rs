//! Program-level checking: collects items, checks agents, constants, interactions, laws, the
//! step and init, and produces the HIR `Program`.

use super::hir::*;
use super::loader::Module;
use super::scope::{Binding, BodyCx, Mode};
use super::types::{AgentId, Scalar, Ty, F32};
use crate::diag::{Diagnostic, Diagnostics};
use crate::source::{SourceMap, Span};
use crate::syntax::ast;
use aiic_runtime::ir::Precision;
use std::collections::HashMap;
use std::path::PathBuf;

/// The most agents one spawn statement (or `--count`) may create.
pub const MAX_AGENTS: u64 = i32::MAX as u64;

/// Settings that change what a program means: which system, and `--set` overrides.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    pub system: Option<String>,
    /// `NAME=VALUE` pairs from `--set`, applied to consts and params.
    pub set: Vec<(String, String)>,
    /// Directory that `spawn … from "file"` paths are relative to.
    pub base_dir: PathBuf,
}

/// A function or potential visible in the system.
#[derive(Clone, Copy)]
pub struct Callable<'a> {
    pub decl: &'a ast::FnDecl,
    pub potential: bool,
    pub module: Option<usize>,
}

#[derive(Clone, Copy)]
pub struct IntegratorRef<'a> {
    pub decl: &'a ast::IntegratorDecl,
    pub symplectic: bool,
    pub module: Option<usize>,
}

pub struct Checker<'a> {
    pub sources: &'a SourceMap,
    pub diags: Diagnostics,
    pub modules: &'a [Module],
    pub agents: Vec<Agent>,
    pub agent_names: HashMap<String, AgentId>,
    pub derive_ast: HashMap<(AgentId, FieldId), &'a ast::Expr>,
    pub consts: Vec<Const>,
    pub const_names: HashMap<String, usize>,
    /// Constants of each stdlib module, the fallbacks of its bodies' free names.
    pub module_consts: Vec<HashMap<String, ConstValue>>,
    pub params: Vec<Param>,
    pub param_names: HashMap<String, ParamId>,
    pub models: Vec<Model>,
    pub model_names: HashMap<String, usize>,
    pub callables: HashMap<String, Callable<'a>>,
    pub integrators: HashMap<String, IntegratorRef<'a>>,
    pub interaction_names: HashMap<String, InteractionId>,
    pub options: &'a CheckOptions,
}

fn has_annotation(item: &ast::Item, name: &str) -> bool {
    item.annotations.iter().any(|a| a.name.name == name)
}

impl<'a> Checker<'a> {
    pub fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn duplicate(&mut self, what: &str, name: &ast::Ident, first: Span) {
        self.error(
            Diagnostic::error("E0103", name.span, format!("{what} `{}` is defined twice", name.name))
                .with_label("second definition")
                .with_note(first, "first defined here")
                .with_hint(format!("rename or remove one of the two {what} definitions")),
        );
    }

    /// Resolves a written type. Agent names resolve to `Ty::Agent`.
    pub fn resolve_type(&mut self, t: &ast::TypeExpr) -> Ty {
        match t {
            ast::TypeExpr::Named(id) => {
                if let Some(s) = Scalar::from_name(&id.name) {
                    return Ty::Scalar(s);
                }
                match id.name.as_str() {
                    "vec2" => return Ty::vec(2),
                    "vec3" => return Ty::vec(3),
                    "vec4" => return Ty::vec(4),
                    "mat2" => return Ty::Mat(2),
                    "mat3" => return Ty::Mat(3),
                    "mat4" => return Ty::Mat(4),
                    _ => {}
                }
                if let Some(&a) = self.agent_names.get(&id.name) {
                    return Ty::Agent(a);
                }
                self.error(
                    Diagnostic::error("E0202", id.span, format!("unknown type `{}`", id.name))
                        .with_hint("types are f32 f64 f16 bf16 i32 u32 bool vec2 vec3 vec4 mat2 mat3 mat4 vec<T, N> tensor<T>[..], or an agent name"),
                );
                Ty::Error
            }
            // Generic functions handle `agent` parameters before resolving types: anywhere else
            // it names no type, and staying silent here would let an untyped value reach lowering.
            ast::TypeExpr::AnyAgent(span) => {
                self.error(Diagnostic::error("E0202", *span, "`agent` is not a type here").with_hint(
                    "`agent` stands for any agent only in a function's parameters; name an agent or a value type",
                ));
                Ty::Error
            }
            ast::TypeExpr::Tuple(ts, _) => Ty::Tuple(ts.iter().map(|t| self.resolve_type(t)).collect()),
            ast::TypeExpr::Generic { name, args, consts, dims, span } => {
                let elem = match args.first().map(|a| self.resolve_type(a)) {
                    Some(Ty::Scalar(s)) => s,
                    Some(Ty::Error) => return Ty::Error,
                    _ => {
                        self.error(
                            Diagnostic::error("E0202", *span, "expected a scalar element type such as `f32`")
                                .with_hint("write e.g. `vec<f32, 8>` or `tensor<f16>[64, 6]`"),
                        );
                        return Ty::Error;
                    }
                };
                let mut ints = Vec::new();
                for e in consts.iter().chain(dims.iter()) {
                    match self.const_usize(e) {
                        Some(n) if n > 0 => ints.push(n as u32),
                        _ => {
                            self.error(Diagnostic::error(
                                "E0211",
                                e.span,
                                "a size must be a positive integer constant",
                            ));
                            return Ty::Error;
                        }
                    }
                }
                match name.name.as_str() {
                    "vec" if ints.len() == 1 => Ty::Vec(elem, ints[0]),
                    "tensor" if !ints.is_empty() => Ty::Tensor(elem, ints),
                    _ => {
                        self.error(
                            Diagnostic::error("E0202", *span, format!("unknown type `{}<…>`", name.name))
                                .with_hint("the generic types are `vec<T, N>` and `tensor<T>[D0, D1, …]`"),
                        );
                        Ty::Error
                    }
                }
            }
        }
    }

    /// Evaluates a constant expression of the user's system.
    pub fn const_value(&mut self, e: &ast::Expr, module: Option<usize>) -> Option<ConstValue> {
        let mut cx = BodyCx::new(Mode::Const);
        cx.module = module;
        let h = self.expr(&mut cx, e);
        if h.ty.is_error() {
            return None;
        }
        match crate::lower::eval_const(&h, &cx.locals) {
            // An infinite or NaN constant poisons everything it touches, the proofs included.
            Ok(lanes) if lanes.iter().any(|v| !v.is_finite()) => {
                let shown: Vec<String> = lanes.iter().map(|v| v.to_string()).collect();
                self.error(
                    Diagnostic::error(
                        "E0215",
                        e.span,
                        format!("this constant is not a finite number: it evaluates to {}", shown.join(", ")),
                    )
                    .with_hint("look for an overflow, a division by zero or a function outside its domain"),
                );
                None
            }
            Ok(lanes) => Some(ConstValue { ty: h.ty.settled(), lanes }),
            Err(why) => {
                self.error(
                    Diagnostic::error("E0211", e.span, format!("not a constant: {why}"))
                        .with_hint("constants may use literals, other constants and math functions"),
                );
                None
            }
        }
    }

    pub fn const_usize(&mut self, e: &ast::Expr) -> Option<u64> {
        let v = self.const_value(e, None)?;
        let x = *v.lanes.first()?;
        (x >= 0.0 && x.fract() == 0.0 && x.is_finite() && v.lanes.len() == 1).then_some(x as u64)
    }

    fn const_f64(&mut self, e: &ast::Expr) -> Option<f64> {
        let v = self.const_value(e, None)?;
        (v.lanes.len() == 1).then(|| v.lanes[0])
    }

    /// A `--set` value, parsed and evaluated as a constant expression.
    fn override_value(&mut self, name: &str, span: Span) -> Option<ConstValue> {
        let (_, text) = self.options.set.iter().rev().find(|(n, _)| n == name)?;
        match crate::syntax::parse_expr(span.file, text) {
            Ok(mut e) => {
                relocate(&mut e, span);
                self.const_value(&e, None)
            }
            Err(_) => {
                self.error(
                    Diagnostic::error("E0800", span, format!("`--set {name}={text}`: the value is not an expression"))
                        .with_hint("give a number or constant expression, e.g. `--set dt=1e-4`"),
                );
                None
            }
        }
    }

    fn convert_value(&mut self, v: ConstValue, want: &Ty, span: Span, what: &str) -> Option<ConstValue> {
        if v.ty.fits(want) || (v.ty.is_numeric_scalar() && want.is_numeric_scalar()) && v.lanes.len() == want.lanes() {
            return Some(ConstValue { ty: want.clone(), lanes: v.lanes });
        }
        self.error(Diagnostic::error("E0203", span, format!("{what} has type `{want}` but its value is `{}`", v.ty)));
        None
    }

    fn collect_module_consts(&mut self) {
        for (m, module) in self.modules.iter().enumerate() {
            let mut table = HashMap::new();
            for item in &module.ast.items {
                if let ast::ItemKind::Const(c) = &item.kind {
                    let ty = self.resolve_type(&c.ty);
                    if let Some(v) = self.const_value(&c.value, Some(m)) {
                        if let Some(v) = self.convert_value(v, &ty, c.value.span, "the constant") {
                            table.insert(c.name.name.clone(), v);
                        }
                    }
                }
            }
            self.module_consts.push(table);
            if self.module_consts.len() <= m {
                self.module_consts.resize(m + 1, HashMap::new());
            }
        }
    }

    fn register_module_items(&mut self, uses: &'a [ast::Use]) {
        let mut imported: HashMap<usize, Vec<&'a ast::Ident>> = HashMap::new();
        let mut glob: Vec<usize> = Vec::new();
        for u in uses {
            let path: Vec<&str> = u.path.iter().map(|i| i.name.as_str()).collect();
            let module = match path.as_slice() {
                ["std", m] => self.modules.iter().position(|x| x.name == *m),
                _ => None,
            };
            match module {
                Some(m) if u.glob => glob.push(m),
                Some(m) => imported.entry(m).or_default().extend(u.names.iter()),
                None => {
                    let names: Vec<&str> = self.modules.iter().map(|m| m.name.as_str()).collect();
                    self.error(
                        Diagnostic::error("E0101", u.span, format!("unknown module `{}`", path.join("::")))
                            .with_hint(format!("the standard library modules are std::{}", names.join(", std::"))),
                    );
                }
            }
        }
        for (m, module) in self.modules.iter().enumerate() {
            let wanted = imported.get(&m);
            let all = module.prelude || glob.contains(&m);
            let mut found: Vec<&str> = Vec::new();
            for item in &module.ast.items {
                let name = match &item.kind {
                    ast::ItemKind::Fn(f) | ast::ItemKind::Potential(f) => &f.name,
                    ast::ItemKind::Integrator(i) => &i.name,
                    _ => continue,
                };
                let visible = all || wanted.is_some_and(|w| w.iter().any(|i| i.name == name.name));
                if !visible {
                    continue;
                }
                found.push(&name.name);
                match &item.kind {
                    ast::ItemKind::Fn(f) => {
                        self.callables
                            .insert(f.name.name.clone(), Callable { decl: f, potential: false, module: Some(m) });
                    }
                    ast::ItemKind::Potential(f) => {
                        self.callables
                            .insert(f.name.name.clone(), Callable { decl: f, potential: true, module: Some(m) });
                    }
                    ast::ItemKind::Integrator(i) => {
                        let symplectic = has_annotation(item, "symplectic");
                        self.integrators
                            .insert(i.name.name.clone(), IntegratorRef { decl: i, symplectic, module: Some(m) });
                    }
                    _ => {}
                }
            }
            if let Some(w) = wanted {
                for id in w {
                    if !found.contains(&id.name.as_str()) {
                        self.error(
                            Diagnostic::error(
                                "E0102",
                                id.span,
                                format!("`std::{}` has no item `{}`", module.name, id.name),
                            )
                            .with_hint(format!("it offers: {}", module_items(module).join(", "))),
                        );
                    }
                }
            }
        }
    }

    fn check_agents(&mut self, items: &'a [ast::Item]) {
        for item in items {
            let ast::ItemKind::Agent(a) = &item.kind else { continue };
            if let Some(&prev) = self.agent_names.get(&a.name.name) {
                let first = self.agents[prev].span;
                self.duplicate("agent", &a.name, first);
                continue;
            }
            self.agent_names.insert(a.name.name.clone(), self.agents.len());
            self.agents.push(Agent { name: a.name.name.clone(), fields: Vec::new(), span: a.name.span });
        }
        for item in items {
            let ast::ItemKind::Agent(a) = &item.kind else { continue };
            let id = self.agent_names[&a.name.name];
            if self.agents[id].span != a.name.span {
                continue;
            }
            let mut fields: Vec<Field> = Vec::new();
            for f in &a.fields {
                if let Some(prev) = fields.iter().find(|x| x.name == f.name.name) {
                    let first = prev.span;
                    self.duplicate("field", &f.name, first);
                    continue;
                }
                let ty = self.resolve_type(&f.ty);
                if matches!(ty, Ty::Agent(_) | Ty::Tuple(_) | Ty::Tensor(..)) {
                    self.error(
                        Diagnostic::error(
                            "E0202",
                            f.ty.span(),
                            format!("a field cannot have type `{}`", self.ty_name(&ty)),
                        )
                        .with_hint("fields are scalars, vectors or matrices"),
                    );
                }
                let kind = match f.kind {
                    ast::FieldKind::Property => FieldKind::Property,
                    ast::FieldKind::State => FieldKind::State,
                    ast::FieldKind::Accum => FieldKind::Accum,
                    ast::FieldKind::Derive => FieldKind::Derive,
                };
                match (kind, &f.value) {
                    (FieldKind::Derive, None) => self.error(
                        Diagnostic::error("E0204", f.span, format!("derive field `{}` needs a value", f.name.name))
                            .with_hint(format!("write `derive {}: TYPE = EXPR;`", f.name.name)),
                    ),
                    (FieldKind::Derive, Some(e)) => {
                        self.derive_ast.insert((id, fields.len()), e);
                    }
                    (_, Some(e)) => self.error(
                        Diagnostic::error("E0204", e.span, "only `derive` fields have a value here")
                            .with_hint("set initial values in `init` with `spawn`"),
                    ),
                    _ => {}
                }
                fields.push(Field { name: f.name.name.clone(), kind, ty, derive: None, span: f.name.span });
            }
            self.agents[id].fields = fields;
        }
        // Check each derive expression once where it is declared, so errors are reported there,
        // in declaration order so that the same program always gives the same report.
        let mut derives: Vec<_> = self.derive_ast.clone().into_iter().collect();
        derives.sort_by_key(|(at, _)| *at);
        for ((agent, field), e) in derives {
            let mut cx = BodyCx::new(Mode::Interaction);
            let slot = cx.add_slot(agent);
            let h = self.derive_use(&mut cx, slot, agent, field, e.span);
            let want = self.agents[agent].fields[field].ty.clone();
            if !h.ty.fits(&want) {
                self.error(Diagnostic::error(
                    "E0203",
                    e.span,
                    format!(
                        "derive field has type `{}` but its value is `{}`",
                        self.ty_name(&want),
                        self.ty_name(&h.ty)
                    ),
                ));
            }
            self.agents[agent].fields[field].derive = Some(h);
        }
    }

    fn check_values(&mut self, items: &'a [ast::Item]) {
        let mut seen: HashMap<String, Span> = HashMap::new();
        for item in items {
            match &item.kind {
                ast::ItemKind::Const(c) => {
                    if let Some(&first) = seen.get(&c.name.name) {
                        self.duplicate("constant", &c.name, first);
                        continue;
                    }
                    seen.insert(c.name.name.clone(), c.name.span);
                    let ty = self.resolve_type(&c.ty);
                    let v = match self.override_value(&c.name.name, c.name.span) {
                        Some(v) => Some(v),
                        None => self.const_value(&c.value, None),
                    };
                    if let Some(v) = v.and_then(|v| self.convert_value(v, &ty, c.value.span, "the constant")) {
                        self.const_names.insert(c.name.name.clone(), self.consts.len());
                        self.consts.push(Const { name: c.name.name.clone(), value: v, span: c.name.span });
                    }
                }
                ast::ItemKind::Param(p) => {
                    if let Some(&first) = seen.get(&p.name.name) {
                        self.duplicate("parameter", &p.name, first);
                        continue;
                    }
                    seen.insert(p.name.name.clone(), p.name.span);
                    let ty = self.resolve_type(&p.ty);
                    let (default, source) = if let Ty::Tensor(..) = ty {
                        let source = self.tensor_source(&p.value);
                        let value = source.as_ref().and_then(|path| self.load_tensor(path, &ty, p.value.span));
                        (value, source)
                    } else {
                        let v = match self.override_value(&p.name.name, p.name.span) {
                            Some(v) => Some(v),
                            None => self.const_value(&p.value, None),
                        };
                        (v.and_then(|v| self.convert_value(v, &ty, p.value.span, "the parameter")), None)
                    };
                    self.param_names.insert(p.name.name.clone(), self.params.len());
                    self.params.push(Param { name: p.name.name.clone(), ty, default, source, span: p.name.span });
                }
                ast::ItemKind::Model(m) => {
                    let (mlp, hosted) = match self.check_model(m) {
                        Some(Ok(mlp)) => (Some(mlp), None),
                        Some(Err(hosted)) => (None, Some(hosted)),
                        None => (None, None),
                    };
                    self.model_names.insert(m.name.name.clone(), self.models.len());
                    self.models.push(Model { name: m.name.name.clone(), span: m.name.span, mlp, hosted });
                }
                _ => {}
            }
        }
        for (name, _) in &self.options.set {
            if !self.const_names.contains_key(name) && !self.param_names.contains_key(name) {
                let span = Span::default();
                let known: Vec<&str> = self
                    .consts
                    .iter()
                    .map(|c| c.name.as_str())
                    .chain(self.params.iter().map(|p| p.name.as_str()))
                    .collect();
                self.diags.push(
                    Diagnostic::error(
                        "E0800",
                        span,
                        format!("`--set {name}=…`: the system has no const or param `{name}`"),
                    )
                    .with_hint(format!("it has: {}", known.join(", "))),
                );
            }
        }
    }

    fn tensor_source(&mut self, e: &ast::Expr) -> Option<PathBuf> {
        if let ast::ExprKind::Call { callee, args } = &e.kind {
            if matches!(&callee.kind, ast::ExprKind::Name(n) if n == "load") {
                if let [ast::Arg { value: ast::Expr { kind: ast::ExprKind::Str(s), .. }, .. }] = args.as_slice() {
                    return Some(self.options.base_dir.join(s));
                }
            }
        }
        self.error(Diagnostic::error("E0211", e.span, "a tensor parameter's value must be `load(\"file.npy\")`"));
        None
    }

    /// The values of a tensor parameter from its `.npy` file, checked against the declared
    /// shape and rounded to the declared element type.
    fn load_tensor(&mut self, path: &std::path::Path, ty: &Ty, span: Span) -> Option<ConstValue> {
        let Ty::Tensor(elem, dims) = ty else { return None };
        let (shape, values) = match aiic_runtime::input::read_tensor(path) {
            Ok(t) => t,
            // A program may be checked before its weights exist; running it needs them (E0216
            // where a kernel reads the parameter).
            Err(aiic_runtime::input::InputError::NotFound { .. }) => return None,
            Err(e) => {
                self.error(
                    Diagnostic::error("E0216", span, format!("cannot load the tensor: {e}"))
                        .with_hint("the path is relative to the source file; save the array with numpy.save"),
                );
                return None;
            }
        };
        let want: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
        if shape != want {
            let show = |d: &[usize]| d.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
            self.error(
                Diagnostic::error(
                    "E0216",
                    span,
                    format!(
                        "the array in {} has shape [{}], but the parameter is declared [{}]",
                        path.display(),
                        show(&shape),
                        show(&want)
                    ),
                )
                .with_hint("a matrix is [rows, cols] = [outputs, inputs], like PyTorch's Linear.weight"),
            );
            return None;
        }
        if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
            self.error(Diagnostic::error(
                "E0216",
                span,
                format!("element {bad} of the tensor in {} is not a finite number", path.display()),
            ));
            return None;
        }
        let lanes = values.into_iter().map(|v| aiic_runtime::input::round_to(*elem, v)).collect();
        Some(ConstValue { ty: ty.clone(), lanes })
    }

    /// Checks a model declaration; an `mlp` comes back as its layers.
    /// The model: an `mlp` (written so, or read from ONNX), or an ONNX model run as it is.
    fn check_model(&mut self, m: &ast::ModelDecl) -> Option<Result<Mlp, HostedOnnx>> {
        if let ast::ExprKind::Call { callee, args } = &m.value.kind {
            if matches!(&callee.kind, ast::ExprKind::Name(n) if n == "mlp") {
                return self.check_mlp(m, args).map(Ok);
            }
            if let (
                ast::ExprKind::Name(n),
                [ast::Arg { name: None, value: ast::Expr { kind: ast::ExprKind::Str(file), span } }],
            ) = (&callee.kind, args.as_slice())
            {
                if n == "onnx" {
                    return self.import_onnx(m, file, *span);
                }
            }
        }
        let ok = match &m.value.kind {
            ast::ExprKind::Call { callee, args } => match &callee.kind {
                ast::ExprKind::Name(n) if n == "onnx" => {
                    matches!(args.as_slice(), [ast::Arg { value: ast::Expr { kind: ast::ExprKind::Str(_), .. }, .. }])
                }
                ast::ExprKind::Name(n) if n == "mlp" => args.iter().all(|a| match (&a.name, &a.value.kind) {
                    (None, ast::ExprKind::Name(p)) => self.param_names.contains_key(p),
                    (Some(k), ast::ExprKind::Name(_)) => k.name == "act",
                    _ => false,
                }),
                _ => false,
            },
            _ => false,
        };
        if !ok {
            self.error(
                Diagnostic::error(
                    "E0205",
                    m.value.span,
                    "a model is `onnx(\"file.onnx\")` or `mlp(W1, b1, W2, b2, act: tanh)` over tensor parameters",
                )
                .with_label("not a model constructor"),
            );
        }
        None
    }

    /// `onnx("file.onnx")`: a model of dense layers, read into an `mlp` whose weights and biases
    /// are parameters named after the model (`net.w1`, `net.b1`, …), which no program can name.
    /// Other models run as they are where they take one matrix of agents' values and give one.
    fn import_onnx(&mut self, m: &ast::ModelDecl, file: &str, span: Span) -> Option<Result<Mlp, HostedOnnx>> {
        let path = self.options.base_dir.join(file);
        let fail = |msg: String| Diagnostic::error("E0205", span, msg);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            // As with tensor parameters, a program may be checked before its model exists;
            // lowering a call of it says the file is missing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                self.error(
                    fail(format!("cannot read {}: {e}", path.display()))
                        .with_hint("the path is relative to the source file"),
                );
                return None;
            }
        };
        let imported = match super::onnx_import::import(&bytes) {
            Ok(i) => i,
            Err(reason) => {
                return match aiic_runtime::onnx::hosted::signature(&bytes) {
                    Ok((inputs, outputs, batch)) => {
                        self.diags.push(
                            Diagnostic::warning(
                                "W0004",
                                span,
                                format!(
                                    "model `{}` runs as it is, through ONNX Runtime (or tract) on the host, its columns copied every step: aiic cannot read it into its own code ({reason})",
                                    m.name.name
                                ),
                            )
                            .with_hint("models of Gemm/MatMul/Add layers with Tanh, Relu, Sigmoid, silu or tanh-Gelu between them run on every target, tensor cores included"),
                        );
                        Some(Err(HostedOnnx { file: file.to_string(), bytes, inputs, outputs, batch, reason }))
                    }
                    Err(e) => {
                        self.error(fail(format!(
                            "model `{}` in {}: {reason}; nor can it run as it is: {e}",
                            m.name.name,
                            path.display()
                        )));
                        None
                    }
                };
            }
        };
        let mut layers = Vec::new();
        for (i, l) in imported.layers.iter().enumerate() {
            let mut tensor = |name: String, dims: Vec<u32>, values: &[f64]| {
                let ty = Ty::Tensor(aiic_runtime::ir::Scalar::F32, dims);
                let lanes =
                    values.iter().map(|&v| aiic_runtime::input::round_to(aiic_runtime::ir::Scalar::F32, v)).collect();
                let default = Some(ConstValue { ty: ty.clone(), lanes });
                self.params.push(Param { name, ty, default, source: Some(path.clone()), span });
                self.params.len() - 1
            };
            let w = tensor(format!("{}.w{}", m.name.name, i + 1), vec![l.out, l.inp], &l.weight);
            let b = tensor(format!("{}.b{}", m.name.name, i + 1), vec![l.out], &l.bias);
            layers.push((w, b));
        }
        let inputs = imported.layers[0].inp;
        let outputs = imported.layers.last().map_or(0, |l| l.out);
        Some(Ok(Mlp { layers, act: imported.act, inputs, outputs }))
    }

    /// `mlp(W1, b1, W2, b2, …, act: f)`: weights `[out, in]`, biases `[out]`, each layer's
    /// input the previous layer's output.
    fn check_mlp(&mut self, m: &ast::ModelDecl, args: &[ast::Arg]) -> Option<Mlp> {
        let mut act = None;
        let mut tensors: Vec<(ParamId, Vec<u32>, Span)> = Vec::new();
        for a in args {
            match (&a.name, &a.value.kind) {
                (Some(k), ast::ExprKind::Name(f)) if k.name == "act" => match Activation::from_name(f) {
                    Some(x) => act = Some(x),
                    None => {
                        self.error(
                            Diagnostic::error("E0205", a.value.span, format!("unknown activation `{f}`"))
                                .with_hint("activations: tanh, relu, sigmoid, gelu, silu"),
                        );
                        return None;
                    }
                },
                (None, ast::ExprKind::Name(p)) => match self.param_names.get(p).map(|&i| (i, &self.params[i].ty)) {
                    Some((i, Ty::Tensor(_, dims))) => tensors.push((i, dims.clone(), a.value.span)),
                    _ => {
                        self.error(
                            Diagnostic::error("E0205", a.value.span, format!("`{p}` is not a tensor parameter"))
                                .with_hint("declare it first: `param W1: tensor<f32>[64, 6] = load(\"w1.npy\");`"),
                        );
                        return None;
                    }
                },
                _ => {
                    self.error(
                        Diagnostic::error("E0205", a.value.span, "an mlp takes tensor parameters and `act: f`")
                            .with_hint("write `mlp(W1, b1, W2, b2, act: tanh)`"),
                    );
                    return None;
                }
            }
        }
        if tensors.is_empty() || !tensors.len().is_multiple_of(2) {
            self.error(
                Diagnostic::error("E0205", m.value.span, "an mlp takes a weight and a bias per layer")
                    .with_hint("write `mlp(W1, b1, W2, b2, act: tanh)`"),
            );
            return None;
        }
        let mut layers = Vec::new();
        let mut width: Option<u32> = None;
        for pair in tensors.chunks(2) {
            let ((w, wd, wspan), (b, bd, bspan)) = (&pair[0], &pair[1]);
            let [out, inp] = wd.as_slice() else {
                self.error(Diagnostic::error("E0205", *wspan, "a layer's weight is a matrix `tensor<T>[out, in]`"));
                return None;
            };
            if let Some(prev) = width.filter(|p| p != inp) {
                self.error(
                    Diagnostic::error(
                        "E0205",
                        *wspan,
                        format!("this layer takes {inp} inputs, but the layer before gives {prev}"),
                    )
                    .with_hint("a weight is [out, in], like PyTorch's Linear.weight"),
                );
                return None;
            }
            if bd.as_slice() != [*out] {
                self.error(Diagnostic::error("E0205", *bspan, format!("a bias of this layer is `tensor<T>[{out}]`")));
                return None;
            }
            width = Some(*out);
            layers.push((*w, *b));
        }
        let inputs = tensors[0].1[1];
        let act = match act {
            Some(a) => a,
            // One layer has no activation to choose.
            None if layers.len() == 1 => Activation::Tanh,
            None => {
                self.error(
                    Diagnostic::error("E0205", m.value.span, "an mlp of several layers needs its activation")
                        .with_hint("add `act: tanh` (or relu, sigmoid, gelu, silu)"),
                );
                return None;
            }
        };
        Some(Mlp { layers, act, inputs, outputs: width.unwrap_or(0) })
    }

    fn register_callables(&mut self, items: &'a [ast::Item]) {
        for item in items {
            match &item.kind {
                ast::ItemKind::Fn(f) => {
                    self.callables.insert(f.name.name.clone(), Callable { decl: f, potential: false, module: None });
                }
                ast::ItemKind::Potential(f) => {
                    self.callables.insert(f.name.name.clone(), Callable { decl: f, potential: true, module: None });
                }
                ast::ItemKind::Integrator(i) => {
                    let symplectic = has_annotation(item, "symplectic");
                    self.integrators.insert(i.name.name.clone(), IntegratorRef { decl: i, symplectic, module: None });
                }
                _ => {}
            }
        }
    }

    /// Checks every potential and function once on its own, so errors in unused ones show too.
    fn check_callable_signatures(&mut self, items: &'a [ast::Item]) {
        for item in items {
            let (f, potential) = match &item.kind {
                ast::ItemKind::Fn(f) => (f, false),
                ast::ItemKind::Potential(f) => (f, true),
                _ => continue,
            };
            if potential {
                let agents = f
                    .params
                    .iter()
                    .take_while(|p| {
                        matches!(p.ty, ast::TypeExpr::AnyAgent(_))
                            || matches!(&p.ty, ast::TypeExpr::Named(n) if self.agent_names.contains_key(&n.name))
                    })
                    .count();
                if agents != 2 {
                    self.error(
                        Diagnostic::error(
                            "E0204",
                            f.name.span,
                            format!("potential `{}` must take two agents first", f.name.name),
                        )
                        .with_hint(format!("write `potential {}(a: Body, b: Body) -> f32 {{ … }}`", f.name.name)),
                    );
                }
                if let Some(r) = &f.ret {
                    let t = self.resolve_type(r);
                    if !t.is_float_scalar() && !t.is_error() {
                        self.error(
                            Diagnostic::error("E0203", r.span(), "a potential returns an energy: a float scalar")
                                .with_hint("use `-> f32`"),
                        );
                    }
                }
            }
            // Concrete signatures can be checked right away; generic ones are checked at each use.
            let generic = f.params.iter().any(|p| matches!(p.ty, ast::TypeExpr::AnyAgent(_)));
            if !generic {
                let mut cx = BodyCx::new(Mode::Function);
                let mut args = Vec::new();
                for p in &f.params {
                    let ty = self.resolve_type(&p.ty);
                    let arg = match ty {
                        Ty::Agent(a) => {
                            let slot = cx.add_slot(a);
                            HExpr { kind: HKind::AgentRef(slot), ty, span: p.name.span }
                        }
                        ty => {
                            let l = cx.new_local(&p.name.name, ty.clone());
                            HExpr { kind: HKind::Local(l), ty, span: p.name.span }
                        }
                    };
                    args.push(arg);
                }
                let c = Callable { decl: f, potential, module: None };
                self.inline_call(&mut cx, c, args, f.name.span);
            }
        }
    }

    fn check_interactions(&mut self, items: &'a [ast::Item]) -> Vec<Interaction> {
        let mut out: Vec<Interaction> = Vec::new();
        for item in items {
            let ast::ItemKind::Interaction(d) = &item.kind else { continue };
            if let Some(&prev) = self.interaction_names.get(&d.name.name) {
                let first = out[prev].span;
                self.duplicate("interaction", &d.name, first);
                continue;
            }
            let mut cx = BodyCx::new(Mode::Interaction);
            let mut agents = Vec::new();
            for p in &d.params {
                match self.resolve_type(&p.ty) {
                    Ty::Agent(a) => {
                        let slot = cx.add_slot(a);
                        cx.bind(&p.name.name, Binding::Agent(slot, a));
                        agents.push(a);
                    }
                    Ty::Error => agents.push(usize::MAX),
                    t => {
                        let n = self.ty_name(&t);
                        self.error(
                            Diagnostic::error(
                                "E0207",
                                p.ty.span(),
                                format!("interaction parameters are agents, not `{n}`"),
                            )
                            .with_hint("write e.g. `(a: Body, b: Body)`"),
                        );
                        agents.push(usize::MAX);
                    }
                }
            }
            let want = match d.kind {
                ast::InteractionKind::Each => 1,
                _ => 2,
            };
            if agents.len() != want {
                let kind = match d.kind {
                    ast::InteractionKind::Each => "an `each` interaction takes one agent",
                    ast::InteractionKind::Pairs => "a `pairs` interaction takes two agents",
                    ast::InteractionKind::Within { .. } => "a `within` interaction takes two agents",
                };
                self.error(
                    Diagnostic::error("E0204", d.name.span, format!("{kind}, found {}", agents.len()))
                        .with_note(d.kind_span, "the interaction kind"),
                );
            }
            let ok = agents.len() == want && agents.iter().all(|&a| a != usize::MAX);
            let kind = match &d.kind {
                ast::InteractionKind::Each => InteractionKind::Each,
                ast::InteractionKind::Pairs => InteractionKind::Pairs,
                ast::InteractionKind::Within { radius, max } => {
                    let r = self.expr(&mut cx, radius);
                    if !r.ty.is_float_scalar() && !r.ty.is_error() {
                        self.error(Diagnostic::error(
                            "E0203",
                            radius.span,
                            format!("the radius must be a float scalar, not `{}`", self.ty_name(&r.ty)),
                        ));
                    }
                    let bound = match max {
                        Some(m) => self.const_f64(m),
                        None => match crate::lower::eval_const(&r, &cx.locals) {
                            Ok(v) if v.len() == 1 => Some(v[0]),
                            _ => {
                                self.error(
                                    Diagnostic::error(
                                        "E0404",
                                        radius.span,
                                        "this radius depends on the agents, so the neighbour search needs a bound",
                                    )
                                    .with_hint("add a constant bound: `within(a.radius + b.radius, max: 2.0 * RMAX)`"),
                                );
                                None
                            }
                        },
                    };
                    let bound = match bound {
                        Some(b) if b > 0.0 && b.is_finite() => b,
                        Some(b) => {
                            let span = max.as_ref().map_or(radius.span, |m| m.span);
                            self.error(Diagnostic::error(
                                "E0404",
                                span,
                                format!("the neighbour bound must be positive and finite, found {b}"),
                            ));
                            1.0
                        }
                        None => 1.0,
                    };
                    if ok {
                        for (i, &a) in agents.iter().enumerate() {
                            if self.agents[a].field("position").is_none() {
                                let span = d.params[i].ty.span();
                                self.error(Diagnostic::error("E0201", span, format!("`within` measures distance between `position` fields, and agent `{}` has none", self.agents[a].name)).with_hint("add `state position: vec3;` to the agent"));
                            }
                        }
                    }
                    InteractionKind::Within { radius: r, bound }
                }
            };
            let body = if ok { self.block(&mut cx, &d.body) } else { HBlock { stmts: Vec::new(), tail: None } };
            if let Some(t) = &body.tail {
                self.error(
                    Diagnostic::error("E0213", t.span, "an interaction produces no value")
                        .with_hint("end the statement with `;`"),
                );
            }
            let hints = self.hints(&item.annotations, &body);
            self.interaction_names.insert(d.name.name.clone(), out.len());
            out.push(Interaction {
                name: d.name.name.clone(),
                agents,
                kind,
                external: d.external,
                body,
                locals: cx.locals,
                hints,
                span: d.name.span,
            });
        }
        out
    }

    /// `@accel(...)` and `@precision(...)` of an interaction, checked.
    fn hints(&mut self, annotations: &[ast::Annotation], body: &HBlock) -> Hints {
        let mut hints = Hints::default();
        for a in annotations {
            let word = |arg: &ast::Arg| match (&arg.name, &arg.value.kind) {
                (None, ast::ExprKind::Name(n)) => Some(n.clone()),
                _ => None,
            };
            match a.name.name.as_str() {
                "accel" => {
                    const KINDS: [&str; 6] = ["cpu", "gpu", "rt_cores", "tensor_cores", "npu", "auto"];
                    match a.args.as_slice() {
                        [arg] if word(arg).is_some_and(|w| KINDS.contains(&w.as_str())) => hints.accel = word(arg),
                        _ => self.error(
                            Diagnostic::error("E0217", a.span, "`@accel` takes one accelerator")
                                .with_hint(format!("one of: {}", KINDS.join(" "))),
                        ),
                    }
                }
                "precision" => {
                    let mut ok = !a.args.is_empty();
                    let mut chosen = None;
                    let mut tolerance = None;
                    for (i, arg) in a.args.iter().enumerate() {
                        match (&arg.name, i) {
                            (None, 0) => chosen = word(arg).as_deref().and_then(Precision::from_name),
                            (Some(n), _) if n.name == "tolerance" => {
                                tolerance = self
                                    .const_value(&arg.value, None)
                                    .filter(|c| c.ty.is_numeric_scalar() || c.ty.is_float_scalar())
                                    .and_then(|c| c.lanes.first().copied())
                                    .filter(|t| *t > 0.0 && t.is_finite())
                            }
                            _ => ok = false,
                        }
                    }
                    let named_tolerance = a.args.iter().any(|x| x.name.is_some());
                    if !ok || chosen.is_none() || (named_tolerance && tolerance.is_none()) {
                        self.error(
                            Diagnostic::error("E0217", a.span, "`@precision` takes a precision and an optional tolerance")
                                .with_hint(format!(
                                    "e.g. `@precision(f16)` or `@precision(auto, tolerance: 1e-3)`; precisions: {}; the tolerance is a positive number",
                                    Precision::NAMES.join(" ")
                                )),
                        );
                        continue;
                    }
                    hints.precision = chosen;
                    hints.tolerance = tolerance;
                    if !has_tensor_work(body) {
                        self.diags.push(
                            Diagnostic::warning(
                                "W0003",
                                a.span,
                                "`@precision` applies to tensor work, and this interaction has none",
                            )
                            .with_hint("it is computed in its declared types"),
                        );
                    }
                }
                other => self.diags.push(
                    Diagnostic::warning("W0001", a.name.span, format!("unknown annotation `@{other}` is ignored"))
                        .with_hint("known annotations: @accel(...), @precision(...)"),
                ),
            }
        }
        hints
    }

    fn check_laws(&mut self, items: &'a [ast::Item]) -> Vec<Law> {
        let mut out: Vec<Law> = Vec::new();
        for item in items {
            let ast::ItemKind::Conserve(c) = &item.kind else { continue };
            if let Some(prev) = out.iter().find(|l| l.name == c.name.name) {
                let first = prev.span;
                self.duplicate("conservation law", &c.name, first);
                continue;
            }
            let ty = self.resolve_type(&c.ty);
            let mut cx = BodyCx::new(Mode::Law);
            let value = self.expr(&mut cx, &c.value);
            if !value.ty.fits(&ty) {
                self.error(Diagnostic::error(
                    "E0203",
                    c.value.span,
                    format!(
                        "law `{}` is declared `{}` but sums to `{}`",
                        c.name.name,
                        self.ty_name(&ty),
                        self.ty_name(&value.ty)
                    ),
                ));
            }
            if !value.ty.is_error() && !contains_quant(&value) {
                self.error(
                    Diagnostic::error("E0600", c.value.span, "a conservation law must sum over agents")
                        .with_hint("write e.g. `sum(b: Body) b.mass * b.velocity`"),
                );
            }
            let tolerance = c.tolerance.as_ref().and_then(|t| {
                let v = self.const_f64(t)?;
                if v > 0.0 && v.is_finite() {
                    Some(v)
                } else {
                    self.error(Diagnostic::error(
                        "E0601",
                        t.span,
                        format!("a tolerance must be a positive number, found {v}"),
                    ));
                    None
                }
            });
            out.push(Law {
                name: c.name.name.clone(),
                ty,
                value,
                locals: cx.locals,
                tolerance,
                assume: c.assume,
                span: c.name.span,
            });
        }
        out
    }

    fn check_step(&mut self, items: &'a [ast::Item], interactions: &[Interaction]) -> Vec<StepItem> {
        let steps: Vec<(&ast::Item, &Vec<ast::StepStmt>)> = items
            .iter()
            .filter_map(|i| match &i.kind {
                ast::ItemKind::Step(s) => Some((i, s)),
                _ => None,
            })
            .collect();
        if steps.len() > 1 {
            self.error(
                Diagnostic::error("E0103", steps[1].0.span, "a system has one `step` block")
                    .with_note(steps[0].0.span, "first `step` here"),
            );
        }
        let mut out = Vec::new();
        let Some((_, stmts)) = steps.first() else { return out };
        for s in stmts.iter() {
            match s {
                ast::StepStmt::Run(name) => {
                    if let Some(id) = self.lookup_interaction(name, interactions) {
                        out.push(StepItem::Run(id, name.span));
                    }
                }
                ast::StepStmt::Integrate { integrator, args, on, body, span } => {
                    let forces: Vec<InteractionId> =
                        body.iter().filter_map(|n| self.lookup_interaction(n, interactions)).collect();
                    let Some(r) = self.integrators.get(&integrator.name).copied() else {
                        let mut known: Vec<&String> = self.integrators.keys().collect();
                        known.sort();
                        let known: Vec<&str> = known.iter().map(|s| s.as_str()).collect();
                        self.error(
                            Diagnostic::error(
                                "E0401",
                                integrator.span,
                                format!("unknown integrator `{}`", integrator.name),
                            )
                            .with_hint(format!("the integrators are: {}", known.join(", "))),
                        );
                        continue;
                    };
                    let uses = self.instantiate_integrator(r, args, on.as_deref(), integrator, *span);
                    out.push(StepItem::Integrate { uses, forces, span: *span });
                }
            }
        }
        out
    }

    fn lookup_interaction(&mut self, name: &ast::Ident, interactions: &[Interaction]) -> Option<InteractionId> {
        let id = self.interaction_names.get(&name.name).copied();
        if id.is_none() {
            let known: Vec<&str> = interactions.iter().map(|i| i.name.as_str()).collect();
            self.error(
                Diagnostic::error("E0400", name.span, format!("`{}` is not an interaction of this system", name.name))
                    .with_hint(if known.is_empty() {
                        "declare it with `interaction NAME(a: A) each { … }`".to_string()
                    } else {
                        format!("the interactions are: {}", known.join(", "))
                    }),
            );
        }
        id
    }

    fn instantiate_integrator(
        &mut self,
        r: IntegratorRef<'a>,
        args: &[ast::Expr],
        on: Option<&[ast::Ident]>,
        name: &ast::Ident,
        span: Span,
    ) -> Vec<IntegratorUse> {
        let d = r.decl;
        if args.len() != d.params.len() {
            self.error(Diagnostic::error(
                "E0403",
                span,
                format!("integrator `{}` takes {} argument(s), found {}", d.name.name, d.params.len(), args.len()),
            ));
            return Vec::new();
        }
        let mut fields: Vec<(String, String, Span)> =
            d.fields.iter().map(|(alias, f)| (alias.name.clone(), f.name.clone(), f.span)).collect();
        if let Some(on) = on {
            if on.len() != fields.len() {
                let roles: Vec<String> = d.fields.iter().map(|(_, f)| f.name.clone()).collect();
                self.error(Diagnostic::error(
                    "E0403",
                    span,
                    format!(
                        "`on (…)` names {} field(s); `{}` advances {}: {}",
                        on.len(),
                        d.name.name,
                        fields.len(),
                        roles.join(", ")
                    ),
                ));
                return Vec::new();
            }
            for (slot, n) in fields.iter_mut().zip(on) {
                slot.1 = n.name.clone();
                slot.2 = n.span;
            }
        }
        let mut uses = Vec::new();
        for agent in 0..self.agents.len() {
            let ids: Option<Vec<FieldId>> = fields.iter().map(|(_, f, _)| self.agents[agent].field(f)).collect();
            let Some(ids) = ids else { continue };
            let mut cx = BodyCx::new(Mode::Integrator);
            cx.module = r.module;
            let slot = cx.add_slot(agent);
            for ((alias, _, _), id) in fields.iter().zip(&ids) {
                cx.bind(alias, Binding::Field(slot, *id));
            }
            let mut stmts = Vec::new();
            for (p, a) in d.params.iter().zip(args) {
                let ty = self.resolve_type(&p.ty);
                let mut v = self.expr(&mut cx, a);
                if !v.ty.fits(&ty) {
                    self.error(Diagnostic::error(
                        "E0203",
                        a.span,
                        format!(
                            "integrator argument `{}` has type `{}`, found `{}`",
                            p.name.name,
                            self.ty_name(&ty),
                            self.ty_name(&v.ty)
                        ),
                    ));
                }
                settle(&mut v, &ty);
                let l = cx.declare(&p.name.name, ty);
                stmts.push(HStmt::Let { locals: vec![l], value: v });
            }
            let body = self.block(&mut cx, &d.body);
            stmts.extend(body.stmts);
            uses.push(IntegratorUse {
                integrator: d.name.name.clone(),
                symplectic: r.symplectic,
                agent,
                roles: fields.iter().zip(&ids).map(|((alias, _, _), id)| (alias.clone(), *id)).collect(),
                body: HBlock { stmts, tail: None },
                locals: cx.locals,
            });
        }
        if uses.is_empty() {
            let names: Vec<&str> = fields.iter().map(|(_, f, _)| f.as_str()).collect();
            self.error(
                Diagnostic::error("E0402", name.span, format!("no agent type has all the fields `{}` advances: {}", d.name.name, names.join(", ")))
                    .with_hint("rename them for your agent with `on (...)`, e.g. `integrate velocity_verlet(dt) on (pos, vel, frc, m) { … }`"),
            );
        }
        uses
    }

    fn check_init(&mut self, items: &'a [ast::Item]) -> Vec<Spawn> {
        let inits: Vec<(&ast::Item, &Vec<ast::InitStmt>)> = items
            .iter()
            .filter_map(|i| match &i.kind {
                ast::ItemKind::Init(s) => Some((i, s)),
                _ => None,
            })
            .collect();
        if inits.len() > 1 {
            self.error(
                Diagnostic::error("E0103", inits[1].0.span, "a system has one `init` block")
                    .with_note(inits[0].0.span, "first `init` here"),
            );
        }
        let mut out = Vec::new();
        let Some((_, stmts)) = inits.first() else { return out };
        let mut lets: Vec<&ast::InitStmt> = Vec::new();
        for s in stmts.iter() {
            match s {
                ast::InitStmt::Let { .. } => lets.push(s),
                ast::InitStmt::Spawn(sp) => {
                    if let Some(spawn) = self.check_spawn(sp, &lets) {
                        out.push(spawn);
                    }
                }
            }
        }
        out
    }

    fn check_spawn(&mut self, sp: &ast::Spawn, lets: &[&ast::InitStmt]) -> Option<Spawn> {
        let Some(&agent) = self.agent_names.get(&sp.agent.name) else {
            let known: Vec<&str> = self.agents.iter().map(|a| a.name.as_str()).collect();
            self.error(
                Diagnostic::error("E0500", sp.agent.span, format!("unknown agent type `{}`", sp.agent.name))
                    .with_hint(format!("the agent types are: {}", known.join(", "))),
            );
            return None;
        };
        let from = sp.from.as_ref().map(|(path, span)| {
            let full = self.options.base_dir.join(path);
            if !full.is_file() {
                self.error(
                    Diagnostic::error("E0503", *span, format!("spawn file `{path}` not found"))
                        .with_label(format!("looked for {}", full.display()))
                        .with_hint("paths are relative to the directory of the .aii file"),
                );
            }
            full
        });
        let count = match (&sp.count, &from) {
            (Some(c), _) => match self.const_usize(c) {
                Some(n) if n > MAX_AGENTS => {
                    self.error(Diagnostic::error(
                        "E0504",
                        c.span,
                        format!("{n} agents is more than one spawn can create ({MAX_AGENTS})"),
                    ));
                    0
                }
                Some(n) => n,
                None => {
                    self.error(Diagnostic::error(
                        "E0504",
                        c.span,
                        "a spawn count must be a non-negative integer constant",
                    ));
                    0
                }
            },
            (None, Some(_)) => 0,
            (None, None) => 1,
        };
        let mut cx = BodyCx::new(Mode::Init);
        let slot = cx.add_slot(agent);
        let mut prelude = Vec::new();
        for l in lets {
            if let ast::InitStmt::Let { name, ty, value } = l {
                let mut v = self.expr(&mut cx, value);
                let ty = match ty {
                    Some(t) => {
                        let t = self.resolve_type(t);
                        if !v.ty.fits(&t) {
                            self.error(Diagnostic::error(
                                "E0203",
                                value.span,
                                format!("expected `{}`, found `{}`", self.ty_name(&t), self.ty_name(&v.ty)),
                            ));
                        }
                        t
                    }
                    None => v.ty.settled(),
                };
                settle(&mut v, &ty);
                let id = cx.declare(&name.name, ty);
                prelude.push(HStmt::Let { locals: vec![id], value: v });
            }
        }
        let mut fields: Vec<SpawnField> = Vec::new();
        let mut seen: HashMap<FieldId, Span> = HashMap::new();
        for (name, value) in &sp.fields {
            let Some(fid) = self.agents[agent].field(&name.name) else {
                let known: Vec<String> = self.agents[agent]
                    .fields
                    .iter()
                    .filter(|f| matches!(f.kind, FieldKind::Property | FieldKind::State))
                    .map(|f| f.name.clone())
                    .collect();
                self.error(
                    Diagnostic::error(
                        "E0501",
                        name.span,
                        format!("agent `{}` has no field `{}`", self.agents[agent].name, name.name),
                    )
                    .with_hint(format!("its fields are: {}", known.join(", "))),
                );
                continue;
            };
            if let Some(&first) = seen.get(&fid) {
                self.error(
                    Diagnostic::error("E0505", name.span, format!("field `{}` is given twice", name.name))
                        .with_note(first, "first given here"),
                );
                continue;
            }
            seen.insert(fid, name.span);
            let field = self.agents[agent].fields[fid].clone();
            if matches!(field.kind, FieldKind::Accum | FieldKind::Derive) {
                let what = if field.kind == FieldKind::Accum { "an accum" } else { "a derive" };
                self.error(Diagnostic::error(
                    "E0502",
                    name.span,
                    format!("`{}` is {what} field; spawn sets properties and states", name.name),
                ));
                continue;
            }
            let _ = slot;
            let mut v = self.expr(&mut cx, value);
            if !v.ty.fits(&field.ty) {
                self.error(
                    Diagnostic::error(
                        "E0203",
                        value.span,
                        format!(
                            "field `{}` has type `{}`, found `{}`",
                            name.name,
                            self.ty_name(&field.ty),
                            self.ty_name(&v.ty)
                        ),
                    )
                    .with_note(field.span, "declared here"),
                );
            }
            settle(&mut v, &field.ty);
            fields.push(SpawnField { field: fid, value: v });
        }
        Some(Spawn { agent, count, from, fields, prelude, locals: cx.locals, span: sp.span })
    }

    pub fn ty_name(&self, t: &Ty) -> String {
        match t {
            Ty::Agent(a) => self.agents.get(*a).map_or("agent".to_string(), |a| a.name.clone()),
            t => t.to_string(),
        }
    }
}

fn module_items(m: &Module) -> Vec<String> {
    m.ast
        .items
        .iter()
        .filter_map(|i| match &i.kind {
            ast::ItemKind::Fn(f) | ast::ItemKind::Potential(f) => Some(f.name.name.clone()),
            ast::ItemKind::Integrator(d) => Some(d.name.name.clone()),
            _ => None,
        })
        .collect()
}

/// Whether a body does matrix work (`@` on a tensor, a model call), which `@precision` and
/// `@accel(tensor_cores)` are about.
fn has_tensor_work(b: &HBlock) -> bool {
    let mut found = false;
    b.walk(&mut |n| {
        if let Node::Expr(e) = n {
            found |= matches!(&e.kind, HKind::ModelCall(..))
                || matches!(&e.kind, HKind::Binary(ast::BinOp::MatMul, x, _) if matches!(x.ty, Ty::Tensor(..)));
        }
    });
    found
}

fn contains_quant(e: &HExpr) -> bool {
    match &e.kind {
        HKind::Quant { .. } => true,
        HKind::Unary(_, x) | HKind::Cast(x) | HKind::Get(x, _) => contains_quant(x),
        HKind::Binary(_, a, b) => contains_quant(a) || contains_quant(b),
        HKind::Call(_, xs) | HKind::Tuple(xs) => xs.iter().any(contains_quant),
        HKind::Block(b) => b.tail.as_ref().is_some_and(contains_quant),
        _ => false,
    }
}

/// Gives `--set` expressions the span of the item they override, so errors point somewhere real.
fn relocate(e: &mut ast::Expr, span: Span) {
    e.span = span;
    match &mut e.kind {
        ast::ExprKind::Unary(_, x) | ast::ExprKind::Cast(x, _) | ast::ExprKind::Field(x, _) => relocate(x, span),
        ast::ExprKind::Binary(_, a, b) => {
            relocate(a, span);
            relocate(b, span);
        }
        ast::ExprKind::Call { callee, args } => {
            relocate(callee, span);
            for a in args {
                relocate(&mut a.value, span);
            }
        }
        ast::ExprKind::Tuple(xs) => xs.iter_mut().for_each(|x| relocate(x, span)),
        _ => {}
    }
}

/// Fixes the type of unsuffixed literals once their context is known.
pub fn settle(e: &mut HExpr, want: &Ty) {
    if !matches!(e.ty, Ty::IntLit | Ty::FloatLit) || matches!(want, Ty::IntLit | Ty::FloatLit) {
        return;
    }
    let Ty::Scalar(_) = want else {
        e.ty = F32;
        return;
    };
    e.ty = want.clone();
    match &mut e.kind {
        HKind::Unary(_, x) => settle(x, want),
        HKind::Binary(op, a, b) if !is_comparison(*op) => {
            settle(a, want);
            settle(b, want);
        }
        HKind::Call(Builtin::Select, xs) if xs.len() == 3 => {
            settle(&mut xs[1], want);
            settle(&mut xs[2], want);
        }
        _ => {}
    }
}

pub fn is_comparison(op: ast::BinOp) -> bool {
    use ast::BinOp::*;
    matches!(op, Eq | Ne | Lt | Le | Gt | Ge | And | Or)
}

/// Checks a parsed program (its main file plus the stdlib modules) into HIR.
pub fn check_program(
    sources: &SourceMap,
    file: &ast::File,
    modules: &[Module],
    options: &CheckOptions,
) -> (Option<Program>, Diagnostics) {
    let mut ck = Checker {
        sources,
        diags: Diagnostics::default(),
        modules,
        agents: Vec::new(),
        agent_names: HashMap::new(),
        derive_ast: HashMap::new(),
        consts: Vec::new(),
        const_names: HashMap::new(),
        module_consts: Vec::new(),
        params: Vec::new(),
        param_names: HashMap::new(),
        models: Vec::new(),
        model_names: HashMap::new(),
        callables: HashMap::new(),
        integrators: HashMap::new(),
        interaction_names: HashMap::new(),
        options,
    };
    let system = match pick_system(file, options, &mut ck.diags) {
        Some(s) => s,
        None => return (None, ck.diags),
    };
    for item in &file.items {
        if !matches!(
            item.kind,
            ast::ItemKind::Fn(_) | ast::ItemKind::Potential(_) | ast::ItemKind::Integrator(_) | ast::ItemKind::Error
        ) {
            ck.error(
                Diagnostic::error("E0100", item.span, "this item belongs inside a `system { … }`")
                    .with_hint("only `use`, `fn`, `potential` and `integrate` definitions may stand outside a system"),
            );
        }
    }
    ck.collect_module_consts();
    ck.register_module_items(&file.uses);
    ck.register_callables(&file.items);
    ck.register_callables(&system.items);
    ck.check_agents(&system.items);
    ck.check_values(&system.items);
    ck.check_callable_signatures(&file.items);
    ck.check_callable_signatures(&system.items);
    let interactions = ck.check_interactions(&system.items);
    let laws = ck.check_laws(&system.items);
    let step = ck.check_step(&system.items, &interactions);
    let spawns = ck.check_init(&system.items);
    for (i, it) in interactions.iter().enumerate() {
        let used = step.iter().any(|s| match s {
            StepItem::Run(j, _) => *j == i,
            StepItem::Integrate { forces, .. } => forces.contains(&i),
        });
        if !used {
            ck.diags.push(
                Diagnostic::warning("W0002", it.span, format!("interaction `{}` is never run", it.name))
                    .with_hint("list it in `step { … }`, directly or inside an `integrate` block"),
            );
        }
    }
    if ck.diags.has_errors() {
        return (None, ck.diags);
    }
    let program = Program {
        name: system.name.name.clone(),
        consts: ck.consts,
        params: ck.params,
        agents: ck.agents,
        models: ck.models,
        interactions,
        laws,
        step,
        spawns,
    };
    (Some(program), ck.diags)
}

fn pick_system<'f>(file: &'f ast::File, options: &CheckOptions, diags: &mut Diagnostics) -> Option<&'f ast::System> {
    let eof = Span::default();
    match &options.system {
        Some(name) => {
            let found = file.systems.iter().find(|s| &s.name.name == name);
            if found.is_none() {
                let names: Vec<&str> = file.systems.iter().map(|s| s.name.name.as_str()).collect();
                diags.push(
                    Diagnostic::error(
                        "E0104",
                        file.systems.first().map_or(eof, |s| s.name.span),
                        format!("no system named `{name}`"),
                    )
                    .with_hint(format!("the file defines: {}", names.join(", "))),
                );
            }
            found
        }
        None => match file.systems.as_slice() {
            [one] => Some(one),
            [] => {
                diags.push(
                    Diagnostic::error("E0100", eof, "the file defines no `system`")
                        .with_hint("wrap the program in `system NAME { … }`"),
                );
                None
            }
            [first, ..] => {
                let names: Vec<&str> = file.systems.iter().map(|s| s.name.name.as_str()).collect();
                diags.push(
                    Diagnostic::error(
                        "E0105",
                        first.name.span,
                        "the file defines several systems; pick one with `--system NAME`",
                    )
                    .with_hint(format!("the systems are: {}", names.join(", "))),
                );
                None
            }
        },
    }
}
