//! What msn's integration tests share: the narrowed recipe they train and
//! the GPU runtime they test on.

#![allow(dead_code)] // each test binary uses its own subset

use msn::config::PretrainConfig;
use ops::Device;
use vit::VitConfig;

/// The first fmnist-tiny recipe (tests/fixtures/fmnist-tiny-v1.toml),
/// narrowed to a ViT 16×1 and a head 32→16 over 8 prototypes, batch 8 on
/// Fashion-MNIST's test split: steps of milliseconds with every part of
/// MSN in them.
pub fn tiny() -> PretrainConfig {
    // The recipe these tests were written for, not whatever fmnist-tiny is now.
    let mut c = PretrainConfig::from_file(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/fmnist-tiny-v1.toml"),
        None,
    )
    .unwrap();
    c.encoder = VitConfig {
        image_size: 28,
        patch_size: 4,
        in_channels: 1,
        width: 16,
        depth: 1,
        heads: 2,
        mlp_ratio: 2,
    };
    c.head_hidden = 32;
    c.head_output = 16;
    c.prototypes = 8;
    c.batch_size = 8;
    c.views.focal_views = 2;
    c.steps = 4;
    c.data = "fashion-mnist:test".into();
    c
}

/// The GPU runtime the device tests run on: `MSN_TEST_DEVICE`, else wgpu
/// when built, else cuda.
pub fn device() -> Device {
    match std::env::var("MSN_TEST_DEVICE") {
        Ok(name) => name.parse().expect("MSN_TEST_DEVICE is cpu, wgpu or cuda"),
        Err(_) if Device::Wgpu.is_built() => Device::Wgpu,
        Err(_) => Device::Cuda,
    }
}
