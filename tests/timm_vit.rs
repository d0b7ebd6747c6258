//! The ViT against timm: a state dict saved from timm's `VisionTransformer`
//! with `safetensors.torch.save_file` loads as it is, and the forward pass
//! matches timm's (fixtures from `tools/reference/timm_vit_fixture.py`).
//!
//! Tolerance 2e-5 absolute: both sides compute in f32 with different
//! summation orders (blocked matmul vs MKL/oneDNN); through two blocks of
//! width 24 the rounding differences stay below 1e-5.

use std::path::Path;

use msn_stack::ops::Tensor;
use msn_stack::vit::{read_safetensors, VisionTransformer, VitConfig};

fn config() -> VitConfig {
    VitConfig {
        image_size: 28,
        patch_size: 4,
        in_channels: 1,
        width: 24,
        depth: 2,
        heads: 3,
        mlp_ratio: 4,
    }
}

fn fixture(name: &str) -> std::collections::HashMap<String, Tensor> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    read_safetensors(&path).unwrap().0.into_iter().collect()
}

fn assert_close(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}");
    let worst = got
        .to_vec_f64()
        .iter()
        .zip(want.to_vec_f64())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst < 2e-5, "{what}: worst difference {worst:e}");
}

fn model() -> VisionTransformer {
    VisionTransformer::load(
        config(),
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/timm_vit_weights.safetensors"),
    )
    .unwrap()
}

#[test]
fn timm_weights_load_and_the_forward_pass_matches_timm() {
    let io = fixture("timm_vit_io.safetensors");
    let out = model().forward(&io["input"], None).unwrap();
    assert_close(
        &out.cls_prenorm,
        &io["out.cls_prenorm"],
        "CLS before the final norm",
    );
    assert_close(&out.cls, &io["out.cls"], "CLS after the final norm");
}

#[test]
fn smaller_views_use_the_bicubically_resized_positional_embedding() {
    let io = fixture("timm_vit_io.safetensors");
    let out = model().forward(&io["focal.input"], None).unwrap();
    assert_close(&out.cls, &io["focal.cls"], "focal view CLS");
}

#[test]
fn token_dropping_keeps_the_listed_patches() {
    let io = fixture("timm_vit_io.safetensors");
    let keep: Vec<usize> = io["masked.keep"]
        .to_vec_f64()
        .iter()
        .map(|&v| v as usize)
        .collect();
    let out = model().forward(&io["input"], Some(&keep)).unwrap();
    assert_close(&out.cls, &io["masked.cls"], "masked CLS");
}

#[test]
fn saved_weights_round_trip_and_mismatches_are_listed() {
    let dir = std::env::temp_dir().join(format!("vit-roundtrip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("w.safetensors");
    let original = model();
    original.save(&path).unwrap();
    let reloaded = VisionTransformer::load(config(), &path).unwrap();
    for ((n1, a), (n2, b)) in original.state_dict().iter().zip(reloaded.state_dict()) {
        assert_eq!(n1, &n2);
        assert_eq!(a.to_vec_f32(), b.to_vec_f32(), "{n1}");
    }
    let wider = VitConfig {
        width: 48,
        heads: 3,
        ..config()
    };
    let err = VisionTransformer::load(wider, &path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`cls_token` has shape [1, 1, 24], expected [1, 1, 48]"),
        "{err}"
    );
    let deeper = VitConfig {
        depth: 3,
        ..config()
    };
    let err = VisionTransformer::load(deeper, &path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing `blocks.2.norm1.weight`"), "{err}");
    let shallower = VitConfig {
        depth: 1,
        ..config()
    };
    let err = VisionTransformer::load(shallower, &path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unexpected `blocks.1.attn.proj.bias`"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).ok();
}
