//! Every reader against damaged files: valid files with bits flipped, cut
//! short at any length, header fields set to extremes (zero, one, the
//! largest values: lengths and counts that lie), bytes spliced in. Whatever
//! the damage, a reader returns a value or a one-line error; it never panics,
//! and never allocates more than the file's own size justifies (a header
//! that promises a terabyte is refused before anything is allocated).
//!
//! Cases per reader in a plain `cargo test`: 5,000 for the IDX parsers,
//! 2,000 for gzipped IDX, CIFAR-10 and safetensors files, 1,000 for run
//! checkpoints and for JPEG/PNG folders; `PROPTEST_CASES=N` sets every count.

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use msn::data::{self, idx, Split};
use proptest::prelude::*;

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("msn-fuzz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One kind of damage to a file's bytes; positions are taken modulo the length.
#[derive(Clone, Debug)]
enum Damage {
    FlipBit(usize, u8),
    CutAt(usize),
    /// A big-endian and a little-endian u32 field (IDX, safetensors' header
    /// length) set to an extreme or random value.
    SetU32(usize, u32, bool),
    SetU64(usize, u64),
    Splice(usize, Vec<u8>),
}

fn extreme_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(u32::MAX),
        Just(0x7fff_ffff),
        Just(0x0803),
        any::<u32>()
    ]
}

/// Damage that favours the header: most positions fall in the first
/// `header` bytes, many on its 4-byte fields, and cuts near its end.
fn damage(header: usize) -> impl Strategy<Value = Vec<Damage>> {
    let header = header.max(1);
    let at = prop_oneof![
        (0..header.div_ceil(4)).prop_map(|i| i * 4),
        0..header,
        any::<usize>()
    ];
    let one = prop_oneof![
        (at.clone(), 0u8..8).prop_map(|(a, b)| Damage::FlipBit(a, b)),
        prop_oneof![0..header + 8, any::<usize>()].prop_map(Damage::CutAt),
        (at.clone(), extreme_u32(), any::<bool>()).prop_map(|(a, v, be)| Damage::SetU32(a, v, be)),
        (
            at.clone(),
            prop_oneof![Just(0u64), Just(u64::MAX), Just(1u64 << 40), any::<u64>()]
        )
            .prop_map(|(a, v)| Damage::SetU64(a, v)),
        (at, prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(a, b)| Damage::Splice(a, b)),
    ];
    prop::collection::vec(one, 1..4)
}

fn apply(bytes: &[u8], damages: &[Damage]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for d in damages {
        let len = out.len().max(1);
        match d {
            Damage::FlipBit(at, bit) => {
                if let Some(b) = out.get_mut(at % len) {
                    *b ^= 1 << bit;
                }
            }
            Damage::CutAt(at) => out.truncate(at % (out.len() + 1)),
            Damage::SetU32(at, v, big_endian) => {
                let at = (at % len).min(out.len().saturating_sub(4));
                let v = if *big_endian {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                };
                for (i, b) in v.iter().enumerate() {
                    if let Some(slot) = out.get_mut(at + i) {
                        *slot = *b;
                    }
                }
            }
            Damage::SetU64(at, v) => {
                let at = (at % len).min(out.len().saturating_sub(8));
                for (i, b) in v.to_le_bytes().iter().enumerate() {
                    if let Some(slot) = out.get_mut(at + i) {
                        *slot = *b;
                    }
                }
            }
            Damage::Splice(at, extra) => {
                let at = at % (out.len() + 1);
                out.splice(at..at, extra.iter().copied());
            }
        }
    }
    out
}

/// Runs a reader on damaged input: it must not panic, and an error must be
/// one line.
fn survives<T, E: std::fmt::Display>(what: &str, read: impl FnOnce() -> Result<T, E>) {
    match catch_unwind(AssertUnwindSafe(read)) {
        Err(_) => panic!("{what}: the reader panicked"),
        Ok(Err(e)) => {
            let message = e.to_string();
            assert!(
                !message.contains('\n'),
                "{what}: a multi-line error: {message}"
            );
        }
        Ok(Ok(_)) => {}
    }
}

fn idx_images() -> Vec<u8> {
    let mut bytes = vec![0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5];
    bytes.extend((0..3 * 4 * 5).map(|i| i as u8));
    bytes
}

fn idx_labels() -> Vec<u8> {
    vec![0, 0, 8, 1, 0, 0, 0, 3, 7, 0, 9]
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

proptest! {
    #![proptest_config(cases(5000))]

    #[test]
    fn idx_images_and_labels(d in damage(16)) {
        let path = Path::new("fuzz-idx");
        let images = apply(&idx_images(), &d);
        survives("IDX images", || idx::parse_images(path, &images));
        let labels = apply(&idx_labels(), &d);
        survives("IDX labels", || idx::parse_labels(path, &labels));
    }
}

proptest! {
    #![proptest_config(cases(2000))]

    /// Through the gzipped files that `fashion-mnist` reads, damaged before
    /// or after compression.
    #[test]
    fn gzipped_idx_files(d in damage(16), after_compression in any::<bool>()) {
        let dir = scratch("gz");
        let write = |name: &str, bytes: Vec<u8>| {
            let file = if after_compression { apply(&gzip(&bytes), &d) } else { gzip(&apply(&bytes, &d)) };
            std::fs::write(dir.join(name), file).unwrap();
        };
        write("t10k-images-idx3-ubyte.gz", idx_images());
        write("t10k-labels-idx1-ubyte.gz", idx_labels());
        survives("gzipped IDX", || data::fashion_mnist_from(&dir, Split::Test));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn cifar10_batches(d in damage(1)) {
        let dir = scratch("cifar");
        let mut record = vec![3u8];
        record.extend((0..3072).map(|i| (i % 251) as u8));
        let batch = [record.clone(), record].concat();
        std::fs::write(dir.join("test_batch.bin"), apply(&batch, &d)).unwrap();
        survives("CIFAR-10", || data::open(&format!("cifar10:{}:test", dir.display())));
        std::fs::remove_dir_all(dir).ok();
    }
}

/// A small safetensors file as the project writes them: f32 and f64
/// tensors and metadata.
fn safetensors_file() -> Vec<u8> {
    let dir = scratch("st-source");
    let path = dir.join("w.safetensors");
    let tensors = vec![
        (
            "a".to_string(),
            ops::Tensor::from_fn(&[2, 3], ops::DType::F32, |i| i as f64),
        ),
        (
            "b".to_string(),
            ops::Tensor::from_fn(&[4], ops::DType::F64, |i| -(i as f64)),
        ),
    ];
    let meta = [("msn.step".to_string(), "3".to_string())].into();
    vit::write_safetensors(&path, &tensors, &meta).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_dir_all(dir).ok();
    bytes
}

proptest! {
    #![proptest_config(cases(2000))]

    /// Safetensors: the 8-byte header length, the JSON header (dtypes,
    /// shapes and offsets that lie), the data.
    #[test]
    fn safetensors_files(d in damage(120)) {
        let dir = scratch("st");
        let path = dir.join("w.safetensors");
        std::fs::write(&path, apply(&safetensors_file(), &d)).unwrap();
        survives("safetensors", || vit::read_safetensors(&path));
        std::fs::remove_dir_all(dir).ok();
    }
}

/// A checkpoint folder of a tiny run, saved once.
fn checkpoint_folder() -> (PathBuf, Vec<u8>, Vec<u8>) {
    let mut c = msn::config::PretrainConfig::preset("fmnist-tiny").unwrap();
    c.encoder.width = 8;
    c.encoder.depth = 1;
    c.encoder.heads = 2;
    c.head_hidden = 16;
    c.head_output = 8;
    c.prototypes = 4;
    let trainer = msn::trainer::Trainer::new(c).unwrap();
    let dir = scratch("ckpt-source");
    msn::checkpoint::save(&trainer, &dir).unwrap();
    let weights = std::fs::read(dir.join(msn::checkpoint::CHECKPOINT)).unwrap();
    let state = std::fs::read(msn::checkpoint::train_state_path(&dir, 0)).unwrap();
    (dir, weights, state)
}

proptest! {
    #![proptest_config(cases(1000))]

    /// A run's checkpoint and training state, as `--resume` and `eval` read them.
    #[test]
    fn checkpoints_and_training_state(d in damage(400), which in 0..2usize) {
        let (dir, weights, state) = checkpoint_folder();
        if which == 0 {
            std::fs::write(dir.join(msn::checkpoint::CHECKPOINT), apply(&weights, &d)).unwrap();
        } else {
            std::fs::write(msn::checkpoint::train_state_path(&dir, 0), apply(&state, &d)).unwrap();
        }
        survives("checkpoint", || msn::checkpoint::load(&dir));
        std::fs::remove_dir_all(dir).ok();
    }
}

proptest! {
    #![proptest_config(cases(1000))]

    /// JPEG and PNG through a folder source: opened (headers probed), then
    /// decoded.
    #[test]
    fn jpeg_and_png_in_a_folder(d in damage(64), png in any::<bool>()) {
        let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/images");
        let source = if png {
            std::fs::read_dir(samples.join("cifar10-samples")).unwrap()
        } else {
            std::fs::read_dir(samples.join("imagenet-samples")).unwrap()
        }
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "png" || e == "jpg"))
        .unwrap();
        let dir = scratch("images");
        std::fs::create_dir_all(dir.join("a")).unwrap();
        let name = source.file_name().unwrap();
        std::fs::write(dir.join("a").join(name), apply(&std::fs::read(&source).unwrap(), &d)).unwrap();
        survives("image folder", || {
            let set = data::open(&format!("folder:{}", dir.display()))?;
            set.image(0).map(|_| ())
        });
        std::fs::remove_dir_all(dir).ok();
    }
}
