//! One MSN network: the encoder and its projection head (the anchor and the
//! target are each one of these).

use ops::{BatchStats, Tensor};
use vit::VisionTransformer;

use crate::dist::Group;
use crate::head::ProjectionHead;
use crate::Result;

#[derive(Clone, Debug)]
pub struct MsnNetwork {
    pub encoder: VisionTransformer,
    pub head: ProjectionHead,
}

impl MsnNetwork {
    /// Images → head outputs `[B, d]`, with token dropping when `keep` is given.
    pub fn forward(
        &self,
        images: &Tensor,
        keep: Option<&[usize]>,
    ) -> Result<(Tensor, [BatchStats; 2])> {
        self.forward_in(images, keep, &Group::single())
    }

    /// [`MsnNetwork::forward`] on one rank's share of a global batch (SyncBN in the head).
    pub fn forward_in(
        &self,
        images: &Tensor,
        keep: Option<&[usize]>,
        group: &Group,
    ) -> Result<(Tensor, [BatchStats; 2])> {
        let out = self.encoder.forward(images, keep)?;
        self.head.forward_in(&out.cls, group)
    }

    /// Visits every trainable parameter: `encoder.<timm name>`, then `head.<name>`.
    pub fn visit(&mut self, f: &mut dyn FnMut(String, &mut Tensor)) {
        self.encoder.visit("encoder", f);
        self.head.visit("head", f);
    }

    /// Visits the parameters and the batch-norm running statistics.
    pub fn visit_all(&mut self, f: &mut dyn FnMut(String, &mut Tensor)) {
        self.visit(f);
        self.head.visit_buffers("head", f);
    }

    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        self.clone()
            .visit(&mut |name, t| out.push((name, t.clone())));
        out
    }
}
