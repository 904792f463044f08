//! The conservation proofs: small programs, each proved or refused with the expected code.

mod common;
use aiic_compiler::passes::conserve::{Outcome, Report};
use common::*;

/// A system with one agent type; `items` adds interactions and laws, `step` is the step body.
fn system(items: &str, step: &str) -> String {
    format!(
        r#"
use std::potentials::{{gravity, lennard_jones, harmonic}};
system C {{
    const EPS: f32 = 0.1;
    const K: f32 = 2.0;
    param dt: f32 = 1e-3;
    agent Body {{
        property mass: f32;
        property charge: f32;
        state position: vec3;
        state velocity: vec3;
        state info: f32;
        accum force: vec3;
    }}
{items}
    step {{ {step} }}
    init {{ spawn Body * 4 {{ mass: 1.0 + index as f32, charge: 1.0, position: rand_in_sphere(1.0), velocity: vec3(0.0), info: 1.0 }} }}
}}"#
    )
}

const MOMENTUM: &str = "    conserve momentum: vec3 = sum(b: Body) b.mass * b.velocity;\n";
const ENERGY: &str =
    "    conserve energy: f32 = sum(b: Body) 0.5 * b.mass * dot(b.velocity, b.velocity) + pairs(a: Body, b: Body) gravity(a, b);\n";
const VV: &str = "integrate velocity_verlet(dt) { pull; }";

/// How each law of a compiled program ended: its kind and whether every obligation was proved
/// (or exempt), or the law was assumed.
#[derive(Debug, PartialEq)]
enum Status {
    Proved,
    Assumed,
    Other(String),
}

fn statuses(report: &Report) -> Vec<(String, Status)> {
    report
        .laws
        .iter()
        .map(|(law, kind, obligations)| {
            let outcomes: Vec<&Outcome> = obligations.iter().map(|o| &o.outcome).collect();
            let status = if kind.starts_with("assumed") && outcomes.iter().all(|o| matches!(o, Outcome::Assumed)) {
                Status::Assumed
            } else if !kind.starts_with("undecided")
                && !kind.starts_with("assumed")
                && outcomes.iter().all(|o| matches!(o, Outcome::Proved(_) | Outcome::Exempt(_)))
            {
                Status::Proved
            } else {
                Status::Other(format!("{kind}: {outcomes:?}"))
            };
            (law.clone(), status)
        })
        .collect()
}

/// Asserts that the program compiles without error and that every law in it was proved: each of
/// its obligations proved or exempt, none assumed, failed or undecided.
fn proved(items: &str, step: &str) {
    let src = system(items, step);
    let c = compile(&src);
    assert!(errors(&c).is_empty(), "expected every law proved, got {:?} for\n{src}", errors(&c));
    let laws = statuses(c.proofs.as_ref().expect("proofs ran"));
    assert!(!laws.is_empty(), "no law in\n{src}");
    for (law, status) in laws {
        assert_eq!(status, Status::Proved, "law `{law}` of\n{src}");
    }
}

fn refused(items: &str, step: &str, code: &str) -> String {
    let src = system(items, step);
    let c = compile(&src);
    let d = c.diags.list.iter().find(|d| d.code == code);
    let all: Vec<&str> = c.diags.list.iter().map(|d| d.code).collect();
    let d = d.unwrap_or_else(|| panic!("expected {code}, got {all:?} for\n{src}"));
    d.render(&c.sources, false)
}

const PULL: &str =
    "    interaction pull(a: Body, b: Body) pairs { let f = force(gravity, a, b); a.force += f; b.force -= f; }\n";

// ---- Linear laws -------------------------------------------------------------------------

#[test]
fn antisymmetric_forces_conserve_momentum() {
    proved(&format!("{PULL}{MOMENTUM}"), VV);
}

#[test]
fn a_sign_error_on_the_reaction_is_refused_with_the_fix() {
    let items = format!("    interaction pull(a: Body, b: Body) pairs {{ let f = force(gravity, a, b); a.force += f; b.force += f; }}\n{MOMENTUM}");
    let text = refused(&items, VV, "E0610");
    assert!(text.contains("`b.force += f` should be `b.force -= f`"), "{text}");
    assert!(text.contains("momentum") && text.contains("pull"), "names the law and the interaction: {text}");
}

#[test]
fn forces_written_in_expanded_form_are_proved() {
    let items = format!(
        "    interaction pull(a: Body, b: Body) pairs {{
        a.force += K * (b.position - a.position) * a.charge * b.charge;
        b.force += K * b.charge * (a.position - b.position) * a.charge;
    }}\n{MOMENTUM}"
    );
    proved(&items, VV);
}

#[test]
fn a_sign_error_deep_in_an_expression_is_refused() {
    let items = format!(
        "    interaction pull(a: Body, b: Body) pairs {{
        let d = b.position - a.position;
        a.force += K * d * rsqrt(dot(d, d) + EPS);
        b.force += K * (a.position - b.position) * (0.0 - rsqrt(EPS + dot(d, d)));
    }}\n{MOMENTUM}"
    );
    refused(&items, VV, "E0610");
}

#[test]
fn an_external_field_is_exempt() {
    let items =
        format!("{PULL}    interaction wind(p: Body) each external {{ p.force += vec3(0.1, 0.0, 0.0); }}\n{MOMENTUM}");
    proved(&items, "integrate velocity_verlet(dt) { pull; wind; }");
}

#[test]
fn an_undeclared_external_field_is_refused() {
    let items = format!("{PULL}    interaction wind(p: Body) each {{ p.force += vec3(0.1, 0.0, 0.0); }}\n{MOMENTUM}");
    let text = refused(&items, "integrate velocity_verlet(dt) { pull; wind; }", "E0610");
    assert!(text.contains("external"), "{text}");
}

#[test]
fn elastic_impulses_conserve_momentum() {
    let items = format!(
        "    interaction hit(a: Body, b: Body) within(0.2) {{
        let (va, vb) = elastic_collision(a.mass, a.velocity, a.position, b.mass, b.velocity, b.position);
        a.velocity = va;
        b.velocity = vb;
    }}\n{MOMENTUM}"
    );
    proved(&items, "hit;");
}

#[test]
fn a_sticky_collision_conserves_momentum() {
    let items = format!(
        "    interaction stick(a: Body, b: Body) within(0.2) {{
        let v = (a.mass * a.velocity + b.mass * b.velocity) / (a.mass + b.mass);
        a.velocity = v;
        b.velocity = v;
    }}\n{MOMENTUM}"
    );
    proved(&items, "stick;");
}

#[test]
fn swapping_velocities_of_unequal_masses_is_refused() {
    let items = format!(
        "    interaction swap(a: Body, b: Body) within(0.2) {{
        let va = a.velocity;
        a.velocity = b.velocity;
        b.velocity = va;
    }}\n{MOMENTUM}"
    );
    refused(&items, "swap;", "E0610");
}

const INFO: &str = "    conserve info: f32 = sum(b: Body) b.info;\n";

#[test]
fn transfers_conserve_a_scalar() {
    let items = format!("    interaction share(a: Body, b: Body) pairs {{ transfer(0.1 * (a.info - b.info), from: a.info, to: b.info); }}\n{INFO}");
    proved(&items, "share;");
}

#[test]
fn antisymmetric_updates_conserve_a_scalar() {
    let items = format!("    interaction share(a: Body, b: Body) pairs {{ let x = 0.1 * a.info * b.charge; a.info -= x; b.info += x; }}\n{INFO}");
    proved(&items, "share;");
}

#[test]
fn an_unbalanced_transfer_is_refused() {
    let items = format!("    interaction share(a: Body, b: Body) pairs {{ let x = 0.1 * a.info; a.info -= x; b.info += 2.0 * x; }}\n{INFO}");
    refused(&items, "share;", "E0610");
}

#[test]
fn a_scalar_created_per_agent_is_refused() {
    let items = format!("    interaction grow(p: Body) each {{ p.info += 1.0; }}\n{INFO}");
    refused(&items, "grow;", "E0610");
}

#[test]
fn the_centre_of_mass_is_not_conserved_by_an_integrator() {
    let items = format!("{PULL}    conserve centre: vec3 = sum(b: Body) b.mass * b.position;\n");
    refused(&items, VV, "E0616");
}

#[test]
fn momentum_without_mass_is_refused_for_unequal_masses() {
    let items = format!("{PULL}    conserve velocity_sum: vec3 = sum(b: Body) b.velocity;\n");
    refused(&items, VV, "E0610");
}

#[test]
fn assume_turns_a_refused_law_into_a_runtime_check() {
    let items = format!("{PULL}    conserve centre: vec3 = sum(b: Body) b.mass * b.position assume;\n");
    let src = system(&items, VV);
    let c = compile(&src);
    assert!(errors(&c).is_empty(), "{:?}", errors(&c));
    assert_eq!(statuses(c.proofs.as_ref().expect("proofs ran")), vec![("centre".to_string(), Status::Assumed)]);
    // Measured at run time: the monitor's sample is Σ m·x of the state.
    let m = c.module.expect("module");
    assert!(m.laws.iter().any(|l| l.name == "centre" && l.assume));
    let mut sim = aiic_compiler::ir::interp::Interp::new(&m, 7);
    sim.init(&Default::default()).expect("init");
    for _ in 0..3 {
        sim.step().expect("step");
    }
    let measured = sim.laws().expect("laws measured");
    let schema = &m.agents[0];
    let (mass, pos) = (schema.column_offsets()[0], schema.column_offsets()[2]);
    assert_eq!((schema.fields[0].name.as_str(), schema.fields[2].name.as_str()), ("mass", "position"));
    let bodies = &sim.world.agents[0];
    for lane in 0..3 {
        let want: f64 = (0..bodies.count).map(|i| bodies.columns[mass][i] * bodies.columns[pos + lane][i]).sum();
        let got = measured[0].value[lane];
        assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "lane {lane}: measured {got}, Σ m·x = {want}");
    }
}

// ---- Energy laws -------------------------------------------------------------------------

#[test]
fn velocity_verlet_with_derived_forces_conserves_energy() {
    proved(&format!("{PULL}{ENERGY}"), VV);
}

#[test]
fn euler_is_refused_for_energy() {
    let text = refused(&format!("{PULL}{ENERGY}"), "integrate euler(dt) { pull; }", "E0612");
    assert!(text.contains("euler is not symplectic; use velocity_verlet"), "{text}");
}

#[test]
fn rk4_is_refused_for_energy() {
    refused(&format!("{PULL}{ENERGY}"), "integrate rk4(dt) { pull; }", "E0612");
}

#[test]
fn leapfrog_and_symplectic_euler_are_accepted() {
    proved(&format!("{PULL}{ENERGY}"), "integrate leapfrog(dt) { pull; }");
    proved(&format!("{PULL}{ENERGY}"), "integrate symplectic_euler(dt) { pull; }");
}

#[test]
fn an_energy_without_kinetic_part_is_refused() {
    let items = format!("{PULL}    conserve energy: f32 = pairs(a: Body, b: Body) gravity(a, b);\n");
    refused(&items, VV, "E0613");
}

#[test]
fn a_kinetic_part_without_mass_is_refused() {
    let items = format!("{PULL}    conserve energy: f32 = sum(b: Body) 0.5 * dot(b.velocity, b.velocity) + pairs(a: Body, b: Body) gravity(a, b);\n");
    refused(&items, VV, "E0613");
}

#[test]
fn a_force_from_a_potential_outside_the_law_is_refused() {
    let items = format!("    interaction pull(a: Body, b: Body) pairs {{ let f = force(lennard_jones, a, b); a.force += f; b.force -= f; }}\n{ENERGY}");
    refused(&items, VV, "E0611");
}

#[test]
fn a_hand_written_gravity_force_is_recognised() {
    let items = format!(
        "    interaction pull(a: Body, b: Body) pairs {{
        let d = b.position - a.position;
        let r2 = dot(d, d) + EPS * EPS;
        let f = a.mass * b.mass * d / (r2 * sqrt(r2));
        a.force += f;
        b.force -= f;
    }}\n{ENERGY}"
    );
    proved(&items, VV);
}

#[test]
fn a_hand_written_force_with_the_wrong_power_is_refused() {
    let items = format!(
        "    interaction pull(a: Body, b: Body) pairs {{
        let d = b.position - a.position;
        let r2 = dot(d, d) + EPS * EPS;
        let f = a.mass * b.mass * d / r2;
        a.force += f;
        b.force -= f;
    }}\n{ENERGY}"
    );
    refused(&items, VV, "E0611");
}

#[test]
fn a_doubled_force_is_refused() {
    let items = format!("    interaction pull(a: Body, b: Body) pairs {{ let f = 2.0 * force(gravity, a, b); a.force += f; b.force -= f; }}\n{ENERGY}");
    refused(&items, VV, "E0611");
}

#[test]
fn a_force_from_a_per_agent_potential_is_proved() {
    let items = "    interaction spring(p: Body) each { p.force -= K * p.position; }
    conserve energy: f32 = sum(b: Body) (0.5 * b.mass * dot(b.velocity, b.velocity) + 0.5 * K * dot(b.position, b.position));\n";
    proved(items, "integrate velocity_verlet(dt) { spring; }");
}

#[test]
fn a_magnetic_force_does_no_work() {
    let items = format!(
        "{PULL}    interaction lorentz(p: Body) each {{ p.force += p.charge * cross(p.velocity, vec3(0.0, 0.0, 1.5)); }}\n{ENERGY}"
    );
    proved(&items, "integrate velocity_verlet(dt) { pull; lorentz; }");
}

#[test]
fn elastic_collisions_conserve_kinetic_energy() {
    let items = "    interaction hit(a: Body, b: Body) within(0.2) {
        let (va, vb) = elastic_collision(a.mass, a.velocity, a.position, b.mass, b.velocity, b.position);
        a.velocity = va;
        b.velocity = vb;
    }
    conserve kinetic: f32 = sum(b: Body) 0.5 * b.mass * dot(b.velocity, b.velocity);\n";
    proved(items, "hit;");
}

#[test]
fn sticky_collisions_lose_kinetic_energy() {
    let items = "    interaction stick(a: Body, b: Body) within(0.2) {
        let v = (a.mass * a.velocity + b.mass * b.velocity) / (a.mass + b.mass);
        a.velocity = v;
        b.velocity = v;
    }
    conserve kinetic: f32 = sum(b: Body) 0.5 * b.mass * dot(b.velocity, b.velocity);\n";
    refused(items, "stick;", "E0614");
}

#[test]
fn moving_agents_outside_the_integrator_is_undecided() {
    let items = format!("{PULL}    interaction jump(p: Body) each {{ p.position += vec3(0.01); }}\n{ENERGY}");
    refused(&items, "integrate velocity_verlet(dt) { pull; } jump;", "E0615");
}

#[test]
fn angular_momentum_is_undecided_without_assume() {
    let items = format!("{PULL}    conserve angular: vec3 = sum(b: Body) b.mass * cross(b.position, b.velocity);\n");
    refused(&items, VV, "E0618");
}

#[test]
fn a_product_of_sums_is_undecided() {
    let nested = format!("{PULL}    conserve odd: f32 = sum(b: Body) b.mass * sum(c: Body) c.info;\n");
    refused(&nested, VV, "E0600");
    let product = format!("{PULL}    conserve odd: f32 = (sum(b: Body) b.mass) * (sum(c: Body) c.info);\n");
    refused(&product, VV, "E0617");
}

#[test]
fn cut_and_shifted_lennard_jones_within_a_cutoff_is_proved() {
    let items = "    potential lj_cut(a: Body, b: Body) -> f32 {
        select(distance2(a.position, b.position) < 6.25, lennard_jones(a, b) - 0.01, 0.0)
    }
    interaction lj(a: Body, b: Body) within(2.5) { let f = force(lj_cut, a, b); a.force += f; b.force -= f; }
    conserve energy: f32 = sum(b: Body) 0.5 * b.mass * dot(b.velocity, b.velocity) + pairs(a: Body, b: Body) lj_cut(a, b);\n";
    proved(items, "integrate velocity_verlet(dt) { lj; }");
}

// ---- Invariants --------------------------------------------------------------------------

#[test]
fn writing_a_property_is_refused_at_the_write() {
    let items = "    interaction heavier(p: Body) each external { p.mass = 2.0; }\n";
    let text = refused(items, "heavier;", "E0300");
    assert!(text.contains("line 15, column 50"), "{text}");
}

#[test]
fn every_example_is_proved() {
    for name in EXAMPLES {
        let c = compile(&example(name));
        assert!(errors(&c).is_empty(), "{name}: {:?}", errors(&c));
        let m = c.module.as_ref().expect("module");
        let laws = statuses(c.proofs.as_ref().expect("proofs ran"));
        assert_eq!(laws.len(), m.laws.len(), "{name}: a status for every law");
        for ((law, status), decl) in laws.into_iter().zip(&m.laws) {
            let want = if decl.assume { Status::Assumed } else { Status::Proved };
            assert_eq!(status, want, "{name}: law `{law}`");
        }
    }
}

// ---- Force derivation --------------------------------------------------------------------

/// Arithmetic instructions of the pair kernel named `pull`.
fn pull_cost(items: &str) -> usize {
    let c = compile(&system(items, VV));
    assert!(errors(&c).is_empty(), "{:?}", errors(&c));
    let m = c.module.expect("module");
    let k = m.kernels.iter().find(|k| k.name == "pull").expect("pull kernel");
    k.insts.iter().filter(|i| matches!(i.op, aiic_compiler::ir::Op::Un(..) | aiic_compiler::ir::Op::Bin(..))).count()
}

#[test]
fn a_derived_force_costs_no_more_than_a_hand_written_one() {
    let derived = pull_cost(&format!("{PULL}{ENERGY}"));
    let hand = pull_cost(&format!(
        "    interaction pull(a: Body, b: Body) pairs {{
        let d = b.position - a.position;
        let inv = rsqrt(dot(d, d) + EPS * EPS);
        let f = a.mass * b.mass * inv * inv * inv * d;
        a.force += f;
        b.force -= f;
    }}\n{ENERGY}"
    ));
    assert!(derived <= hand, "derived force: {derived} instructions, hand-written: {hand}");
}

#[test]
fn a_potential_applied_twice_is_refused() {
    let items = format!(
        "{PULL}    interaction pull_again(a: Body, b: Body) pairs {{ let f = force(gravity, a, b); a.force += f; b.force -= f; }}\n{ENERGY}"
    );
    let text = refused(&items, "integrate velocity_verlet(dt) { pull; pull_again; }", "E0611");
    assert!(text.contains("applied by 2 interactions"), "{text}");
}

#[test]
fn a_potential_nobody_applies_is_refused() {
    let items = format!("    interaction idle(p: Body) each {{ p.force += vec3(0.0); }}\n{ENERGY}");
    refused(&items, "integrate velocity_verlet(dt) { idle; }", "E0611");
}

#[test]
fn a_force_cut_off_by_within_needs_a_potential_that_vanishes_there() {
    let cut = format!("    interaction pull(a: Body, b: Body) within(0.5) {{ let f = force(gravity, a, b); a.force += f; b.force -= f; }}\n{ENERGY}");
    let text = refused(&cut, VV, "E0615");
    assert!(text.contains("does not vanish beyond it"), "{text}");
}

#[test]
fn a_potential_cut_off_inside_the_radius_is_accepted() {
    let items = "    potential near(a: Body, b: Body) -> f32 {
        select(distance(a.position, b.position) < 0.4, gravity(a, b) + a.mass * b.mass / sqrt(0.16 + EPS * EPS), 0.0)
    }
    interaction pull(a: Body, b: Body) within(0.5) { let f = force(near, a, b); a.force += f; b.force -= f; }
    conserve energy: f32 = sum(b: Body) 0.5 * b.mass * dot(b.velocity, b.velocity) + pairs(a: Body, b: Body) near(a, b);\n";
    proved(items, VV);
}

#[test]
fn summed_impulses_are_proved_per_pair_with_a_warning() {
    let items = "    interaction hit(a: Body, b: Body) within(0.2) {
        let (va, vb) = elastic_collision(a.mass, a.velocity, a.position, b.mass, b.velocity, b.position);
        a.velocity = va;
        b.velocity = vb;
    }
    conserve kinetic: f32 = sum(b: Body) 0.5 * b.mass * dot(b.velocity, b.velocity) tolerance 1e-3;\n";
    let c = compile(&system(items, "hit;"));
    assert!(errors(&c).is_empty(), "{:?}", errors(&c));
    assert!(c.diags.list.iter().any(|d| d.code == "W0003"), "warns that simultaneous contacts are approximate");
}
