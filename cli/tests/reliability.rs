//! The reliability of `msn pretrain` end to end: signals stop a run politely,
//! a second run into a busy folder is refused, kills at twenty moments and a
//! full disk cost nothing but the steps since the last checkpoint, every
//! numeric flag is checked before any work, `--detect-anomaly` names a
//! planted NaN, and a closed output pipe is not a panic.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Sends `signal` to a child process.
fn send(child: &std::process::Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// SIGTERM and SIGINT stop a run at the end of a step with a checkpoint,
/// exit 143 and 130 with a line saying how to continue, and `--resume`
/// then finishes the run with every step logged once. While a run is
/// active, a second one into its folder is refused.
#[test]
fn a_signal_stops_the_run_at_a_step_boundary_and_a_second_run_is_refused() {
    for (signal, code) in [("TERM", 143), ("INT", 130)] {
        let dir = scratch(&format!("signal-{signal}"));
        let out = dir.to_str().unwrap();
        let args = short_run(out, 200, 1000);
        let child = Command::new(env!("CARGO_BIN_EXE_msn"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let metrics = dir.join("metrics.jsonl");
        let started = Instant::now();
        while metric_steps(&metrics).len() < 3 && started.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if signal == "TERM" {
            assert_clean_error(&msn(&args), "in use by another msn pretrain");
        }
        send(&child, signal);
        let stopped = child.wait_with_output().unwrap();
        let err = stderr(&stopped);
        assert_eq!(stopped.status.code(), Some(code), "{err}");
        assert!(err.contains(&format!("stopped by SIG{signal}")), "{err}");
        assert!(err.contains("--resume"), "{err}");
        let logged = metric_steps(&metrics);
        assert!(logged.len() < 200, "the run finished before the signal");
        assert!(dir.join("checkpoint.safetensors").is_file());

        let resumed = msn(&["pretrain", "--resume", "--out", out]);
        assert!(resumed.status.success(), "{}", stderr(&resumed));
        assert_eq!(
            metric_steps(&metrics),
            (1..=200).collect::<Vec<_>>(),
            "resumed from the step the signal stopped at, each step logged once"
        );
        std::fs::remove_dir_all(dir).ok();
    }
}

/// Output into a pipe that closes early ends the program quietly (SIGPIPE's
/// default action), not with a panic on the next write.
#[test]
fn a_closed_output_pipe_is_not_a_panic() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    let mut child = Command::new(env!("CARGO_BIN_EXE_msn"))
        .args(["bench", "--steps", "2", "--warmup", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("msn bench"), "{first}");
    let done = child.wait_with_output().unwrap();
    assert_eq!(done.status.signal(), Some(13), "{}", stderr(&done));
    assert!(!stderr(&done).contains("panicked"), "{}", stderr(&done));
}

/// A NaN planted by a test-only op at step 3 (`MSN_TEST_PLANT_NAN_AT_STEP`):
/// without `--detect-anomaly` the run says whether the loss or a gradient
/// went first, and which parameter; with it, the op, its shapes and the step.
#[test]
fn a_planted_nan_is_named_by_detect_anomaly() {
    let dir = scratch("anomaly");
    let out = dir.to_str().unwrap();
    let run = |plant: &str, detect: bool| {
        let mut args = short_run(out, 5, 100);
        if detect {
            args.push("--detect-anomaly".into());
        }
        Command::new(env!("CARGO_BIN_EXE_msn"))
            .args(&args)
            .env("MSN_TEST_PLANT_NAN_AT_STEP", plant)
            .output()
            .unwrap()
    };
    // The anchor's head output: 8 images × (1 masked + 4 focal views), 128 wide.
    assert_clean_error(&run("3", false), "diverged at step 3: the loss is NaN");
    let gradient = run("3:backward", false);
    assert_clean_error(&gradient, "step 3: the loss is finite");
    assert_clean_error(&gradient, "the gradient of anchor encoder.");
    let forward = run("3", true);
    assert_clean_error(
        &forward,
        "step 3: anomaly in `planted_nan`: forward output [40, 128]",
    );
    let backward = run("3:backward", true);
    assert_clean_error(&backward, "step 3: backward of `planted_nan`");
    assert_clean_error(&backward, "gradient of input 0 [40, 128]");
    std::fs::remove_dir_all(dir).ok();
}

/// `kill -9` at twenty moments of a run that checkpoints every step, with a
/// test-only pause between a save's two writes (`MSN_TEST_PAUSE_IN_SAVE_MS`)
/// so that some kills land inside one. After every kill the folder holds a
/// checkpoint that loads and a `metrics.jsonl` of whole lines, steps in order,
/// none repeated; resumed to the end, the run's checkpoint equals, tensor for
/// tensor and bit for bit, that of a run that was never killed.
#[test]
fn runs_killed_at_twenty_moments_end_as_if_never_killed() {
    let run_args = |out: &str| short_run(out, 60, 1);
    let reference = scratch("kill9-reference");
    let straight = Command::new(env!("CARGO_BIN_EXE_msn"))
        .args(run_args(reference.to_str().unwrap()))
        .output()
        .unwrap();
    assert!(straight.status.success(), "{}", stderr(&straight));

    let dir = scratch("kill9");
    let checkpoint = dir.join("checkpoint.safetensors");
    let mut inside_a_save = 0;
    for moment in 0..20u64 {
        let mut args = run_args(dir.to_str().unwrap());
        if checkpoint.is_file() {
            args.push("--resume".into());
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_msn"))
            .args(&args)
            .env("MSN_TEST_PAUSE_IN_SAVE_MS", "40")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(100 + moment * 73 % 450));
        child.kill().unwrap();
        child.wait().unwrap();

        let steps = metric_steps(&dir.join("metrics.jsonl"));
        assert_eq!(
            steps,
            (1..=steps.len() as u64).collect::<Vec<_>>(),
            "kill {moment}"
        );
        if checkpoint.is_file() {
            let trainer = msn::checkpoint::load(&dir)
                .unwrap_or_else(|e| panic!("kill {moment}: the checkpoint does not load: {e}"));
            if msn::checkpoint::train_state_path(&dir, trainer.step + 1).is_file() {
                inside_a_save += 1;
            }
        }
    }
    assert!(
        inside_a_save > 0,
        "no kill landed between a save's two writes"
    );

    let resumed = msn(&["pretrain", "--resume", "--out", dir.to_str().unwrap()]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(
        metric_steps(&dir.join("metrics.jsonl")),
        (1..=60).collect::<Vec<_>>()
    );
    let (want, _) = vit::read_safetensors(&reference.join("checkpoint.safetensors")).unwrap();
    let (got, _) = vit::read_safetensors(&checkpoint).unwrap();
    assert_eq!(got.len(), want.len());
    for ((name, a), (other, b)) in got.iter().zip(&want) {
        assert_eq!(name, other);
        let bits = |t: &ops::Tensor| {
            t.to_vec_f32()
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>()
        };
        assert!(
            bits(a) == bits(b),
            "{name} differs from the uninterrupted run"
        );
    }
    std::fs::remove_dir_all(dir).ok();
    std::fs::remove_dir_all(reference).ok();
}

/// The numeric flags of every subcommand but `pretrain` (whose settings go
/// through the configuration's table test in `msn/tests/config.rs`) at zero,
/// negative, NaN and absurd values: a one-line error naming the flag, exit 2,
/// before any work.
#[test]
fn every_numeric_flag_is_checked_before_any_work() {
    // Plain timm weights (width 24), for which --heads matters.
    const TIMM: &str = "../tests/fixtures/timm_vit_weights.safetensors";
    let embed = |heads| {
        let data = ["--data", "fashion-mnist:test", "--out", "x.st"];
        [
            &["embed", "--checkpoint", TIMM, "--heads", heads][..],
            &data,
        ]
        .concat()
    };
    let (embed_zero, embed_huge) = (embed("0"), embed("99999999999"));
    let table: &[(&[&str], &str)] = &[
        (
            &["eval", "--checkpoint", TIMM, "--heads", "0"],
            "head count 0",
        ),
        (
            &["eval", "--checkpoint", TIMM, "--heads", "99999999999"],
            "head count 99999999999",
        ),
        (&embed_zero, "head count 0"),
        (&embed_huge, "head count 99999999999"),
        (
            &["eval", "--checkpoint", "random", "--shots", "0"],
            "--shots",
        ),
        (&["eval", "--checkpoint", "random", "--shots", "-1"], "-1"),
        (
            &["eval", "--checkpoint", "random", "--shots", "nan"],
            "--shots",
        ),
        (
            &["eval", "--checkpoint", "random", "--shots", "1,inf"],
            "--shots",
        ),
        (
            &["eval", "--checkpoint", "random", "--draws", "0"],
            "--draws",
        ),
        (
            &[
                "eval",
                "--checkpoint",
                "random",
                "--draws",
                "99999999999999999999999",
            ],
            "--draws",
        ),
        (
            &["eval", "--checkpoint", "random", "--shots", "100000"],
            "--shots 100000",
        ),
        (
            &[
                "viz",
                "--checkpoint",
                "random",
                "--images",
                "0",
                "--out",
                "x",
            ],
            "--images",
        ),
        (
            &[
                "viz",
                "--checkpoint",
                "random",
                "--images",
                "nan",
                "--out",
                "x",
            ],
            "--images",
        ),
        (&["gradcheck", "--cases", "0"], "--cases"),
        (&["gradcheck", "--cases", "-5"], "-5"),
        (&["bench", "--steps", "0"], "--steps"),
        (&["bench", "--steps", "nan"], "--steps"),
        (&["bench", "--batch-size", "0"], "batch_size"),
        (&["bench", "--batch-size", "1"], "batch_size"),
        (&["bench", "--batch-size", "99999999999"], "batch_size"),
        (&["bench", "--warmup", "-1"], "-1"),
        (
            &["bench", "--data", "fashion-mnist", "--workers", "0"],
            "--workers",
        ),
        (&["bench", "--workers", "2"], "--workers"),
    ];
    for (args, needle) in table {
        let out = msn(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "msn {}: {}",
            args.join(" "),
            stderr(&out)
        );
        assert_clean_error(&out, needle);
    }
}

/// A disk that fills up during a save (a test-only limit on the bytes the
/// process may write, `MSN_TEST_DISK_FULL_AFTER_BYTES`): a one-line error
/// naming the file, no partial file left behind, and the previous checkpoint
/// still loads.
#[test]
fn a_full_disk_is_an_error_naming_the_file_and_keeps_the_last_checkpoint() {
    let dir = scratch("disk-full");
    let out = dir.to_str().unwrap();
    let args = short_run(out, 6, 1);
    // What one step's save writes (with the run's config.toml).
    let first = msn(&short_run(out, 1, 1));
    assert!(first.status.success(), "{}", stderr(&first));
    let size = |p: PathBuf| std::fs::metadata(p).unwrap().len() as usize;
    let per_save =
        size(dir.join("checkpoint.safetensors")) + size(msn::checkpoint::train_state_path(&dir, 1));
    std::fs::remove_dir_all(&dir).unwrap();

    // Room for the config, two saves, and half of a third.
    let limit = 4096 + 2 * per_save + per_save / 2;
    let full = Command::new(env!("CARGO_BIN_EXE_msn"))
        .args(args)
        .env("MSN_TEST_DISK_FULL_AFTER_BYTES", limit.to_string())
        .output()
        .unwrap();
    assert_clean_error(&full, "No space left on device");
    assert_clean_error(&full, ".safetensors");
    assert_eq!(full.status.code(), Some(2));
    let trainer = msn::checkpoint::load(&dir).unwrap();
    assert_eq!(trainer.step, 2, "the last checkpoint that fit");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
    std::fs::remove_dir_all(dir).ok();
}

/// A second signal stops the run at once, even inside the save that the
/// first one asked for (held open here by a test-only 3 s pause between its
/// two writes); the previous checkpoint still loads.
#[test]
fn a_second_signal_stops_at_once() {
    let dir = scratch("second-signal");
    let child = Command::new(env!("CARGO_BIN_EXE_msn"))
        .args(short_run(dir.to_str().unwrap(), 200, 2))
        .env("MSN_TEST_PAUSE_IN_SAVE_MS", "3000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first checkpoint (step 2) is written after a 3 s pause.
    let started = Instant::now();
    while !dir.join("checkpoint.safetensors").is_file()
        && started.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    send(&child, "INT");
    // The stop's own save now pauses for 3 s; the second signal cuts it short.
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    send(&child, "INT");
    let stopped = child.wait_with_output().unwrap();
    assert!(
        signalled.elapsed() < Duration::from_millis(2000),
        "the second signal waited for the save"
    );
    assert_eq!(stopped.status.code(), Some(130), "{}", stderr(&stopped));
    assert_eq!(msn::checkpoint::load(&dir).unwrap().step, 2);
    std::fs::remove_dir_all(dir).ok();
}
