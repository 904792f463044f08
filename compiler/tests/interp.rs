//! The reference interpreter's semantics: forces, Jacobi updates, integrators, neighbour search,
//! initial conditions.

mod common;
use aiic_compiler::ir::interp::Interp;
use aiic_compiler::ir::Module;
use common::*;
use std::collections::HashMap;

fn module(src: &str) -> Module {
    let c = compile(src);
    assert!(errors(&c).is_empty(), "{:?}", errors(&c));
    c.module.expect("module")
}

fn column<'a>(sim: &'a Interp, agent: usize, name: &str) -> &'a [f64] {
    let schema = &sim.module.agents[agent];
    let mut at = 0;
    for f in &schema.fields {
        for lane in &f.lanes {
            if lane == name {
                return &sim.world.agents[agent].columns[at];
            }
            at += 1;
        }
    }
    panic!("no column {name}")
}

fn run(m: &Module, steps: usize) -> Interp<'_> {
    let mut sim = Interp::new(m, 7);
    sim.init(&HashMap::new()).expect("init");
    for _ in 0..steps {
        sim.step().expect("step");
    }
    sim
}

const TWO_BODIES: &str = r#"
use std::potentials::gravity;
system Two {
    const G: f32 = 2.0;
    const EPS: f32 = 0.3;
    param dt: f32 = 1e-3;
    agent Body { property mass: f32; state position: vec3; state velocity: vec3; accum force: vec3; }
    interaction attract(a: Body, b: Body) pairs { let f = force(gravity, a, b); a.force += f; b.force -= f; }
    step { integrate velocity_verlet(dt) { attract; } }
    init {
        spawn Body * 1 { mass: 1.5, position: vec3(0.1, 0.2, -0.3), velocity: vec3(0.0) }
        spawn Body * 1 { mass: 0.5, position: vec3(1.0, -0.4, 0.5), velocity: vec3(0.0) }
    }
}"#;

#[test]
fn derived_force_is_minus_the_gradient_of_the_potential() {
    let m = module(TWO_BODIES);
    let sim = run(&m, 0);
    let d = [0.1 - 1.0, 0.2 + 0.4, -0.3 - 0.5];
    let r2: f64 = d.iter().map(|x| x * x).sum::<f64>() + 0.3 * 0.3;
    // U = -G m1 m2 / sqrt(r² + ε²)  ⇒  F_a = -G m1 m2 (x_a - x_b) / (r² + ε²)^(3/2)
    let k = -2.0 * 1.5 * 0.5 / r2.powf(1.5);
    for (lane, want) in ["force.x", "force.y", "force.z"].iter().zip(d.iter().map(|x| k * x)) {
        let got = column(&sim, 0, lane);
        assert!((got[0] - want).abs() < 1e-12, "{lane}: {} vs {want}", got[0]);
        assert!((got[1] + want).abs() < 1e-12, "reaction on {lane}");
    }
}

#[test]
fn pair_writes_add_up_jacobi_style() {
    let m = module(
        r#"
system J {
    agent P { state x: f32; state y: f32; }
    interaction count(a: P, b: P) pairs { a.x += 1.0; b.x += 2.0; a.y = a.y + 10.0 * b.y; }
    step { count; }
    init { spawn P * 3 { x: 0.0, y: index as f32 + 1.0 } }
}"#,
    );
    let sim = run(&m, 1);
    // Pairs (0,1) (0,2) (1,2): agent 0 is `a` twice, agent 1 once each, agent 2 `b` twice.
    assert_eq!(column(&sim, 0, "x"), &[2.0, 3.0, 4.0]);
    // `=` from several pairs sums the changes, each computed from the state before the statement.
    assert_eq!(column(&sim, 0, "y"), &[1.0 + 10.0 * (2.0 + 3.0), 2.0 + 10.0 * 3.0, 3.0]);
}

#[test]
fn each_statement_sees_the_state_before_it() {
    let m = module(
        r#"
system J {
    agent P { state x: f32; state seen: f32; }
    interaction spread(a: P, b: P) pairs { a.seen += b.x; b.seen += a.x; }
    interaction bump(p: P) each { p.x = p.x + 1.0; p.x = p.x * 2.0; }
    step { bump; spread; }
    init { spawn P * 2 { x: index as f32 } }
}"#,
    );
    let sim = run(&m, 1);
    assert_eq!(column(&sim, 0, "x"), &[2.0, 4.0]);
    assert_eq!(column(&sim, 0, "seen"), &[4.0, 2.0]);
}

/// Error after a quarter period of a unit harmonic oscillator (a full period would hide
/// symplectic Euler's first-order error: its map is a rotation up to O(dt²) per revolution).
fn oscillator_error(integrator: &str, steps: usize) -> f64 {
    let src = format!(
        r#"
system Osc {{
    param dt: f32 = TAU / {}.0;
    agent P {{ property mass: f32; state position: vec3; state velocity: vec3; accum force: vec3; }}
    interaction spring(p: P) each {{ p.force -= p.position; }}
    step {{ integrate {integrator}(dt) {{ spring; }} }}
    init {{ spawn P * 1 {{ mass: 1.0, position: vec3(1.0, 0.0, 0.0), velocity: vec3(0.0, 1.0, 0.0) }} }}
}}"#,
        4 * steps
    );
    let m = module(&src);
    let sim = run(&m, steps);
    let (x, y) = (column(&sim, 0, "position.x")[0], column(&sim, 0, "position.y")[0]);
    let (u, v) = (column(&sim, 0, "velocity.x")[0], column(&sim, 0, "velocity.y")[0]);
    (x.powi(2) + (y - 1.0).powi(2) + (u + 1.0).powi(2) + v.powi(2)).sqrt()
}

#[test]
fn integrators_converge_at_their_order() {
    for (name, order) in
        [("euler", 1.0), ("symplectic_euler", 1.0), ("leapfrog", 2.0), ("velocity_verlet", 2.0), ("rk4", 4.0)]
    {
        let (e1, e2) = (oscillator_error(name, 200), oscillator_error(name, 400));
        let observed = (e1 / e2).log2();
        assert!(
            (observed - order).abs() < 0.3,
            "{name}: errors {e1:e} {e2:e}, observed order {observed:.2}, expected {order}"
        );
    }
}

#[test]
fn symplectic_integrators_keep_energy_and_euler_does_not() {
    let energy = |integrator: &str| {
        let src = format!(
            r#"
system Osc {{
    param dt: f32 = 0.05;
    agent P {{ property mass: f32; state position: vec3; state velocity: vec3; accum force: vec3; }}
    interaction spring(p: P) each {{ p.force -= p.position; }}
    conserve energy: f32 = sum(p: P) (0.5 * dot(p.velocity, p.velocity) + 0.5 * dot(p.position, p.position)) assume;
    step {{ integrate {integrator}(dt) {{ spring; }} }}
    init {{ spawn P * 1 {{ mass: 1.0, position: vec3(1.0, 0.0, 0.0), velocity: vec3(0.0) }} }}
}}"#
        );
        let m = module(&src);
        let mut sim = run(&m, 2000);
        sim.laws().expect("laws")[0].value[0]
    };
    assert!((energy("velocity_verlet") - 0.5).abs() < 1e-3);
    assert!((energy("leapfrog") - 0.5).abs() < 1e-3);
    assert!(energy("euler") > 1.0, "forward Euler gains energy on an oscillator");
}

#[test]
fn grid_neighbour_search_matches_all_pairs() {
    let src = |kind: &str| {
        format!(
            r#"
system G {{
    agent P {{ property r: f32; state position: vec3; state n: f32; state s: vec3; }}
    interaction touch(a: P, b: P) {kind} {{
        let hit = select(distance(a.position, b.position) < a.r + b.r, 1.0, 0.0);
        a.n += hit; b.n += hit;
        a.s += hit * (b.position - a.position); b.s += hit * (a.position - b.position);
    }}
    step {{ touch; }}
    init {{ spawn P * 300 {{ r: rand_uniform(0.02, 0.1), position: rand_in_box(vec3(-1.0), vec3(1.0)) }} }}
}}"#
        )
    };
    let grid = module(&src("within(a.r + b.r, max: 0.2)"));
    let brute = module(&src("pairs"));
    let (g, b) = (run(&grid, 1), run(&brute, 1));
    assert!(column(&g, 0, "n").iter().sum::<f64>() > 20.0, "the case has contacts");
    for lane in ["n", "s.x", "s.y", "s.z"] {
        let (x, y) = (column(&g, 0, lane), column(&b, 0, lane));
        for (p, q) in x.iter().zip(y) {
            assert!((p - q).abs() < 1e-12, "{lane}: {p} vs {q}");
        }
    }
}

#[test]
fn radius_beyond_its_bound_is_a_run_time_error() {
    let m = module(
        r#"
system G {
    agent P { property r: f32; state position: vec3; state n: f32; }
    interaction touch(a: P, b: P) within(a.r + b.r, max: 0.5) { a.n += 1.0; b.n += 1.0; }
    step { touch; }
    init { spawn P * 2 { r: 0.4, position: vec3(index as f32 * 0.1, 0.0, 0.0) } }
}"#,
    );
    let mut sim = Interp::new(&m, 0);
    sim.init(&HashMap::new()).expect("init");
    let err = sim.step().expect_err("0.8 > 0.5");
    assert!(err.to_string().contains("exceeds its bound"), "{err}");
}

#[test]
fn init_is_deterministic_per_seed() {
    let m = module(&example("nbody"));
    let init = |seed| {
        let mut sim = Interp::new(&m, seed);
        sim.init(&HashMap::from([("Body".to_string(), 32)])).expect("init");
        sim.world.agents[0].columns.clone()
    };
    assert_eq!(init(1), init(1));
    assert_ne!(init(1), init(2));
    let cols = init(3);
    assert_eq!(cols[0].len(), 32, "--count overrides the spawn count");
    // rand_in_sphere(1.0) stays in the unit ball and `mass: 1.0 / count` sums to one.
    let (x, y, z) = (&cols[1], &cols[2], &cols[3]);
    assert!(x.iter().zip(y).zip(z).all(|((x, y), z)| x * x + y * y + z * z <= 1.0));
    assert!((cols[0].iter().sum::<f64>() - 1.0).abs() < 1e-12);
}

/// A spawn large enough to be split across threads gives every agent what a spawn of one
/// range gives it: an agent's random values depend on its index and the seed alone.
#[test]
fn a_spawn_split_across_threads_matches_one_range() {
    let m = module(&example("nbody"));
    let init = |n: u64| {
        let mut sim = Interp::new(&m, 5);
        sim.init(&HashMap::from([("Body".to_string(), n)])).expect("init");
        sim.world.agents[0].columns.clone()
    };
    // 200 agents are one range; 4000 and 4001 are split at different agents.
    let (small, large, other) = (init(200), init(4000), init(4001));
    for c in 1..4 {
        assert_eq!(small[c][..], large[c][..200], "position column {c}");
        assert_eq!(large[c][..], other[c][..4000], "position column {c}");
    }
    assert!(large[1].iter().zip(&large[2]).zip(&large[3]).all(|((x, y), z)| x * x + y * y + z * z <= 1.0));
    assert!((large[0].iter().sum::<f64>() - 1.0).abs() < 1e-12);
}

#[test]
fn spawn_from_a_csv_file() {
    let m = module(
        r#"
system B {
    agent Ball { property mass: f32; property radius: f32; state position: vec3; state velocity: vec3; }
    step { }
    init { spawn Ball from "balls.csv"; }
}"#,
    );
    let sim = run(&m, 0);
    assert_eq!(column(&sim, 0, "mass"), &[1.0, 1.0, 2.0]);
    assert_eq!(column(&sim, 0, "velocity.y"), &[0.0, 0.0, -1.0]);
}

#[test]
fn kepler_orbit_closes_after_one_period() {
    let m = module(&example("kepler"));
    let start = run(&m, 0).world.agents[0].columns.clone();
    let end = run(&m, 1000);
    for lane in ["position.x", "position.y", "velocity.x", "velocity.y"] {
        let c = m.agents[0].output_columns().iter().find(|(_, n)| *n == lane).expect("lane").0;
        for (i, (&a, &b)) in start[c].iter().zip(&end.world.agents[0].columns[c]).enumerate() {
            // Relative to the orbit's scale: radius 0.5, speed 0.5.
            assert!((a - b).abs() / 0.5 < 1e-3, "{lane}[{i}]: {a} -> {b}");
        }
    }
}
