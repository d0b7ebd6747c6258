//! Data parallelism on a world of threads (`msn::dist::local`): one step of
//! two ranks with half a batch each is the step of one process with the
//! whole batch (loss, every gradient, the batch-norm statistics), and the
//! same two ranks without their exchanges are not. `cli/tests/distributed.rs`
//! runs the same comparison over MPI with whole runs.

mod common;

use std::sync::Arc;

use msn::data::{self, ImageSet};
use msn::dist::{self, Group};
use msn::loader::{batch_indices, step_seed, Share};
use msn::loss::sinkhorn_in;
use msn::trainer::Trainer;
use msn::views::{make_batch_part, BatchOptions};

/// The narrowed recipe at batch 16, so that two ranks hold 8 images each.
fn tiny() -> msn::config::PretrainConfig {
    let mut c = common::tiny();
    c.batch_size = 16;
    c
}

/// What one rank computes at step `step`: the global loss, its averaged
/// gradients, and the anchor head's first batch-norm mean.
struct Computed {
    /// The gradients' parameter names, in optimizer order.
    names: Vec<String>,
    loss: f64,
    grads: Vec<Vec<f32>>,
    bn_mean: Vec<f32>,
}

fn compute(set: &ImageSet, group: Group, share: Share, step: u64) -> Computed {
    compute_on(ops::Device::Cpu, set, group, share, step)
}

fn compute_on(
    device: ops::Device,
    set: &ImageSet,
    group: Group,
    share: Share,
    step: u64,
) -> Computed {
    let c = tiny();
    let mut trainer = Trainer::new(c.clone()).unwrap();
    trainer.join(group).unwrap();
    trainer.move_to(device).unwrap();
    let indices = batch_indices(set.len(), c.batch_size, c.seed, step);
    let (first, part) = share.of(&indices);
    let seed = step_seed(c.seed, step);
    let batch = make_batch_part(set, part, first, &c.views, seed, BatchOptions::default()).unwrap();
    let pass = trainer.forward_backward(&batch, 0.0).unwrap();
    let (_, stats) = trainer
        .anchor
        .forward_in(
            &batch.anchor.to_device(device).unwrap(),
            Some(&batch.keep),
            trainer.group(),
        )
        .unwrap();
    let mut names: Vec<String> = trainer
        .anchor
        .parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    names.push("prototypes".into());
    Computed {
        names,
        loss: pass.terms.value,
        grads: pass.grads.iter().map(|g| g.to_vec_f32()).collect(),
        bn_mean: stats[0].mean.to_vec_f32(),
    }
}

/// Two thread ranks, each with its share; `exchanging` false gives each a
/// world of its own, i.e. data parallelism without any exchange.
fn two_ranks(set: &Arc<ImageSet>, exchanging: bool) -> Vec<Computed> {
    two_ranks_on(ops::Device::Cpu, set, exchanging)
}

fn two_ranks_on(device: ops::Device, set: &Arc<ImageSet>, exchanging: bool) -> Vec<Computed> {
    let groups = if exchanging {
        dist::local::world(2)
    } else {
        vec![Group::single(), Group::single()]
    };
    let handles: Vec<_> = groups
        .into_iter()
        .enumerate()
        .map(|(rank, group)| {
            let set = Arc::clone(set);
            std::thread::spawn(move || compute_on(device, &set, group, Share { rank, ranks: 2 }, 3))
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// The largest difference between `x` and `y`, relative to `x`'s largest magnitude.
fn relative_gap(x: &[f32], y: &[f32]) -> f64 {
    let scale = x.iter().map(|v| v.abs()).fold(1e-30f32, f32::max) as f64;
    x.iter()
        .zip(y)
        .map(|(p, q)| (p - q).abs() as f64 / scale)
        .fold(0.0, f64::max)
}

/// Holds two ranks' step to one process's: the same on both ranks, and
/// within `tolerance` of the single process, tensor by tensor.
fn assert_same_step(whole: &Computed, ranks: &[Computed], tolerance: f64) {
    // Every rank ends with the same (averaged) gradients, bit for bit.
    assert_eq!(ranks[0].grads, ranks[1].grads);
    assert_eq!(ranks[0].loss, ranks[1].loss);
    assert!(
        (ranks[0].loss - whole.loss).abs() < 1e-5 * whole.loss.abs(),
        "loss {} on two ranks, {} in one process",
        ranks[0].loss,
        whole.loss
    );
    let largest = whole
        .grads
        .iter()
        .flatten()
        .fold(0.0f32, |m, v| m.max(v.abs())) as f64;
    for ((name, w), r) in whole.names.iter().zip(&whole.grads).zip(&ranks[0].grads) {
        if ["encoder.norm.bias", "head.fc1.bias", "head.fc2.bias"].contains(&name.as_str()) {
            // Shifts that a batch norm subtracts again (the encoder's last
            // bias goes through fc1 to bn1): their gradient is zero but for
            // rounding, on both sides.
            for v in w.iter().chain(r) {
                assert!((*v as f64).abs() < 1e-5 * largest, "{name}: {v}");
            }
            continue;
        }
        let gap = relative_gap(w, r);
        assert!(
            gap < tolerance,
            "{name}: gradients differ by {gap:e} of their scale"
        );
    }
    let bn_gap = relative_gap(&whole.bn_mean, &ranks[1].bn_mean);
    assert!(bn_gap < 1e-5, "SyncBN means differ by {bn_gap:e}");
}

#[test]
fn two_ranks_with_half_a_batch_each_take_the_step_of_one_with_the_whole() {
    let set = Arc::new(data::open("fashion-mnist:test").unwrap());
    let whole = compute(&set, Group::single(), Share::WHOLE, 3);
    // The same sums in another order, in f32 over a few hundred terms: about
    // 1e-6 of each tensor's scale; 1e-4 leaves room for the composed batch
    // norm against the fused one.
    assert_same_step(&whole, &two_ranks(&set, true), 1e-4);
}

/// Two ranks on the GPU runtime (their batch norms, me-max and gradients
/// exchanged from device tensors) against one process on the CPU.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
#[test]
fn two_ranks_on_the_device_take_the_step_of_one_on_the_cpu() {
    let device = common::device();
    let set = Arc::new(data::open("fashion-mnist:test").unwrap());
    let whole = compute(&set, Group::single(), Share::WHOLE, 3);
    // msn/tests/device.rs holds one device step to the CPU's within 2e-5.
    assert_same_step(&whole, &two_ranks_on(device, &set, true), 1e-4);
}

#[test]
fn without_the_exchanges_the_two_ranks_take_another_step() {
    // The control that shows the comparison above can fail: each rank on
    // its half alone (its own batch norm, me-max, Sinkhorn, gradients).
    let set = Arc::new(data::open("fashion-mnist:test").unwrap());
    let whole = compute(&set, Group::single(), Share::WHOLE, 3);
    let alone = two_ranks(&set, false);
    let gap = relative_gap(&whole.grads.concat(), &alone[0].grads.concat());
    assert!(gap > 1e-2, "gradients differ by only {gap:e}");
    assert!(relative_gap(&whole.bn_mean, &alone[0].bn_mean) > 1e-3);
}

#[test]
fn sinkhorn_over_two_ranks_is_sinkhorn_over_their_rows() {
    let (b, k) = (6, 5);
    let rows: Vec<f64> = (0..2 * b * k)
        .map(|i| ((i * 37 % 23) as f64 + 1.0) / 24.0)
        .collect();
    let whole = msn::loss::sinkhorn(&rows, 2 * b, k, 3);
    let groups = dist::local::world(2);
    let parts: Vec<Vec<f64>> = groups
        .into_iter()
        .enumerate()
        .map(|(rank, group)| {
            let mine = rows[rank * b * k..(rank + 1) * b * k].to_vec();
            std::thread::spawn(move || sinkhorn_in(&mine, b, k, 3, &group))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    for (w, p) in whole.iter().zip(parts.concat()) {
        assert!((w - p).abs() < 1e-12, "{w} against {p}");
    }
}

#[test]
fn the_handshake_checks_every_kind_of_exchange() {
    Group::single().handshake().unwrap();
    let handles: Vec<_> = dist::local::world(3)
        .into_iter()
        .map(|group| std::thread::spawn(move || group.handshake()))
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
}

#[test]
fn a_batch_that_does_not_split_into_the_ranks_is_refused() {
    let mut c = tiny();
    c.batch_size = 15;
    let groups = dist::local::world(2);
    let handles: Vec<_> = groups
        .into_iter()
        .map(|group| {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut trainer = Trainer::new(c).unwrap();
                trainer.join(group).unwrap_err().to_string()
            })
        })
        .collect();
    for h in handles {
        let message = h.join().unwrap();
        assert!(
            message.contains("batch_size 15 does not split into 2 ranks"),
            "{message}"
        );
    }
}
