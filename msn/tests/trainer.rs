//! The trainer: a resumed run equals an uninterrupted one (also on a
//! streamed folder, resumed with another number of loader workers), a
//! non-finite loss stops training with an error, and a checkpoint that does
//! not fit is refused.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::tiny;
use msn::checkpoint;
use msn::data::{self, ImageSet};
use msn::loader::{batch_indices, step_seed, Loader, LoaderOptions};
use msn::trainer::Trainer;
use msn::views::{make_batch, BatchOptions};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("msn-trainer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn run(trainer: &mut Trainer, set: &ImageSet, until: u64) -> Vec<f64> {
    let c = trainer.config.clone();
    let mut losses = Vec::new();
    while trainer.step < until {
        let indices = batch_indices(set.len(), c.batch_size, c.seed, trainer.step);
        let batch = make_batch(set, &indices, &c.views, step_seed(c.seed, trainer.step)).unwrap();
        losses.push(trainer.train_step(&batch, 0.0).unwrap().loss);
    }
    losses
}

fn parameters(t: &Trainer) -> Vec<Vec<f32>> {
    let mut all: Vec<Vec<f32>> = t
        .anchor
        .parameters()
        .iter()
        .chain(t.target.parameters().iter())
        .map(|(_, p)| p.to_vec_f32())
        .collect();
    all.push(t.prototypes.to_vec_f32());
    all
}

#[test]
fn a_resumed_run_continues_exactly_where_it_stopped() {
    let set = Arc::new(data::open("fashion-mnist:test").unwrap());
    let mut straight = Trainer::new(tiny()).unwrap();
    let all = run(&mut straight, &set, 4);

    let dir = scratch("resume");
    let mut first = Trainer::new(tiny()).unwrap();
    let head = run(&mut first, &set, 2);
    checkpoint::save(&first, &dir).unwrap();
    drop(first);
    let mut resumed = checkpoint::load(&dir).unwrap();
    assert_eq!(resumed.step, 2);
    let tail = run(&mut resumed, &set, 4);
    assert_eq!([head, tail].concat(), all);
    assert_eq!(parameters(&resumed), parameters(&straight));
    std::fs::remove_dir_all(dir).ok();
}

/// The checkpoint is the commit point of a save: a run killed after writing
/// the next step's optimizer state but before its checkpoint still loads, at
/// the step of its checkpoint, and ends on the same parameters as a run that
/// was never stopped; the next save removes the orphaned state.
#[test]
fn a_save_cut_short_before_its_checkpoint_leaves_the_last_one_whole() {
    let set = Arc::new(data::open("fashion-mnist:test").unwrap());
    let mut straight = Trainer::new(tiny()).unwrap();
    run(&mut straight, &set, 4);

    let dir = scratch("cut-short");
    let later = scratch("cut-short-later");
    let mut first = Trainer::new(tiny()).unwrap();
    run(&mut first, &set, 2);
    checkpoint::save(&first, &dir).unwrap();
    run(&mut first, &set, 3);
    checkpoint::save(&first, &later).unwrap();
    // Step 3's save killed between its two writes: its optimizer state is
    // there, its checkpoint is not.
    std::fs::copy(
        checkpoint::train_state_path(&later, 3),
        checkpoint::train_state_path(&dir, 3),
    )
    .unwrap();
    drop(first);

    let mut resumed = checkpoint::load(&dir).unwrap();
    assert_eq!(resumed.step, 2);
    run(&mut resumed, &set, 4);
    assert_eq!(parameters(&resumed), parameters(&straight));
    checkpoint::save(&resumed, &dir).unwrap();
    assert!(checkpoint::train_state_path(&dir, 4).is_file());
    for gone in [2, 3] {
        assert!(
            !checkpoint::train_state_path(&dir, gone).is_file(),
            "step {gone}'s state left"
        );
    }
    std::fs::remove_dir_all(dir).ok();
    std::fs::remove_dir_all(later).ok();
}

/// Fashion-MNIST test images 0..count as gray PNGs in class folders: a
/// streamed folder source with the tiny network's shapes.
fn png_folder(name: &str, count: usize) -> PathBuf {
    let set = data::open("fashion-mnist:test").unwrap();
    let root = scratch(name);
    for i in 0..count {
        let img = set.image(i).unwrap();
        let dir = root.join(&set.classes[set.labels[i]]);
        std::fs::create_dir_all(&dir).unwrap();
        image::GrayImage::from_raw(28, 28, img.pixels.clone())
            .unwrap()
            .save(dir.join(format!("{i:03}.png")))
            .unwrap();
    }
    root
}

/// Trains to step `until` on the batches of a loader with `workers` threads.
fn run_loader(trainer: &mut Trainer, set: &Arc<ImageSet>, until: u64, workers: usize) {
    let c = trainer.config.clone();
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
        (trainer.step, until),
        options,
    )
    .unwrap();
    while trainer.step < until {
        let batch = loader.next_batch().unwrap().unwrap();
        trainer.train_step(&batch, 0.0).unwrap();
    }
}

#[test]
fn a_streamed_run_resumed_with_other_workers_is_bit_exact() {
    let root = png_folder("stream", 40);
    let set = Arc::new(data::open(&format!("folder:{}", root.display())).unwrap());
    assert!(set.is_streamed());
    let mut config = tiny();
    config.data = set.name.clone();
    config.steps = 6;
    let mut straight = Trainer::new(config.clone()).unwrap();
    run_loader(&mut straight, &set, 6, 3);

    let dir = scratch("stream-resume");
    let mut first = Trainer::new(config).unwrap();
    run_loader(&mut first, &set, 3, 1);
    checkpoint::save(&first, &dir).unwrap();
    drop(first);
    let mut resumed = checkpoint::load(&dir).unwrap();
    run_loader(&mut resumed, &set, 6, 2);
    assert_eq!(parameters(&resumed), parameters(&straight));
    std::fs::remove_dir_all(dir).ok();
    std::fs::remove_dir_all(root).ok();
}

#[test]
fn a_non_finite_loss_is_an_error_naming_the_step() {
    let set = data::open("fashion-mnist:test").unwrap();
    let mut trainer = Trainer::new(tiny()).unwrap();
    let c = trainer.config.clone();
    let mut batch = make_batch(&set, &batch_indices(set.len(), 8, 0, 0), &c.views, 1).unwrap();
    batch.target = batch.target.mul_scalar(f64::NAN).unwrap();
    let err = trainer.train_step(&batch, 0.0).unwrap_err().to_string();
    assert!(
        err.contains("step 1:") && err.contains("the loss is NaN"),
        "{err}"
    );
}

#[test]
fn a_checkpoint_with_a_wrong_shape_is_refused() {
    let dir = scratch("shape");
    let trainer = Trainer::new(tiny()).unwrap();
    checkpoint::save(&trainer, &dir).unwrap();
    let path = dir.join(checkpoint::CHECKPOINT);
    let (mut tensors, meta) = vit::read_safetensors(&path).unwrap();
    for (name, t) in tensors.iter_mut() {
        if name == "msn.prototypes" {
            *t = ops::Tensor::zeros(&[3, 16], ops::DType::F32);
        }
    }
    vit::write_safetensors(&path, &tensors, &meta).unwrap();
    let err = checkpoint::load(&dir)
        .err()
        .expect("must be refused")
        .to_string();
    assert!(
        err.contains("msn.prototypes") && err.contains("[3, 16]") && err.contains("[8, 16]"),
        "{err}"
    );
    std::fs::write(&path, b"not a checkpoint").unwrap();
    let err = checkpoint::load(&dir)
        .err()
        .expect("must be refused")
        .to_string();
    assert!(err.contains("not a safetensors file"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}
