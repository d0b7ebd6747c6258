//! `--device`: checking that the chosen runtime is compiled into this build.

use anyhow::{bail, Result};
use ops::Device;

/// An error naming the cargo feature when `device` is not built in.
pub fn check_built(device: Device) -> Result<()> {
    if !device.is_built() {
        bail!(
            "--device {device}: this build has no {device} runtime; rebuild with `cargo build --release -p msn-cli --features {device}`"
        );
    }
    Ok(())
}
