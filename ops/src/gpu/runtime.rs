//! The GPU side of a tensor: a CubeCL buffer, the client of the runtime that
//! owns it, moving values to and from it, and the launch geometry every
//! kernel shares.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use cubecl::prelude::*;
use cubecl::server::Handle;

use crate::{Device, Error, Result, Storage, Tensor};

/// The client of one CubeCL runtime. Kernels are generic over the runtime;
/// [`on_runtime!`] binds the concrete one.
#[derive(Clone)]
pub(crate) enum Client {
    #[cfg(feature = "wgpu")]
    Wgpu(ComputeClient<cubecl::wgpu::WgpuRuntime>),
    #[cfg(feature = "cuda")]
    Cuda(ComputeClient<cubecl::cuda::CudaRuntime>),
}

/// Runs `$body` with `$c` bound to the runtime's client and `$R` to its type.
macro_rules! on_runtime {
    ($client:expr, |$c:ident, $R:ident| $body:expr) => {
        match $client {
            #[cfg(feature = "wgpu")]
            $crate::gpu::runtime::Client::Wgpu($c) => {
                #[allow(dead_code)]
                type $R = cubecl::wgpu::WgpuRuntime;
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::gpu::runtime::Client::Cuda($c) => {
                #[allow(dead_code)]
                type $R = cubecl::cuda::CudaRuntime;
                $body
            }
        }
    };
}
pub(crate) use on_runtime;

/// f32 values in device memory. Cloning shares the buffer: like every
/// storage, it is never written after the op that made it.
#[derive(Clone)]
pub struct GpuBuffer {
    pub(crate) handle: Handle,
    pub(crate) len: usize,
    pub(crate) device: Device,
    pub(crate) client: Client,
}

impl std::fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuBuffer({} f32 on {})", self.len, self.device)
    }
}

impl GpuBuffer {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn device(&self) -> Device {
        self.device
    }
}

fn clients() -> &'static Mutex<HashMap<Device, Client>> {
    static CLIENTS: OnceLock<Mutex<HashMap<Device, Client>>> = OnceLock::new();
    CLIENTS.get_or_init(Default::default)
}

/// The client of `device`, created on first use. A runtime that finds no
/// adapter panics inside CubeCL; that is caught and reported as an error.
pub(crate) fn client(device: Device) -> Result<Client> {
    let mut cache = clients().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = cache.get(&device) {
        return Ok(c.clone());
    }
    let unavailable = |why: &str| Error::Device {
        op: "to_device",
        message: format!("{device} is not available: {why}"),
    };
    // A runtime without its driver panics (on its own thread too); the panic
    // becomes the error below, so the default hook's report and backtrace
    // would only bury that one line.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let made = std::panic::catch_unwind(|| -> Option<Client> {
        match device {
            #[cfg(feature = "wgpu")]
            Device::Wgpu => Some(Client::Wgpu(cubecl::wgpu::WgpuRuntime::client(
                &cubecl::wgpu::WgpuDevice::DefaultDevice,
            ))),
            #[cfg(feature = "cuda")]
            Device::Cuda => Some(Client::Cuda(cubecl::cuda::CudaRuntime::client(
                &cubecl::cuda::CudaDevice { index: 0 },
            ))),
            _ => None,
        }
    });
    std::panic::set_hook(report);
    let client = match made {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(unavailable(&format!(
                "this build lacks the `{device}` cargo feature"
            )))
        }
        Err(_) if device == Device::Cuda => {
            return Err(unavailable(
                "no NVIDIA driver (libcuda.so) or no NVIDIA GPU was found",
            ))
        }
        Err(_) => {
            return Err(unavailable(
                "the runtime found no adapter (for wgpu without a GPU on Debian: apt-get install -y mesa-vulkan-drivers libvulkan1)",
            ))
        }
    };
    cache.insert(device, client.clone());
    Ok(client)
}

/// A tensor of the same shape on `device`, with its values copied there.
pub(crate) fn upload(t: &Tensor, device: Device) -> Result<Tensor> {
    let client = client(device)?;
    let values = t.to_vec_f32();
    let handle = on_runtime!(&client, |c, R| c.create_from_slice(f32::as_bytes(&values)));
    let buf = GpuBuffer {
        handle,
        len: values.len(),
        device,
        client,
    };
    Tensor::from_storage(Storage::Gpu(buf), t.shape())
}

/// The values of a GPU buffer, read back to the host (waits for the kernels
/// that write it).
pub(crate) fn download(buf: &GpuBuffer) -> Result<Vec<f32>> {
    if buf.len == 0 {
        return Ok(Vec::new());
    }
    let bytes = on_runtime!(&buf.client, |c, R| c.read_one(buf.handle.clone())).map_err(|e| {
        Error::Device {
            op: "to_device",
            message: format!("reading back from {}: {e:?}", buf.device),
        }
    })?;
    Ok(f32::from_bytes(&bytes).to_vec())
}

/// Waits until every kernel queued on `device` has finished: kernels run
/// asynchronously, so a timing must end here.
pub(crate) fn synchronize(device: Device) -> Result<()> {
    let client = client(device)?;
    on_runtime!(&client, |c, R| cubecl::future::block_on(c.sync())).map_err(|e| Error::Device {
        op: "synchronize",
        message: format!("{device}: {e:?}"),
    })
}

/// The GPU buffer of a tensor, or an error naming the op when the tensor is
/// not on `device`.
pub(crate) fn buffer<'a>(op: &'static str, t: &'a Tensor, device: Device) -> Result<&'a GpuBuffer> {
    match t.storage() {
        Storage::Gpu(b) if b.device == device => Ok(b),
        _ => Err(mixed_devices(op, t.device(), device)),
    }
}

/// The error of an op whose inputs live on two devices.
pub(crate) fn mixed_devices(op: &'static str, one: Device, other: Device) -> Error {
    Error::Device {
        op,
        message: format!("an input is on {one}, another on {other}; move one with to_device"),
    }
}

/// The buffer of the first input, which decides the device of an op.
pub(crate) fn first_buffer<'a>(op: &'static str, t: &'a Tensor) -> Result<&'a GpuBuffer> {
    match t.storage() {
        Storage::Gpu(b) => Ok(b),
        _ => Err(Error::Device {
            op,
            message: "expected a GPU tensor".into(),
        }),
    }
}

/// A fresh buffer of `len` f32 on the client's device (uninitialised).
pub(crate) fn alloc(like: &GpuBuffer, len: usize) -> GpuBuffer {
    let handle = on_runtime!(&like.client, |c, R| c.empty(len.max(1) * 4));
    GpuBuffer {
        handle,
        len,
        device: like.device,
        client: like.client.clone(),
    }
}

/// Shapes, strides or indices on the client's device, as u32.
pub(crate) fn u32_buffer(like: &GpuBuffer, values: &[usize]) -> Handle {
    let mut padded: Vec<u32> = values.iter().map(|&v| v as u32).collect();
    if padded.is_empty() {
        padded.push(0);
    }
    on_runtime!(&like.client, |c, R| c
        .create_from_slice(u32::as_bytes(&padded)))
}

/// Wraps a finished buffer as a tensor.
pub(crate) fn tensor(buf: GpuBuffer, shape: &[usize]) -> Result<Tensor> {
    Tensor::from_storage(Storage::Gpu(buf), shape)
}

/// Units per cube of the one-unit-per-element kernels.
pub(crate) const BLOCK: u32 = 256;

/// A 2-D grid of cubes covering `units` units in cubes of `per_cube`: runtimes
/// cap each grid axis at 65 535 cubes.
pub(crate) fn grid(units: usize, per_cube: u32) -> CubeCount {
    let cubes = units.div_ceil(per_cube as usize).max(1) as u32;
    let x = cubes.min(65_535);
    CubeCount::Static(x, cubes.div_ceil(x), 1)
}

/// The linear index of this unit in a [`grid`] launch.
#[cube]
pub(crate) fn linear_index() -> u32 {
    (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) * CUBE_DIM_X + UNIT_POS_X
}

/// The linear index of this cube in a [`grid`] launch of one cube per row.
#[cube]
pub(crate) fn cube_index() -> u32 {
    CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X
}

impl GpuBuffer {
    /// This buffer as a kernel's array argument.
    pub(crate) fn arg<R: Runtime>(&self) -> ArrayArg<R> {
        arg::<R>(&self.handle, self.len)
    }
}

/// An array argument over a whole buffer of `len` elements.
pub(crate) fn arg<R: Runtime>(handle: &Handle, len: usize) -> ArrayArg<R> {
    // SAFETY: every buffer is allocated with `len.max(1)` elements, and the
    // kernels bound their accesses by the lengths they are given.
    unsafe { ArrayArg::from_raw_parts(handle.clone(), len.max(1)) }
}
