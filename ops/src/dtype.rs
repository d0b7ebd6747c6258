//! Element types: f32 for training, f64 for gradient checks.

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{AddAssign, MulAssign};

use crate::Storage;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
}

impl DType {
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
        }
    }
}

/// A floating-point element type that the CPU kernels are generic over.
pub trait Element:
    num_traits::Float + AddAssign + MulAssign + Sum + Default + Debug + Send + Sync + 'static
{
    const DTYPE: DType;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    /// erf; for f32 the vectorisable approximation of [`crate::cpu::fast_math`].
    fn error_function(self) -> Self;
    /// eˣ; for f32 the vectorisable approximation of [`crate::cpu::fast_math`].
    fn fast_exp(self) -> Self;
    /// `(erf(x), e^(−x²))`, which erf's f32 formula computes together.
    fn erf_and_gaussian(self) -> (Self, Self);
    /// The typed slice of a storage of this element type.
    fn slice(storage: &Storage) -> Option<&[Self]>;
    fn slice_mut(storage: &mut Storage) -> Option<&mut [Self]>;
    fn into_storage(data: Vec<Self>) -> Storage;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn error_function(self) -> Self {
        crate::cpu::fast_math::erf_f32(self)
    }
    fn fast_exp(self) -> Self {
        crate::cpu::fast_math::exp_f32(self)
    }
    #[inline(always)]
    fn erf_and_gaussian(self) -> (Self, Self) {
        crate::cpu::fast_math::erf_and_gaussian_f32(self)
    }
    fn slice(storage: &Storage) -> Option<&[Self]> {
        match storage {
            Storage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(storage: &mut Storage) -> Option<&mut [Self]> {
        match storage {
            Storage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn into_storage(data: Vec<Self>) -> Storage {
        Storage::F32(data)
    }
}

impl Element for f64 {
    const DTYPE: DType = DType::F64;
    fn from_f64(x: f64) -> Self {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn error_function(self) -> Self {
        libm::erf(self)
    }
    fn fast_exp(self) -> Self {
        self.exp()
    }
    fn erf_and_gaussian(self) -> (Self, Self) {
        (libm::erf(self), (-self * self).exp())
    }
    fn slice(storage: &Storage) -> Option<&[Self]> {
        match storage {
            Storage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(storage: &mut Storage) -> Option<&mut [Self]> {
        match storage {
            Storage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn into_storage(data: Vec<Self>) -> Storage {
        Storage::F64(data)
    }
}

/// Runs a generic expression with `$T` bound to the element type of `$dtype`.
#[macro_export]
macro_rules! with_dtype {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            $crate::DType::F32 => {
                #[allow(unused_imports)]
                use $crate::dtype_traits::*;
                type $T = f32;
                $body
            }
            $crate::DType::F64 => {
                #[allow(unused_imports)]
                use $crate::dtype_traits::*;
                type $T = f64;
                $body
            }
        }
    };
}
