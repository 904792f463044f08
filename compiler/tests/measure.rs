//! How law terms are measured on executors: each term's plan, and the cutoffs the compiler
//! proves. The values themselves are compared with the interpreter's in `tests/backends.rs`.

mod common;
use aiic_compiler::ir::{Module, Pattern, Visits};
use common::*;

fn visits(m: &Module, law: &str) -> Vec<Visits> {
    let law = m.laws.iter().find(|l| l.name == law).expect("law");
    assert_eq!(law.measure.len(), law.terms.len(), "every term of `{}` has a plan", law.name);
    law.measure.iter().map(|t| t.visits.clone()).collect()
}

#[test]
fn a_potential_cut_off_by_a_select_is_summed_over_neighbours() {
    let m = program("lj_gas");
    assert_eq!(visits(&m, "energy"), vec![Visits::Agents, Visits::Within { radius: 2.5 }]);
    // The reference sums the same pairs, through the same grid.
    let term = m.laws[0].terms[1];
    assert!(matches!(m.kernels[term].pattern, Pattern::Neighbors { bound, .. } if bound == 2.5));
}

#[test]
fn potentials_without_a_cutoff_are_summed_over_all_pairs() {
    // Gravity reaches everywhere; the springs' bond is zero beyond no distance (its select is on
    // the chain index, not on where the beads are).
    assert_eq!(visits(&program("nbody"), "energy"), vec![Visits::Agents, Visits::AllPairs]);
    assert_eq!(visits(&program("springs"), "energy"), vec![Visits::Agents, Visits::AllPairs]);
    assert_eq!(visits(&program("nbody"), "momentum"), vec![Visits::Agents]);
}

/// A select whose zero side is taken for pairs *closer* than the radius proves nothing, and
/// neither does a radius that is not a constant.
#[test]
fn only_a_zero_beyond_a_constant_distance_is_a_cutoff() {
    let src = |cond: &str| {
        example("lj_gas").replace(
            "select(r < RC, lennard_jones(a, b) - SHIFT - (r - RC) * SLOPE, 0.0)",
            &format!("select({cond}, lennard_jones(a, b) - SHIFT - (r - RC) * SLOPE, 0.0)"),
        )
    };
    for (cond, want) in [
        ("r < RC", Visits::Within { radius: 2.5 }),
        ("RC > r", Visits::Within { radius: 2.5 }),
        ("distance2(a.position, b.position) < RC * RC", Visits::Within { radius: 2.5 }),
        ("r > RC", Visits::AllPairs),
        ("r < a.mass * RC", Visits::AllPairs),
    ] {
        let c = compile(&src(cond));
        let m = c.module.as_ref().unwrap_or_else(|| panic!("{cond}: {:?}", errors(&c)));
        assert_eq!(visits(m, "energy")[1], want, "{cond}");
    }
}

/// Terms are computed in f64 from exact copies of the compensated state columns, as the
/// interpreter sees them.
#[test]
fn terms_read_compensated_columns_through_exact_copies() {
    let m = program("nbody");
    let law = &m.laws[0];
    let fill = &law.measure[0].fill;
    assert!(
        fill.iter().any(|s| matches!(s, aiic_compiler::ir::Sched::Exact { cols, .. } if cols.len() == 3)),
        "{fill:?}"
    );
}
