//! Ranks as threads of one process: a world for tests, with no launcher and
//! no library. Every collective is one exchange of each rank's words
//! through shared slots between two barriers; sums are taken in rank order,
//! so every rank gets bitwise the same result.

use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use super::{Collective, Group};

struct Shared {
    slots: Mutex<Vec<Vec<u64>>>,
    barrier: Barrier,
}

struct ThreadRank {
    rank: usize,
    shared: Arc<Shared>,
}

impl ThreadRank {
    /// Every rank's words, in rank order.
    fn exchange(&self, words: Vec<u64>) -> Vec<Vec<u64>> {
        self.shared.slots.lock().expect("no rank panicked")[self.rank] = words;
        self.shared.barrier.wait();
        let all = self.shared.slots.lock().expect("no rank panicked").clone();
        // Nobody writes the next exchange's words before everyone has read these.
        self.shared.barrier.wait();
        all
    }

    fn sum_in_rank_order<T: Copy + std::ops::Add<Output = T>>(
        &self,
        values: &mut [T],
        to_bits: impl Fn(T) -> u64,
        from_bits: impl Fn(u64) -> T,
    ) {
        let all = self.exchange(values.iter().map(|&v| to_bits(v)).collect());
        for (i, v) in values.iter_mut().enumerate() {
            *v = all
                .iter()
                .map(|words| from_bits(words[i]))
                .reduce(|a, b| a + b)
                .expect("a world has a rank");
        }
    }
}

impl Collective for ThreadRank {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.slots.lock().expect("no rank panicked").len()
    }
    fn all_reduce_f64(&self, values: &mut [f64]) {
        self.sum_in_rank_order(values, f64::to_bits, f64::from_bits);
    }
    fn all_reduce_f32(&self, values: &mut [f32]) {
        self.sum_in_rank_order(values, |v| v.to_bits() as u64, |w| f32::from_bits(w as u32));
    }
    fn all_gather_u64(&self, values: &[u64]) -> Vec<u64> {
        self.exchange(values.to_vec()).concat()
    }
    fn broadcast_u64(&self, values: &mut [u64], root: usize) {
        let all = self.exchange(values.to_vec());
        values.copy_from_slice(&all[root]);
    }
    fn broadcast_f32(&self, values: &mut [f32], root: usize) {
        let all = self.exchange(values.iter().map(|v| v.to_bits() as u64).collect());
        for (v, &w) in values.iter_mut().zip(&all[root]) {
            *v = f32::from_bits(w as u32);
        }
    }
    fn barrier(&self) {
        self.shared.barrier.wait();
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
    fn name(&self) -> &'static str {
        "threads"
    }
}

/// The `size` ranks of a world of threads: hand one group to each thread.
pub fn world(size: usize) -> Vec<Group> {
    let shared = Arc::new(Shared {
        slots: Mutex::new(vec![Vec::new(); size]),
        barrier: Barrier::new(size),
    });
    (0..size)
        .map(|rank| {
            let backend = Arc::new(ThreadRank {
                rank,
                shared: Arc::clone(&shared),
            });
            Group::new(backend, Duration::from_secs(600))
        })
        .collect()
}
