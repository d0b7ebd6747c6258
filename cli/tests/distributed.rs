//! Data-parallel pretraining over MPI (feature `mpi`; `mpirun` from Open MPI
//! must be installed, as `.ci/run` does): two ranks with 32 images each
//! train as one process with 64, and fail it when me-max is left local;
//! a run resumes with another number of ranks; a signal to mpirun stops
//! every rank after the same step with a checkpoint; a rank that dies or
//! hangs stops the others with an error naming it; ranks started with
//! different runs are refused. Without the feature, a launch by mpirun is refused
//! with the way to build it.

mod common;

#[cfg(not(feature = "mpi"))]
#[test]
fn a_build_without_mpi_refuses_an_mpi_launch() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_msn"))
        .args(common::short_run(
            &common::scratch("no-mpi").display().to_string(),
            2,
            1,
        ))
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .output()
        .unwrap();
    common::assert_clean_error(
        &out,
        "built without MPI; build it with `cargo build --release -p msn-cli --features mpi`",
    );
}

#[cfg(feature = "mpi")]
mod over_mpi {
    use super::common;

    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};
    use std::time::{Duration, Instant};

    use common::{metric_steps, scratch, stderr};
    use ops::Tensor;

    /// A narrowed fmnist-tiny: the same recipe, small enough that a step takes
    /// milliseconds, with batch norm, focal views, me-max and Sinkhorn intact.
    const NARROW: &str = r#"
preset = "fmnist-tiny"
data = "fashion-mnist:test"
batch_size = 64
steps = 6
head_hidden = 64
head_output = 32
prototypes = 64
[encoder]
width = 32
depth = 2
heads = 2
[views]
focal_views = 2
"#;

    fn narrow_config(dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("narrow.toml");
        std::fs::write(&path, NARROW).unwrap();
        path
    }

    /// `msn ARGS` under `mpirun -np RANKS`, with `env` set in every rank.
    fn mpirun(ranks: usize, args: &[String], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new("mpirun");
        command
            .args(["--allow-run-as-root", "--oversubscribe", "-np"])
            .arg(ranks.to_string());
        for (key, value) in env {
            command.args(["-x", &format!("{key}={value}")]);
        }
        command
            .arg(env!("CARGO_BIN_EXE_msn"))
            .args(args)
            .output()
            .expect("mpirun runs (apt-get install openmpi-bin)")
    }

    fn pretrain(config: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = ["pretrain", "--config"].map(String::from).to_vec();
        args.push(config.display().to_string());
        args.extend(["--out".into(), out.display().to_string()]);
        args.extend(["--checkpoint-every".into(), "1".into()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    fn succeeded(out: &Output) {
        assert!(
            out.status.success(),
            "failed: {}\n{}",
            stderr(out),
            String::from_utf8_lossy(&out.stdout)
        );
    }

    fn losses(dir: &Path) -> Vec<f64> {
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                    .as_f64()
                    .unwrap()
            })
            .collect()
    }

    /// The largest `|a − b| / |a|` over two runs' losses, step by step.
    fn worst_relative_gap(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(a, b)| (a - b).abs() / a.abs())
            .fold(0.0, f64::max)
    }

    fn checkpoint(dir: &Path) -> BTreeMap<String, Tensor> {
        msn::checkpoint::read_config(&dir.join(msn::checkpoint::CHECKPOINT))
            .unwrap()
            .2
    }

    /// Parameters whose gradient is zero but for rounding: shifts that a batch
    /// norm subtracts again (the encoder's last bias reaches bn1 through fc1).
    /// Adam's step does not depend on a gradient's scale, so they move by about
    /// the learning rate each step in a direction that rounding picks; they do
    /// not change what the network computes, and are left out of the comparison
    /// with the batch norms' running means, which follow them (and so are the
    /// keys' biases, below).
    /// (Checkpoint names: the target encoder's are timm's, the rest under `msn.`.)
    const SHIFTS_BEFORE_BATCH_NORM: [&str; 10] = [
        "norm.bias",
        "msn.anchor.norm.bias",
        "msn.anchor_head.fc1.bias",
        "msn.anchor_head.fc2.bias",
        "msn.target_head.fc1.bias",
        "msn.target_head.fc2.bias",
        "msn.anchor_head.bn1.running_mean",
        "msn.anchor_head.bn2.running_mean",
        "msn.target_head.bn1.running_mean",
        "msn.target_head.bn2.running_mean",
    ];

    /// The largest distance between two runs' final tensors, relative to how
    /// far the single-process run moved each after its first step (L2 norms).
    /// Rounding makes the runs' gradients differ by about 1e-6 of their size,
    /// but Adam divides each element's gradient by its own running size, so an
    /// element whose gradient is itself near rounding level (a few of the
    /// attention's query and key weights at the start) takes steps of about the
    /// learning rate in a direction rounding picks; norms over whole tensors
    /// weigh those few elements by their share.
    fn parameter_gap(
        a: &BTreeMap<String, Tensor>,
        b: &BTreeMap<String, Tensor>,
        start: &BTreeMap<String, Tensor>,
    ) -> (f64, String) {
        let mut worst = (0.0, String::new());
        for (name, x) in a {
            if SHIFTS_BEFORE_BATCH_NORM.contains(&name.as_str()) {
                continue;
            }
            let (mut x, mut y, mut s) = (
                x.to_vec_f64(),
                b[name].to_vec_f64(),
                start[name].to_vec_f64(),
            );
            if name.ends_with("attn.qkv.bias") {
                // The keys' bias adds q·b to every key's score of a query: the
                // softmax does not see it, and its gradient is zero too.
                let width = x.len() / 3;
                for v in [&mut x, &mut y, &mut s] {
                    v.drain(width..2 * width);
                }
            }
            let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|d| d * d).sum::<f64>().sqrt();
            let moved = norm(&mut x.iter().zip(&s).map(|(x, s)| x - s));
            if moved == 0.0 {
                continue;
            }
            let gap = norm(&mut x.iter().zip(&y).map(|(x, y)| x - y)) / moved;
            if gap > worst.0 {
                worst = (gap, name.clone());
            }
        }
        worst
    }

    /// Six steps of one process with batch 64; its checkpoint after step 1 as
    /// the reference for "how far training moved".
    fn single_process_run(
        dir: &Path,
    ) -> (Vec<f64>, BTreeMap<String, Tensor>, BTreeMap<String, Tensor>) {
        let config = narrow_config(dir);
        let first = dir.join("first-step");
        let out = common::msn(&pretrain(&config, &first, &["--steps", "1"]));
        succeeded(&out);
        let whole = dir.join("one");
        succeeded(&common::msn(&pretrain(&config, &whole, &[])));
        (losses(&whole), checkpoint(&whole), checkpoint(&first))
    }

    #[test]
    fn two_ranks_of_32_train_as_one_process_of_64_and_not_when_memax_is_local() {
        let dir = scratch("mpi-parity");
        let config = narrow_config(&dir);
        let (one_losses, one, after_one_step) = single_process_run(&dir);

        let two = dir.join("two");
        let args = pretrain(&config, &two, &[]);
        let out = mpirun(2, &args, &[]);
        succeeded(&out);
        let two_losses = losses(&two);
        assert_eq!(metric_steps(&two.join("metrics.jsonl")), [1, 2, 3, 4, 5, 6]);
        // The same sums in another order, in f32: the losses agree to about
        // 1e-7 relative (f32's rounding over sums of a few hundred terms), the
        // parameters to about 1e-4 of how far they moved after the first step
        // (see `parameter_gap`). The bounds, 1e-5 and 1e-3, leave ten times
        // that; a local me-max misses them by 400 and 270 times.
        let loss_gap = worst_relative_gap(&one_losses, &two_losses);
        eprintln!("two ranks against one process: losses within {loss_gap:e}");
        for (step, (a, b)) in one_losses.iter().zip(&two_losses).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * a.abs(),
                "step {}: loss {a} in one process, {b} on two ranks",
                step + 1
            );
        }
        let (gap, name) = parameter_gap(&one, &checkpoint(&two), &after_one_step);
        eprintln!("two ranks against one process: parameters within {gap:e} ({name})");
        assert!(
            gap < 1e-3,
            "{name} differs by {gap:e} of its first step's change"
        );

        // The control: the same launch with me-max on each rank's own half.
        let local = dir.join("local-memax");
        let args = pretrain(&config, &local, &[]);
        succeeded(&mpirun(2, &args, &[("MSN_TEST_LOCAL_MEMAX", "1")]));
        let local_losses = losses(&local);
        let worst = worst_relative_gap(&one_losses, &local_losses);
        eprintln!("local me-max against one process: losses {worst:e}");
        assert!(
            worst > 1e-3,
            "a local me-max changed the losses by only {worst:e}"
        );
        let (gap, name) = parameter_gap(&one, &checkpoint(&local), &after_one_step);
        eprintln!("local me-max against one process: parameters {gap:e} ({name})");
        assert!(
            gap > 1e-2,
            "a local me-max moved the parameters by only {gap:e}"
        );
    }

    #[test]
    fn a_run_resumes_with_another_number_of_ranks() {
        let dir = scratch("mpi-resume");
        let config = narrow_config(&dir);
        let (one_losses, one, after_one_step) = single_process_run(&dir);
        // Two ranks for three steps, then one process to the end; and the other way round.
        // The first part is stopped after step 3 as by a signal to rank 0 alone:
        // every rank stops after that step.
        let stop_at_3 = ("MSN_TEST_STOP_AFTER_STEP", "3");
        let two_then_one = dir.join("two-then-one");
        let args = pretrain(&config, &two_then_one, &[]);
        let out = mpirun(2, &args, &[stop_at_3]);
        assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
        assert_eq!(metric_steps(&two_then_one.join("metrics.jsonl")), [1, 2, 3]);
        succeeded(&common::msn(&pretrain(
            &config,
            &two_then_one,
            &["--resume"],
        )));
        let one_then_two = dir.join("one-then-two");
        let out = Command::new(env!("CARGO_BIN_EXE_msn"))
            .args(pretrain(&config, &one_then_two, &[]))
            .env(stop_at_3.0, stop_at_3.1)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
        let args = pretrain(&config, &one_then_two, &["--resume"]);
        succeeded(&mpirun(2, &args, &[]));
        for run in [&two_then_one, &one_then_two] {
            assert_eq!(metric_steps(&run.join("metrics.jsonl")), [1, 2, 3, 4, 5, 6]);
            for (a, b) in one_losses.iter().zip(losses(run)) {
                assert!(
                    (a - b).abs() <= 1e-5 * a.abs(),
                    "{}: {a} against {b}",
                    run.display()
                );
            }
            let (gap, name) = parameter_gap(&one, &checkpoint(run), &after_one_step);
            assert!(gap < 1e-3, "{}: {name} differs by {gap:e}", run.display());
        }
    }

    #[test]
    fn a_rank_that_dies_stops_the_others_with_an_error_naming_it() {
        let dir = scratch("mpi-death");
        let config = narrow_config(&dir);
        let out_dir = dir.join("run");
        let args = pretrain(&config, &out_dir, &["--steps", "50"]);
        let started = Instant::now();
        let out = mpirun(2, &args, &[("MSN_TEST_RANK_FAULT", "1:3:die")]);
        assert!(!out.status.success());
        let err = stderr(&out);
        // Open MPI's launcher sees the death and names the rank; the other is ended.
        assert!(err.contains("rank 1"), "the dead rank is not named: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "took {:?}",
            started.elapsed()
        );
        // What rank 0 wrote before is whole: the checkpoint of a step ≤ 3 loads.
        let (_, step, _) =
            msn::checkpoint::read_config(&out_dir.join(msn::checkpoint::CHECKPOINT)).unwrap();
        assert!((1..=3).contains(&step), "checkpoint at step {step}");
    }

    #[test]
    fn a_rank_that_hangs_stops_the_others_after_the_collective_timeout() {
        let dir = scratch("mpi-hang");
        let config = narrow_config(&dir);
        let out_dir = dir.join("run");
        let args = pretrain(
            &config,
            &out_dir,
            &["--steps", "50", "--collective-timeout", "3"],
        );
        let started = Instant::now();
        let out = mpirun(2, &args, &[("MSN_TEST_RANK_FAULT", "1:3:hang")]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains("error: rank 0 of 2: the exchange of") && err.contains("waited 3 s"),
            "no watchdog error: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn ranks_started_with_different_runs_are_refused() {
        let dir = scratch("mpi-mismatch");
        let config = narrow_config(&dir);
        let out_dir = dir.join("run");
        let base = pretrain(&config, &out_dir, &[]);
        // Open MPI's MPMD syntax: rank 0 with batch 64, rank 1 with batch 32.
        let mut command = Command::new("mpirun");
        command.args([
            "--allow-run-as-root",
            "--oversubscribe",
            "-np",
            "1",
            env!("CARGO_BIN_EXE_msn"),
        ]);
        command.args(&base).args(["--batch-size", "64"]);
        command.args([":", "-np", "1", env!("CARGO_BIN_EXE_msn")]);
        command.args(&base).args(["--batch-size", "32"]);
        let out = command.output().unwrap();
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
        err.contains("rank 1 was started with another run than rank 0: `batch_size = 32` here, `batch_size = 64` on rank 0"),
        "{err}"
    );
        assert!(!err.contains("panicked"), "{err}");
    }

    #[test]
    fn a_signal_to_mpirun_stops_every_rank_after_one_step_with_a_checkpoint() {
        let dir = scratch("mpi-signal");
        let config = narrow_config(&dir);
        let out_dir = dir.join("run");
        let args = pretrain(&config, &out_dir, &["--steps", "2000"]);
        let child = Command::new("mpirun")
            .args(["--allow-run-as-root", "--oversubscribe", "-np", "2"])
            .arg(env!("CARGO_BIN_EXE_msn"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let metrics = out_dir.join("metrics.jsonl");
        let started = Instant::now();
        while metric_steps(&metrics).len() < 3 {
            assert!(started.elapsed() < Duration::from_secs(60), "no progress");
            std::thread::sleep(Duration::from_millis(20));
        }
        // mpirun passes SIGTERM (and turns Ctrl-C's SIGINT into SIGTERM) on to every rank.
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        let stopped = err
            .lines()
            .find_map(|l| l.strip_prefix("stopped by SIGTERM after step "))
            .unwrap_or_else(|| panic!("no stop message: {err}"));
        let step: u64 = stopped.split(' ').next().unwrap().parse().unwrap();
        let (_, saved, _) =
            msn::checkpoint::read_config(&out_dir.join(msn::checkpoint::CHECKPOINT)).unwrap();
        assert_eq!(saved, step, "{err}");
        assert_eq!(*metric_steps(&metrics).last().unwrap(), step);
        assert!(step < 2000);
    }
}
