//! `linear`: `x·Wᵀ + b`, the fully connected layer's op, with the bias fused.
//!
//! Shapes: `x: [.., in]`, `w: [out, in]` (PyTorch's layout), `b: [out]` →
//! `[.., out]`. PyTorch: `F.linear(x, w, b)`. The product's first write of
//! each output element adds the bias, so the bias costs no extra pass.
//! Saves `x` and `w`. Backward: `dx = g·W`, `dW = gᵀ·x`, `db = Σ_rows g`.

use crate::cpu::gemm::{gemm_new, GemmElement, MatRef};
use crate::error::shape_err;
use crate::{with_dtype, Error, Result, Tensor};

fn linear_kernel<T: GemmElement>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    rows: usize,
    inp: usize,
    out: usize,
) -> Vec<T> {
    gemm_new(
        rows,
        out,
        inp,
        MatRef::new(x, inp, false),
        MatRef::new(w, inp, true),
        bias,
        true,
    )
}

impl Tensor {
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        const OP: &str = "linear";
        let inp = *self
            .shape()
            .last()
            .ok_or_else(|| shape_err!(OP, "input must have at least 1 dimension"))?;
        if weight.rank() != 2 || weight.shape()[1] != inp {
            return Err(shape_err!(
                OP,
                "weight {:?} does not fit input {:?}: expected [out, {}]",
                weight.shape(),
                self.shape(),
                inp
            ));
        }
        let out_features = weight.shape()[0];
        if let Some(b) = bias {
            if b.shape() != [out_features] {
                return Err(shape_err!(
                    OP,
                    "bias {:?} does not fit weight {:?}: expected [{}]",
                    b.shape(),
                    weight.shape(),
                    out_features
                ));
            }
        }
        for t in [Some(weight), bias].into_iter().flatten() {
            if t.dtype() != self.dtype() {
                return Err(Error::DType {
                    op: OP,
                    lhs: self.dtype(),
                    rhs: t.dtype(),
                });
            }
        }
        let rows = self.numel() / inp.max(1);
        let mut out_shape = self.shape().to_vec();
        *out_shape.last_mut().expect("rank ≥ 1") = out_features;
        if self.is_on_gpu() {
            // On a GPU, the composition of recorded ops is the op.
            let y = self.reshape(&[rows, inp])?.matmul_nt(weight)?;
            let y = match bias {
                Some(b) => y.add(b)?,
                None => y,
            };
            return y.reshape(&out_shape);
        }
        let out = with_dtype!(self.dtype(), T => {
            let b = match bias {
                Some(b) => Some(b.data::<T>()?),
                None => None,
            };
            Tensor::from_vec(linear_kernel(self.data::<T>()?, weight.data::<T>()?, b, rows, inp, out_features), &out_shape)?
        });
        let (x, w, has_bias) = (self.detach(), weight.detach(), bias.is_some());
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        crate::grad::record(OP, &inputs, out, move |g| {
            let g2 = g.reshape(&[rows, out_features])?;
            let x2 = x.reshape(&[rows, inp])?;
            let dx = g2.matmul(&w)?.reshape(x.shape())?;
            let dw = g2.matmul_tn(&x2)?;
            let mut grads = vec![Some(dx), Some(dw)];
            if has_bias {
                grads.push(Some(g2.sum_axis(0, false)?));
            }
            Ok(grads)
        })
    }
}
