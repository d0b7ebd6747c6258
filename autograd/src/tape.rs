//! The tape: recording nodes and running them in reverse.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::{BoxError, Error, Gradients, Result, Value};

/// A backward rule: given the gradient of the op's output, the gradients of its
/// inputs, in order (`None` where an input needs none). It owns the state it
/// saved during the forward pass, and is dropped (freeing it) once it has run.
pub type BackwardFn<V> =
    Box<dyn FnOnce(&V) -> std::result::Result<Vec<Option<V>>, BoxError> + Send + 'static>;

enum Rule<V> {
    Leaf,
    /// Recorded by an op that has no backward: an error if a gradient reaches it.
    Missing,
    Pending(BackwardFn<V>),
    Done,
}

struct Node<V> {
    op: &'static str,
    /// The node id and shape of each input; `None` for inputs not on the tape.
    inputs: Vec<Option<(usize, Vec<usize>)>>,
    rule: Rule<V>,
}

struct Inner<V> {
    nodes: Vec<Node<V>>,
    has_run: bool,
}

/// A tape of recorded operations, owned by the caller for one step.
///
/// Cloning a `Tape` clones a handle to the same tape.
pub struct Tape<V> {
    inner: Arc<Mutex<Inner<V>>>,
}

impl<V> Clone for Tape<V> {
    fn clone(&self) -> Self {
        Tape {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// A value's place on a tape.
pub struct Var<V> {
    tape: Tape<V>,
    id: usize,
}

impl<V> Clone for Var<V> {
    fn clone(&self) -> Self {
        Var {
            tape: self.tape.clone(),
            id: self.id,
        }
    }
}

impl<V> fmt::Debug for Var<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Var({})", self.id)
    }
}

impl<V> Var<V> {
    pub fn id(&self) -> usize {
        self.id
    }
    pub fn tape(&self) -> &Tape<V> {
        &self.tape
    }
}

impl<V: Value> Default for Tape<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Value> Tape<V> {
    pub fn new() -> Self {
        Tape {
            inner: Arc::new(Mutex::new(Inner {
                nodes: Vec::new(),
                has_run: false,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<V>> {
        // A panic inside a backward rule cannot leave the node list half-written,
        // so a poisoned lock is still safe to use.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether two handles point to the same tape.
    pub fn same_as(&self, other: &Tape<V>) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Number of recorded nodes (leaves included).
    pub fn len(&self) -> usize {
        self.lock().nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of backward rules still holding saved state.
    pub fn pending_rules(&self) -> usize {
        self.lock()
            .nodes
            .iter()
            .filter(|n| matches!(n.rule, Rule::Pending(_)))
            .count()
    }

    fn push(
        &self,
        op: &'static str,
        inputs: Vec<Option<(usize, Vec<usize>)>>,
        rule: Rule<V>,
    ) -> usize {
        let mut inner = self.lock();
        inner.nodes.push(Node { op, inputs, rule });
        inner.nodes.len() - 1
    }

    /// Records `value` as a leaf (a parameter or an input whose gradient is wanted)
    /// and returns it tracked. A value already on a tape is cut off it first.
    pub fn watch(&self, value: &V) -> V {
        let id = self.push("leaf", Vec::new(), Rule::Leaf);
        value.detach().with_var(Var {
            tape: self.clone(),
            id,
        })
    }

    /// The tape that the tracked inputs of an op were recorded on, if any.
    fn tape_of(inputs: &[&V]) -> Result<Option<Tape<V>>> {
        let mut found: Option<Tape<V>> = None;
        for var in inputs.iter().filter_map(|v| v.var()) {
            match &found {
                None => found = Some(var.tape.clone()),
                Some(t) if !t.same_as(&var.tape) => return Err(Error::MixedTapes),
                Some(_) => {}
            }
        }
        Ok(found)
    }

    fn input_slots(inputs: &[&V]) -> Vec<Option<(usize, Vec<usize>)>> {
        inputs
            .iter()
            .map(|v| v.var().map(|var| (var.id, v.shape())))
            .collect()
    }

    /// Records an op computed from `inputs` whose result is `output`. When no input
    /// is on a tape, nothing is recorded and `backward` is dropped unused.
    pub fn record(
        op: &'static str,
        inputs: &[&V],
        output: V,
        backward: BackwardFn<V>,
    ) -> Result<V> {
        Self::record_rule(op, inputs, output, Rule::Pending(backward))
    }

    /// Records an op that has no backward rule: `backward` fails if a gradient
    /// reaches it, naming the op.
    pub fn record_without_backward(op: &'static str, inputs: &[&V], output: V) -> Result<V> {
        Self::record_rule(op, inputs, output, Rule::Missing)
    }

    fn record_rule(op: &'static str, inputs: &[&V], output: V, rule: Rule<V>) -> Result<V> {
        let Some(tape) = Self::tape_of(inputs)? else {
            return Ok(output.detach());
        };
        // A tape that has run backward is finished: values computed from its
        // tracked tensors afterwards are plain values.
        if tape.lock().has_run {
            return Ok(output.detach());
        }
        let id = tape.push(op, Self::input_slots(inputs), rule);
        Ok(output.detach().with_var(Var { tape, id }))
    }

    /// Backpropagates from a scalar `loss` (one element) and returns the
    /// gradients of every leaf it depends on.
    pub fn backward(&self, loss: &V) -> Result<Gradients<V>> {
        let shape = loss.shape();
        if shape.iter().product::<usize>() != 1 {
            return Err(Error::NonScalarLoss { shape });
        }
        self.backward_with(loss, loss.ones_like())
    }

    /// Backpropagates from `output` with `seed` as its gradient (a vector-Jacobian product).
    pub fn backward_with(&self, output: &V, seed: V) -> Result<Gradients<V>> {
        let root = match output.var() {
            Some(var) if var.tape.same_as(self) => var.id,
            _ => return Err(Error::NotOnTape),
        };
        if seed.shape() != output.shape() {
            return Err(Error::SeedShape {
                expected: output.shape(),
                got: seed.shape(),
            });
        }
        {
            let mut inner = self.lock();
            if inner.has_run {
                return Err(Error::AlreadyRun);
            }
            inner.has_run = true;
        }
        let mut grads: Vec<Option<V>> = (0..=root).map(|_| None).collect();
        grads[root] = Some(seed.detach());
        let mut leaves = Gradients::new(self.clone());
        for id in (0..=root).rev() {
            // An intermediate gradient is taken, not copied: it is freed once passed on.
            let Some(grad) = grads[id].take() else {
                continue;
            };
            let (op, inputs, rule) = {
                let mut inner = self.lock();
                let node = &mut inner.nodes[id];
                (
                    node.op,
                    std::mem::take(&mut node.inputs),
                    std::mem::replace(&mut node.rule, Rule::Done),
                )
            };
            // The lock is released here: a backward rule runs ops of its own.
            let backward = match rule {
                Rule::Leaf => {
                    leaves.insert(id, grad);
                    continue;
                }
                Rule::Missing => return Err(Error::NoBackward { op }),
                Rule::Done => continue,
                Rule::Pending(backward) => backward,
            };
            let input_grads = backward(&grad).map_err(|source| Error::Backward { op, source })?;
            drop(grad);
            if input_grads.len() != inputs.len() {
                return Err(Error::GradientCount {
                    op,
                    expected: inputs.len(),
                    got: input_grads.len(),
                });
            }
            for (index, (slot, input_grad)) in inputs.into_iter().zip(input_grads).enumerate() {
                let (Some((input_id, input_shape)), Some(input_grad)) = (slot, input_grad) else {
                    continue;
                };
                let input_grad = unbroadcast(op, index, input_grad, &input_shape)?;
                grads[input_id] = Some(match grads[input_id].take() {
                    None => input_grad,
                    Some(existing) => existing.add_grad(&input_grad).map_err(Error::Value)?,
                });
            }
        }
        Ok(leaves)
    }
}

/// Sums a gradient back over the axes its input was broadcast along: the one
/// place where broadcasting is undone, so that no op has to.
fn unbroadcast<V: Value>(op: &'static str, input: usize, grad: V, shape: &[usize]) -> Result<V> {
    let grad_shape = grad.shape();
    if grad_shape == shape {
        return Ok(grad.detach());
    }
    match grad.sum_to_shape(shape).map_err(Error::Value)? {
        Some(g) => Ok(g.detach()),
        None => Err(Error::GradientShape {
            op,
            input,
            expected: shape.to_vec(),
            got: grad_shape,
        }),
    }
}
