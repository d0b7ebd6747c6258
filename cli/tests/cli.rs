//! The `msn` command end to end: exit codes, one-line errors, and a
//! pretraining run that is killed mid-way and resumed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

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
