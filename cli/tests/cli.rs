//! The `msn` command end to end: exit codes, one-line errors, and a
//! pretraining run that is killed mid-way and resumed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn msn<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_msn"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("msn-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The CIFAR-10 sample photos (RGB) sorted into one folder per label.
fn cifar_class_folder(name: &str) -> PathBuf {
    let photos =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/images/cifar10-samples");
    let root = scratch(name);
    for entry in std::fs::read_dir(&photos).unwrap() {
        let path = entry.unwrap().path();
        let label = path
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .rsplit('_')
            .next()
            .unwrap()
            .to_string();
        std::fs::create_dir_all(root.join(&label)).unwrap();
        std::fs::copy(&path, root.join(&label).join(path.file_name().unwrap())).unwrap();
    }
    root
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A failure is one `error:` line and a non-zero exit, never a panic.
fn assert_clean_error(out: &Output, needle: &str) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure, got success: {err}"
    );
    assert!(!err.contains("panicked"), "panicked: {err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line in: {err}"));
    assert!(line.contains(needle), "`{needle}` not in `{line}`");
}

#[test]
fn gradcheck_passes_and_prints_a_table() {
    let out = msn(&["gradcheck", "--op", "layer_norm,attention", "--cases", "20"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("layer_norm") && text.contains("attention") && text.contains("pass"),
        "{text}"
    );
    assert_clean_error(
        &msn(&["gradcheck", "--op", "conv3d"]),
        "unknown op `conv3d`",
    );
}

#[test]
fn bad_pretraining_input_is_a_one_line_error() {
    let out_dir = scratch("bad");
    let out = out_dir.to_str().unwrap();
    assert_clean_error(
        &msn(&["pretrain", "--data", "folder:/no/such/folder", "--out", out]),
        "/no/such/folder",
    );
    assert_clean_error(
        &msn(&["pretrain", "--preset", "resnet", "--out", out]),
        "unknown preset `resnet`",
    );
    assert_clean_error(
        &msn(&["pretrain", "--device", "tpu", "--out", out]),
        "unknown device `tpu`",
    );
    assert_clean_error(
        &msn(&["pretrain", "--precision", "fp8", "--out", out]),
        "unknown precision `fp8`",
    );
    assert_clean_error(
        &msn(&["pretrain", "--precision", "bf16", "--out", out]),
        "--precision bf16 needs a GPU",
    );
    if !ops::Device::Wgpu.is_built() {
        assert_clean_error(
            &msn(&["pretrain", "--device", "wgpu", "--out", out]),
            "--features wgpu",
        );
    }
    assert_clean_error(
        &msn(&["pretrain", "--batch-size", "1", "--out", out]),
        "`batch_size` = 1",
    );
    assert_clean_error(&msn(&["pretrain", "--resume", "--out", out]), "not found");
    let data = format!("folder:{}", cifar_class_folder("rgb").display());
    assert_clean_error(
        &msn(&["pretrain", "--data", &data, "--out", out]),
        "3 channel(s) but the fmnist-tiny encoder expects 1",
    );
}

fn metric_steps(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// The arguments of a short `msn pretrain` of the default preset on
/// Fashion-MNIST's test split at batch 8 into `out`; a test adds its own.
fn short_run(out: &str, steps: u64, checkpoint_every: u64) -> Vec<String> {
    let (steps, every) = (steps.to_string(), checkpoint_every.to_string());
    [
        "pretrain",
        "--data",
        "fashion-mnist:test",
        "--batch-size",
        "8",
        "--steps",
        &steps,
        "--checkpoint-every",
        &every,
        "--out",
        out,
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn a_killed_run_resumes_from_its_last_checkpoint() {
    let dir = scratch("resume");
    let out = dir.to_str().unwrap();
    let args = short_run(out, 8, 2);
    let mut child = Command::new(env!("CARGO_BIN_EXE_msn"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let metrics = dir.join("metrics.jsonl");
    let started = Instant::now();
    while metric_steps(&metrics).len() < 3 && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().ok();
    child.wait().unwrap();
    let before = metric_steps(&metrics);
    assert!(before.len() >= 3, "the run made no progress: {before:?}");
    assert!(dir.join("checkpoint.safetensors").is_file());

    let resumed = msn(&["pretrain", "--resume", "--out", out]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(
        metric_steps(&metrics),
        (1..=8).collect::<Vec<_>>(),
        "each step logged once, in order"
    );
    assert!(dir.join("loss.png").is_file());
    let checkpoint = dir.join("checkpoint.safetensors");
    let viz = msn(&[
        "viz",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--images",
        "2",
        "--out",
        dir.join("viz").to_str().unwrap(),
    ]);
    assert!(viz.status.success(), "{}", stderr(&viz));
    assert!(
        dir.join("viz/prototypes.png").is_file(),
        "a trained run draws prototype usage"
    );
    let again = msn(&["pretrain", "--resume", "--out", out]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already finished"));

    std::fs::write(dir.join("checkpoint.safetensors"), b"garbage").unwrap();
    assert_clean_error(
        &msn(&["pretrain", "--resume", "--out", out]),
        "checkpoint.safetensors",
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn evaluation_inputs_are_checked() {
    assert_clean_error(
        &msn(&["eval", "--protocol", "svm"]),
        "unknown protocol `svm`",
    );
    assert_clean_error(
        &msn(&["eval", "--checkpoint", "/no/such.safetensors"]),
        "/no/such.safetensors",
    );
    assert_clean_error(
        &msn(&["eval", "--features", "patches"]),
        "unknown features `patches`",
    );
    let data = format!("folder:{}", cifar_class_folder("eval-folder").display());
    assert_clean_error(
        &msn(&[
            "eval",
            "--data",
            &data,
            "--test-data",
            &data,
            "--shots",
            "50",
        ]),
        "--shots 50 is larger than the smallest class",
    );
    assert_clean_error(
        &msn(&[
            "eval",
            "--data",
            &data,
            "--test-data",
            &data,
            "--shots",
            "1",
        ]),
        "expects 1 channel(s)",
    );
    assert_clean_error(&msn(&["eval", "--data", &data]), "has no test split");
}

#[test]
fn embed_writes_features_and_labels() {
    let dir = scratch("embed");
    std::fs::create_dir_all(&dir).unwrap();
    let weights = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/timm_vit_weights.safetensors");
    let out = dir.join("features.safetensors");
    let run = msn(&[
        "embed",
        "--checkpoint",
        weights.to_str().unwrap(),
        "--heads",
        "3",
        "--data",
        "fashion-mnist:test",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let (tensors, _) = vit::read_safetensors(&out).unwrap();
    let shapes: Vec<(String, Vec<usize>)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.shape().to_vec()))
        .collect();
    assert_eq!(
        shapes,
        vec![
            ("features".to_string(), vec![10_000, 24]),
            ("labels".to_string(), vec![10_000])
        ]
    );
}

#[test]
fn viz_draws_views_and_attention() {
    let dir = scratch("viz");
    let run = msn(&[
        "viz",
        "--checkpoint",
        "random",
        "--images",
        "3",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    for picture in ["views.png", "attention.png"] {
        let img = image::open(dir.join(picture)).unwrap();
        assert!(
            img.width() > 100 && img.height() > 100,
            "{picture} is {}×{}",
            img.width(),
            img.height()
        );
    }
    assert!(String::from_utf8_lossy(&run.stdout).contains("prototypes.png skipped"));
    assert_clean_error(
        &msn(&["viz", "--images", "0", "--out", dir.to_str().unwrap()]),
        "--images must be at least 1",
    );
}

#[test]
fn bench_times_training_steps_on_random_views() {
    let dir = scratch("bench");
    std::fs::create_dir_all(&dir).unwrap();
    let report = dir.join("bench.json");
    let out = msn(&[
        "bench",
        "--batch-size",
        "8",
        "--steps",
        "3",
        "--warmup",
        "1",
        "--json",
        report.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("images/s") && text.contains("backward"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let steps = json["step_seconds"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "{json}");
    assert!(steps.iter().all(|s| s.as_f64().unwrap() > 0.0), "{json}");
    let rate = json["images_per_s"].as_f64().unwrap();
    let mut sorted: Vec<f64> = steps.iter().map(|s| s.as_f64().unwrap()).collect();
    sorted.sort_by(f64::total_cmp);
    assert!((rate - 8.0 / sorted[1]).abs() < 1e-9 * rate, "{json}");
    assert!(json["phase_median_seconds"]["backward"].as_f64().unwrap() > 0.0);

    assert_clean_error(
        &msn(&["bench", "--steps", "0"]),
        "--steps must be at least 1",
    );
    assert_clean_error(
        &msn(&["bench", "--preset", "resnet"]),
        "unknown preset `resnet`",
    );
    assert_clean_error(&msn(&["bench", "--batch-size", "1"]), "`batch_size` = 1");
    assert_clean_error(
        &msn(&["bench", "--precision", "bf16"]),
        "--precision bf16 needs a GPU",
    );
}

/// Seven Fashion-MNIST test images as gray PNGs in class folders, and a
/// gray JPEG cut short: with batch 8 every step holds the bad file.
fn gray_folder_with_a_corrupt_jpeg(name: &str) -> PathBuf {
    let set = msn::data::open("fashion-mnist:test").unwrap();
    let root = scratch(name);
    for i in 0..7 {
        let dir = root.join(&set.classes[set.labels[i]]);
        std::fs::create_dir_all(&dir).unwrap();
        let img = set.image(i).unwrap();
        image::GrayImage::from_raw(28, 28, img.pixels.clone())
            .unwrap()
            .save(dir.join(format!("{i}.png")))
            .unwrap();
    }
    let mut bytes = Vec::new();
    let img = set.image(7).unwrap();
    image::codecs::jpeg::JpegEncoder::new(&mut bytes)
        .encode(&img.pixels, 28, 28, image::ExtendedColorType::L8)
        .unwrap();
    std::fs::create_dir_all(root.join("zz")).unwrap();
    std::fs::write(root.join("zz/broken.jpg"), &bytes[..bytes.len() / 2]).unwrap();
    root
}

#[test]
fn a_corrupt_image_stops_the_run_naming_it_or_is_skipped() {
    let root = gray_folder_with_a_corrupt_jpeg("corrupt");
    let dir = scratch("corrupt-run");
    let (data, out) = (format!("folder:{}", root.display()), dir.to_str().unwrap());
    let args = [
        "pretrain",
        "--data",
        &data,
        "--batch-size",
        "8",
        "--steps",
        "3",
        "--workers",
        "2",
        "--out",
        out,
    ];
    assert_clean_error(&msn(&args), "broken.jpg");

    let skipped = msn(&[&args[..], &["--skip-bad-images"]].concat());
    let err = stderr(&skipped);
    assert!(skipped.status.success(), "{err}");
    assert_eq!(
        err.matches("warning: skipped").count(),
        1,
        "one warning per file, not per step: {err}"
    );
    assert!(err.contains("broken.jpg"), "{err}");
    let counts: Vec<u64> = std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["skipped_images"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(counts, [1, 1, 1], "each step counts its skipped image");
    let mut no_workers = args;
    no_workers[8] = "0";
    assert_clean_error(&msn(&no_workers), "--workers must be at least 1");
    std::fs::remove_dir_all(root).ok();
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bench_times_the_data_pipeline_alone() {
    let root = cifar_class_folder("bench-data");
    let data = format!("folder:{}", root.display());
    let out = msn(&[
        "bench",
        "--preset",
        "msn-vit-small-16",
        "--data",
        &data,
        "--batch-size",
        "4",
        "--steps",
        "2",
        "--warmup",
        "0",
        "--workers",
        "1,2",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains("1 worker:") && text.contains("2 workers:"),
        "{text}"
    );
    assert!(text.contains("images/s"), "{text}");
    assert_clean_error(&msn(&["bench", "--workers", "2"]), "--data");
    std::fs::remove_dir_all(root).ok();
}

#[test]
fn a_printed_configuration_loads_back_and_every_run_writes_its_own() {
    let dir = scratch("config");
    std::fs::create_dir_all(&dir).unwrap();
    let printed = msn(&[
        "pretrain",
        "--print-config",
        "--steps",
        "3",
        "--batch-size",
        "8",
        "--lr",
        "0.002",
    ]);
    assert!(printed.status.success(), "{}", stderr(&printed));
    let file = dir.join("recipe.toml");
    std::fs::write(&file, &printed.stdout).unwrap();
    let again = msn(&[
        "pretrain",
        "--print-config",
        "--config",
        file.to_str().unwrap(),
    ]);
    assert_eq!(
        again.stdout, printed.stdout,
        "print → load → print is the identity"
    );

    // A run with the file and the online monitor writes its configuration, and logs what the monitor measured.
    let out = dir.join("run");
    let run = msn(&[
        "pretrain",
        "--config",
        file.to_str().unwrap(),
        "--data",
        "fashion-mnist:fit",
        "--eval-every",
        "2",
        "--eval-images",
        "200",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let written = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(
        written.contains("data = \"fashion-mnist:fit\"") && written.contains("steps = 3"),
        "{written}"
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let measured: Vec<u64> = lines
        .iter()
        .filter(|l| l["monitor"].is_object())
        .map(|l| l["step"].as_u64().unwrap())
        .collect();
    assert_eq!(measured, [2, 3], "every 2 steps and at the end");
    for l in lines.iter().filter(|l| l["monitor"].is_object()) {
        let (knn, few) = (
            l["monitor"]["knn"].as_f64().unwrap(),
            l["monitor"]["fewshot"].as_f64().unwrap(),
        );
        assert!(
            (0.0..=1.0).contains(&knn) && (0.0..=1.0).contains(&few),
            "{l}"
        );
        assert!(l["train_s"].as_f64().unwrap() <= l["elapsed_s"].as_f64().unwrap());
    }
    assert!(out.join("accuracy.png").is_file());
    // What the monitor logged at the last step is what the saved target encoder measures.
    let (encoder, norm) =
        msn::eval::encoder_from_file(&out.join("checkpoint.safetensors"), false, None).unwrap();
    let (mean, std) = norm.unwrap();
    let val = msn::data::open("fashion-mnist:val").unwrap();
    let monitor = msn::eval::Monitor::new(&val, 200, 5, 2, 0).unwrap();
    let report = monitor.measure(&encoder, (&mean, &std)).unwrap();
    let last = &lines.last().unwrap()["monitor"];
    assert_eq!(
        (report.knn, report.fewshot),
        (
            last["knn"].as_f64().unwrap(),
            last["fewshot"].as_f64().unwrap()
        )
    );

    std::fs::write(&file, "steps = 3\n[loss]\ntemprature = 0.2\n").unwrap();
    assert_clean_error(
        &msn(&["pretrain", "--config", file.to_str().unwrap()]),
        "temprature",
    );
    assert_clean_error(
        &msn(&["pretrain", "--print-config", "--prototypes", "0"]),
        "`prototypes` = 0",
    );
    std::fs::remove_dir_all(dir).ok();
}

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
        let mut args = vec![
            "pretrain",
            "--data",
            "fashion-mnist:test",
            "--batch-size",
            "8",
            "--steps",
            "5",
            "--out",
            out,
        ];
        if detect {
            args.push("--detect-anomaly");
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

        let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap_or_default();
        let steps: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .unwrap_or_else(|_| panic!("kill {moment}: a torn line: {l}"))["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
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
