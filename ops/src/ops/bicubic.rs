//! `resize_bicubic`: bicubic resampling of the last two axes, with PyTorch's semantics.
//!
//! Shapes: `[.., h, w]` → `[.., h', w']`. PyTorch:
//! `F.interpolate(x, size=(h', w'), mode='bicubic', align_corners=False)`, or
//! with `scale_factor` ([`Tensor::resize_bicubic_by`]). Cubic convolution with
//! A = −0.75, source coordinate `(dst + ½)·scale − ½`, taps clamped at the
//! borders, no antialiasing. Used to fit the positional embedding to another
//! patch grid.
//!
//! The resize is linear and separable: `Y = R_h · X · R_wᵀ` for two small
//! interpolation matrices. Backward is its transpose, `dX = R_hᵀ · dY · R_w`,
//! so gradients flow to the positional embedding exactly. Saves nothing but
//! the two matrices.

use crate::error::shape_err;
use crate::{with_dtype, Element, Result, Tensor};

const A: f64 = -0.75;

fn cubic_near(x: f64) -> f64 {
    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
}

fn cubic_far(x: f64) -> f64 {
    ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
}

/// The `[out, in]` matrix that resamples one axis; `scale` is source pixels per output pixel.
fn interpolation_matrix(input: usize, output: usize, scale: f64) -> Vec<f64> {
    let mut m = vec![0.0; output * input];
    for o in 0..output {
        let real = scale * (o as f64 + 0.5) - 0.5;
        let base = real.floor();
        let t = real - base;
        let weights = [
            cubic_far(t + 1.0),
            cubic_near(t),
            cubic_near(1.0 - t),
            cubic_far(2.0 - t),
        ];
        for (tap, w) in weights.iter().enumerate() {
            let index = (base as isize - 1 + tap as isize).clamp(0, input as isize - 1) as usize;
            m[o * input + index] += w;
        }
    }
    m
}

/// `out[o1, o2] = Σ r1[o1, i1] · x[i1, i2] · r2[o2, i2]` for every leading slice.
fn apply<T: Element>(
    x: &[T],
    r1: &[f64],
    r2: &[f64],
    (i1, i2): (usize, usize),
    (o1, o2): (usize, usize),
) -> Vec<T> {
    let slices = x.len() / (i1 * i2);
    let mut out = crate::cpu::zeroed::<T>(slices * o1 * o2);
    let mut tmp = vec![0.0f64; i1 * o2];
    for s in 0..slices {
        let xs = &x[s * i1 * i2..(s + 1) * i1 * i2];
        for a in 0..i1 {
            for b in 0..o2 {
                tmp[a * o2 + b] = (0..i2)
                    .map(|c| xs[a * i2 + c].to_f64() * r2[b * i2 + c])
                    .sum();
            }
        }
        for a in 0..o1 {
            for b in 0..o2 {
                let v: f64 = (0..i1).map(|c| r1[a * i1 + c] * tmp[c * o2 + b]).sum();
                out[s * o1 * o2 + a * o2 + b] = T::from_f64(v);
            }
        }
    }
    out
}

fn transpose(m: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut t = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

impl Tensor {
    /// Resizes the last two axes to `out_h × out_w` (PyTorch's `size=` form).
    pub fn resize_bicubic(&self, out_h: usize, out_w: usize) -> Result<Tensor> {
        let (h, w) = self.spatial("resize_bicubic")?;
        self.resize_bicubic_with(
            out_h,
            out_w,
            h as f64 / out_h as f64,
            w as f64 / out_w as f64,
        )
    }

    /// Resizes by a scale factor (PyTorch's `scale_factor=` form, as MSN calls
    /// it): output `floor(size·factor)`, source step `1/factor`.
    pub fn resize_bicubic_by(&self, factor: f64) -> Result<Tensor> {
        let (h, w) = self.spatial("resize_bicubic")?;
        let (out_h, out_w) = (
            (h as f64 * factor).floor() as usize,
            (w as f64 * factor).floor() as usize,
        );
        self.resize_bicubic_with(out_h, out_w, 1.0 / factor, 1.0 / factor)
    }

    fn spatial(&self, op: &'static str) -> Result<(usize, usize)> {
        match self.shape() {
            [.., h, w] if *h > 0 && *w > 0 => Ok((*h, *w)),
            s => Err(shape_err!(
                op,
                "expects [.., h, w] with h, w ≥ 1, got {:?}",
                s
            )),
        }
    }

    fn resize_bicubic_with(
        &self,
        out_h: usize,
        out_w: usize,
        scale_h: f64,
        scale_w: f64,
    ) -> Result<Tensor> {
        let (h, w) = self.spatial("resize_bicubic")?;
        if out_h == 0 || out_w == 0 {
            return Err(shape_err!(
                "resize_bicubic",
                "output size {}×{} must be at least 1×1",
                out_h,
                out_w
            ));
        }
        let rh = interpolation_matrix(h, out_h, scale_h);
        let rw = interpolation_matrix(w, out_w, scale_w);
        let mut out_shape = self.shape().to_vec();
        let rank = out_shape.len();
        out_shape[rank - 2] = out_h;
        out_shape[rank - 1] = out_w;
        if self.is_on_gpu() {
            return self.resize_by_products(&rh, &rw, (h, w), (out_h, out_w), &out_shape);
        }
        let out = with_dtype!(self.dtype(), T => {
            Tensor::from_vec(apply(self.data::<T>()?, &rh, &rw, (h, w), (out_h, out_w)), &out_shape)?
        });
        let in_shape = self.shape().to_vec();
        crate::grad::record("resize_bicubic", &[self], out, move |g| {
            let (rh_t, rw_t) = (transpose(&rh, out_h, h), transpose(&rw, out_w, w));
            let dx = with_dtype!(g.dtype(), T => {
                Tensor::from_vec(apply(g.data::<T>()?, &rh_t, &rw_t, (out_h, out_w), (h, w)), &in_shape)?
            });
            Ok(vec![Some(dx)])
        })
    }
}

impl Tensor {
    /// `R_h · X · R_wᵀ` as recorded matrix products, for devices where the
    /// products are the fast path; their backward is the transpose above.
    fn resize_by_products(
        &self,
        rh: &[f64],
        rw: &[f64],
        (h, w): (usize, usize),
        (out_h, out_w): (usize, usize),
        out_shape: &[usize],
    ) -> Result<Tensor> {
        let dev = self.device();
        let rh = Tensor::from_f64s(rh, &[out_h, h], self.dtype())?.to_device(dev)?;
        let rw = Tensor::from_f64s(rw, &[out_w, w], self.dtype())?.to_device(dev)?;
        let slices = self.numel() / (h * w);
        let along_w = self.reshape(&[slices * h, w])?.matmul_nt(&rw)?;
        let along_h = along_w
            .reshape(&[slices, h, out_w])?
            .transpose(1, 2)?
            .reshape(&[slices * out_w, h])?
            .matmul_nt(&rh)?;
        along_h
            .reshape(&[slices, out_w, out_h])?
            .transpose(1, 2)?
            .reshape(out_shape)
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Tensor};

    fn assert_close(got: &Tensor, want: &[f64]) {
        for (a, b) in got.to_vec_f64().iter().zip(want) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
    }

    // Expected values: torch 2.15, F.interpolate(x, ..., mode='bicubic', align_corners=False) in float64.
    #[test]
    fn matches_pytorch_downsampling_by_size() {
        let x = Tensor::from_fn(&[1, 4, 4], DType::F64, |i| i as f64);
        let want = [
            0.630_787_037_037_041_2,
            2.004_629_629_629_633_3,
            3.378_472_222_222_226_3,
            6.126_157_407_407_41,
            7.5,
            8.873_842_592_592_592,
            11.621_527_777_777_782,
            12.995_370_370_370_37,
            14.369_212_962_962_962,
        ];
        assert_close(&x.resize_bicubic(3, 3).unwrap(), &want);
    }

    #[test]
    fn matches_pytorch_upsampling_with_clamped_borders() {
        let x = Tensor::from_fn(&[3, 3], DType::F64, |i| i as f64);
        let y = x.resize_bicubic(5, 5).unwrap();
        assert_eq!(y.shape(), &[5, 5]);
        let corners = [
            y.to_vec_f64()[0],
            y.to_vec_f64()[4],
            y.to_vec_f64()[12],
            y.to_vec_f64()[24],
        ];
        assert_close(
            &Tensor::from_f64s(&corners, &[4], DType::F64).unwrap(),
            &[-0.384, 1.808, 4.0, 8.384],
        );
    }

    #[test]
    fn matches_pytorch_by_scale_factor() {
        let x = Tensor::from_fn(&[1, 7, 7], DType::F64, |i| i as f64);
        let y = x.resize_bicubic_by(3.0 / 7.0).unwrap();
        assert_eq!(y.shape(), &[1, 3, 3]);
        let want = [
            4.592_592_592_592_594,
            7.018_518_518_518_519,
            9.444_444_444_444_446,
            21.574_074_074_074_08,
            24.0,
            26.425_925_925_925_93,
            38.555_555_555_555_58,
            40.981_481_481_481_49,
            43.407_407_407_407_43,
        ];
        assert_close(&y, &want);
    }

    #[test]
    fn resizing_to_the_same_size_is_the_identity() {
        let x = Tensor::from_fn(&[2, 5, 5], DType::F64, |i| (i as f64 * 0.37).sin());
        let y = x.resize_bicubic(5, 5).unwrap();
        for (a, b) in x.to_vec_f64().iter().zip(y.to_vec_f64()) {
            assert!((a - b).abs() < 1e-12);
        }
    }
}
