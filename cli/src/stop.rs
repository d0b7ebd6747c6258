//! Stopping a run politely. The first SIGINT (Ctrl-C) or SIGTERM (what `kill`
//! and job schedulers send) asks the training loop to stop at the next step
//! boundary, where it writes a checkpoint and exits with 128 + the signal's
//! number (130 or 143), as shells report a process killed by it; a second
//! signal exits at once. Checkpoints are written atomically, so even that
//! leaves the previous one whole.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};

/// Whether a stop was asked for, and by which signal.
pub struct StopRequest {
    asked: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

impl StopRequest {
    /// Installs the handlers for this process.
    pub fn install() -> Result<Self> {
        let asked = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicUsize::new(0));
        for sig in [SIGINT, SIGTERM] {
            // Registered first, so it sees the flag as the previous signal
            // left it: set means this is the second signal.
            signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&asked))
                .and_then(|_| {
                    signal_hook::flag::register_usize(sig, Arc::clone(&signal), sig as usize)
                })
                .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&asked)))
                .with_context(|| format!("installing the handler of signal {sig}"))?;
        }
        Ok(StopRequest { asked, signal })
    }

    /// The signal that asked for a stop, if one did: its name and the exit
    /// code that reports it.
    pub fn asked(&self) -> Option<(&'static str, u8)> {
        if !self.asked.load(Ordering::SeqCst) {
            return None;
        }
        Some(match self.signal.load(Ordering::SeqCst) as i32 {
            SIGTERM => ("SIGTERM", 143),
            _ => ("SIGINT", 130),
        })
    }
}

/// Restores the default action of SIGPIPE, which Rust's runtime ignores: a
/// command whose output goes into a pipe closed early (`msn bench | head`)
/// then ends quietly, as other Unix tools do, instead of panicking on its
/// next write.
pub fn quiet_broken_pipes() {
    // SAFETY: setting a signal's disposition to its default touches no Rust
    // state; it happens before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}
