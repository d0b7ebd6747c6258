//! Where a tensor's storage lives.

use std::str::FromStr;

/// A compute device, chosen at run time: the CPU, or a GPU through one of
/// CubeCL's runtimes (`wgpu` over Vulkan/Metal/DX12, `cuda` on NVIDIA cards).
/// The GPU variants exist in every build so that `--device` parses the same
/// everywhere; using one needs the matching cargo feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Device {
    #[default]
    Cpu,
    Wgpu,
    Cuda,
}

impl Device {
    pub fn is_gpu(self) -> bool {
        self != Device::Cpu
    }

    /// Waits until every kernel queued on this device has finished. GPU
    /// kernels run asynchronously; a timing or a profile must end here. The
    /// CPU computes as it is asked, so there it returns at once.
    pub fn synchronize(self) -> crate::Result<()> {
        if self.is_gpu() {
            crate::gpu::synchronize(self)
        } else {
            Ok(())
        }
    }

    /// Whether this build has the runtime of `self` compiled in.
    pub fn is_built(self) -> bool {
        match self {
            Device::Cpu => true,
            Device::Wgpu => cfg!(feature = "wgpu"),
            Device::Cuda => cfg!(feature = "cuda"),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Wgpu => write!(f, "wgpu"),
            Device::Cuda => write!(f, "cuda"),
        }
    }
}

impl FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "wgpu" => Ok(Device::Wgpu),
            "cuda" => Ok(Device::Cuda),
            other => Err(format!(
                "unknown device `{other}`; expected cpu, wgpu or cuda"
            )),
        }
    }
}
