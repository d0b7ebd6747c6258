//! Augmentations on real images (CIFAR-10 and ImageNet samples).

use std::path::Path;

use msn::augment::{
    color_jitter, crop_params, eval_transform, gaussian_blur, grayscale, hflip,
    random_resized_crop, FloatImage, Jitter, ViewAugment,
};
use rand::rngs::StdRng;
use rand::SeedableRng;

fn load(name: &str) -> FloatImage {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/images")
        .join(name);
    let rgb = image::open(&path).unwrap().to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let raw = rgb.as_raw();
    let data = (0..3)
        .flat_map(|c| (0..w * h).map(move |i| raw[i * 3 + c] as f32 / 255.0))
        .collect();
    FloatImage {
        channels: 3,
        height: h,
        width: w,
        data,
    }
}

fn mean(img: &FloatImage) -> f32 {
    img.data.iter().sum::<f32>() / img.data.len() as f32
}

#[test]
fn random_resized_crop_respects_scale_and_ratio() {
    let img = load("imagenet-samples/imagenet_00_243.jpg");
    let mut rng = StdRng::seed_from_u64(0);
    for _ in 0..200 {
        let (top, left, h, w) = crop_params(
            img.height,
            img.width,
            (0.05, 0.3),
            (0.75, 4.0 / 3.0),
            &mut rng,
        );
        assert!(top + h <= img.height && left + w <= img.width);
        let area = (h * w) as f64 / (img.height * img.width) as f64;
        assert!((0.04..=0.31).contains(&area), "area fraction {area}");
        let ratio = w as f64 / h as f64;
        assert!((0.74..=1.36).contains(&ratio), "aspect {ratio}");
    }
    let view = random_resized_crop(&img, 96, (0.05, 0.3), (0.75, 4.0 / 3.0), &mut rng);
    assert_eq!((view.channels, view.height, view.width), (3, 96, 96));
    assert!(view.data.iter().all(|v| (0.0..=1.0).contains(v)));
}

#[test]
fn a_full_crop_at_the_same_size_is_the_image() {
    let img = load("cifar10-samples/cifar10_00_3.png");
    let same = msn::augment::resize_region(&img, (0, 0, 32, 32), 32, 32);
    assert_eq!(same, img);
}

#[test]
fn flip_grayscale_jitter_and_blur_behave() {
    let img = load("cifar10-samples/cifar10_01_8.png");
    assert_eq!(hflip(&hflip(&img)), img);
    assert_eq!(hflip(&img).data[31], img.data[0]);
    let gray = grayscale(&img);
    let n = 32 * 32;
    assert_eq!(gray.data[..n], gray.data[n..2 * n]);
    let mut rng = StdRng::seed_from_u64(1);
    let mut jittered = img.clone();
    color_jitter(
        &mut jittered,
        &Jitter {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            hue: 0.1,
            p: 1.0,
        },
        &mut rng,
    );
    assert_ne!(jittered, img);
    assert!(jittered.data.iter().all(|v| (0.0..=1.0).contains(v)));
    let blurred = gaussian_blur(&img, 1.5);
    assert!(
        (mean(&blurred) - mean(&img)).abs() < 0.01,
        "blur keeps the mean"
    );
    let variation = |x: &FloatImage| x.data.windows(2).map(|w| (w[1] - w[0]).abs()).sum::<f32>();
    assert!(variation(&blurred) < 0.7 * variation(&img), "blur smooths");
}

#[test]
fn brightness_alone_scales_pixels() {
    let img = load("cifar10-samples/cifar10_02_8.png");
    let mut rng = StdRng::seed_from_u64(2);
    let mut out = img.clone();
    color_jitter(
        &mut out,
        &Jitter {
            brightness: 0.4,
            contrast: 0.0,
            saturation: 0.0,
            hue: 0.0,
            p: 1.0,
        },
        &mut rng,
    );
    let (i, _) = img
        .data
        .iter()
        .enumerate()
        .find(|(_, &v)| v > 0.2 && v < 0.5)
        .unwrap();
    let factor = out.data[i] / img.data[i];
    assert!((0.6..=1.4).contains(&factor));
    for (a, b) in img.data.iter().zip(&out.data) {
        assert!((b - (a * factor).min(1.0)).abs() < 1e-5);
    }
}

#[test]
fn a_view_pipeline_is_deterministic_for_a_seed() {
    let img = load("imagenet-samples/imagenet_01_559.jpg");
    let aug = ViewAugment {
        size: 64,
        scale: (0.3, 1.0),
        ratio: (0.75, 4.0 / 3.0),
        flip_p: 0.5,
        jitter: Some(Jitter {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            hue: 0.1,
            p: 0.8,
        }),
        grayscale_p: 0.2,
        blur_p: 0.5,
    };
    let a = aug.apply(&img, &mut StdRng::seed_from_u64(5));
    let b = aug.apply(&img, &mut StdRng::seed_from_u64(5));
    assert_eq!(a, b);
    assert_eq!((a.height, a.width), (64, 64));
}

#[test]
fn eval_transform_resizes_then_centre_crops() {
    let img = load("imagenet-samples/imagenet_02_438.jpg");
    let out = eval_transform(&img, 224);
    assert_eq!((out.channels, out.height, out.width), (3, 224, 224));
}
