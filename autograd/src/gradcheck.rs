//! The gradient checker: analytic gradients against central finite differences.
//!
//! For a function `f` of several inputs with any output shape, the checker
//! contracts the output with a fixed pseudo-random cotangent `c`, so that one
//! scalar `g(x) = Σ c·f(x)` exercises every output element. The analytic
//! gradient comes from one `backward_with(f(x), c)`; the numeric one from
//! `(g(x + h·e_i) − g(x − h·e_i)) / 2h` for every element `i` of every input.
//! Run it in f64: in f32 the finite differences drown in rounding.

use crate::{BoxError, Error, Probe, Result, Tape};

/// When an analytic gradient `a` counts as equal to a numeric one `n`:
/// `|a − n| ≤ abs + rel·max(|a|, |n|)`. `step` is the finite-difference step,
/// scaled by `max(1, |x|)`.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub abs: f64,
    pub rel: f64,
    pub step: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            abs: 1e-6,
            rel: 1e-5,
            step: 1e-6,
        }
    }
}

/// One element's disagreement, and where it is.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WorstError {
    pub error: f64,
    /// Which input of the function.
    pub input: usize,
    /// Which element of that input (row-major).
    pub element: usize,
    pub analytic: f64,
    pub numeric: f64,
}

/// The result of one check.
#[derive(Clone, Debug, Default)]
pub struct GradCheckReport {
    /// Largest `|a − n|`.
    pub worst_abs: WorstError,
    /// Largest `|a − n| / max(|a|, |n|)`, among elements where `max(|a|, |n|)`
    /// exceeds the absolute tolerance (below it the ratio is noise).
    pub worst_rel: WorstError,
    pub elements: usize,
    /// Elements outside the tolerance.
    pub failures: usize,
}

impl GradCheckReport {
    pub fn passed(&self) -> bool {
        self.failures == 0
    }

    /// Folds another report into this one, keeping the worst errors.
    pub fn merge(&mut self, other: &GradCheckReport) {
        if other.worst_abs.error > self.worst_abs.error {
            self.worst_abs = other.worst_abs;
        }
        if other.worst_rel.error > self.worst_rel.error {
            self.worst_rel = other.worst_rel;
        }
        self.elements += other.elements;
        self.failures += other.failures;
    }
}

/// A small deterministic generator for the cotangent, so that the engine needs
/// no random-number crate.
fn splitmix(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

/// Checks the gradients of `f` with respect to every input.
pub fn check_gradients<V, F>(f: F, inputs: &[V], tolerance: Tolerance) -> Result<GradCheckReport>
where
    V: Probe,
    F: Fn(&[V]) -> std::result::Result<V, BoxError>,
{
    let plain: Vec<V> = inputs.iter().map(|v| v.detach()).collect();
    let output = f(&plain).map_err(Error::Value)?;
    let mut seed_state = 0x5EED;
    let cotangent: Vec<f64> = (0..output.to_f64_vec().len())
        .map(|_| splitmix(&mut seed_state))
        .collect();
    let contracted = |values: &[V]| -> Result<f64> {
        let out = f(values).map_err(Error::Value)?.to_f64_vec();
        Ok(out.iter().zip(&cotangent).map(|(o, c)| o * c).sum())
    };

    let tape = Tape::new();
    let watched: Vec<V> = plain.iter().map(|v| tape.watch(v)).collect();
    let tracked_output = f(&watched).map_err(Error::Value)?;
    let seed = tracked_output.with_f64_values(&cotangent);
    let grads = tape.backward_with(&tracked_output, seed)?;

    let mut report = GradCheckReport::default();
    for (input_index, input) in plain.iter().enumerate() {
        let values = input.to_f64_vec();
        let analytic = match grads.get(&watched[input_index]) {
            Some(g) => g.to_f64_vec(),
            None => vec![0.0; values.len()],
        };
        let mut perturbed = values.clone();
        for element in 0..values.len() {
            let h = tolerance.step * values[element].abs().max(1.0);
            let mut args = plain.clone();
            perturbed[element] = values[element] + h;
            args[input_index] = input.with_f64_values(&perturbed);
            let plus = contracted(&args)?;
            perturbed[element] = values[element] - h;
            args[input_index] = input.with_f64_values(&perturbed);
            let minus = contracted(&args)?;
            perturbed[element] = values[element];
            let numeric = (plus - minus) / (2.0 * h);
            report.record(input_index, element, analytic[element], numeric, tolerance);
        }
    }
    Ok(report)
}

impl GradCheckReport {
    fn record(
        &mut self,
        input: usize,
        element: usize,
        analytic: f64,
        numeric: f64,
        tol: Tolerance,
    ) {
        let abs = (analytic - numeric).abs();
        let scale = analytic.abs().max(numeric.abs());
        let at = |error| WorstError {
            error,
            input,
            element,
            analytic,
            numeric,
        };
        self.elements += 1;
        // NaN never compares as within tolerance.
        if abs.is_nan() || abs > tol.abs + tol.rel * scale {
            self.failures += 1;
        }
        if abs.is_nan() || abs > self.worst_abs.error {
            self.worst_abs = at(if abs.is_nan() { f64::INFINITY } else { abs });
        }
        if scale > tol.abs {
            let rel = abs / scale;
            if rel.is_nan() || rel > self.worst_rel.error {
                self.worst_rel = at(if rel.is_nan() { f64::INFINITY } else { rel });
            }
        }
    }
}
