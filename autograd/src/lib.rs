//! A tape-based reverse-mode automatic differentiation engine.
//!
//! The engine knows nothing about tensor math: it is generic over a [`Value`]
//! (a tensor in `ops`, a plain `f64` in this crate's tests). A [`Tape`] is an
//! append-only list of nodes owned by the caller for one step. Recording an op
//! appends a node holding its backward rule and only the state that rule needs;
//! [`Tape::backward`] walks the list in reverse (already a topological order),
//! accumulates gradients of values used more than once, sums gradients back over
//! broadcast axes in one place, frees each node's saved state as soon as it has
//! run, and returns the gradients of the leaves.
//!
//! [`gradcheck`] compares analytic gradients with central finite differences.

mod error;
mod gradcheck;
mod gradients;
mod tape;
mod value;

pub use error::{BoxError, Error, Result};
pub use gradcheck::{check_gradients, GradCheckReport, Tolerance, WorstError};
pub use gradients::Gradients;
pub use tape::{BackwardFn, Tape, Var};
pub use value::{Probe, Value};
