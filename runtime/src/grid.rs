//! Uniform cell grid for short-range neighbour search.
//!
//! Cells live in a hash map keyed by integer cell coordinates, so the simulated space needs no
//! bounds and empty space costs nothing. Every traversal visits pairs in ascending index order,
//! independent of hashing, so force sums come out bit-identical from run to run.

use std::collections::HashMap;

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum GridError {
    #[error("neighbour grid needs 1 to 3 coordinate columns, got {0}")]
    Dimension(usize),
    #[error("coordinate column {axis} has {found} values but column 0 has {expected}")]
    LengthMismatch { axis: usize, expected: usize, found: usize },
    #[error("neighbour grid cell size must be positive and finite, got {0}")]
    BadCell(f64),
    #[error("agent {agent} has non-finite coordinate {value} on axis {axis}")]
    NonFinite { agent: usize, axis: usize, value: f64 },
    #[error(
        "agent {agent} is too far from the origin for cell size {cell} \
         (coordinate {value} on axis {axis}); cell indices would lose precision"
    )]
    TooFar { agent: usize, axis: usize, value: f64, cell: f64 },
}

type Key = [i64; 3];

/// Beyond this many cells from the origin, f64 division no longer separates neighbouring cells
/// reliably; refusing is better than silently missing interactions.
const MAX_CELL_INDEX: f64 = (1u64 << 48) as f64;

#[derive(Debug, Clone)]
pub struct CellGrid {
    dim: usize,
    /// Requested cell size.
    cell: f64,
    /// Slightly larger than `cell` so that rounding in `x / cell` cannot put two points closer
    /// than `cell` two cells apart.
    key_cell: f64,
    /// Occupied cells, numbered in order of their lowest agent index.
    index: HashMap<Key, usize>,
    /// Ascending agent indices per occupied cell.
    members: Vec<Vec<usize>>,
    /// Occupied cells adjacent to (and including) each occupied cell, ascending.
    neighbours: Vec<Vec<usize>>,
    /// Cell number of each agent.
    agent_cell: Vec<usize>,
}

/// The candidate pairs of a neighbour search closer than `bound` may be: between the agents of
/// one type at positions `pb` (one slice per axis), each unordered pair `i < j` once; or, where
/// `pa` gives another type's positions, every `(i, j)` of an agent of that type and one of these.
pub fn candidate_pairs(pa: Option<&[&[f64]]>, pb: &[&[f64]], bound: f64) -> Result<Vec<(u32, u32)>, GridError> {
    let grid = CellGrid::build(pb, bound)?;
    let mut out = Vec::new();
    match pa {
        None => grid.for_each_pair_within_cells(|i, j| out.push((i as u32, j as u32))),
        Some(pa) => grid.for_each_candidate(pa, |i, j| out.push((i as u32, j as u32)))?,
    }
    Ok(out)
}

impl CellGrid {
    /// Bins `positions` (one slice per axis, all the same length) into cubic cells of edge `cell`.
    pub fn build(positions: &[&[f64]], cell: f64) -> Result<CellGrid, GridError> {
        let dim = positions.len();
        if !(1..=3).contains(&dim) {
            return Err(GridError::Dimension(dim));
        }
        if !(cell.is_finite() && cell > 0.0) {
            return Err(GridError::BadCell(cell));
        }
        let n = check_columns(positions)?;

        let mut max_abs: f64 = 0.0;
        for (axis, col) in positions.iter().enumerate() {
            for (agent, &v) in col.iter().enumerate() {
                if !v.is_finite() {
                    return Err(GridError::NonFinite { agent, axis, value: v });
                }
                if (v / cell).abs() > MAX_CELL_INDEX {
                    return Err(GridError::TooFar { agent, axis, value: v, cell });
                }
                max_abs = max_abs.max(v.abs());
            }
        }
        // Each of the two divisions errs by at most half an ulp of its quotient, so the quotients
        // of two coordinates less than `cell` apart can differ by up to 1 + |q| * EPSILON.
        // Widening the cell by a few times that keeps their difference below 1; the extra
        // headroom also covers the caller's own rounding in its distance test.
        let q = max_abs / cell + 4.0;
        let key_cell = cell * (1.0 + 8.0 * f64::EPSILON * q);

        let mut index: HashMap<Key, usize> = HashMap::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        let mut keys: Vec<Key> = Vec::new();
        let mut agent_cell = Vec::with_capacity(n);
        for i in 0..n {
            let key = key_of(positions, i, key_cell);
            let c = *index.entry(key).or_insert_with(|| {
                members.push(Vec::new());
                keys.push(key);
                members.len() - 1
            });
            // Agents arrive in ascending order, so each list is born sorted.
            members[c].push(i);
            agent_cell.push(c);
        }

        let neighbours = keys
            .iter()
            .map(|k| {
                let mut adj = Vec::new();
                for_each_adjacent_key(*k, dim, |nk| {
                    if let Some(&c) = index.get(&nk) {
                        adj.push(c);
                    }
                });
                adj.sort_unstable();
                adj
            })
            .collect();

        Ok(CellGrid { dim, cell, key_cell, index, members, neighbours, agent_cell })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn cell(&self) -> f64 {
        self.cell
    }

    pub fn len(&self) -> usize {
        self.agent_cell.len()
    }

    pub fn is_empty(&self) -> bool {
        self.agent_cell.is_empty()
    }

    /// Calls `f(i, j)` once for every unordered pair `i < j` of agents in the same or adjacent
    /// cells, in ascending order of `(i, j)`. Includes every pair closer than `cell`.
    pub fn for_each_pair_within_cells(&self, mut f: impl FnMut(usize, usize)) {
        let mut found = Vec::new();
        for (i, &c) in self.agent_cell.iter().enumerate() {
            found.clear();
            for &nc in &self.neighbours[c] {
                let list = &self.members[nc];
                let start = list.partition_point(|&j| j <= i);
                found.extend_from_slice(&list[start..]);
            }
            found.sort_unstable();
            for &j in &found {
                f(i, j);
            }
        }
    }

    /// Calls `f(o, j)` once for every agent `o` of another set (given by its coordinate columns)
    /// and agent `j` of this grid in the same or adjacent cells, in ascending order of `(o, j)`.
    /// Includes every such pair closer than `cell`.
    pub fn for_each_candidate(
        &self,
        other_positions: &[&[f64]],
        mut f: impl FnMut(usize, usize),
    ) -> Result<(), GridError> {
        if other_positions.len() != self.dim {
            return Err(GridError::Dimension(other_positions.len()));
        }
        let n = check_columns(other_positions)?;
        for (axis, col) in other_positions.iter().enumerate() {
            if let Some(agent) = col.iter().position(|v| !v.is_finite()) {
                return Err(GridError::NonFinite { agent, axis, value: col[agent] });
            }
        }
        let mut found = Vec::new();
        for o in 0..n {
            // Far-away points saturate in the key cast; they cannot be near any grid agent, and
            // `checked_add` below keeps saturated keys from aliasing neighbours.
            let key = key_of(other_positions, o, self.key_cell);
            found.clear();
            for_each_adjacent_key(key, self.dim, |nk| {
                if let Some(&c) = self.index.get(&nk) {
                    found.extend_from_slice(&self.members[c]);
                }
            });
            found.sort_unstable();
            for &j in &found {
                f(o, j);
            }
        }
        Ok(())
    }
}

fn check_columns(positions: &[&[f64]]) -> Result<usize, GridError> {
    let n = positions.first().map_or(0, |c| c.len());
    for (axis, col) in positions.iter().enumerate() {
        if col.len() != n {
            return Err(GridError::LengthMismatch { axis, expected: n, found: col.len() });
        }
    }
    Ok(n)
}

fn key_of(positions: &[&[f64]], i: usize, key_cell: f64) -> Key {
    let mut key = [0i64; 3];
    for (axis, col) in positions.iter().enumerate() {
        // `as` saturates, which is what out-of-range points want (see `for_each_candidate`).
        key[axis] = (col[i] / key_cell).floor() as i64;
    }
    key
}

/// The 3^dim keys around `key`, skipping those that would overflow so that no key is produced
/// twice (a saturating add would repeat the edge key and double-count its agents).
fn for_each_adjacent_key(key: Key, dim: usize, mut f: impl FnMut(Key)) {
    let span = |axis: usize| if axis < dim { -1i64..=1 } else { 0..=0 };
    for dx in span(0) {
        for dy in span(1) {
            for dz in span(2) {
                if let Some(k) = offset(key, [dx, dy, dz]) {
                    f(k);
                }
            }
        }
    }
}

fn offset(key: Key, d: [i64; 3]) -> Option<Key> {
    Some([key[0].checked_add(d[0])?, key[1].checked_add(d[1])?, key[2].checked_add(d[2])?])
}

#[cfg(test)]
mod tests {
    use super::*;

    struct XorShift(u64);

    impl XorShift {
        fn next_f64(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn random_columns(rng: &mut XorShift, dim: usize, n: usize, lo: f64, hi: f64) -> Vec<Vec<f64>> {
        (0..dim).map(|_| (0..n).map(|_| lo + (hi - lo) * rng.next_f64()).collect()).collect()
    }

    fn dist2(a: &[Vec<f64>], i: usize, b: &[Vec<f64>], j: usize) -> f64 {
        a.iter().zip(b).map(|(ca, cb)| (ca[i] - cb[j]).powi(2)).sum()
    }

    fn slices(cols: &[Vec<f64>]) -> Vec<&[f64]> {
        cols.iter().map(|c| c.as_slice()).collect()
    }

    fn check_pairs(dim: usize, seed: u64) {
        let mut rng = XorShift(seed);
        let cols = random_columns(&mut rng, dim, 400, -5.0, 7.0);
        let cell = 1.3;
        let grid = CellGrid::build(&slices(&cols), cell).expect("valid input");

        let mut visited = Vec::new();
        grid.for_each_pair_within_cells(|i, j| visited.push((i, j)));
        assert!(visited.windows(2).all(|w| w[0] < w[1]), "not strictly ascending, so not unique");
        assert!(visited.iter().all(|&(i, j)| i < j));

        let n = cols[0].len();
        let mut close = 0;
        for i in 0..n {
            for j in i + 1..n {
                if dist2(&cols, i, &cols, j) < cell * cell {
                    close += 1;
                    assert!(visited.binary_search(&(i, j)).is_ok(), "missed pair ({i}, {j})");
                }
            }
        }
        assert!(close > 100, "test too sparse to mean anything: {close} close pairs");
        // Adjacent cells span at most 2 cells per axis, so nothing farther than that is visited.
        let reach = 2.0 * grid.key_cell;
        let reach2 = reach * reach * dim as f64;
        assert!(visited.iter().all(|&(i, j)| dist2(&cols, i, &cols, j) <= reach2));
    }

    fn check_candidates(dim: usize, seed: u64) {
        let mut rng = XorShift(seed);
        let mine = random_columns(&mut rng, dim, 300, -4.0, 4.0);
        let other = random_columns(&mut rng, dim, 250, -6.0, 6.0);
        let cell = 1.1;
        let grid = CellGrid::build(&slices(&mine), cell).expect("valid input");

        let mut visited = Vec::new();
        grid.for_each_candidate(&slices(&other), |o, j| visited.push((o, j))).expect("valid input");
        assert!(visited.windows(2).all(|w| w[0] < w[1]));

        let mut close = 0;
        for o in 0..other[0].len() {
            for j in 0..mine[0].len() {
                if dist2(&other, o, &mine, j) < cell * cell {
                    close += 1;
                    assert!(visited.binary_search(&(o, j)).is_ok(), "missed pair ({o}, {j})");
                }
            }
        }
        assert!(close > 50, "test too sparse: {close}");
    }

    #[test]
    fn pairs_match_brute_force_1d() {
        check_pairs(1, 0x1234_5678);
    }

    #[test]
    fn pairs_match_brute_force_2d() {
        for seed in [1, 99, 0xdead_beef] {
            check_pairs(2, seed);
        }
    }

    #[test]
    fn pairs_match_brute_force_3d() {
        for seed in [7, 12345, 0xfeed_f00d] {
            check_pairs(3, seed);
        }
    }

    #[test]
    fn candidates_match_brute_force_2d() {
        check_candidates(2, 42);
    }

    #[test]
    fn candidates_match_brute_force_3d() {
        check_candidates(3, 4242);
    }

    #[test]
    fn pair_on_cell_boundary_is_found() {
        // Two points a hair less than one cell apart, in different cells.
        let cell = 0.1;
        let x = [0.3 - 0.099_999_999_999_999_99, 0.3];
        let grid = CellGrid::build(&[&x], cell).expect("valid input");
        let mut pairs = Vec::new();
        grid.for_each_pair_within_cells(|i, j| pairs.push((i, j)));
        assert_eq!(pairs, vec![(0, 1)]);
    }

    #[test]
    fn same_order_every_time() {
        let mut rng = XorShift(5);
        let cols = random_columns(&mut rng, 3, 200, 0.0, 5.0);
        let run = || {
            let grid = CellGrid::build(&slices(&cols), 1.0).expect("valid input");
            let mut v = Vec::new();
            grid.for_each_pair_within_cells(|i, j| v.push((i, j)));
            v
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn rejects_bad_input() {
        let x = [0.0, 1.0];
        let y = [0.0];
        assert_eq!(CellGrid::build(&[], 1.0).unwrap_err(), GridError::Dimension(0));
        assert_eq!(CellGrid::build(&[&x, &x, &x, &x], 1.0).unwrap_err(), GridError::Dimension(4));
        assert!(matches!(CellGrid::build(&[&x], 0.0), Err(GridError::BadCell(_))));
        assert!(matches!(CellGrid::build(&[&x], f64::NAN), Err(GridError::BadCell(_))));
        assert!(matches!(CellGrid::build(&[&x], f64::INFINITY), Err(GridError::BadCell(_))));
        assert_eq!(
            CellGrid::build(&[&x, &y], 1.0).unwrap_err(),
            GridError::LengthMismatch { axis: 1, expected: 2, found: 1 }
        );
        let bad = [0.0, 1.0, f64::NAN];
        let err = CellGrid::build(&[&bad], 1.0).unwrap_err();
        assert!(matches!(err, GridError::NonFinite { agent: 2, axis: 0, .. }));
        assert!(err.to_string().contains("agent 2"), "{err}");
        let far = [0.0, 1e300];
        assert!(matches!(CellGrid::build(&[&far], 1.0), Err(GridError::TooFar { agent: 1, .. })));

        let grid = CellGrid::build(&[&x], 1.0).expect("valid input");
        assert!(matches!(grid.for_each_candidate(&[&x, &x], |_, _| {}), Err(GridError::Dimension(2))));
        assert!(matches!(grid.for_each_candidate(&[&bad], |_, _| {}), Err(GridError::NonFinite { agent: 2, .. })));
    }

    #[test]
    fn empty_grid_visits_nothing() {
        let grid = CellGrid::build(&[&[], &[]], 1.0).expect("valid input");
        assert!(grid.is_empty());
        let mut n = 0;
        grid.for_each_pair_within_cells(|_, _| n += 1);
        grid.for_each_candidate(&[&[0.0], &[0.0]], |_, _| n += 1).expect("valid input");
        assert_eq!(n, 0);
    }

    #[test]
    fn far_candidates_do_not_alias() {
        let x = [0.0];
        let grid = CellGrid::build(&[&x], 1.0).expect("valid input");
        let mut n = 0;
        grid.for_each_candidate(&[&[1e300, -1e300, 0.5]], |_, _| n += 1).expect("valid input");
        assert_eq!(n, 1);
    }
}
