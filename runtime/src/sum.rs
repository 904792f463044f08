//! Compensated summation for conservation checks.
//!
//! Totals such as energy or momentum are sums over many agents whose terms can differ by many
//! orders of magnitude and cancel; a naive running sum then drifts by more than the physics does,
//! and the monitor would report violations that are only rounding.

/// Neumaier's variant of Kahan summation.
///
/// Unlike plain Kahan, it also stays exact when a new term is larger in magnitude than the
/// running sum, which is the common case when large positive and negative terms cancel.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NeumaierSum {
    sum: f64,
    /// Low-order bits lost from `sum`; added back only in `value` so they are not lost again.
    compensation: f64,
}

impl NeumaierSum {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, x: f64) {
        let t = self.sum + x;
        // Whichever operand is larger keeps its bits in `t`; recover what the smaller one lost.
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    pub fn value(&self) -> f64 {
        self.sum + self.compensation
    }
}

impl Extend<f64> for NeumaierSum {
    fn extend<I: IntoIterator<Item = f64>>(&mut self, iter: I) {
        for x in iter {
            self.add(x);
        }
    }
}

impl FromIterator<f64> for NeumaierSum {
    fn from_iter<I: IntoIterator<Item = f64>>(iter: I) -> Self {
        let mut s = NeumaierSum::new();
        s.extend(iter);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(xs: &[f64]) -> f64 {
        xs.iter().fold(0.0, |a, &x| a + x)
    }

    #[test]
    fn empty_is_zero() {
        assert_eq!(NeumaierSum::new().value(), 0.0);
    }

    #[test]
    fn exact_on_small_cancelling_series() {
        // 1.0 vanishes entirely when added to 1e16 naively (spacing of f64 there is 2).
        let xs = [1e16, 1.0, -1e16];
        assert_eq!(naive(&xs), 0.0);
        let s: NeumaierSum = xs.iter().copied().collect();
        assert_eq!(s.value(), 1.0);
    }

    #[test]
    fn handles_term_larger_than_running_sum() {
        // Plain Kahan returns 0 here; Neumaier's branch on magnitude is what keeps the 1s.
        let xs = [1.0, 1e100, 1.0, -1e100];
        assert_eq!(naive(&xs), 0.0);
        let s: NeumaierSum = xs.iter().copied().collect();
        assert_eq!(s.value(), 2.0);
    }

    #[test]
    fn beats_naive_on_many_small_terms() {
        // 0.1 is not representable; summing it 10^6 times naively accumulates visible error.
        let n = 1_000_000;
        let mut s = NeumaierSum::new();
        let mut plain = 0.0;
        for _ in 0..n {
            s.add(0.1);
            plain += 0.1;
        }
        let exact = 100_000.0;
        let err_comp = (s.value() - exact).abs();
        let err_naive = (plain - exact).abs();
        assert!(err_comp < err_naive, "compensated {err_comp} vs naive {err_naive}");
        assert!(err_comp <= 1e-9);
    }
}
