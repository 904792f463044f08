//! Malformed programs: each gives a diagnostic with a code and a position, never a panic.

mod common;
use common::*;

/// A small valid system that the cases below break in one place each.
const BASE: &str = r#"
system S {
    param dt: f32 = 1e-3;
    agent Body {
        property mass: f32;
        state position: vec3;
        state velocity: vec3;
        accum force: vec3;
    }
    interaction drag(p: Body) each external {
        p.force -= 0.1 * p.velocity;
    }
    step { integrate velocity_verlet(dt) { drag; } }
    init { spawn Body * 4 { mass: 1.0, position: vec3(index as f32, 0.0, 0.0), velocity: vec3(1.0) } }
}
"#;

fn broken(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "case does not apply: {from}");
    BASE.replacen(from, to, 1)
}

/// Asserts that compiling gives an error with `code` at `line` and `column` (1-based) and returns
/// the errors.
fn expect(src: &str, code: &str, line: usize, column: usize) -> Vec<String> {
    let c = compile(src);
    let errs = errors(&c);
    let want = format!("test.aii:{line}:{column}: error[{code}]");
    assert!(errs.iter().any(|e| e.starts_with(&want)), "expected {want}, got:\n{}", errs.join("\n"));
    errs
}

#[test]
fn the_base_program_is_valid() {
    let c = compile(BASE);
    assert!(errors(&c).is_empty(), "{:?}", errors(&c));
    assert!(c.module.is_some());
}

#[test]
fn unterminated_comment() {
    expect(&format!("{BASE}\n/* never closed /* nested */"), "E0002", 17, 1);
}

#[test]
fn unexpected_character() {
    expect(&broken("param dt", "param $dt"), "E0001", 3, 11);
}

#[test]
fn unknown_field() {
    let errs = expect(&broken("p.force -= 0.1 * p.velocity;", "p.force -= 0.1 * p.veloc;"), "E0201", 11, 28);
    assert!(errs[0].contains("no field `veloc`"), "{errs:?}");
}

#[test]
fn type_mismatch() {
    expect(&broken("p.force -= 0.1 * p.velocity;", "p.force -= p.mass;"), "E0203", 11, 20);
}

#[test]
fn mismatched_scalar_types_in_arithmetic() {
    expect(&broken("p.force -= 0.1 * p.velocity;", "p.force -= (p.mass + 1.0f64) * p.velocity;"), "E0203", 11, 20);
}

#[test]
fn wrong_arity_of_a_builtin() {
    expect(&broken("p.force -= 0.1 * p.velocity;", "p.force -= normalize(p.velocity, p.velocity);"), "E0204", 11, 20);
}

#[test]
fn wrong_arity_of_an_integrator() {
    expect(&broken("velocity_verlet(dt)", "velocity_verlet(dt, dt)"), "E0403", 13, 12);
}

#[test]
fn duplicate_agent() {
    let src = broken("    interaction drag", "    agent Body { state position: vec3; }\n    interaction drag");
    expect(&src, "E0103", 10, 11);
}

#[test]
fn duplicate_field() {
    expect(&broken("state velocity: vec3;", "state velocity: vec3;\n        state velocity: vec2;"), "E0103", 8, 15);
}

#[test]
fn missing_spawn_file() {
    let errs =
        expect(&broken("spawn Body * 4", "spawn Body from \"no_such_file.csv\";\n spawn Body * 4"), "E0503", 14, 28);
    assert!(errs.iter().any(|e| e.contains("no_such_file.csv")));
}

#[test]
fn unknown_name_with_suggestion() {
    let c = compile(&broken("integrate velocity_verlet(dt)", "integrate velocity_verlet(dtt)"));
    let d = c.diags.list.iter().find(|d| d.code == "E0200").expect("E0200");
    assert_eq!(d.hint.as_deref(), Some("did you mean `dt`?"));
    assert!(d.one_line(&c.sources).starts_with("test.aii:13:38: error[E0200]"), "{}", d.one_line(&c.sources));
}

#[test]
fn writing_a_property() {
    expect(&broken("p.force -= 0.1 * p.velocity;", "p.mass = 2.0;"), "E0300", 11, 9);
}

#[test]
fn assigning_an_accumulator() {
    expect(&broken("p.force -= 0.1 * p.velocity;", "p.force = p.velocity;"), "E0302", 11, 9);
}

#[test]
fn random_outside_init() {
    expect(&broken("p.force -= 0.1 * p.velocity;", "p.force -= vec3(rand_uniform(0.0, 1.0));"), "E0209", 11, 25);
}

#[test]
fn unknown_integrator() {
    expect(&broken("velocity_verlet(dt)", "verlet(dt)"), "E0401", 13, 22);
}

#[test]
fn unknown_interaction_in_step() {
    expect(&broken("{ drag; }", "{ drag; push; }"), "E0400", 13, 50);
}

#[test]
fn unknown_module() {
    expect(&format!("use std::physics::{{gravity}};\n{BASE}"), "E0101", 1, 1);
}

#[test]
fn unknown_item_of_a_module() {
    expect(&format!("use std::potentials::{{gravitation}};\n{BASE}"), "E0102", 1, 23);
}

#[test]
fn unclosed_brace_is_reported() {
    let src = broken("p.force -= 0.1 * p.velocity;\n    }", "p.force -= 0.1 * p.velocity;\n");
    // The interaction runs on into `step`, which cannot stand inside it.
    let errs = expect(&src, "E0010", 13, 5);
    assert!(errs[0].contains("unexpected `step`"), "{errs:?}");
}

#[test]
fn missing_semicolon() {
    expect(
        &broken("p.force -= 0.1 * p.velocity;", "p.force -= 0.1 * p.velocity\n        p.force -= p.velocity;"),
        "E0010",
        12,
        9,
    );
}

#[test]
fn recursion_is_refused() {
    let src = broken("    interaction drag", "    fn f(x: f32) -> f32 { f(x) }\n    interaction drag");
    expect(&src, "E0208", 10, 27);
}

#[test]
fn derive_cycle_is_refused() {
    let src =
        broken("accum force: vec3;", "accum force: vec3;\n        derive a: f32 = b;\n        derive b: f32 = a;");
    expect(&src, "E0208", 9, 16);
    let errs = expect(&src, "E0208", 10, 16);
    assert!(errs[0].contains("`a` depends on itself") && errs[1].contains("`b` depends on itself"), "{errs:?}");
}

#[test]
fn agent_dependent_radius_needs_a_bound() {
    let src = broken(
        "    step {",
        "    interaction touch(a: Body, b: Body) within(a.mass) { a.force += vec3(1.0); b.force -= vec3(1.0); }\n    step {",
    );
    expect(&src, "E0404", 13, 48);
}

#[test]
fn a_file_without_system() {
    expect("const X: f32 = 1.0;", "E0100", 1, 1);
}

#[test]
fn unknown_type() {
    expect(&broken("property mass: f32;", "property mass: float;"), "E0202", 5, 24);
}

#[test]
fn set_of_an_unknown_name() {
    let c = compile_with(
        BASE,
        aiic_compiler::sema::CheckOptions { set: vec![("dtt".into(), "1.0".into())], ..Default::default() },
    );
    // A command-line option has no place in the source: the diagnostic points at its start.
    let errs = errors(&c);
    assert!(errs.iter().any(|e| e.starts_with("test.aii:1:1: error[E0800]") && e.contains("--set dtt")), "{errs:?}");
}

/// A tensor parameter's file is read when the program is checked: one of another shape is an
/// error at the `load`; a missing one is an error where a kernel that runs reads the parameter
/// (a program may be checked before its weights exist).
#[test]
fn a_tensor_file_that_is_missing_or_of_another_shape() {
    let src = |shape: &str, file: &str| {
        format!(
            r#"
system T {{
    param W: tensor<f32>[{shape}] = load("{file}");
    agent P {{ state x: vec3; state y: vec3; }}
    interaction apply(p: P) each {{ p.y = W @ p.x; }}
    step {{ apply; }}
    init {{ spawn P * 2 {{ x: vec3(1.0), y: vec3(0.0) }} }}
}}"#
        )
    };
    let programs = aiic_compiler::sema::CheckOptions { base_dir: root().join("tests/programs"), ..Default::default() };
    let c = compile_with(&src("3, 3", "missing.npy"), programs.clone());
    assert!(c.program.is_some() && !c.diags.has_errors(), "checking needs no weights: {:?}", errors(&c));
    let errs = errors(&c);
    assert!(
        errs.iter().any(|e| e.starts_with("test.aii:5:42: error[E0216]") && e.contains("missing.npy was not found")),
        "{errs:?}"
    );
    let errs = errors(&compile_with(&src("3, 2", "tensor_trap_w.npy"), programs.clone()));
    assert!(
        errs.iter().any(|e| e.starts_with("test.aii:3:34: error[E0216]")
            && e.contains("has shape [3, 3], but the parameter is declared [3, 2]")),
        "{errs:?}"
    );
    let c = compile_with(&src("3, 3", "tensor_trap_w.npy"), programs);
    assert!(errors(&c).is_empty() && c.module.is_some(), "{:?}", errors(&c));
}

/// An `mlp` is checked when it is declared and where it is called: layers that do not chain,
/// a missing activation, a call with the wrong number of inputs.
#[test]
fn mlp_models_are_checked() {
    let src = |model: &str, call: &str| {
        format!(
            r#"
system T {{
    param W1: tensor<f32>[13, 3] = load("mlp_w1.npy");
    param B1: tensor<f32>[13] = load("mlp_b1.npy");
    param W2: tensor<f32>[3, 13] = load("mlp_w2.npy");
    param B2: tensor<f32>[3] = load("mlp_b2.npy");
    model net = {model};
    agent P {{ state x: vec3; state y: vec3; }}
    interaction apply(p: P) each {{ p.y = {call}; }}
    step {{ apply; }}
    init {{ spawn P * 2 {{ x: vec3(1.0), y: vec3(0.0) }} }}
}}"#
        )
    };
    let programs = aiic_compiler::sema::CheckOptions { base_dir: root().join("tests/programs"), ..Default::default() };
    let check = |model: &str, call: &str| errors(&compile_with(&src(model, call), programs.clone()));
    let errs = check("mlp(W1, B1, W1, B1, act: tanh)", "net(p.x)");
    assert!(
        errs.iter().any(|e| e.starts_with("test.aii:7:29: error[E0205]")
            && e.contains("takes 3 inputs, but the layer before gives 13")),
        "{errs:?}"
    );
    let errs = check("mlp(W1, B1, W2, B2)", "net(p.x)");
    assert!(
        errs.iter().any(|e| e.starts_with("test.aii:7:17: error[E0205]") && e.contains("needs its activation")),
        "{errs:?}"
    );
    let errs = check("mlp(W1, B1, W2, B2, act: swish)", "net(p.x)");
    assert!(
        errs.iter().any(|e| e.starts_with("test.aii:7:42: error[E0205]") && e.contains("unknown activation")),
        "{errs:?}"
    );
    let errs = check("mlp(W1, B1, W2, B2, act: tanh)", "net(p.x, 1.0)");
    assert!(
        errs.iter().any(|e| e.starts_with("test.aii:9:42: error[E0204]") && e.contains("takes 3 inputs, found 4")),
        "{errs:?}"
    );
    let c = compile_with(&src("mlp(W1, B1, W2, B2, act: tanh)", "net(p.x)"), programs);
    assert!(errors(&c).is_empty() && c.module.is_some(), "{:?}", errors(&c));
}

/// `@precision` and `@accel` take only what the language names; `@precision` on an interaction
/// without tensor work is a warning.
#[test]
fn precision_and_accel_hints_are_checked() {
    let src = |hint: &str, body: &str| {
        format!(
            r#"
system T {{
    param W: tensor<f32>[3, 3] = load("tensor_trap_w.npy");
    agent P {{ state x: vec3; state y: vec3; }}
    {hint}
    interaction apply(p: P) each external {{ {body} }}
    step {{ apply; }}
    init {{ spawn P * 2 {{ x: vec3(1.0), y: vec3(0.0) }} }}
}}"#
        )
    };
    let programs = aiic_compiler::sema::CheckOptions { base_dir: root().join("tests/programs"), ..Default::default() };
    let all = |hint: &str, body: &str| {
        let c = compile_with(&src(hint, body), programs.clone());
        c.diags.list.iter().map(|d| d.one_line(&c.sources)).collect::<Vec<_>>()
    };
    for bad in ["@precision(f8)", "@precision(auto, tolerance: -1.0)", "@precision(f16, 3)", "@accel(fpga)"] {
        let d = all(bad, "p.y = W @ p.x;");
        assert!(d.iter().any(|e| e.starts_with("test.aii:5:5: error[E0217]")), "{bad}: {d:?}");
    }
    let d = all("@precision(f16)", "p.y = p.x * 2.0;");
    assert!(d.iter().any(|e| e.starts_with("test.aii:5:5: warning[W0003]")), "{d:?}");
    let c = compile_with(&src("@accel(tensor_cores) @precision(auto, tolerance: 1e-2)", "p.y = W @ p.x;"), programs);
    assert!(errors(&c).is_empty(), "{:?}", errors(&c));
    let plan = c.module.expect("module").kernels.iter().find_map(|k| k.tensor.clone()).expect("a tensor plan");
    assert_eq!((plan.precision, plan.tolerance), (aiic_compiler::ir::Precision::Auto, 1e-2));
}

#[test]
fn several_mistakes_are_reported_in_one_run() {
    let src = BASE
        .replacen("p.force -= 0.1 * p.velocity;", "p.force -= 0.1 * p.veloc;", 1)
        .replacen("velocity_verlet(dt)", "verlet(dt)", 1)
        .replacen("mass: 1.0,", "mass: 1.0, charge: 2.0,", 1);
    for (code, line, column) in [("E0201", 11, 28), ("E0401", 13, 22), ("E0501", 14, 40)] {
        expect(&src, code, line, column);
    }
}

#[test]
fn several_syntax_errors_are_reported_in_one_run() {
    let src = BASE.replacen("p.force -= 0.1 * p.velocity;", "p.force -= 0.1 * ;", 1).replacen(
        "mass: 1.0,",
        "mass: 1.0 +,",
        1,
    );
    expect(&src, "E0010", 11, 26);
    expect(&src, "E0010", 14, 40);
}

#[test]
fn every_diagnostic_renders_with_position_and_hint() {
    let c = compile(&broken("p.force -= 0.1 * p.velocity;", "p.mass = 2.0;"));
    let d = &c.diags.list[0];
    let text = d.render(&c.sources, false);
    assert!(text.contains("E0300") && text.contains("line 11, column 9"), "{text}");
    assert!(text.contains("declare it `state`"), "{text}");
}

#[test]
fn several_systems_need_a_choice() {
    let two = format!("{BASE}\nsystem T {{ const X: f32 = 1.0; }}\n");
    expect(&two, "E0105", 2, 8);
    let pick = compile_with(&two, aiic_compiler::sema::CheckOptions { system: Some("S".into()), ..Default::default() });
    assert!(errors(&pick).is_empty(), "{:?}", errors(&pick));
    let wrong =
        compile_with(&two, aiic_compiler::sema::CheckOptions { system: Some("Q".into()), ..Default::default() });
    assert!(errors(&wrong).iter().any(|e| e.starts_with("test.aii:2:8: error[E0104]")), "{:?}", errors(&wrong));
}

#[test]
fn constants_may_call_functions_and_use_blocks() {
    let src = broken(
        "    param dt: f32 = 1e-3;",
        "    fn half(x: f32) -> f32 { x / 2.0 }\n    param dt: f32 = half({ let y = 2e-3; y });",
    );
    let c = compile(&src);
    assert!(errors(&c).is_empty(), "{:?}", errors(&c));
    assert_eq!(c.module.expect("module").uniforms[0].value, 1e-3);
}

#[test]
fn absurd_sizes_and_depths_are_refused() {
    expect(&broken("spawn Body * 4", "spawn Body * 99999999999999999999"), "E0504", 14, 25);
    expect(&broken("param dt: f32 = 1e-3;", "param dt: f32 = 1e99999;"), "E0004", 3, 21);
    let deep =
        broken("param dt: f32 = 1e-3;", &format!("param dt: f32 = {}1.0{};", "(".repeat(5000), ")".repeat(5000)));
    expect(&deep, "E0012", 3, 276);
}

#[test]
fn a_constant_that_is_not_finite() {
    let errs = expect(&broken("param dt: f32 = 1e-3;", "param dt: f32 = pow(2.0, 3.5e38);"), "E0215", 3, 21);
    assert!(errs[0].contains("not a finite number"), "{errs:?}");
    expect(&broken("param dt: f32 = 1e-3;", "param dt: f32 = 0.0 / 0.0;"), "E0215", 3, 21);
}

/// `agent` is a type only for a generic function's parameters; found by the fuzzer, where it
/// once reached lowering untyped and panicked.
#[test]
fn agent_is_not_a_type_outside_generic_parameters() {
    let errs = expect(&broken("param dt: f32 = 1e-3;", "param dt: agent = 1e-3;"), "E0202", 3, 15);
    assert!(errs[0].contains("`agent` is not a type here"), "{errs:?}");
    expect(&broken("state velocity: vec3;", "state velocity: agent;"), "E0202", 7, 25);
}

/// Spans are bytes: text with multi-byte characters before the mistake (σ, −, ²) must not move
/// the excerpt's position or its underline.
#[test]
fn positions_after_non_ascii_text_are_exact() {
    let src = broken("param dt: f32 = 1e-3;", "// σ − ² αβγ\n    param dt: f32 = 1e-3;").replacen(
        "p.force -= 0.1 * p.velocity;",
        "p.force -= 0.1 * p.veloc;",
        1,
    );
    expect(&src, "E0201", 12, 28);
    let c = compile(&src);
    let text = c.diags.list[0].render(&c.sources, false);
    assert!(text.contains("test.aii:12:28"), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| l.contains("0.1 * p.veloc")).expect("excerpt");
    let (code, mark) = (lines[at], lines[at + 1]);
    let underline = mark.find('─').expect("underline");
    assert_eq!(&code[underline..underline + 5], "veloc", "{text}");
}
