//! The conservation monitor: every declared law is measured (in f64, with compensated sums) at
//! the start, every `--check-every` steps and at the end; drift is relative to the law's scale.

use std::fmt::Write as _;

/// A conservation law's value at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct LawSample {
    pub value: Vec<f64>,
    /// The sum of the magnitudes of the law's terms, the scale drift is measured against (a total
    /// momentum of zero still has a meaningful scale: the momenta that cancel in it).
    pub scale: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LawInfo {
    pub name: String,
    pub tolerance: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Monitor {
    pub laws: Vec<LawInfo>,
    pub initial: Vec<LawSample>,
    pub last: Vec<LawSample>,
    /// Largest drift seen so far, per law, and the step it was seen at.
    pub max_drift: Vec<(f64, u64)>,
    /// `(step, drift of each law)` at every measurement, for plots.
    pub history: Vec<(u64, Vec<f64>)>,
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// |Q(t) − Q(0)| relative to the larger of |Q(0)| and the scale of its terms at t = 0.
pub fn drift(initial: &LawSample, now: &LawSample) -> f64 {
    let diff: Vec<f64> = initial.value.iter().zip(&now.value).map(|(a, b)| b - a).collect();
    let reference = norm(&initial.value).max(initial.scale);
    if reference == 0.0 {
        return norm(&diff);
    }
    norm(&diff) / reference
}

impl Monitor {
    pub fn new(laws: Vec<LawInfo>, initial: Vec<LawSample>) -> Self {
        let n = laws.len();
        Monitor { laws, last: initial.clone(), initial, max_drift: vec![(0.0, 0); n], history: vec![(0, vec![0.0; n])] }
    }

    pub fn record(&mut self, step: u64, samples: Vec<LawSample>) {
        let drifts: Vec<f64> = self.initial.iter().zip(&samples).map(|(a, b)| drift(a, b)).collect();
        for (m, &d) in self.max_drift.iter_mut().zip(&drifts) {
            // NaN compares false, so test for it: a law that became NaN has failed.
            if d > m.0 || d.is_nan() && !m.0.is_nan() {
                *m = (d, step);
            }
        }
        self.history.push((step, drifts));
        self.last = samples;
    }

    /// Laws whose largest drift exceeded their tolerance.
    pub fn violations(&self) -> Vec<usize> {
        (0..self.laws.len())
            .filter(|&i| match self.laws[i].tolerance {
                Some(t) => self.max_drift[i].0 > t || self.max_drift[i].0.is_nan(),
                None => false,
            })
            .collect()
    }

    /// The drift table printed after a run.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let w = self.laws.iter().map(|l| l.name.len()).max().unwrap_or(3).max(3);
        let _ = writeln!(
            s,
            "{:<w$}  {:>14}  {:>14}  {:>10}  {:>10}  {:>9}",
            "law", "initial", "final", "drift", "max drift", "tolerance"
        );
        for (i, law) in self.laws.iter().enumerate() {
            let fmt_v = |v: &[f64]| {
                if v.len() == 1 {
                    format!("{:.6e}", v[0])
                } else {
                    format!("|{:.6e}|", norm(v))
                }
            };
            let end = drift(&self.initial[i], &self.last[i]);
            let tol = law.tolerance.map_or("-".to_string(), |t| format!("{t:.1e}"));
            let flag = if self.violations().contains(&i) { "  EXCEEDED" } else { "" };
            let _ = writeln!(
                s,
                "{:<w$}  {:>14}  {:>14}  {:>10.3e}  {:>10.3e}  {:>9}{flag}",
                law.name,
                fmt_v(&self.initial[i].value),
                fmt_v(&self.last[i].value),
                end,
                self.max_drift[i].0,
                tol
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_of_a_zero_total_uses_the_scale() {
        let a = LawSample { value: vec![0.0, 0.0, 0.0], scale: 2.0 };
        let b = LawSample { value: vec![0.0, 0.002, 0.0], scale: 2.0 };
        assert!((drift(&a, &b) - 1e-3).abs() < 1e-15);
    }

    #[test]
    fn exceeded_tolerance_is_a_violation() {
        let laws =
            vec![LawInfo { name: "e".into(), tolerance: Some(1e-3) }, LawInfo { name: "p".into(), tolerance: None }];
        let s0 = vec![LawSample { value: vec![1.0], scale: 1.0 }, LawSample { value: vec![1.0], scale: 1.0 }];
        let mut m = Monitor::new(laws, s0);
        m.record(10, vec![LawSample { value: vec![1.01], scale: 1.0 }, LawSample { value: vec![2.0], scale: 1.0 }]);
        assert_eq!(m.violations(), vec![0]);
        m.record(20, vec![LawSample { value: vec![f64::NAN], scale: 1.0 }, LawSample { value: vec![2.0], scale: 1.0 }]);
        assert!(m.max_drift[0].0.is_nan());
        assert_eq!(m.violations(), vec![0]);
    }
}
