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

fn random_image(channels: usize, height: usize, width: usize, seed: u64) -> FloatImage {
    use rand::Rng;
    let mut rng = StdRng::seed_from_u64(seed);
    FloatImage {
        channels,
        height,
        width,
        data: (0..channels * height * width).map(|_| rng.gen()).collect(),
    }
}

/// The Gaussian blur written out directly: every output pixel a weighted
/// sum of reflected neighbours, first along rows, then along columns.
fn naive_blur(img: &FloatImage, sigma: f64) -> FloatImage {
    let radius = (3.0 * sigma).ceil() as isize;
    let weights: Vec<f64> = (-radius..=radius)
        .map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let reflect = |mut i: isize, len: usize| -> usize {
        let len = len as isize;
        if len == 1 {
            return 0;
        }
        while i < 0 || i >= len {
            i = if i < 0 { -i } else { 2 * (len - 1) - i };
        }
        i as usize
    };
    let (h, w) = (img.height, img.width);
    let mut out = img.clone();
    for c in 0..img.channels {
        let plane = &img.data[c * h * w..(c + 1) * h * w];
        let mut tmp = vec![0.0f64; h * w];
        for y in 0..h {
            for x in 0..w {
                tmp[y * w + x] = (0..weights.len())
                    .map(|k| {
                        weights[k] / total
                            * plane[y * w + reflect(x as isize + k as isize - radius, w)] as f64
                    })
                    .sum();
            }
        }
        for y in 0..h {
            for x in 0..w {
                out.data[c * h * w + y * w + x] = (0..weights.len())
                    .map(|k| {
                        weights[k] / total
                            * tmp[reflect(y as isize + k as isize - radius, h) * w + x]
                    })
                    .sum::<f64>() as f32;
            }
        }
    }
    out
}

#[test]
fn blur_equals_the_direct_sum_on_every_shape_including_tiny_ones() {
    for (k, &(h, w, sigma)) in [
        (1, 1, 2.0),
        (2, 3, 1.9),
        (12, 12, 2.0),
        (7, 30, 0.4),
        (96, 80, 1.3),
    ]
    .iter()
    .enumerate()
    {
        let img = random_image(3, h, w, k as u64);
        let fast = gaussian_blur(&img, sigma);
        let slow = naive_blur(&img, sigma);
        let worst = fast
            .data
            .iter()
            .zip(&slow.data)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        // f32 sums of at most 13 terms of values ≤ 1 against f64 ones.
        assert!(worst < 1e-5, "{h}×{w} σ {sigma}: |Δ| {worst}");
    }
}

/// HSV → rotate → RGB by the textbook six-sector table.
fn naive_hue(img: &FloatImage, shift: f32) -> FloatImage {
    let mut out = img.clone();
    let n = img.height * img.width;
    for i in 0..n {
        let (r, g, b) = (img.data[i], img.data[n + i], img.data[2 * n + i]);
        let (max, min) = (r.max(g).max(b), r.min(g).min(b));
        let delta = max - min;
        let mut h = if delta == 0.0 {
            0.0
        } else if max == r {
            ((g - b) / delta).rem_euclid(6.0) / 6.0
        } else if max == g {
            ((b - r) / delta + 2.0) / 6.0
        } else {
            ((r - g) / delta + 4.0) / 6.0
        };
        h = (h + shift).rem_euclid(1.0);
        let s = if max == 0.0 { 0.0 } else { delta / max };
        let sector = (h * 6.0).floor();
        let f = h * 6.0 - sector;
        let (p, q, t) = (
            max * (1.0 - s),
            max * (1.0 - s * f),
            max * (1.0 - s * (1.0 - f)),
        );
        let (nr, ng, nb) = match sector as i32 % 6 {
            0 => (max, t, p),
            1 => (q, max, p),
            2 => (p, max, t),
            3 => (p, q, max),
            4 => (t, p, max),
            _ => (max, p, q),
        };
        (out.data[i], out.data[n + i], out.data[2 * n + i]) = (nr, ng, nb);
    }
    out
}

#[test]
fn hue_rotation_equals_the_six_sector_table() {
    let mut img = random_image(3, 40, 40, 9);
    // Grays, pure primaries and black exercise the branches.
    img.data[0] = 0.0;
    img.data[1600] = 0.0;
    img.data[3200] = 0.0;
    for (k, v) in [0.5f32, 0.5, 0.5, 1.0, 0.0, 0.0].chunks(3).enumerate() {
        for (c, &value) in v.iter().enumerate() {
            img.data[c * 1600 + 1 + k] = value;
        }
    }
    for shift in [-0.5f32, -0.1, 0.0, 0.03, 0.1, 0.49] {
        let mut fast = img.clone();
        msn::augment::shift_hue(&mut fast, shift);
        let slow = naive_hue(&img, shift);
        let worst = fast
            .data
            .iter()
            .zip(&slow.data)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst < 1e-5, "shift {shift}: |Δ| {worst}");
    }
}
