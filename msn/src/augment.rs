//! Image augmentations for MSN's views (`msn-spec.md` §5), on float images in
//! [0, 1], channel-major. Each follows torchvision's definition; where the
//! implementation differs (no antialiasing in resize, a true Gaussian kernel
//! for blur) the doc of the function says so.

use std::borrow::Cow;
use std::cell::RefCell;

use fast_image_resize::images::{Image as ResizedImage, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::data::{Image, Layout, Pixels};

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

    /// An empty image of the same shape (no pixels), to fill in.
    fn clone_shape(&self) -> Self {
        FloatImage {
            channels: self.channels,
            height: self.height,
            width: self.width,
            data: Vec::new(),
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
#[serde(deny_unknown_fields)]
pub struct Jitter {
    pub brightness: f64,
    pub contrast: f64,
    pub saturation: f64,
    pub hue: f64,
    pub p: f64,
}

/// The augmentation pipeline of one kind of view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// Crop, flip, jitter, grayscale, blur, in MSN's order, on a float
    /// image: the reference for [`ViewAugment::apply_pixels`].
    pub fn apply(&self, img: &FloatImage, rng: &mut impl Rng) -> FloatImage {
        let out = random_resized_crop(img, self.size, self.scale, self.ratio, rng);
        self.after_crop(out, rng)
    }

    /// The same view straight from 8-bit pixels: the crop box alone is
    /// resampled (SIMD, [`crop_resize`]), never the whole image converted;
    /// the view has `channels` channels. The random draws are those of
    /// [`ViewAugment::apply`], in the same order.
    pub fn apply_pixels(&self, img: &Pixels, channels: usize, rng: &mut impl Rng) -> FloatImage {
        let region = crop_params(img.height, img.width, self.scale, self.ratio, rng);
        let out = crop_resize(img, region, self.size, self.size, channels);
        self.after_crop(out, rng)
    }

    /// Everything after the crop: flip, jitter, grayscale, blur.
    fn after_crop(&self, mut out: FloatImage, rng: &mut impl Rng) -> FloatImage {
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

thread_local! {
    /// Each loader thread keeps its resizer's scratch buffers between views.
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
}

/// Resamples one 8-bit plane or interleaved image's crop box.
fn resample(
    src: &[u8],
    (width, height): (usize, usize),
    pixel: PixelType,
    (top, left, ch, cw): (usize, usize, usize, usize),
    (out_h, out_w): (usize, usize),
) -> Vec<u8> {
    let src = ImageRef::new(width as u32, height as u32, src, pixel)
        .expect("the buffer holds width × height pixels");
    let mut dst = ResizedImage::new(out_w as u32, out_h as u32, pixel);
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Interpolation(FilterType::Bilinear))
        .crop(left as f64, top as f64, cw as f64, ch as f64);
    RESIZER
        .with(|r| r.borrow_mut().resize(&src, &mut dst, &options))
        .expect("crop_params keeps the box inside the image");
    dst.into_vec()
}

/// [`resize_region`] on 8-bit pixels, SIMD: the same bilinear taps
/// (half-pixel centres, fixed two-tap support, no antialiasing) by
/// `fast_image_resize`, rounded to 8 bits, then converted to `channels`
/// (gray replicated into RGB, RGB to ITU-R 601 luma) and scaled to [0, 1].
pub fn crop_resize(
    img: &Pixels,
    region: (usize, usize, usize, usize),
    out_h: usize,
    out_w: usize,
    channels: usize,
) -> FloatImage {
    let (size, n) = ((img.width, img.height), out_h * out_w);
    let data: Vec<f32> = if img.layout == Layout::Interleaved && img.channels == 3 {
        let rgb = resample(&img.data, size, PixelType::U8x3, region, (out_h, out_w));
        let mut data = vec![0.0f32; 3 * n];
        let (r, rest) = data.split_at_mut(n);
        let (g, b) = rest.split_at_mut(n);
        for (((r, g), b), px) in r.iter_mut().zip(g).zip(b).zip(rgb.chunks_exact(3)) {
            (*r, *g, *b) = (
                px[0] as f32 / 255.0,
                px[1] as f32 / 255.0,
                px[2] as f32 / 255.0,
            );
        }
        data
    } else {
        let planar = match img.layout {
            Layout::Interleaved if img.channels > 1 => {
                Cow::Owned(img.to_image(img.channels).pixels)
            }
            _ => Cow::Borrowed(&img.data[..]),
        };
        let plane = img.width * img.height;
        (0..img.channels)
            .flat_map(|c| {
                let src = &planar[c * plane..(c + 1) * plane];
                resample(src, size, PixelType::U8, region, (out_h, out_w))
            })
            .map(|p| p as f32 / 255.0)
            .collect()
    };
    let mut out = FloatImage {
        channels: img.channels,
        height: out_h,
        width: out_w,
        data,
    };
    if channels != out.channels {
        out = if out.channels == 1 {
            FloatImage {
                channels,
                data: out.data.repeat(channels),
                ..out
            }
        } else {
            FloatImage {
                channels,
                data: out.luma().repeat(channels),
                ..out
            }
        };
    }
    debug_assert_eq!(out.data.len(), channels * n);
    out
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

/// `factor·x + (1 − factor)·other`, clamped to [0, 1], where `other` is one
/// plane (each channel blends with the same pixel of it) or one value.
fn blend(img: &mut FloatImage, other: Blend, factor: f32) {
    let n = img.height * img.width;
    let mix = |v: &mut f32, o: f32| *v = (factor * *v + (1.0 - factor) * o).clamp(0.0, 1.0);
    for plane in img.data.chunks_exact_mut(n) {
        match other {
            Blend::Value(o) => plane.iter_mut().for_each(|v| mix(v, o)),
            Blend::Plane(p) => plane.iter_mut().zip(p).for_each(|(v, &o)| mix(v, o)),
        }
    }
}

#[derive(Clone, Copy)]
enum Blend<'a> {
    Value(f32),
    Plane(&'a [f32]),
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
                blend(img, Blend::Value(0.0), f);
            }
            1 if j.contrast > 0.0 => {
                let f = factor(j.contrast, rng);
                let luma = img.luma();
                let mean = luma.iter().sum::<f32>() / luma.len() as f32;
                blend(img, Blend::Value(mean), f);
            }
            2 if j.saturation > 0.0 && img.channels == 3 => {
                let f = factor(j.saturation, rng);
                let luma = img.luma();
                blend(img, Blend::Plane(&luma), f);
            }
            3 if j.hue > 0.0 && img.channels == 3 => {
                let shift = rng.gen_range(-j.hue..=j.hue) as f32;
                shift_hue(img, shift);
            }
            _ => {}
        }
    }
}

/// Rotates the hue of every pixel by `shift` turns (HSV round trip). The
/// way back is the branch-free form of HSV → RGB: channel n ∈ {5, 3, 1}
/// (R, G, B) is v − v·s·clamp(min(k, 4 − k), 0, 1) with k = (n + 6h) mod 6,
/// the same values as the six-sector table, in a loop that vectorises.
pub fn shift_hue(img: &mut FloatImage, shift: f32) {
    let n = img.height * img.width;
    let (r, rest) = img.data.split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b[..n].iter_mut()) {
        let max = r.max(*g).max(*b);
        let min = r.min(*g).min(*b);
        let delta = max - min;
        // The hue in sixths of a turn, in [0, 6).
        let safe = if delta > 0.0 { delta } else { 1.0 };
        let mut h = if delta == 0.0 {
            0.0
        } else if max == *r {
            (*g - *b) / safe
        } else if max == *g {
            (*b - *r) / safe + 2.0
        } else {
            (*r - *g) / safe + 4.0
        };
        h += 6.0 * shift;
        if !(0.0..6.0).contains(&h) {
            h = h.rem_euclid(6.0);
        }
        let s = if max > 0.0 { delta / max } else { 0.0 };
        let v = max;
        let channel = |n: f32| {
            let mut k = n + h;
            if k >= 6.0 {
                k -= 6.0;
            }
            v - v * s * k.min(4.0 - k).clamp(0.0, 1.0)
        };
        (*r, *g, *b) = (channel(5.0), channel(3.0), channel(1.0));
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
/// approximates the same Gaussian with box filters.) Each pass adds whole
/// rows scaled by one weight at a time, so its loops vectorise.
pub fn gaussian_blur(img: &FloatImage, sigma: f64) -> FloatImage {
    let radius = (3.0 * sigma).ceil() as usize;
    let weights: Vec<f64> = (0..=2 * radius)
        .map(|i| {
            let d = i as f64 - radius as f64;
            (-d * d / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let total: f64 = weights.iter().sum();
    let weights: Vec<f32> = weights.iter().map(|w| (w / total) as f32).collect();
    let (h, w) = (img.height, img.width);
    // Source index of each position of a row or column padded by `radius`.
    let cols = reflected(w, radius);
    let rows = reflected(h, radius);
    let mut padded = vec![0.0f32; w + 2 * radius];
    let mut across = vec![0.0f32; h * w];
    let mut data = vec![0.0f32; img.data.len()];
    for (c, out) in data.chunks_exact_mut(h * w).enumerate() {
        let plane = img.plane(c);
        for (row, tmp) in plane.chunks_exact(w).zip(across.chunks_exact_mut(w)) {
            for (p, &x) in padded.iter_mut().zip(&cols) {
                *p = row[x];
            }
            tmp.fill(0.0);
            for (k, &weight) in weights.iter().enumerate() {
                for (t, &v) in tmp.iter_mut().zip(&padded[k..k + w]) {
                    *t += weight * v;
                }
            }
        }
        for (y, out_row) in out.chunks_exact_mut(w).enumerate() {
            for (k, &weight) in weights.iter().enumerate() {
                let source = &across[rows[y + k] * w..(rows[y + k] + 1) * w];
                for (o, &v) in out_row.iter_mut().zip(source) {
                    *o += weight * v;
                }
            }
        }
    }
    FloatImage {
        data,
        ..img.clone_shape()
    }
}

/// For `len + 2·radius` positions starting at −radius, the index each reads
/// with reflection at the borders (…, 2, 1, | 0, 1, …, len−1, | len−2, …),
/// bouncing as often as a short axis needs.
fn reflected(len: usize, radius: usize) -> Vec<usize> {
    let period = 2 * (len.max(1) - 1);
    (0..len + 2 * radius)
        .map(|p| {
            if period == 0 {
                return 0;
            }
            let i = (p as isize - radius as isize).rem_euclid(period as isize) as usize;
            if i < len {
                i
            } else {
                period - i
            }
        })
        .collect()
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
