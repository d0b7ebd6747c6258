//! The streamed folder source and the parallel loader: the scan finds what
//! users' folders hold, batches do not depend on the number of workers, a
//! corrupt file is named or skipped, decoded images held at once stay
//! bounded, and views made from 8-bit pixels match the float reference path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use msn::augment::{crop_params, resize_region, FloatImage};
use msn::config::PretrainConfig;
use msn::data::{self, ImageSet};
use msn::loader::{batch_indices, step_seed, Loader, LoaderOptions};
use msn::views::{make_batch_with, Batch, BatchOptions};
use rand::rngs::StdRng;
use rand::SeedableRng;

fn photos() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/images/imagenet-samples")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("msn-stream-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The 20 sample photos in two classes (even and odd index), as users keep
/// them: upper-case extensions, a nested folder, and files that are not images.
fn photo_folder(name: &str) -> PathBuf {
    let root = scratch(name);
    let mut files: Vec<_> = std::fs::read_dir(photos())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for (k, file) in files.iter().enumerate() {
        let class = root.join(if k % 2 == 0 { "even" } else { "odd" });
        let dir = if k % 4 == 1 {
            class.join("nested")
        } else {
            class
        };
        std::fs::create_dir_all(&dir).unwrap();
        let name = format!("photo{k:02}.{}", if k % 3 == 0 { "JPG" } else { "jpeg" });
        std::fs::copy(file, dir.join(name)).unwrap();
    }
    std::fs::write(root.join("even/.DS_Store"), b"\0\0\0\x01Bud1").unwrap();
    std::fs::write(root.join("odd/notes.txt"), b"not an image").unwrap();
    std::fs::write(root.join("odd/._photo01.jpeg"), b"AppleDouble").unwrap();
    root
}

/// A small RGB recipe at 64 px for the photos: every augmentation of the
/// ViT-S/16 preset (jitter with hue and saturation, grayscale, blur), 4 focal views.
fn photo_views() -> PretrainConfig {
    let mut c = PretrainConfig::msn_vit_small_16();
    c.views.target.size = 64;
    c.views.anchor.size = 64;
    c.views.focal.size = 32;
    c.views.focal_views = 4;
    c.batch_size = 6;
    c
}

fn open(root: &Path) -> ImageSet {
    data::open(&format!("folder:{}", root.display())).unwrap()
}

fn same_batch(a: &Batch, b: &Batch) -> bool {
    a.target.to_vec_f32() == b.target.to_vec_f32()
        && a.anchor.to_vec_f32() == b.anchor.to_vec_f32()
        && a.focal.as_ref().map(|f| f.to_vec_f32()) == b.focal.as_ref().map(|f| f.to_vec_f32())
        && a.keep == b.keep
        && a.labels == b.labels
}

fn loader_batches(
    set: &Arc<ImageSet>,
    c: &PretrainConfig,
    steps: u64,
    workers: usize,
) -> Vec<Batch> {
    let options = LoaderOptions {
        workers,
        batch: BatchOptions::default(),
        share: msn::loader::Share::WHOLE,
    };
    let loader = Loader::spawn(
        Arc::clone(set),
        c.views.clone(),
        c.batch_size,
        c.seed,
        (0, steps),
        options,
    )
    .unwrap();
    (0..steps)
        .map(|_| loader.next_batch().unwrap().unwrap())
        .collect()
}

#[test]
fn the_scan_finds_nested_images_of_any_case_and_passes_over_other_files() {
    let root = photo_folder("scan");
    let set = open(&root);
    assert_eq!(set.len(), 20);
    assert_eq!(set.classes, ["even", "odd"]);
    assert_eq!(set.labels.iter().filter(|&&l| l == 0).count(), 10);
    assert_eq!(set.channels, 3);
    assert!(set.is_streamed());
    assert_eq!(
        set.ignored_files(),
        3,
        ".DS_Store, notes.txt, ._photo01.jpeg"
    );
    assert!(
        set.describe(0).ends_with("photo00.JPG"),
        "{}",
        set.describe(0)
    );
    let tally = set.decode_tally().unwrap();
    assert_eq!(tally.total(), 0, "opening a folder decodes nothing");
    let img = set.image(0).unwrap();
    assert_eq!(img.channels, 3);
    assert_eq!(
        tally.alive(),
        0,
        "a decoded file is counted while alive only"
    );
    std::fs::remove_dir_all(root).ok();
}

#[test]
fn batches_are_the_same_with_one_worker_or_three() {
    let root = photo_folder("workers");
    let set = Arc::new(open(&root));
    let c = photo_views();
    let one = loader_batches(&set, &c, 4, 1);
    let three = loader_batches(&set, &c, 4, 3);
    for (step, (a, b)) in one.iter().zip(&three).enumerate() {
        assert!(
            same_batch(a, b),
            "step {step} differs between 1 and 3 workers"
        );
    }
    assert!(
        !same_batch(&one[0], &one[1]),
        "steps differ from one another"
    );
    // The loader's batches are make_batch's at (seed, step): a resumed run
    // rebuilds exactly these.
    let direct = make_batch_with(
        &set,
        &batch_indices(set.len(), c.batch_size, c.seed, 2),
        &c.views,
        step_seed(c.seed, 2),
        BatchOptions::default(),
    )
    .unwrap();
    assert!(same_batch(&direct, &one[2]));
    std::fs::remove_dir_all(root).ok();
}

#[test]
fn a_corrupt_jpeg_is_named_and_can_be_skipped() {
    let root = photo_folder("corrupt");
    let victim = root.join("odd/photo03.JPG");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes.truncate(600);
    std::fs::write(&victim, bytes).unwrap();
    let set = open(&root);
    let bad = (0..set.len())
        .find(|&i| set.describe(i).ends_with("photo03.JPG"))
        .unwrap();
    let c = photo_views();
    let indices = [0, bad, 2, 3];
    let err = make_batch_with(&set, &indices, &c.views, 7, BatchOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("photo03.JPG") && err.contains("cannot decode"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let skip = BatchOptions {
        skip_bad_images: true,
    };
    let batch = make_batch_with(&set, &indices, &c.views, 7, skip).unwrap();
    assert_eq!(batch.skipped.len(), 1);
    assert!(
        batch.skipped[0].contains("photo03.JPG"),
        "{:?}",
        batch.skipped
    );
    assert_eq!(batch.target.shape()[0], 4, "the batch keeps its size");
    assert_eq!(batch.labels[1], set.labels[2], "replaced by the next image");
    let again = make_batch_with(&set, &indices, &c.views, 7, skip).unwrap();
    assert!(
        same_batch(&batch, &again),
        "the replacement is deterministic"
    );
    std::fs::remove_dir_all(root).ok();
}

#[test]
fn decoded_images_held_at_once_are_bounded_by_the_workers() {
    let root = photo_folder("bounded");
    let set = Arc::new(open(&root));
    let mut c = photo_views();
    c.batch_size = 4;
    let (steps, workers) = (10, 3);
    let loader = Loader::spawn(
        Arc::clone(&set),
        c.views.clone(),
        c.batch_size,
        c.seed,
        (0, steps),
        LoaderOptions {
            workers,
            batch: BatchOptions::default(),
            share: msn::loader::Share::WHOLE,
        },
    )
    .unwrap();
    // A slow consumer: the loader fills its queue and waits.
    for _ in 0..steps {
        std::thread::sleep(std::time::Duration::from_millis(20));
        loader.next_batch().unwrap().unwrap();
    }
    drop(loader);
    let tally = set.decode_tally().unwrap();
    assert_eq!(tally.total(), steps as usize * c.batch_size);
    assert!(
        (1..=workers).contains(&tally.peak()),
        "{} decoded images alive at once with {workers} workers",
        tally.peak()
    );
    assert_eq!(tally.alive(), 0);
    std::fs::remove_dir_all(root).ok();
}

/// The 8-bit SIMD crop-and-resize against the float path it replaced
/// (whole image to float, then `resize_region`), on every sample photo at
/// the preset's view sizes: the same crop box, the same two-tap bilinear
/// weights, so they differ by the 8-bit rounding of the result (half a
/// level) and fixed-point weights (the rest of a level at most).
#[test]
fn views_from_8_bit_pixels_match_the_float_reference() {
    let set = open(&photo_folder("resize"));
    let mut rng = StdRng::seed_from_u64(3);
    let (mut worst_mean, mut worst_max) = (0.0f32, 0.0f32);
    for i in 0..set.len() {
        let pixels = set.pixels(i).unwrap();
        let reference = FloatImage::from_image(&pixels.to_image(3));
        for (size, scale) in [(224, (0.3, 1.0)), (96, (0.05, 0.3))] {
            for _ in 0..4 {
                let region = crop_params(
                    pixels.height,
                    pixels.width,
                    scale,
                    (0.75, 4.0 / 3.0),
                    &mut rng,
                );
                let fast = msn::augment::crop_resize(&pixels, region, size, size, 3);
                let slow = resize_region(&reference, region, size, size);
                assert_eq!(fast.data.len(), slow.data.len());
                let diffs: Vec<f32> = fast
                    .data
                    .iter()
                    .zip(&slow.data)
                    .map(|(a, b)| (a - b).abs())
                    .collect();
                let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
                let max = diffs.iter().fold(0.0f32, |m, &d| m.max(d));
                worst_mean = worst_mean.max(mean);
                worst_max = worst_max.max(max);
            }
        }
    }
    eprintln!("8-bit vs float views: worst mean |Δ| {worst_mean:.5}, worst max |Δ| {worst_max:.5}");
    assert!(worst_mean < 0.5 / 255.0, "mean |Δ| {worst_mean}");
    assert!(worst_max < 1.5 / 255.0, "max |Δ| {worst_max}");
}
