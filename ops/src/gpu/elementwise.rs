//! Elementwise kernels: every unary function and every binary op with NumPy
//! broadcasting, the fused rules of their backward passes, and the fused
//! bias + GELU. One unit per output element.

use cubecl::prelude::*;

use super::runtime::{
    alloc, arg, buffer, first_buffer, grid, linear_index, on_runtime, tensor, u32_buffer, BLOCK,
};
use super::{BinaryOp, UnaryOp};
use crate::shape::{broadcast_shapes, broadcast_strides, numel};
use crate::{Error, Result, Tensor};

/// The kernel-side name of a [`UnaryOp`]; its scalar travels as an argument so
/// that one compiled kernel serves every value.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Unary {
    Neg,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Tanh,
    Gelu,
    Powf,
    AddScalar,
    MulScalar,
    XLogX,
}

/// The kernel-side name of a [`BinaryOp`].
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    GeluGrad,
    SqrtGrad,
    RsqrtGrad,
    TanhGrad,
    PowfGrad,
    XLogXGrad,
}

/// `|x|ᵖ` with the sign of `x` restored for odd integer `p` (`parity` 2) and
/// dropped for even integer `p` (`parity` 1); a negative base with a
/// fractional `p` is NaN (`parity` 0), as on the CPU.
#[cube]
fn signed_pow<F: Float>(x: F, p: F, parity: u32) -> F {
    let magnitude = F::powf(F::abs(x), p);
    let mut r = magnitude;
    if x < F::new(0.0) {
        if parity == 2 {
            r = -magnitude;
        } else if parity == 0 {
            // NaN, made at run time: a constant 0/0 is a shader compile error in WGSL.
            r = F::sqrt(x);
        }
    }
    if x == F::new(0.0) && p == F::new(0.0) {
        r = F::new(1.0);
    }
    r
}

#[cube]
fn normal_cdf<F: Float>(x: F) -> F {
    F::new(0.5) * (F::new(1.0) + F::erf(x * F::new(std::f32::consts::FRAC_1_SQRT_2)))
}

#[cube]
fn gelu<F: Float>(x: F) -> F {
    x * normal_cdf::<F>(x)
}

/// `gelu'(x) = Φ(x) + x·φ(x)`.
#[cube]
fn gelu_slope<F: Float>(x: F) -> F {
    let pdf = F::new(0.398_942_3) * F::exp(F::new(-0.5) * x * x);
    normal_cdf::<F>(x) + x * pdf
}

#[cube(launch)]
fn unary_kernel<F: Float>(
    x: &Array<F>,
    out: &mut Array<F>,
    c: f32,
    parity: u32,
    n: u32,
    #[comptime] op: Unary,
) {
    let i = linear_index();
    if i < n {
        let v = x[i as usize];
        let c = F::cast_from(c);
        let r = match op {
            Unary::Neg => -v,
            Unary::Exp => F::exp(v),
            Unary::Log => F::ln(v),
            Unary::Sqrt => F::sqrt(v),
            Unary::Rsqrt => F::recip(F::sqrt(v)),
            Unary::Tanh => F::tanh(v),
            Unary::Gelu => gelu::<F>(v),
            Unary::Powf => signed_pow::<F>(v, c, parity),
            Unary::AddScalar => v + c,
            Unary::MulScalar => v * c,
            Unary::XLogX => {
                let mut r = F::new(0.0);
                if v > F::new(0.0) {
                    r = v * F::ln(v);
                }
                r
            }
        };
        out[i as usize] = r;
    }
}

/// 0 for a fractional exponent, 1 for an even integer, 2 for an odd one.
fn parity(p: f64) -> u32 {
    if p.fract() != 0.0 {
        0
    } else if (p / 2.0).fract() == 0.0 {
        1
    } else {
        2
    }
}

/// `op` applied to every element of a GPU tensor.
pub(crate) fn unary(x: &Tensor, op: UnaryOp) -> Result<Tensor> {
    let xb = first_buffer("unary", x)?;
    let (code, c) = match op {
        UnaryOp::Neg => (Unary::Neg, 0.0),
        UnaryOp::Exp => (Unary::Exp, 0.0),
        UnaryOp::Log => (Unary::Log, 0.0),
        UnaryOp::Sqrt => (Unary::Sqrt, 0.0),
        UnaryOp::Rsqrt => (Unary::Rsqrt, 0.0),
        UnaryOp::Tanh => (Unary::Tanh, 0.0),
        UnaryOp::Gelu => (Unary::Gelu, 0.0),
        UnaryOp::Powf(p) => (Unary::Powf, p),
        UnaryOp::AddScalar(c) => (Unary::AddScalar, c),
        UnaryOp::MulScalar(c) => (Unary::MulScalar, c),
        UnaryOp::XLogX => (Unary::XLogX, 0.0),
    };
    let n = xb.len;
    let out = alloc(xb, n);
    on_runtime!(&xb.client, |client, R| unary_kernel::launch::<f32, R>(
        client,
        grid(n, BLOCK),
        CubeDim::new_1d(BLOCK),
        xb.arg::<R>(),
        out.arg::<R>(),
        c as f32,
        parity(c),
        n as u32,
        code,
    ));
    tensor(out, x.shape())
}

#[cube]
fn apply_binary<F: Float>(a: F, b: F, c: F, parity: u32, #[comptime] op: Binary) -> F {
    match op {
        Binary::Add => a + b,
        Binary::Sub => a - b,
        Binary::Mul => a * b,
        Binary::Div => a / b,
        Binary::GeluGrad => a * gelu_slope::<F>(b),
        Binary::SqrtGrad => a / (b + b),
        Binary::RsqrtGrad => -a * b * b * b * F::new(0.5),
        Binary::TanhGrad => a * (F::new(1.0) - b * b),
        Binary::PowfGrad => a * c * signed_pow::<F>(b, c - F::new(1.0), parity),
        Binary::XLogXGrad => a * (F::ln(b) + F::new(1.0)),
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn binary_kernel<F: Float>(
    a: &Array<F>,
    b: &Array<F>,
    out: &mut Array<F>,
    shape: &Array<u32>,
    a_strides: &Array<u32>,
    b_strides: &Array<u32>,
    c: f32,
    parity: u32,
    n: u32,
    #[comptime] op: Binary,
    #[comptime] same_shape: bool,
) {
    let i = linear_index();
    if i < n {
        let mut ia = i;
        let mut ib = i;
        if !same_shape {
            let mut rem = i;
            ia = 0u32;
            ib = 0u32;
            let rank = shape.len();
            for k in 0..rank {
                let d = rank - 1 - k;
                let idx = rem % shape[d];
                rem /= shape[d];
                ia += idx * a_strides[d];
                ib += idx * b_strides[d];
            }
        }
        out[i as usize] =
            apply_binary::<F>(a[ia as usize], b[ib as usize], F::cast_from(c), parity, op);
    }
}

/// `op(a, b)` elementwise with broadcasting, on the device of `a`.
pub(crate) fn binary(a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<Tensor> {
    const OP: &str = "binary";
    let ab = first_buffer(OP, a)?;
    let bb = buffer(OP, b, ab.device)?;
    let out_shape = broadcast_shapes(a.shape(), b.shape()).ok_or_else(|| Error::Broadcast {
        op: OP,
        lhs: a.shape().to_vec(),
        rhs: b.shape().to_vec(),
    })?;
    let (code, c) = match op {
        BinaryOp::Add => (Binary::Add, 0.0),
        BinaryOp::Sub => (Binary::Sub, 0.0),
        BinaryOp::Mul => (Binary::Mul, 0.0),
        BinaryOp::Div => (Binary::Div, 0.0),
        BinaryOp::GeluGrad => (Binary::GeluGrad, 0.0),
        BinaryOp::SqrtGrad => (Binary::SqrtGrad, 0.0),
        BinaryOp::RsqrtGrad => (Binary::RsqrtGrad, 0.0),
        BinaryOp::TanhGrad => (Binary::TanhGrad, 0.0),
        BinaryOp::PowfGrad(p) => (Binary::PowfGrad, p),
        BinaryOp::XLogXGrad => (Binary::XLogXGrad, 0.0),
    };
    let same_shape = a.shape() == b.shape();
    let rank = out_shape.len();
    let shape = u32_buffer(ab, &out_shape);
    let sa = u32_buffer(ab, &broadcast_strides(a.shape(), &out_shape));
    let sb = u32_buffer(ab, &broadcast_strides(b.shape(), &out_shape));
    let n = numel(&out_shape);
    let out = alloc(ab, n);
    on_runtime!(&ab.client, |client, R| binary_kernel::launch::<f32, R>(
        client,
        grid(n, BLOCK),
        CubeDim::new_1d(BLOCK),
        ab.arg::<R>(),
        bb.arg::<R>(),
        out.arg::<R>(),
        arg::<R>(&shape, rank),
        arg::<R>(&sa, rank),
        arg::<R>(&sb, rank),
        c as f32,
        parity(c - 1.0),
        n as u32,
        code,
        same_shape,
    ));
    tensor(out, &out_shape)
}

/// `gelu(x + b)`, or with `g` given, the gradient `g·gelu'(x + b)`; `b` is
/// broadcast over rows of `cols`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn bias_gelu_kernel<F: Float>(
    x: &Array<F>,
    b: &Array<F>,
    g: &Array<F>,
    out: &mut Array<F>,
    cols: u32,
    n: u32,
    #[comptime] gradient: bool,
) {
    let i = linear_index();
    if i < n {
        let z = x[i as usize] + b[(i % cols) as usize];
        if gradient {
            out[i as usize] = g[i as usize] * gelu_slope::<F>(z);
        } else {
            out[i as usize] = gelu::<F>(z);
        }
    }
}

fn launch_bias_gelu(x: &Tensor, b: &Tensor, g: Option<&Tensor>) -> Result<Tensor> {
    const OP: &str = "bias_gelu";
    let xb = first_buffer(OP, x)?;
    let bb = buffer(OP, b, xb.device)?;
    let gb = match g {
        Some(g) => buffer(OP, g, xb.device)?,
        None => xb,
    };
    let n = xb.len;
    let out = alloc(xb, n);
    if n > 0 {
        on_runtime!(&xb.client, |client, R| bias_gelu_kernel::launch::<f32, R>(
            client,
            grid(n, BLOCK),
            CubeDim::new_1d(BLOCK),
            xb.arg::<R>(),
            bb.arg::<R>(),
            gb.arg::<R>(),
            out.arg::<R>(),
            bb.len as u32,
            n as u32,
            g.is_some(),
        ));
    }
    tensor(out, x.shape())
}

/// `gelu(x + b)` with `b` broadcast over the last axis of `x`.
pub(crate) fn bias_gelu(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    launch_bias_gelu(x, b, None)
}

/// The gradient of [`bias_gelu`] with respect to `x`, `g·gelu'(x + b)`.
pub(crate) fn bias_gelu_backward(g: &Tensor, x: &Tensor, b: &Tensor) -> Result<Tensor> {
    launch_bias_gelu(x, b, Some(g))
}
