//! The projection head (`msn-spec.md` §3): Linear–BN–GELU–Linear–BN–GELU–Linear,
//! batch statistics per call (MSN runs the head once per resolution group).

use ops::{BatchStats, DType, Tensor};
use rand::Rng;
use vit::Linear;

use crate::dist::Group;
use crate::Result;

/// BatchNorm1d with affine parameters and running statistics (eps 1e-5, momentum 0.1).
#[derive(Clone, Debug)]
pub struct BatchNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
}

impl BatchNorm {
    pub const EPS: f64 = 1e-5;
    pub const MOMENTUM: f64 = 0.1;

    pub fn new(width: usize) -> Self {
        BatchNorm {
            weight: Tensor::ones(&[width], DType::F32),
            bias: Tensor::zeros(&[width], DType::F32),
            running_mean: Tensor::zeros(&[width], DType::F32),
            running_var: Tensor::ones(&[width], DType::F32),
        }
    }
}

impl BatchNorm {
    /// Training-mode batch norm of `x: [N, C]` with the statistics of the
    /// global batch: in a world of one, the fused op; across ranks, composed
    /// of recorded ops around two exchanges (the column sums, then the
    /// centred sums of squares), so that the tape differentiates SyncBN's
    /// exchanges with the rest.
    pub fn forward_in(&self, x: &Tensor, group: &Group) -> Result<(Tensor, BatchStats)> {
        if group.size() == 1 {
            return Ok(x.batch_norm(&self.weight, &self.bias, Self::EPS)?);
        }
        let n = (x.shape()[0] * group.size()) as f64;
        let mean = group
            .all_reduce_tensor(&x.sum_axis(0, false)?, "batch-norm sums")?
            .mul_scalar(1.0 / n)?;
        let centered = x.sub(&mean)?;
        let var = group
            .all_reduce_tensor(
                &centered.mul(&centered)?.sum_axis(0, false)?,
                "batch-norm sums of squares",
            )?
            .mul_scalar(1.0 / n)?;
        let out = centered
            .mul(&var.add_scalar(Self::EPS)?.rsqrt()?)?
            .mul(&self.weight)?
            .add(&self.bias)?;
        let stats = BatchStats {
            mean: mean.detach(),
            var_unbiased: var.detach().mul_scalar(n / (n - 1.0))?,
        };
        Ok((out, stats))
    }
}

#[derive(Clone, Debug)]
pub struct ProjectionHead {
    pub fc1: Linear,
    pub bn1: BatchNorm,
    pub fc2: Linear,
    pub bn2: BatchNorm,
    pub fc3: Linear,
}

impl ProjectionHead {
    /// `input → hidden → hidden → output`, MSN's initialisation (truncated normal 0.02, zero bias).
    pub fn new(rng: &mut impl Rng, input: usize, hidden: usize, output: usize) -> Self {
        ProjectionHead {
            fc1: Linear::new(rng, input, hidden, true),
            bn1: BatchNorm::new(hidden),
            fc2: Linear::new(rng, hidden, hidden, true),
            bn2: BatchNorm::new(hidden),
            fc3: Linear::new(rng, hidden, output, true),
        }
    }

    /// Training-mode forward over one group `[N, input]`; returns the output
    /// and the two layers' batch statistics for [`ProjectionHead::update_running`].
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, [BatchStats; 2])> {
        self.forward_in(x, &Group::single())
    }

    /// [`ProjectionHead::forward`] with the batch statistics of the global
    /// batch that `group`'s ranks hold together (SyncBN).
    pub fn forward_in(&self, x: &Tensor, group: &Group) -> Result<(Tensor, [BatchStats; 2])> {
        let (h, s1) = self.bn1.forward_in(&self.fc1.forward(x)?, group)?;
        let (h, s2) = self.bn2.forward_in(&self.fc2.forward(&h.gelu()?)?, group)?;
        Ok((self.fc3.forward(&h.gelu()?)?, [s1, s2]))
    }

    pub fn update_running(&mut self, stats: &[BatchStats; 2]) -> Result<()> {
        for (bn, s) in [(&mut self.bn1, &stats[0]), (&mut self.bn2, &stats[1])] {
            s.update_running(
                &mut bn.running_mean,
                &mut bn.running_var,
                BatchNorm::MOMENTUM,
            )?;
        }
        Ok(())
    }

    /// Visits the trainable parameters (names as MSN's `fc` Sequential would have
    /// them: `fc1`, `bn1`, …).
    pub fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(String, &mut Tensor)) {
        let name = |n: &str| {
            if prefix.is_empty() {
                n.to_string()
            } else {
                format!("{prefix}.{n}")
            }
        };
        self.fc1.visit(&name("fc1"), f);
        f(name("bn1.weight"), &mut self.bn1.weight);
        f(name("bn1.bias"), &mut self.bn1.bias);
        self.fc2.visit(&name("fc2"), f);
        f(name("bn2.weight"), &mut self.bn2.weight);
        f(name("bn2.bias"), &mut self.bn2.bias);
        self.fc3.visit(&name("fc3"), f);
    }

    /// Visits the running statistics (buffers, not trained).
    pub fn visit_buffers(&mut self, prefix: &str, f: &mut dyn FnMut(String, &mut Tensor)) {
        for (n, bn) in [("bn1", &mut self.bn1), ("bn2", &mut self.bn2)] {
            f(format!("{prefix}.{n}.running_mean"), &mut bn.running_mean);
            f(format!("{prefix}.{n}.running_var"), &mut bn.running_var);
        }
    }
}
