//! Image augmentations for MSN's views (`msn-spec.md` §5), on float images in
//! [0, 1], channel-major. Each follows torchvision's definition; where the
//! implementation differs (no antialiasing in resize, a true Gaussian kernel
//! for blur) the doc of the function says so.

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::data::Image;

/// A float image `[C, H, W]` with values in [0, 1] (before normalisation).
#[derive(Clone, Debug, PartialEq)]
pub struct FloatImage {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl FloatImage {
    pub fn from_image(img: &Image) -> Self {
        FloatImage {
            channels: img.channels,
            height: img.height,
            width: img.width,
            data: img.pixels.iter().map(|&p| p as f32 / 255.0).collect(),
        }
    }

    fn plane(&self, c: usize) -> &[f32] {
        &self.data[c * self.height * self.width..(c + 1) * self.height * self.width]
    }

    /// ITU-R 601 luma (torchvision's `rgb_to_grayscale`), one plane.
    fn luma(&self) -> Vec<f32> {
        if self.channels != 3 {
            return self.plane(0).to_vec();
        }
        let (r, g, b) = (self.plane(0), self.plane(1), self.plane(2));
        (0..r.len())
            .map(|i| 0.299 * r[i] + 0.587 * g[i] + 0.114 * b[i])
            .collect()
    }
}

/// Colour jitter strengths (torchvision's `ColorJitter`), applied with probability `p`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Jitter {
    pub brightness: f64,
    pub contrast: f64,
    pub saturation: f64,
    pub hue: f64,
    pub p: f64,
}

/// The augmentation pipeline of one kind of view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewAugment {
    /// Output side in pixels.
    pub size: usize,
    /// RandomResizedCrop's area fraction range.
    pub scale: (f64, f64),
    /// RandomResizedCrop's aspect-ratio range (sampled log-uniformly).
    pub ratio: (f64, f64),
    pub flip_p: f64,
    pub jitter: Option<Jitter>,
    pub grayscale_p: f64,
    pub blur_p: f64,
}

impl ViewAugment {
    /// Crop, flip, jitter, grayscale, blur, in MSN's order.
    pub fn apply(&self, img: &FloatImage, rng: &mut impl Rng) -> FloatImage {
        let mut out = random_resized_crop(img, self.size, self.scale, self.ratio, rng);
        if rng.gen_bool(self.flip_p) {
            out = hflip(&out);
        }
        if let Some(j) = &self.jitter {
            if rng.gen_bool(j.p) {
                color_jitter(&mut out, j, rng);
            }
        }
        if self.grayscale_p > 0.0 && rng.gen_bool(self.grayscale_p) {
            out = grayscale(&out);
        }
        if self.blur_p > 0.0 && rng.gen_bool(self.blur_p) {
            let sigma = rng.gen_range(0.1..2.0);
            out = gaussian_blur(&out, sigma);
        }
        out
    }
}

/// torchvision's `RandomResizedCrop.get_params`: up to 10 tries at a random
/// area and log-uniform aspect ratio, then a centre crop at the clamped ratio.
/// Returns (top, left, height, width).
pub fn crop_params(
    h: usize,
    w: usize,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut impl Rng,
) -> (usize, usize, usize, usize) {
    let area = (h * w) as f64;
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * rng.gen_range(scale.0..=scale.1);
        let aspect = rng.gen_range(log_lo..=log_hi).exp();
        let cw = (target * aspect).sqrt().round() as usize;
        let ch = (target / aspect).sqrt().round() as usize;
        if cw > 0 && ch > 0 && cw <= w && ch <= h {
            return (rng.gen_range(0..=h - ch), rng.gen_range(0..=w - cw), ch, cw);
        }
    }
    let in_ratio = w as f64 / h as f64;
    let (ch, cw) = if in_ratio < ratio.0 {
        ((w as f64 / ratio.0).round() as usize, w)
    } else if in_ratio > ratio.1 {
        (h, (h as f64 * ratio.1).round() as usize)
    } else {
        (h, w)
    };
    ((h - ch) / 2, (w - cw) / 2, ch, cw)
}

/// Bilinear resize of a region to `out_h × out_w` (half-pixel centres,
/// align_corners = False; no antialiasing).
pub fn resize_region(
    img: &FloatImage,
    (top, left, ch, cw): (usize, usize, usize, usize),
    out_h: usize,
    out_w: usize,
) -> FloatImage {
    let (sy, sx) = (ch as f32 / out_h as f32, cw as f32 / out_w as f32);
    let taps = |o: usize, s: f32, len: usize| {
        let src = ((o as f32 + 0.5) * s - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(len - 1);
        let i1 = (i0 + 1).min(len - 1);
        (i0, i1, src - i0 as f32)
    };
    let ys: Vec<_> = (0..out_h).map(|o| taps(o, sy, ch)).collect();
    let xs: Vec<_> = (0..out_w).map(|o| taps(o, sx, cw)).collect();
    let mut data = Vec::with_capacity(img.channels * out_h * out_w);
    for c in 0..img.channels {
        let plane = img.plane(c);
        let at = |y: usize, x: usize| plane[(top + y) * img.width + left + x];
        for &(y0, y1, fy) in &ys {
            for &(x0, x1, fx) in &xs {
                let top_row = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
                let bottom_row = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
                data.push(top_row * (1.0 - fy) + bottom_row * fy);
            }
        }
    }
    FloatImage {
        channels: img.channels,
        height: out_h,
        width: out_w,
        data,
    }
}

pub fn random_resized_crop(
    img: &FloatImage,
    size: usize,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut impl Rng,
) -> FloatImage {
    let region = crop_params(img.height, img.width, scale, ratio, rng);
    resize_region(img, region, size, size)
}

pub fn hflip(img: &FloatImage) -> FloatImage {
    let mut out = img.clone();
    for row in out.data.chunks_exact_mut(img.width) {
        row.reverse();
    }
    out
}

fn blend(img: &mut FloatImage, other: impl Fn(usize) -> f32, factor: f32) {
    for (i, v) in img.data.iter_mut().enumerate() {
        *v = (factor * *v + (1.0 - factor) * other(i)).clamp(0.0, 1.0);
    }
}

/// torchvision's ColorJitter: brightness, contrast, saturation and hue, each
/// with a factor drawn from its range, in a random order. Saturation and hue
/// apply to RGB images only.
pub fn color_jitter(img: &mut FloatImage, j: &Jitter, rng: &mut impl Rng) {
    let mut order = [0, 1, 2, 3];
    order.shuffle(rng);
    let factor = |strength: f64, rng: &mut dyn rand::RngCore| {
        rng.gen_range((1.0 - strength).max(0.0)..=1.0 + strength) as f32
    };
    for op in order {
        match op {
            0 if j.brightness > 0.0 => {
                let f = factor(j.brightness, rng);
                blend(img, |_| 0.0, f);
            }
            1 if j.contrast > 0.0 => {
                let f = factor(j.contrast, rng);
                let luma = img.luma();
                let mean = luma.iter().sum::<f32>() / luma.len() as f32;
                blend(img, |_| mean, f);
            }
            2 if j.saturation > 0.0 && img.channels == 3 => {
                let f = factor(j.saturation, rng);
                let (luma, n) = (img.luma(), img.height * img.width);
                blend(img, |i| luma[i % n], f);
            }
            3 if j.hue > 0.0 && img.channels == 3 => {
                let shift = rng.gen_range(-j.hue..=j.hue) as f32;
                shift_hue(img, shift);
            }
            _ => {}
        }
    }
}

/// Rotates the hue of every pixel by `shift` turns (HSV round trip).
fn shift_hue(img: &mut FloatImage, shift: f32) {
    let n = img.height * img.width;
    for i in 0..n {
        let (r, g, b) = (img.data[i], img.data[n + i], img.data[2 * n + i]);
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
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
        let v = max;
        let sector = (h * 6.0).floor();
        let f = h * 6.0 - sector;
        let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
        let (nr, ng, nb) = match sector as i32 % 6 {
            0 => (v, t, p),
            1 => (q, v, p),
            2 => (p, v, t),
            3 => (p, q, v),
            4 => (t, p, v),
            _ => (v, p, q),
        };
        img.data[i] = nr;
        img.data[n + i] = ng;
        img.data[2 * n + i] = nb;
    }
}

/// Luma replicated over the image's channels (torchvision keeps 3 channels).
pub fn grayscale(img: &FloatImage) -> FloatImage {
    let luma = img.luma();
    FloatImage {
        data: (0..img.channels)
            .flat_map(|_| luma.iter().copied())
            .collect(),
        ..img.clone()
    }
}

/// Separable Gaussian blur with standard deviation `sigma`, kernel radius
/// ⌈3σ⌉, borders reflected. (PIL's `GaussianBlur(radius=σ)`, which MSN uses,
/// approximates the same Gaussian with box filters.)
pub fn gaussian_blur(img: &FloatImage, sigma: f64) -> FloatImage {
    let radius = (3.0 * sigma).ceil() as isize;
    let weights: Vec<f32> = (-radius..=radius)
        .map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp() as f32)
        .collect();
    let total: f32 = weights.iter().sum();
    let weights: Vec<f32> = weights.iter().map(|w| w / total).collect();
    let reflect = |i: isize, len: usize| -> usize {
        let len = len as isize;
        let mut i = i;
        while i < 0 || i >= len {
            i = if i < 0 { -i } else { 2 * (len - 1) - i };
            if len == 1 {
                return 0;
            }
        }
        i as usize
    };
    let (h, w) = (img.height, img.width);
    let mut out = img.clone();
    for c in 0..img.channels {
        let plane = img.plane(c);
        let mut tmp = vec![0.0f32; h * w];
        for y in 0..h {
            for x in 0..w {
                tmp[y * w + x] = weights
                    .iter()
                    .enumerate()
                    .map(|(k, wt)| wt * plane[y * w + reflect(x as isize + k as isize - radius, w)])
                    .sum();
            }
        }
        for y in 0..h {
            for x in 0..w {
                out.data[c * h * w + y * w + x] = weights
                    .iter()
                    .enumerate()
                    .map(|(k, wt)| wt * tmp[reflect(y as isize + k as isize - radius, h) * w + x])
                    .sum();
            }
        }
    }
    out
}

/// `(x − mean_c) / std_c` per channel, written into `out`.
pub fn normalize_into(img: &FloatImage, mean: &[f32], std: &[f32], out: &mut [f32]) {
    let n = img.height * img.width;
    for c in 0..img.channels {
        let (m, s) = (mean[c % mean.len()], std[c % std.len()]);
        for (o, &v) in out[c * n..(c + 1) * n].iter_mut().zip(img.plane(c)) {
            *o = (v - m) / s;
        }
    }
}

/// Evaluation transform for photos: resize the shorter side to `size·256/224`
/// (bilinear), centre-crop `size`. Images already `size×size` pass unchanged.
pub fn eval_transform(img: &FloatImage, size: usize) -> FloatImage {
    if img.height == size && img.width == size {
        return img.clone();
    }
    let short = (size as f64 * 256.0 / 224.0).round() as usize;
    let (nh, nw) = if img.height <= img.width {
        (
            short,
            (img.width as f64 * short as f64 / img.height as f64).round() as usize,
        )
    } else {
        (
            (img.height as f64 * short as f64 / img.width as f64).round() as usize,
            short,
        )
    };
    let resized = resize_region(img, (0, 0, img.height, img.width), nh, nw);
    resize_region(
        &resized,
        ((nh - size) / 2, (nw - size) / 2, size, size),
        size,
        size,
    )
}
