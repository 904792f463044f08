//! Agent state kept on the host in each column's storage type, with the compensation of
//! compensated updates beside it: what the CPU and ONNX executors share about reading it back,
//! measuring it and searching it.

use crate::ir::Module;
use crate::{FieldKind, World};

/// A column of agents' values in its storage type.
pub trait HostColumn {
    /// Value `i`, as f64.
    fn get(&self, i: usize) -> f64;
    /// The first of the first `n` values that is not finite (none for integer columns).
    fn first_non_finite(&self, n: usize) -> Option<usize>;
}

/// The exact values of the first `n` agents of `col`: the stored value less the compensation,
/// which holds what the stored value lacks with the sign flipped.
pub fn exact(col: &impl HostColumn, comp: Option<&Vec<f32>>, n: usize) -> Vec<f64> {
    (0..n).map(|i| col.get(i) - comp.map_or(0.0, |c| c[i] as f64)).collect()
}

/// Writes the exact state into `world`, scratch columns (integrator temporaries, law shares)
/// left out: they are never shown or measured.
pub fn write_world<C: HostColumn>(
    module: &Module,
    cols: &[Vec<C>],
    comps: &[Vec<Option<Vec<f32>>>],
    world: &mut World,
) {
    for (t, cols) in cols.iter().enumerate() {
        let data = &mut world.agents[t];
        let kinds = module.agents[t].column_kinds();
        for (c, col) in cols.iter().enumerate() {
            if kinds.get(c) == Some(&FieldKind::Scratch) {
                continue;
            }
            let comp = comps[t][c].as_ref();
            for (i, x) in data.columns[c].iter_mut().enumerate().take(data.count) {
                *x = col.get(i) - comp.map_or(0.0, |v| v[i] as f64);
            }
        }
    }
}

/// The compensated sum of the first `n` values of each of `which` columns (a law term's shares).
pub fn column_sums<C: HostColumn>(cols: &[C], which: &[u32], n: usize) -> Vec<f64> {
    which
        .iter()
        .map(|&c| (0..n).map(|i| cols[c as usize].get(i)).collect::<crate::sum::NeumaierSum>().value())
        .collect()
}

/// The first agent with a non-finite value in a column that is not scratch: its type, index and
/// the column's name.
pub fn first_non_finite<C: HostColumn>(
    module: &Module,
    cols: &[Vec<C>],
    counts: &[usize],
) -> Option<(usize, usize, String)> {
    for (t, cols) in cols.iter().enumerate() {
        let schema = &module.agents[t];
        let names: Vec<(&str, FieldKind)> =
            schema.fields.iter().flat_map(|f| f.lanes.iter().map(move |l| (l.as_str(), f.kind))).collect();
        for (c, col) in cols.iter().enumerate() {
            if names.get(c).is_some_and(|(_, k)| *k == FieldKind::Scratch) {
                continue;
            }
            if let Some(i) = col.first_non_finite(counts[t]) {
                return Some((t, i, names.get(c).map_or(String::new(), |n| n.0.to_string())));
            }
        }
    }
    None
}

/// The interpreter's columns: f64 values.
impl HostColumn for Vec<f64> {
    fn get(&self, i: usize) -> f64 {
        self[i]
    }

    fn first_non_finite(&self, n: usize) -> Option<usize> {
        self[..n].iter().position(|x| !x.is_finite())
    }
}
