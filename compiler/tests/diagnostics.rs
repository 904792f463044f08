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

/// Asserts that compiling gives an error with `code` at `line` (1-based) and returns the errors.
fn expect(src: &str, code: &str, line: usize) -> Vec<String> {
    let c = compile(src);
    let errs = errors(&c);
    let want = format!("error[{code}]");
    assert!(
        errs.iter().any(|e| e.contains(&want) && e.starts_with(&format!("test.aii:{line}:"))),
        "expected {code} on line {line}, got:\n{}",
        errs.join("\n")
    );
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
    expect(&format!("{BASE}\n/* never closed /* nested */"), "E0002", 17);
}

#[test]
fn unexpected_character() {
    expect(&broken("param dt", "param $dt"), "E0001", 3);
}

#[test]
fn unknown_field() {
    let errs = expect(&broken("p.force -= 0.1 * p.velocity;", "p.force -= 0.1 * p.veloc;"), "E0201", 11);
    assert!(errs[0].contains("no field `veloc`"), "{errs:?}");
}

#[test]
fn type_mismatch() {
    expect(&broken("p.force -= 0.1 * p.velocity;", "p.force -= p.mass;"), "E0203", 11);
}

#[test]
fn mismatched_scalar_types_in_arithmetic() {
    expect(&broken("p.force -= 0.1 * p.velocity;", "p.force -= (p.mass + 1.0f64) * p.velocity;"), "E0203", 11);
}

#[test]
fn wrong_arity_of_a_builtin() {
    expect(&broken("p.force -= 0.1 * p.velocity;", "p.force -= normalize(p.velocity, p.velocity);"), "E0204", 11);
}

#[test]
fn wrong_arity_of_an_integrator() {
    expect(&broken("velocity_verlet(dt)", "velocity_verlet(dt, dt)"), "E0403", 13);
}

#[test]
fn duplicate_agent() {
    let src = broken("    interaction drag", "    agent Body { state position: vec3; }\n    interaction drag");
    expect(&src, "E0103", 10);
}

#[test]
fn duplicate_field() {
    expect(&broken("state velocity: vec3;", "state velocity: vec3;\n        state velocity: vec2;"), "E0103", 8);
}

#[test]
fn missing_spawn_file() {
    let errs = expect(&broken("spawn Body * 4", "spawn Body from \"no_such_file.csv\";\n spawn Body * 4"), "E0503", 14);
    assert!(errs.iter().any(|e| e.contains("no_such_file.csv")));
}

#[test]
fn unknown_name_with_suggestion() {
    let c = compile(&broken("integrate velocity_verlet(dt)", "integrate velocity_verlet(dtt)"));
    let d = c.diags.list.iter().find(|d| d.code == "E0200").expect("E0200");
    assert_eq!(d.hint.as_deref(), Some("did you mean `dt`?"));
}

#[test]
fn writing_a_property() {
    expect(&broken("p.force -= 0.1 * p.velocity;", "p.mass = 2.0;"), "E0300", 11);
}

#[test]
fn assigning_an_accumulator() {
    expect(&broken("p.force -= 0.1 * p.velocity;", "p.force = p.velocity;"), "E0302", 11);
}

#[test]
fn random_outside_init() {
    expect(&broken("p.force -= 0.1 * p.velocity;", "p.force -= vec3(rand_uniform(0.0, 1.0));"), "E0209", 11);
}

#[test]
fn unknown_integrator() {
    expect(&broken("velocity_verlet(dt)", "verlet(dt)"), "E0401", 13);
}

#[test]
fn unknown_interaction_in_step() {
    expect(&broken("{ drag; }", "{ drag; push; }"), "E0400", 13);
}

#[test]
fn unknown_module() {
    expect(&format!("use std::physics::{{gravity}};\n{BASE}"), "E0101", 1);
}

#[test]
fn unknown_item_of_a_module() {
    expect(&format!("use std::potentials::{{gravitation}};\n{BASE}"), "E0102", 1);
}

#[test]
fn unclosed_brace_is_reported() {
    let src = broken("p.force -= 0.1 * p.velocity;\n    }", "p.force -= 0.1 * p.velocity;\n");
    let c = compile(&src);
    assert!(!errors(&c).is_empty());
}

#[test]
fn missing_semicolon() {
    expect(
        &broken("p.force -= 0.1 * p.velocity;", "p.force -= 0.1 * p.velocity\n        p.force -= p.velocity;"),
        "E0010",
        12,
    );
}

#[test]
fn recursion_is_refused() {
    let src = broken("    interaction drag", "    fn f(x: f32) -> f32 { f(x) }\n    interaction drag");
    expect(&src, "E0208", 10);
}

#[test]
fn derive_cycle_is_refused() {
    let src =
        broken("accum force: vec3;", "accum force: vec3;\n        derive a: f32 = b;\n        derive b: f32 = a;");
    let c = compile(&src);
    assert!(errors(&c).iter().any(|e| e.contains("E0208")), "{:?}", errors(&c));
}

#[test]
fn agent_dependent_radius_needs_a_bound() {
    let src = broken(
        "    step {",
        "    interaction touch(a: Body, b: Body) within(a.mass) { a.force += vec3(1.0); b.force -= vec3(1.0); }\n    step {",
    );
    expect(&src, "E0404", 13);
}

#[test]
fn a_file_without_system() {
    expect("const X: f32 = 1.0;", "E0100", 1);
}

#[test]
fn unknown_type() {
    expect(&broken("property mass: f32;", "property mass: float;"), "E0202", 5);
}

#[test]
fn set_of_an_unknown_name() {
    let c = compile_with(
        BASE,
        aiic_compiler::sema::CheckOptions { set: vec![("dtt".into(), "1.0".into())], ..Default::default() },
    );
    assert!(errors(&c).iter().any(|e| e.contains("E0800")), "{:?}", errors(&c));
}

#[test]
fn tensor_interactions_fail_clearly_when_run() {
    let src = r#"
system T {
    param W: tensor<f16>[4, 3] = load("w.npy");
    agent P { state x: vec3; state y: vec4; }
    interaction apply(p: P) each { p.y = W @ p.x; }
    step { apply; }
    init { spawn P * 2; }
}"#;
    let c = compile(src);
    assert!(c.program.is_some(), "tensor programs type-check: {:?}", errors(&c));
    let errs = errors(&c);
    assert!(errs.iter().any(|e| e.contains("E0700") && e.contains("cannot run yet")), "{errs:?}");
}

#[test]
fn several_mistakes_are_reported_in_one_run() {
    let src = BASE
        .replacen("p.force -= 0.1 * p.velocity;", "p.force -= 0.1 * p.veloc;", 1)
        .replacen("velocity_verlet(dt)", "verlet(dt)", 1)
        .replacen("mass: 1.0,", "mass: 1.0, charge: 2.0,", 1);
    let errs = errors(&compile(&src));
    for code in ["E0201", "E0401", "E0501"] {
        assert!(errs.iter().any(|e| e.contains(code)), "missing {code} in {errs:?}");
    }
}

#[test]
fn several_syntax_errors_are_reported_in_one_run() {
    let src = BASE.replacen("p.force -= 0.1 * p.velocity;", "p.force -= 0.1 * ;", 1).replacen(
        "mass: 1.0,",
        "mass: 1.0 +,",
        1,
    );
    let errs = errors(&compile(&src));
    assert!(errs.len() >= 2, "{errs:?}");
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
    expect(&two, "E0105", 2);
    let pick = compile_with(&two, aiic_compiler::sema::CheckOptions { system: Some("S".into()), ..Default::default() });
    assert!(errors(&pick).is_empty(), "{:?}", errors(&pick));
    let wrong =
        compile_with(&two, aiic_compiler::sema::CheckOptions { system: Some("Q".into()), ..Default::default() });
    assert!(errors(&wrong).iter().any(|e| e.contains("E0104")));
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
    expect(&broken("spawn Body * 4", "spawn Body * 99999999999999999999"), "E0504", 14);
    expect(&broken("param dt: f32 = 1e-3;", "param dt: f32 = 1e99999;"), "E0004", 3);
    let deep =
        broken("param dt: f32 = 1e-3;", &format!("param dt: f32 = {}1.0{};", "(".repeat(5000), ")".repeat(5000)));
    expect(&deep, "E0012", 3);
}
