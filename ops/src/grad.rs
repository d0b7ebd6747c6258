//! The bridge between tensors and the tape: what the engine needs from a
//! tensor, and the helper every op uses to record itself.

use autograd::{BoxError, Probe, Tape, Value, Var};

use crate::{Result, Tensor};

impl Value for Tensor {
    fn shape(&self) -> Vec<usize> {
        Tensor::shape(self).to_vec()
    }
    fn var(&self) -> Option<&Var<Self>> {
        Tensor::var(self)
    }
    fn with_var(&self, var: Var<Self>) -> Self {
        Tensor::with_var(self, var)
    }
    fn detach(&self) -> Self {
        Tensor::detach(self)
    }
    fn add_grad(&self, other: &Self) -> std::result::Result<Self, BoxError> {
        Ok(self.add(other)?)
    }
    fn sum_to_shape(&self, shape: &[usize]) -> std::result::Result<Option<Self>, BoxError> {
        Ok(crate::ops::broadcast::sum_to_shape(self, shape)?)
    }
    fn ones_like(&self) -> Self {
        let ones = Tensor::ones(Tensor::shape(self), self.dtype());
        ones.to_device(self.device())
            .expect("the device already holds this tensor")
    }
}

impl Probe for Tensor {
    fn to_f64_vec(&self) -> Vec<f64> {
        Tensor::to_vec_f64(self)
    }
    fn with_f64_values(&self, data: &[f64]) -> Self {
        Tensor::from_f64s(data, Tensor::shape(self), self.dtype())
            .and_then(|t| t.to_device(self.device()))
            .expect("same length as self, on a device that holds self")
    }
}

/// Records `output` as computed from `inputs` with the given backward rule, when
/// any input is tracked; otherwise returns it as it is.
///
/// The rule receives the gradient of the output and returns one gradient per
/// input (`None` for inputs that need none). It may return a gradient in the
/// broadcast output shape: the engine sums it back. Tensors it captures must be
/// detached, so that the tape never holds a handle to itself.
pub(crate) fn record<F>(
    op: &'static str,
    inputs: &[&Tensor],
    output: Tensor,
    backward: F,
) -> Result<Tensor>
where
    F: FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>> + Send + 'static,
{
    crate::anomaly::check_forward(op, inputs, &output)?;
    if inputs.iter().all(|t| !t.is_tracked()) {
        return Ok(output);
    }
    let rule = Box::new(move |g: &Tensor| {
        backward(g)
            .and_then(|grads| crate::anomaly::check_backward(op, g, &grads).map(|()| grads))
            .map_err(|e| Box::new(e) as BoxError)
    });
    Ok(Tape::record(op, inputs, output, rule)?)
}

impl Tensor {
    /// Records a user-defined op: `output` computed from `inputs`, with a
    /// backward rule. This is how code outside this crate adds an op (see the
    /// examples); the rule must capture detached tensors only.
    pub fn custom_op<F>(
        op: &'static str,
        inputs: &[&Tensor],
        output: Tensor,
        backward: F,
    ) -> Result<Tensor>
    where
        F: FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>> + Send + 'static,
    {
        record(op, inputs, output.detach(), backward)
    }

    /// Records an op that has no backward rule: a gradient reaching it is an
    /// error naming `op`.
    pub fn non_differentiable(
        op: &'static str,
        inputs: &[&Tensor],
        output: Tensor,
    ) -> Result<Tensor> {
        Ok(Tape::record_without_backward(op, inputs, output)?)
    }
}
