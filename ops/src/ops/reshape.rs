//! `reshape`: the same elements under another shape of equal size.
//!
//! PyTorch: `x.reshape(shape)`. No copy: the storage is shared. Backward:
//! reshape the gradient back.

use crate::error::shape_err;
use crate::shape::numel;
use crate::{Result, Tensor};

impl Tensor {
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != self.numel() {
            return Err(shape_err!(
                "reshape",
                "cannot reshape {:?} ({} elements) to {:?}",
                self.shape(),
                self.numel(),
                shape
            ));
        }
        let out = self.reshaped_untracked(shape);
        let in_shape = self.shape().to_vec();
        crate::grad::record("reshape", &[self], out, move |g| {
            Ok(vec![Some(g.reshape(&in_shape)?)])
        })
    }
}
