//! The gradient-check suite: for every op, a generator of random cases (random
//! shapes, size-1 axes and broadcast patterns included, random values) and the
//! function whose gradient is checked against finite differences in f64.
//!
//! The property tests (`ops/tests/gradcheck.rs`) and `msn gradcheck` run the
//! same generators, so the CLI table and `cargo test` check the same thing.

mod cases;
mod device;
mod random;

pub use device::{
    compare_bf16_with_cpu, compare_with_cpu, gpu_matmul_every_plan, rounded_to_bf16, DeviceReport,
    DEVICE_TOLERANCE,
};

use autograd::{check_gradients, GradCheckReport, Tolerance};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::{Result, Tensor};

/// The function under check: maps the inputs to any tensor.
pub type CheckFn = Box<dyn Fn(&[Tensor]) -> Result<Tensor>>;

/// One random case of one op.
pub struct Case {
    /// Shapes and options, for reports.
    pub description: String,
    /// f64 inputs; the gradient is checked with respect to each.
    pub inputs: Vec<Tensor>,
    pub function: CheckFn,
}

/// An op's entry in the suite.
pub struct OpCheck {
    pub name: &'static str,
    pub generate: fn(&mut StdRng) -> Case,
}

/// Every op of the suite, in the order the table prints them.
pub fn all() -> Vec<OpCheck> {
    cases::all()
}

/// The suite's tolerance: central differences with step 1e-6 in f64 are
/// accurate to ~1e-9 on these sizes, so 1e-6 absolute plus 1e-5 relative
/// leaves room for rounding and none for a wrong rule.
pub fn tolerance() -> Tolerance {
    Tolerance::default()
}

/// Generates the case for `seed` and checks it.
pub fn run_case(check: &OpCheck, seed: u64) -> Result<(Case, GradCheckReport)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let case = (check.generate)(&mut rng);
    let f =
        |inputs: &[Tensor]| (case.function)(inputs).map_err(|e| Box::new(e) as autograd::BoxError);
    let report = check_gradients(f, &case.inputs, tolerance())?;
    Ok((case, report))
}

/// The seed of case `index` in a run started from `seed`.
pub fn case_seed(seed: u64, index: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(index.wrapping_mul(0xD1B5_4A32_D192_ED03))
}
