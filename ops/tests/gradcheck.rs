//! Property tests: every op's backward against central finite differences in
//! f64, over random shapes and values. `PROPTEST_CASES` sets the number of
//! cases per op (default 64, to keep `cargo test` quick).

use ops::checks::{self, OpCheck};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

fn check(name: &str) {
    let all = checks::all();
    let op: &OpCheck = all
        .iter()
        .find(|c| c.name == name)
        .expect("op is in the suite");
    let config = Config {
        cases: cases(),
        failure_persistence: None,
        max_shrink_iters: 0,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let result = runner.run(&any::<u64>(), |seed| {
        let (case, report) =
            checks::run_case(op, seed).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
        prop_assert!(
            report.passed(),
            "{name} on {} (seed {seed}): {report:?}",
            case.description
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

macro_rules! gradcheck_tests {
    ($($op:ident),* $(,)?) => {
        $(#[test] fn $op() { check(stringify!($op)); })*

        #[test]
        fn every_op_of_the_suite_has_a_test() {
            let tested = [$(stringify!($op)),*];
            for op in checks::all() {
                assert!(tested.contains(&op.name), "no property test for {}", op.name);
            }
        }
    };
}

gradcheck_tests!(
    add,
    sub,
    mul,
    div,
    add_scalar,
    sub_scalar,
    mul_scalar,
    div_scalar,
    neg,
    exp,
    log,
    sqrt,
    rsqrt,
    powf,
    tanh,
    gelu,
    bias_gelu,
    sum,
    mean,
    max,
    matmul,
    linear,
    softmax,
    log_softmax,
    layer_norm,
    batch_norm,
    l2_normalize,
    reshape,
    permute,
    transpose,
    narrow,
    concat,
    index_select,
    broadcast_to,
    patchify,
    resize_bicubic,
    attention,
    qkv_attention,
    soft_cross_entropy,
    entropy,
);
