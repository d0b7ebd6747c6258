//! `msn gradcheck`: the gradient-check suite from the command line, as a table.

use std::process::ExitCode;

use anyhow::{bail, Result};
use autograd::GradCheckReport;
use ops::checks;

#[derive(clap::Args)]
pub struct Args {
    /// Check only these ops (comma-separated names; default: all).
    #[arg(long, value_delimiter = ',')]
    op: Vec<String>,
    /// Random cases per op.
    #[arg(long, default_value_t = 100)]
    cases: u64,
    /// Seed of the first case; the run is deterministic for a given seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let suite = checks::all();
    for name in &args.op {
        if !suite.iter().any(|c| c.name == name) {
            let known: Vec<_> = suite.iter().map(|c| c.name).collect();
            bail!(
                "unknown op `{name}` for --op; expected one of: {}",
                known.join(", ")
            );
        }
    }
    if args.cases == 0 {
        bail!("--cases must be at least 1");
    }
    let selected: Vec<_> = suite
        .iter()
        .filter(|c| args.op.is_empty() || args.op.iter().any(|n| n == c.name))
        .collect();
    let tol = checks::tolerance();
    println!(
        "gradient check: {} cases per op, seed {}, f64, tolerance |a−n| ≤ {:e} + {:e}·max(|a|,|n|)",
        args.cases, args.seed, tol.abs, tol.rel
    );
    println!(
        "{:<20} {:>6} {:>12} {:>12}  result",
        "op", "cases", "worst abs", "worst rel"
    );
    let mut failed_ops = 0;
    for check in selected {
        let mut total = GradCheckReport::default();
        let mut first_failure = None;
        for index in 0..args.cases {
            let seed = checks::case_seed(args.seed, index);
            let (case, report) = checks::run_case(check, seed)?;
            if !report.passed() && first_failure.is_none() {
                first_failure = Some((case.description, seed, report.worst_abs));
            }
            total.merge(&report);
        }
        let verdict = if total.passed() { "pass" } else { "FAIL" };
        println!(
            "{:<20} {:>6} {:>12.3e} {:>12.3e}  {verdict}",
            check.name, args.cases, total.worst_abs.error, total.worst_rel.error
        );
        if let Some((description, seed, worst)) = first_failure {
            failed_ops += 1;
            println!(
                "    first failing case: {description} (case seed {seed}); input {} element {}: analytic {:.6e}, numeric {:.6e}",
                worst.input, worst.element, worst.analytic, worst.numeric
            );
        }
    }
    if failed_ops > 0 {
        println!("{failed_ops} op(s) FAILED the gradient check");
        return Ok(ExitCode::FAILURE);
    }
    println!("all ops passed");
    Ok(ExitCode::SUCCESS)
}
