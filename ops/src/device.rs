//! Where a tensor's storage lives.

/// A compute device, chosen at run time. GPU runtimes join as variants of this
/// enum and of [`Storage`](crate::Storage), so that model code never changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Device {
    #[default]
    Cpu,
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
        }
    }
}
