//! The GPU launchers of a build without a GPU feature: no GPU tensor can be
//! made there ([`GpuBuffer`] has no values), so each one only reports that.

use super::{AttentionDims, AttentionLayout, AttentionSaved, BinaryOp, Reduction, UnaryOp};
use crate::{Device, Error, Result, Tensor};

/// A GPU buffer; none exists in a build without the `wgpu` or `cuda` feature.
#[derive(Clone, Debug)]
pub enum GpuBuffer {}

impl GpuBuffer {
    pub fn len(&self) -> usize {
        match *self {}
    }
    pub fn is_empty(&self) -> bool {
        match *self {}
    }
    pub fn device(&self) -> Device {
        match *self {}
    }
}

/// A bf16 operand on a GPU; none exists in a build without a GPU feature.
#[derive(Clone)]
pub enum PackedBf16 {}

fn not_built() -> Error {
    Error::Device {
        op: "gpu",
        message: "this build has no GPU runtime; rebuild with --features wgpu or --features cuda"
            .into(),
    }
}

/// Declares launchers that report [`not_built`].
macro_rules! unavailable {
    ($(fn $name:ident($($ty:ty),*) -> $ret:ty;)*) => {
        $(pub(crate) fn $name($(_: $ty),*) -> Result<$ret> { Err(not_built()) })*
    };
}

unavailable! {
    fn upload(&Tensor, Device) -> Tensor;
    fn download(&GpuBuffer) -> Vec<f32>;
    fn synchronize(Device) -> ();
    fn unary(&Tensor, UnaryOp) -> Tensor;
    fn binary(&Tensor, &Tensor, BinaryOp) -> Tensor;
    fn broadcast_to(&Tensor, &[usize]) -> Tensor;
    fn permute(&Tensor, &[usize]) -> Tensor;
    fn narrow(&Tensor, usize, usize, usize) -> Tensor;
    fn narrow_backward(&Tensor, &[usize], usize, usize) -> Tensor;
    fn concat(&[&Tensor], usize) -> Tensor;
    fn patchify(&Tensor, usize) -> Tensor;
    fn unpatchify(&Tensor, [usize; 4], usize) -> Tensor;
    fn reduce(&Tensor, usize, Reduction, &[usize]) -> Tensor;
    fn max_backward(&Tensor, &Tensor, &Tensor, usize) -> Tensor;
    fn index_select(&Tensor, usize, &[usize]) -> Tensor;
    fn index_select_backward(&Tensor, usize, &[usize], &[usize]) -> Tensor;
    fn softmax(&Tensor, bool) -> Tensor;
    fn softmax_backward(&Tensor, &Tensor, bool) -> Tensor;
    fn layer_norm(&Tensor, &Tensor, &Tensor, f64) -> (Tensor, Tensor, Tensor);
    fn layer_norm_backward(&Tensor, &Tensor, &Tensor, &Tensor, &Tensor) -> (Tensor, Tensor, Tensor);
    fn l2_normalize(&Tensor, f64) -> (Tensor, Tensor);
    fn l2_normalize_backward(&Tensor, &Tensor, &Tensor, f64) -> Tensor;
    fn matmul(&Tensor, &Tensor, usize, (usize, usize, usize), (bool, bool)) -> Tensor;
    fn pack_bf16(&Tensor) -> PackedBf16;
    fn matmul_bf16(&PackedBf16, &PackedBf16, usize, (usize, usize, usize), (bool, bool)) -> Tensor;
    fn matmul_every_plan(&Tensor, &Tensor, usize, (usize, usize, usize), (bool, bool), bool) -> Vec<(String, Tensor)>;
    fn bias_gelu(&Tensor, &Tensor) -> Tensor;
    fn bias_gelu_backward(&Tensor, &Tensor, &Tensor) -> Tensor;
    fn attention(&Tensor, &Tensor, &Tensor, AttentionDims, AttentionLayout, f64) -> (Tensor, Tensor);
    fn attention_backward(&AttentionSaved, &Tensor, AttentionDims, f64) -> (Tensor, Tensor, Tensor);
    fn attention_backward_packed(&AttentionSaved, &Tensor, AttentionDims, AttentionLayout, f64) -> Tensor;
}

/// No GPU tensor exists here, so no fused attention either.
pub(crate) fn attention_fits(_: &Tensor, _: usize, _: usize) -> bool {
    false
}
