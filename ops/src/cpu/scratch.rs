//! Per-thread scratch buffers, kept from one call to the next.
//!
//! The gemm packs panels of A and B into buffers that it overwrites entirely
//! before reading, so they need neither zeroing nor a fresh allocation per
//! call. Allocating and zeroing them anew cost about 2 % of a training step,
//! most of it in attention's many small products, where a zeroed panel buffer
//! can outweigh the product itself. Each thread keeps one buffer per role; a
//! [`Scratch`] takes it out of the thread's slot and puts it back when dropped,
//! so a nested use on the same thread (rayon may run a second product on a
//! thread that waits inside a first) finds the slot empty and allocates.

use std::cell::Cell;
use std::ops::{Deref, DerefMut};
use std::thread::LocalKey;

use crate::Element;

/// Which buffer: the packed panels of A or of B.
#[derive(Clone, Copy)]
pub enum Role {
    PackedA,
    PackedB,
}

/// Element types with per-thread scratch buffers.
pub trait ScratchElement: Element {
    fn slot(role: Role) -> &'static LocalKey<Cell<Vec<Self>>>;
}

macro_rules! scratch_for {
    ($t:ty) => {
        impl ScratchElement for $t {
            fn slot(role: Role) -> &'static LocalKey<Cell<Vec<$t>>> {
                thread_local! {
                    static PACKED_A: Cell<Vec<$t>> = const { Cell::new(Vec::new()) };
                    static PACKED_B: Cell<Vec<$t>> = const { Cell::new(Vec::new()) };
                }
                match role {
                    Role::PackedA => &PACKED_A,
                    Role::PackedB => &PACKED_B,
                }
            }
        }
    };
}

scratch_for!(f32);
scratch_for!(f64);

/// `len` elements of this thread's `role` buffer, returned to it on drop. The
/// contents are whatever the last user left: write before reading.
pub struct Scratch<T: ScratchElement> {
    role: Role,
    buffer: Vec<T>,
    len: usize,
}

impl<T: ScratchElement> Scratch<T> {
    pub fn take(role: Role, len: usize) -> Self {
        let mut buffer = T::slot(role).take();
        if buffer.len() < len {
            buffer.resize(len, T::zero());
        }
        Scratch { role, buffer, len }
    }
}

impl<T: ScratchElement> Drop for Scratch<T> {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.buffer);
        // Keep the larger of this buffer and one a nested use may have put back.
        T::slot(self.role).with(|slot| {
            let other = slot.take();
            slot.set(if other.len() > buffer.len() {
                other
            } else {
                buffer
            });
        });
    }
}

impl<T: ScratchElement> Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.buffer[..self.len]
    }
}

impl<T: ScratchElement> DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.buffer[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_kept_and_a_nested_use_gets_its_own() {
        let mut outer = Scratch::<f32>::take(Role::PackedA, 4);
        outer.fill(1.0);
        let mut inner = Scratch::<f32>::take(Role::PackedA, 4);
        inner.fill(2.0);
        assert_eq!(*outer, [1.0; 4]);
        drop(inner);
        drop(outer);
        // The slot kept a buffer: the next user sees the last user's values.
        let again = Scratch::<f32>::take(Role::PackedA, 2);
        assert!(*again == [1.0; 2] || *again == [2.0; 2]);
        assert_eq!(again.len(), 2);
    }
}
