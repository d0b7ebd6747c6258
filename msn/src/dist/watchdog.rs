//! The watchdog of a group's exchanges: a thread that wakes every second and
//! ends the process when one exchange has waited longer than the timeout.
//! A rank that dies mid-run leaves the others blocked inside a collective
//! call that no backend can cancel; ending the process, with a message that
//! names the exchange, the rank and how long it waited, is what PyTorch's
//! NCCL watchdog does too.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::Collective;

/// How long an exchange may wait for the other ranks by default: long
/// enough for rank 0's checkpoints and online evaluation, which the others
/// wait through at their next exchange.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

struct InFlight {
    what: &'static str,
    values: usize,
    since: Instant,
}

pub(super) struct Watchdog {
    in_flight: Mutex<Option<InFlight>>,
}

/// Marks an exchange as finished when dropped.
pub(super) struct Entered<'a>(&'a Watchdog);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        *self.0.in_flight.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Watchdog {
    pub(super) fn start(backend: Arc<dyn Collective>, timeout: Duration) -> Arc<Self> {
        let dog = Arc::new(Watchdog {
            in_flight: Mutex::new(None),
        });
        let watched: Weak<Watchdog> = Arc::downgrade(&dog);
        let (rank, size) = (backend.rank(), backend.size());
        let name = backend.name();
        std::thread::Builder::new()
            .name("msn-watchdog".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(250).min(timeout));
                let Some(dog) = watched.upgrade() else { return };
                let late = dog
                    .in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .filter(|f| f.since.elapsed() > timeout)
                    .map(|f| (f.what, f.values, f.since.elapsed()));
                if let Some((what, values, waited)) = late {
                    eprintln!(
                        "error: rank {rank} of {size}: the exchange of {what} ({values} value{}, {name}) waited {:.0} s for the other ranks, longer than --collective-timeout; another rank has died or hung (its own error, or the launcher's, names it); stopping",
                        if values == 1 { "" } else { "s" },
                        waited.as_secs_f64()
                    );
                    // Leaving through the process, not the backend: the
                    // backend's thread is the one blocked.
                    std::process::exit(3);
                }
            })
            .expect("the watchdog thread starts");
        dog
    }

    pub(super) fn enter(&self, what: &'static str, values: usize) -> Entered<'_> {
        *self.in_flight.lock().unwrap_or_else(|e| e.into_inner()) = Some(InFlight {
            what,
            values,
            since: Instant::now(),
        });
        Entered(self)
    }
}
