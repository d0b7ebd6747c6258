//! MSN's schedules (`msn-spec.md` §6, §4), all stretched over 1.25× the
//! training length so that none of them finishes: warmup then cosine learning
//! rate, cosine weight decay, linear EMA momentum.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedules {
    pub total_steps: u64,
    pub warmup_steps: u64,
    /// Schedules span `stretch × total_steps` (MSN: 1.25).
    pub stretch: f64,
    pub start_lr: f64,
    pub lr: f64,
    pub final_lr: f64,
    pub start_wd: f64,
    pub final_wd: f64,
    pub start_momentum: f64,
    pub final_momentum: f64,
}

impl Schedules {
    fn horizon(&self) -> f64 {
        (self.stretch * self.total_steps as f64).floor().max(1.0)
    }

    /// Learning rate of the update at 0-based `step`. MSN's scheduler is
    /// stepped before the first update, so update `step` uses t = step + 1.
    pub fn lr(&self, step: u64) -> f64 {
        let t = (step + 1) as f64;
        let warmup = self.warmup_steps as f64;
        if t < warmup {
            return self.start_lr + (t / warmup) * (self.lr - self.start_lr);
        }
        let progress = (t - warmup) / (self.horizon() - warmup).max(1.0);
        let cosine = self.final_lr
            + (self.lr - self.final_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        cosine.max(self.final_lr)
    }

    /// Weight decay at update `step` (cosine from start to final over the horizon).
    pub fn wd(&self, step: u64) -> f64 {
        let t = ((step + 1) as f64 / self.horizon()).min(1.0);
        self.final_wd
            + (self.start_wd - self.final_wd) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
    }

    /// EMA momentum after update `step` (linear; exactly the start value at step 0).
    pub fn momentum(&self, step: u64) -> f64 {
        self.start_momentum
            + step as f64 * (self.final_momentum - self.start_momentum) / self.horizon()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msn_like(total: u64) -> Schedules {
        Schedules {
            total_steps: total,
            warmup_steps: total / 10,
            stretch: 1.25,
            start_lr: 2e-4,
            lr: 1e-3,
            final_lr: 1e-6,
            start_wd: 0.04,
            final_wd: 0.4,
            start_momentum: 0.996,
            final_momentum: 1.0,
        }
    }

    #[test]
    fn schedules_follow_msn() {
        let s = msn_like(1000);
        assert!(
            (s.lr(0) - (2e-4 + 0.01 * 8e-4)).abs() < 1e-12,
            "first update uses t = 1"
        );
        assert!((s.lr(99) - 1e-3).abs() < 1e-12, "warmup ends at the peak");
        // At the end the stretched cosine is still far from its floor (≈ 9.6e-5 here).
        let end = s.lr(999);
        assert!(end > 5e-5 && end < 2e-4, "{end}");
        assert!((s.wd(0) - 0.04).abs() < 1e-4);
        assert!(s.wd(999) > 0.3 && s.wd(999) < 0.4);
        assert_eq!(s.momentum(0), 0.996);
        assert!((s.momentum(999) - (0.996 + 999.0 * 0.004 / 1250.0)).abs() < 1e-12);
    }
}
