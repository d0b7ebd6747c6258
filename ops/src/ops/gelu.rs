//! GELU, the exact (erf) form that ViTs use.
//!
//! `gelu(x) = x·Φ(x) = ½x(1 + erf(x/√2))`. Shapes: `S` → `S`. PyTorch:
//! `F.gelu(x)` (approximate='none'). Saves its input; backward:
//! `g·(Φ(x) + x·φ(x))` with φ the standard normal density. In f32, erf and
//! exp are the vectorisable approximations of `cpu::fast_math` (error about
//! one f32 ulp); in f64 they are libm's.

use crate::gpu::{BinaryOp, UnaryOp};
use crate::{map_elements, zip_elements, Element, Result, Tensor};

const FRAC_1_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// 1/√(2π)
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// `gelu(x) = ½x(1 + erf(x/√2))`.
// Inlined into each element loop, or the loop makes a call per element and does not vectorise.
#[inline(always)]
pub(crate) fn gelu_value<T: Element>(x: T) -> T {
    T::from_f64(0.5) * x * (T::one() + (x * T::from_f64(FRAC_1_SQRT_2)).error_function())
}

/// `gelu'(x) = Φ(x) + x·φ(x)`.
#[inline(always)]
pub(crate) fn gelu_slope<T: Element>(x: T) -> T {
    // erf(x/√2) and e^(−x²/2) = e^(−(x/√2)²) from one exponential.
    let (erf, gaussian) = (x * T::from_f64(FRAC_1_SQRT_2)).erf_and_gaussian();
    let cdf = T::from_f64(0.5) * (T::one() + erf);
    let pdf = T::from_f64(INV_SQRT_2PI) * gaussian;
    cdf + x * pdf
}

impl Tensor {
    pub fn gelu(&self) -> Result<Tensor> {
        let out = map_elements!(self, gpu: UnaryOp::Gelu, |x| gelu_value(x))?;
        let x = self.detach();
        crate::grad::record("gelu", &[self], out, move |g| {
            let dx = zip_elements!(g, &x, gpu: BinaryOp::GeluGrad, |g, x| g * gelu_slope(x))?;
            Ok(vec![Some(dx)])
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Tensor};

    #[test]
    fn matches_pytorch_values() {
        // torch.nn.functional.gelu(torch.tensor([-1., 0., 0.5, 2.], dtype=torch.float64))
        let x = Tensor::from_f64s(&[-1.0, 0.0, 0.5, 2.0], &[4], DType::F64).unwrap();
        let want = [
            -0.158_655_253_931_457_02,
            0.0,
            0.345_731_230_637_006_56,
            1.954_499_736_103_641_6,
        ];
        for (got, want) in x.gelu().unwrap().to_vec_f64().iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
    }
}
