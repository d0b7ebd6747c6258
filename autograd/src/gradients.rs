//! The gradients of a tape's leaves, returned by `backward`.

use std::collections::HashMap;

use crate::{Tape, Value};

/// Gradients of the leaves that the loss depends on, looked up by the tracked value.
pub struct Gradients<V> {
    tape: Tape<V>,
    by_leaf: HashMap<usize, V>,
}

impl<V: Value> Gradients<V> {
    pub(crate) fn new(tape: Tape<V>) -> Self {
        Gradients {
            tape,
            by_leaf: HashMap::new(),
        }
    }

    pub(crate) fn insert(&mut self, leaf: usize, grad: V) {
        self.by_leaf.insert(leaf, grad);
    }

    /// The gradient of a watched value; `None` when the loss does not depend on it
    /// or it was not watched on this tape.
    pub fn get(&self, watched: &V) -> Option<&V> {
        let var = watched.var()?;
        if !var.tape().same_as(&self.tape) {
            return None;
        }
        self.by_leaf.get(&var.id())
    }

    /// Removes and returns the gradient of a watched value.
    pub fn take(&mut self, watched: &V) -> Option<V> {
        let var = watched.var()?;
        if !var.tape().same_as(&self.tape) {
            return None;
        }
        self.by_leaf.remove(&var.id())
    }

    pub fn len(&self) -> usize {
        self.by_leaf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_leaf.is_empty()
    }
}
