//! Anomaly detection, as PyTorch's `torch.autograd.detect_anomaly`: while it
//! is on, every op checks its forward output, and every backward rule the
//! gradients it returns, for NaN and infinity, and the first one found stops
//! the computation with an error naming the op and the shapes. Off by default:
//! each check reads the whole tensor (from the device, on a GPU).

use std::sync::atomic::{AtomicBool, Ordering};

use crate::{Error, Result, Tensor};

static ON: AtomicBool = AtomicBool::new(false);

/// Turns anomaly detection on or off for the whole process.
pub fn set_detect_anomaly(on: bool) {
    ON.store(on, Ordering::SeqCst);
}

/// Whether anomaly detection is on.
pub fn detect_anomaly() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Whether every element of `t` is finite.
fn is_finite(t: &Tensor) -> bool {
    t.to_vec_f64().iter().all(|v| v.is_finite())
}

/// With detection on: an error if the output of `op`, computed from `inputs`,
/// is not finite.
pub(crate) fn check_forward(op: &'static str, inputs: &[&Tensor], output: &Tensor) -> Result<()> {
    if !detect_anomaly() || is_finite(output) {
        return Ok(());
    }
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    Err(Error::Anomaly {
        op,
        message: format!(
            "forward output {:?} holds NaN or infinity (inputs {shapes:?}, all finite: {})",
            output.shape(),
            inputs.iter().all(|t| is_finite(t))
        ),
    })
}

/// With detection on: an error if a gradient that the backward rule of `op`
/// returned is not finite, naming the input it is for.
pub(crate) fn check_backward(
    op: &'static str,
    output_grad: &Tensor,
    input_grads: &[Option<Tensor>],
) -> Result<()> {
    if !detect_anomaly() {
        return Ok(());
    }
    for (input, grad) in input_grads.iter().enumerate() {
        if let Some(grad) = grad.as_ref().filter(|g| !is_finite(g)) {
            return Err(Error::Anomaly {
                op,
                message: format!(
                    "backward: the gradient of input {input} {:?} holds NaN or infinity (output gradient {:?}, all finite: {})",
                    grad.shape(),
                    output_grad.shape(),
                    is_finite(output_grad)
                ),
            });
        }
    }
    Ok(())
}
