//! The FLOP count that `msn bench` reports against the machine's peak: the
//! gemm's counter (2·m·n·k per product) over a ViT forward pass equals the
//! count worked out by hand from the network's shapes, and a linear layer's
//! backward pass counts twice its forward. One test in its own binary,
//! since the counter is process-wide and tests run on parallel threads.

use std::path::Path;

use msn_stack::ops::cpu::gemm::product_flops;
use msn_stack::ops::{DType, Tape, Tensor};
use msn_stack::vit::{VisionTransformer, VitConfig};

/// Floating-point operations of a forward pass over `images` images of
/// `tokens` tokens (patches and the class token), from the architecture:
/// per block qkv (3D outputs), attention's scores and weighted sum (T×T per
/// head, over the whole width), the output projection, and the MLP's two
/// layers (ratio 4); plus the patch embedding, a product over C·p² inputs.
fn by_hand(c: &VitConfig, images: usize, tokens: usize) -> u64 {
    let (b, t, d) = (images as u64, tokens as u64, c.width as u64);
    let hidden = d * c.mlp_ratio as u64;
    let rows = b * t;
    let per_block = 2 * rows * d * 3 * d // qkv
        + 2 * 2 * b * t * t * d // scores and weighted sum, all heads
        + 2 * rows * d * d // projection
        + 2 * 2 * rows * d * hidden; // fc1 and fc2
    let patches = b * (t - 1);
    let patch_in = (c.in_channels * c.patch_size * c.patch_size) as u64;
    c.depth as u64 * per_block + 2 * patches * patch_in * d
}

#[test]
fn the_product_counter_matches_the_architecture() {
    let config = VitConfig {
        image_size: 28,
        patch_size: 4,
        in_channels: 1,
        width: 24,
        depth: 2,
        heads: 3,
        mlp_ratio: 4,
    };
    let model = VisionTransformer::load(
        config.clone(),
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/timm_vit_weights.safetensors"),
    )
    .unwrap();
    let images = 5;
    let input = Tensor::from_fn(&[images, 1, 28, 28], DType::F32, |i| (i % 7) as f64 / 7.0);
    let before = product_flops();
    model.forward(&input, None).unwrap();
    assert_eq!(product_flops() - before, by_hand(&config, images, 50));

    // A linear layer's backward pass: the input and the weight gradients,
    // each a product of the forward's size.
    let (m, k, n) = (37, 19, 23);
    let tape = Tape::new();
    let x = tape.watch(&Tensor::from_fn(&[m, k], DType::F32, |i| i as f64 * 0.01));
    let w = tape.watch(&Tensor::from_fn(&[n, k], DType::F32, |i| i as f64 * -0.02));
    let before = product_flops();
    let y = x.linear(&w, None).unwrap();
    let forward = product_flops() - before;
    assert_eq!(forward, (2 * m * n * k) as u64);
    tape.backward(&y.sum_all().unwrap()).unwrap();
    assert_eq!(product_flops() - before - forward, 2 * forward);
}
