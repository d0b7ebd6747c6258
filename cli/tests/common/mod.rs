//! What the end-to-end tests of the `msn` command share: running it,
//! scratch folders, and the checks of a clean one-line error.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn msn<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_msn"))
        .args(args)
        .output()
        .expect("the binary runs")
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("msn-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The CIFAR-10 sample photos (RGB) sorted into one folder per label.
pub fn cifar_class_folder(name: &str) -> PathBuf {
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

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A failure is one `error:` line and a non-zero exit, never a panic.
pub fn assert_clean_error(out: &Output, needle: &str) {
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

/// The steps logged in a run's `metrics.jsonl`, in order; a line that is not
/// a whole JSON object (torn by a kill) fails the test.
pub fn metric_steps(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|_| panic!("a torn line in {}: {l}", path.display()))["step"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// The arguments of a short `msn pretrain` of the default preset on
/// Fashion-MNIST's test split at batch 8 into `out`; a test adds its own.
pub fn short_run(out: &str, steps: u64, checkpoint_every: u64) -> Vec<String> {
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
