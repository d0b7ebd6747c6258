//! One full MSN step against PyTorch (fixtures from
//! `tools/reference/msn_step_fixture.py`): head outputs of both branches, the
//! loss terms, every parameter's gradient, the parameters after AdamW and the
//! target after the EMA update.
//!
//! Both sides run the forward and backward passes in f64 (PyTorch from the
//! same f32-representable weights and views), so the comparison sees the
//! algorithm rather than rounding: outputs, loss terms and gradients must agree
//! to 1e-9 relative to the largest gradient of the network (in f32, several
//! gradients that are zero analytically, such as biases followed by batch
//! norm, are pure rounding noise). The update then runs in f32, as training
//! does, from the f64 gradients: parameters after AdamW and the EMA target must
//! agree to 2e-7 absolute. Adam's first step moves each weight by about
//! ±lr = 1e-3 whatever the gradient's size, so a wrong update shows as 1e-3,
//! while storing weights of magnitude ≤ 1 in f32 rounds by at most 6e-8.

use std::collections::HashMap;
use std::path::Path;

use msn_stack::msn::config::PretrainConfig;
use msn_stack::msn::trainer::Trainer;
use msn_stack::msn::views::Batch;
use msn_stack::ops::{DType, Tensor};
use msn_stack::vit::{read_safetensors, VitConfig};

fn fixture() -> HashMap<String, Tensor> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/msn_step.safetensors");
    read_safetensors(&path).unwrap().0.into_iter().collect()
}

fn config() -> PretrainConfig {
    // The recipe these tests were written for, not whatever fmnist-tiny is now.
    let mut c = PretrainConfig::from_file(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/fmnist-tiny-v1.toml"),
        None,
    )
    .unwrap();
    c.encoder = VitConfig {
        image_size: 28,
        patch_size: 4,
        in_channels: 1,
        width: 24,
        depth: 2,
        heads: 3,
        mlp_ratio: 4,
    };
    c.head_hidden = 32;
    c.head_output = 16;
    c.prototypes = 8;
    c.batch_size = 4;
    c.views.focal_views = 2;
    c.steps = 10;
    c
}

/// Largest |a − b| relative to b's largest magnitude.
fn relative_error(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.numel(), b.numel());
    let scale = b
        .to_vec_f64()
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(1e-12);
    a.to_vec_f64()
        .iter()
        .zip(b.to_vec_f64())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
        / scale
}

fn absolute_error(a: &Tensor, b: &Tensor) -> f64 {
    a.to_vec_f64()
        .iter()
        .zip(b.to_vec_f64())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn scalar(f: &HashMap<String, Tensor>, name: &str) -> f64 {
    f[name].to_vec_f64()[0]
}

#[test]
fn one_msn_step_matches_pytorch() {
    let f = fixture();
    let mut trainer = Trainer::new(config()).unwrap();
    trainer.anchor.visit(&mut |name, p| {
        let source = &f[&format!("init.{name}")];
        *p = source.reshape(p.shape()).unwrap();
    });
    trainer.target = trainer.anchor.clone();
    trainer.prototypes = f["init.prototypes"].clone();
    let keep: Vec<usize> = f["view.keep"]
        .to_vec_f64()
        .iter()
        .map(|&v| v as usize)
        .collect();
    let batch = Batch {
        target: f["view.target"].clone(),
        anchor: f["view.anchor"].clone(),
        keep,
        focal: Some(f["view.focal"].clone()),
        labels: vec![0; 4],
        skipped: Vec::new(),
        prep_seconds: 0.0,
    };

    let pass = trainer.forward_backward(&batch, 0.0).unwrap();
    assert!(
        relative_error(&pass.anchor_out, &f["out.z"]) < 1e-9,
        "anchor outputs"
    );
    assert!(
        relative_error(&pass.target_out, &f["out.h"]) < 1e-9,
        "target outputs"
    );
    for (ours, theirs) in [
        (pass.terms.total.item().unwrap(), "loss.total"),
        (pass.terms.ce, "loss.ce"),
        (pass.terms.memax, "loss.memax"),
    ] {
        assert!(
            (ours - scalar(&f, theirs)).abs() < 1e-9 * scalar(&f, theirs).abs().max(1.0),
            "{theirs}: {ours} vs {}",
            scalar(&f, theirs)
        );
    }
    let mut names: Vec<String> = trainer
        .anchor
        .parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    names.push("prototypes".into());
    let largest = names
        .iter()
        .map(|n| {
            f[&format!("grad.{n}")]
                .to_vec_f64()
                .iter()
                .fold(0.0f64, |m, v| m.max(v.abs()))
        })
        .fold(0.0, f64::max);
    let mut worst_grad = (0.0, String::new());
    for (name, grad) in names.iter().zip(&pass.grads) {
        let err = absolute_error(grad, &f[&format!("grad.{name}")]) / largest;
        if err > worst_grad.0 {
            worst_grad = (err, name.clone());
        }
    }
    assert!(
        worst_grad.0 < 1e-9,
        "gradient of {} off by {:e} of the largest gradient",
        worst_grad.1,
        worst_grad.0
    );

    // The update runs in f32, as in training.
    let to_f32 = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
    trainer.anchor.visit(&mut |_, p| *p = to_f32(p));
    trainer.target.visit(&mut |_, p| *p = to_f32(p));
    trainer.prototypes = to_f32(&trainer.prototypes);
    let mut pass = pass;
    pass.grads = pass.grads.iter().map(to_f32).collect();

    let metrics = trainer.apply(pass).unwrap();
    assert!(
        (metrics.grad_norm - scalar(&f, "grad_norm")).abs() < 1e-6 * scalar(&f, "grad_norm"),
        "{}",
        metrics.grad_norm
    );
    assert!(
        (metrics.lr - scalar(&f, "lr")).abs() < 1e-9
            && (metrics.wd - scalar(&f, "wd")).abs() < 1e-7
    );
    let mut worst_adam = (0.0, String::new());
    trainer.anchor.visit(&mut |name, p| {
        let err = absolute_error(p, &f[&format!("after_adam.{name}")]);
        if err > worst_adam.0 {
            worst_adam = (err, name);
        }
    });
    let proto_err = absolute_error(&trainer.prototypes, &f["after_adam.prototypes"]);
    assert!(
        worst_adam.0 < 2e-7 && proto_err < 2e-7,
        "after AdamW: {} off by {:e}, prototypes by {proto_err:e}",
        worst_adam.1,
        worst_adam.0
    );
    let mut worst_ema = 0.0f64;
    trainer.target.visit(&mut |name, p| {
        worst_ema = worst_ema.max(absolute_error(p, &f[&format!("after_ema.{name}")]))
    });
    assert!(worst_ema < 2e-7, "target after EMA off by {worst_ema:e}");
}
