//! The `Tensor`: shape, storage and, when recorded on a tape, its place there.

use std::fmt;
use std::sync::Arc;

use autograd::Var;

use crate::error::shape_err;
use crate::shape::numel;
use crate::{with_dtype, DType, Device, Element, Error, Result, Storage};

/// An n-dimensional array of f32 or f64 on a device.
///
/// Cloning is cheap (the storage is shared). A tensor is immutable through its
/// ops; [`Tensor::map_in_place`] mutates a buffer no one else shares, for
/// optimizers. A tensor carries a tape variable only when it was produced by
/// [`Tape::watch`](autograd::Tape::watch) or by an op with a tracked input.
#[derive(Clone)]
pub struct Tensor {
    shape: Vec<usize>,
    storage: Arc<Storage>,
    var: Option<Var<Tensor>>,
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor({:?}, {:?}", self.shape, self.dtype())?;
        if let Some(var) = &self.var {
            write!(f, ", {var:?}")?;
        }
        write!(f, ")")
    }
}

impl Tensor {
    /// A tensor from a storage whose length matches the shape.
    pub fn from_storage(storage: Storage, shape: &[usize]) -> Result<Self> {
        if storage.len() != numel(shape) {
            return Err(shape_err!(
                "from_storage",
                "{} elements cannot have shape {:?}",
                storage.len(),
                shape
            ));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            storage: Arc::new(storage),
            var: None,
        })
    }

    /// A tensor from a typed vector.
    pub fn from_vec<T: Element>(data: Vec<T>, shape: &[usize]) -> Result<Self> {
        Self::from_storage(T::into_storage(data), shape)
    }

    /// A tensor of `dtype` from f64 values (rounded for f32).
    pub fn from_f64s(data: &[f64], shape: &[usize], dtype: DType) -> Result<Self> {
        with_dtype!(dtype, T => Self::from_vec(data.iter().map(|&x| T::from_f64(x)).collect::<Vec<T>>(), shape))
    }

    /// A tensor filled by `f(flat index)`.
    pub fn from_fn(shape: &[usize], dtype: DType, f: impl FnMut(usize) -> f64) -> Self {
        let data: Vec<f64> = (0..numel(shape)).map(f).collect();
        Self::from_f64s(&data, shape, dtype).expect("the length matches the shape by construction")
    }

    pub fn full(shape: &[usize], value: f64, dtype: DType) -> Self {
        with_dtype!(dtype, T => Self::from_vec(vec![T::from_f64(value); numel(shape)], shape).expect("length matches"))
    }

    pub fn zeros(shape: &[usize], dtype: DType) -> Self {
        Self::full(shape, 0.0, dtype)
    }

    pub fn ones(shape: &[usize], dtype: DType) -> Self {
        Self::full(shape, 1.0, dtype)
    }

    /// A zero-dimensional tensor.
    pub fn scalar(value: f64, dtype: DType) -> Self {
        Self::full(&[], value, dtype)
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// The size of one dimension; negative counts from the end.
    pub fn dim(&self, axis: isize) -> Result<usize> {
        Ok(self.shape[crate::shape::normalize_axis("dim", axis, self.rank())?])
    }

    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    pub fn dtype(&self) -> DType {
        self.storage.dtype()
    }

    pub fn device(&self) -> Device {
        self.storage.device()
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The typed elements of a host tensor; an error when the dtype is not
    /// `T` or the tensor lives on a GPU.
    pub fn data<T: Element>(&self) -> Result<&[T]> {
        if let Storage::Gpu(b) = &*self.storage {
            return Err(Error::Device {
                op: "data",
                message: format!(
                    "the tensor lives on {}; read it with to_vec_f32 or move it with to_device(Device::Cpu)",
                    b.device()
                ),
            });
        }
        T::slice(&self.storage).ok_or(Error::DType {
            op: "data",
            lhs: self.dtype(),
            rhs: T::DTYPE,
        })
    }

    /// The values as f64, read back from the device when on a GPU.
    ///
    /// # Panics
    /// When reading back from the GPU fails (the device was lost).
    pub fn to_vec_f64(&self) -> Vec<f64> {
        match &*self.storage {
            Storage::F32(v) => v.iter().map(|&x| x as f64).collect(),
            Storage::F64(v) => v.clone(),
            Storage::Gpu(_) => self.to_vec_f32().into_iter().map(f64::from).collect(),
        }
    }

    /// The values as f32, read back from the device when on a GPU.
    ///
    /// # Panics
    /// When reading back from the GPU fails (the device was lost).
    pub fn to_vec_f32(&self) -> Vec<f32> {
        match &*self.storage {
            Storage::F32(v) => v.clone(),
            Storage::F64(v) => v.iter().map(|&x| x as f32).collect(),
            Storage::Gpu(b) => crate::gpu::download(b).expect("reading a GPU buffer back"),
        }
    }

    /// The same values on `device` (differentiable: the gradient moves back).
    /// GPU tensors hold f32; an f64 tensor is rounded on the way.
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        if device == self.device() {
            return Ok(self.clone());
        }
        let out = match device {
            Device::Cpu => Tensor::from_vec(self.to_vec_f32(), &self.shape)?,
            gpu => crate::gpu::upload(self, gpu)?,
        };
        let from = self.device();
        crate::grad::record("to_device", &[self], out, move |g| {
            Ok(vec![Some(g.to_device(from)?)])
        })
    }

    /// Whether the storage is on a GPU.
    pub fn is_on_gpu(&self) -> bool {
        matches!(&*self.storage, Storage::Gpu(_))
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(shape_err!(
                "item",
                "expected one element, got shape {:?}",
                self.shape
            ));
        }
        Ok(self.to_vec_f64()[0])
    }

    /// The tape variable, when this tensor is recorded on a tape.
    pub fn var(&self) -> Option<&Var<Tensor>> {
        self.var.as_ref()
    }

    pub fn is_tracked(&self) -> bool {
        self.var.is_some()
    }

    /// The same values, cut off any tape: no gradient flows through the result.
    pub fn detach(&self) -> Tensor {
        Tensor {
            shape: self.shape.clone(),
            storage: Arc::clone(&self.storage),
            var: None,
        }
    }

    pub(crate) fn with_var(&self, var: Var<Tensor>) -> Tensor {
        Tensor {
            shape: self.shape.clone(),
            storage: Arc::clone(&self.storage),
            var: Some(var),
        }
    }

    /// The same storage under another shape of equal size (no copy, no tape).
    pub(crate) fn reshaped_untracked(&self, shape: &[usize]) -> Tensor {
        debug_assert_eq!(numel(shape), self.numel());
        Tensor {
            shape: shape.to_vec(),
            storage: Arc::clone(&self.storage),
            var: None,
        }
    }

    /// Applies `f` to the elements in place, copying the buffer first only if it
    /// is shared. Not recorded: this is for optimizers and running statistics.
    pub fn map_in_place<T: Element>(&mut self, f: impl FnMut(&mut [T])) -> Result<()> {
        if self.is_on_gpu() {
            return Err(Error::Device {
                op: "map_in_place",
                message: format!("the tensor lives on {}; update it with ops", self.device()),
            });
        }
        let dtype = self.dtype();
        if dtype != T::DTYPE {
            return Err(Error::DType {
                op: "map_in_place",
                lhs: dtype,
                rhs: T::DTYPE,
            });
        }
        self.var = None;
        let mut f = f;
        f(T::slice_mut(Arc::make_mut(&mut self.storage)).expect("dtype checked above"));
        Ok(())
    }

    /// The same values in another dtype (differentiable).
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        if self.is_on_gpu() {
            return Err(Error::Device {
                op: "to_dtype",
                message: format!("GPU tensors hold f32; move the tensor to the CPU for {dtype:?}"),
            });
        }
        let out = Tensor::from_f64s(&self.to_vec_f64(), &self.shape, dtype)?;
        let from = self.dtype();
        crate::grad::record("to_dtype", &[self], out, move |g| {
            Ok(vec![Some(g.to_dtype(from)?)])
        })
    }
}
