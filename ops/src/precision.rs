//! The precision of matrix products on a GPU, chosen for a scope of code the
//! way `torch.autocast(device_type="cuda", dtype=torch.bfloat16)` chooses it.
//!
//! Under [`autocast`]`(Precision::Bf16)`, every matrix product of f32 tensors
//! on a GPU (and so every linear layer and attention product there, which are
//! made of them) reads its operands as bf16 and accumulates in f32: the
//! operands are rounded to bf16 (round to nearest, ties to even) and stored
//! packed two to a 32-bit word, which halves the memory they take and the
//! traffic of the product, and the output is f32. Everything else (weights,
//! their gradients and the optimiser state, norms, softmax, the loss) stays
//! f32: the weights are the f32 master copy, rounded afresh at each use.
//!
//! The backward pass of a product made under bf16 is in bf16 too, whenever it
//! runs: the rule remembers the precision of its forward pass. CPU tensors and
//! f64 tensors ignore the setting (the CPU kernels compute in their dtype),
//! as CUDA autocast leaves CPU tensors alone.

use std::cell::Cell;
use std::str::FromStr;

/// The precision of GPU matrix products.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// f32 operands, f32 accumulation.
    #[default]
    F32,
    /// bf16 operands (8 bits of mantissa, f32's range), f32 accumulation.
    Bf16,
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Precision::F32 => write!(f, "f32"),
            Precision::Bf16 => write!(f, "bf16"),
        }
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(format!("unknown precision `{other}`; expected f32 or bf16")),
        }
    }
}

thread_local! {
    static MATMUL_PRECISION: Cell<Precision> = const { Cell::new(Precision::F32) };
}

/// The precision of GPU matrix products on this thread now.
pub fn matmul_precision() -> Precision {
    MATMUL_PRECISION.with(Cell::get)
}

/// Sets the precision of GPU matrix products on this thread until the guard
/// is dropped, when the previous setting comes back (so scopes nest).
#[must_use = "the precision reverts when the guard is dropped"]
pub fn autocast(precision: Precision) -> AutocastGuard {
    let previous = MATMUL_PRECISION.with(|p| p.replace(precision));
    AutocastGuard { previous }
}

/// Restores the previous matmul precision when dropped; see [`autocast`].
pub struct AutocastGuard {
    previous: Precision,
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        MATMUL_PRECISION.with(|p| p.set(self.previous));
    }
}

/// `x` rounded to the nearest bf16 (ties to even), as an f32: what a bf16
/// operand holds. The reference for the GPU's packing kernel.
pub fn round_to_bf16(x: f32) -> f32 {
    half::bf16::from_f32(x).to_f32()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_nest_and_restore() {
        assert_eq!(matmul_precision(), Precision::F32);
        {
            let _outer = autocast(Precision::Bf16);
            assert_eq!(matmul_precision(), Precision::Bf16);
            {
                let _inner = autocast(Precision::F32);
                assert_eq!(matmul_precision(), Precision::F32);
            }
            assert_eq!(matmul_precision(), Precision::Bf16);
        }
        assert_eq!(matmul_precision(), Precision::F32);
    }

    #[test]
    fn parses_and_names() {
        for p in [Precision::F32, Precision::Bf16] {
            assert_eq!(p.to_string().parse::<Precision>(), Ok(p));
        }
        let err = "fp8".parse::<Precision>().unwrap_err();
        assert!(
            err.contains("`fp8`") && err.contains("f32 or bf16"),
            "{err}"
        );
    }

    #[test]
    fn rounding_keeps_eight_bits_of_mantissa_ties_to_even() {
        assert_eq!(round_to_bf16(1.0), 1.0);
        // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: the tie goes to the even 1.
        assert_eq!(round_to_bf16(1.0 + 2f32.powi(-8)), 1.0);
        // Just above the tie rounds up.
        assert_eq!(
            round_to_bf16(1.0 + 2f32.powi(-8) + 2f32.powi(-20)),
            1.0 + 2f32.powi(-7)
        );
        assert!(round_to_bf16(f32::NAN).is_nan());
        assert_eq!(round_to_bf16(f32::INFINITY), f32::INFINITY);
    }
}
