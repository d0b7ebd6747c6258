"""The fmnist-tiny MSN network and Sinkhorn in PyTorch, shared by the
reference scripts (throughput and training). Written from msn-spec.md."""
import functools
import math
from collections import OrderedDict

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F


class Network(nn.Module):
    """A ViT with MSN's projection head; by default fmnist-tiny's: ViT 192x6 (3 heads, patch 4,
    28x28 gray), head 192-1024-1024-128."""

    def __init__(self, width=192, depth=6, heads=3, hidden=1024, out=128, img_size=28, patch=4, in_chans=1):
        super().__init__()
        self.grid = img_size // patch
        self.encoder = timm.models.vision_transformer.VisionTransformer(
            img_size=img_size, patch_size=patch, in_chans=in_chans, embed_dim=width, depth=depth, num_heads=heads, mlp_ratio=4.0,
            qkv_bias=True, num_classes=0, norm_layer=functools.partial(nn.LayerNorm, eps=1e-6))
        self.head = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(width, hidden)), ("bn1", nn.BatchNorm1d(hidden)), ("gelu1", nn.GELU()),
            ("fc2", nn.Linear(hidden, hidden)), ("bn2", nn.BatchNorm1d(hidden)), ("gelu2", nn.GELU()),
            ("fc3", nn.Linear(hidden, out))]))

    def msn_init(self):
        """MSN's initialisation: trunc-normal 0.02 linears and embeddings, Kaiming patch embedding."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02, a=-2, b=2)
                nn.init.zeros_(m.bias)
        nn.init.kaiming_normal_(self.encoder.patch_embed.proj.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.encoder.patch_embed.proj.bias)
        nn.init.trunc_normal_(self.encoder.pos_embed, std=0.02, a=-2, b=2)
        nn.init.trunc_normal_(self.encoder.cls_token, std=0.02, a=-2, b=2)
        return self

    def forward(self, x, keep=None):
        """Patch embed, CLS, pos-embed (bicubic-resized by size for other grids), token drop, blocks, norm, head."""
        enc = self.encoder
        t = enc.patch_embed.proj(x).flatten(2).transpose(1, 2)
        g0, g = self.grid, int(math.isqrt(t.shape[1]))
        pos = enc.pos_embed
        if g != g0:
            grid = pos[:, 1:].reshape(1, g0, g0, -1).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, size=(g, g), mode="bicubic", align_corners=False)
            pos = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, g * g, -1)], dim=1)
        h = torch.cat([enc.cls_token.expand(x.shape[0], -1, -1), t], dim=1) + pos
        if keep is not None:
            h = h[:, torch.cat([torch.zeros(1, dtype=torch.long, device=keep.device), keep + 1])]
        for blk in enc.blocks:
            h = blk(h)
        return self.head(enc.norm(h)[:, 0])


def sinkhorn(q, iters=3):
    """MSN's Sinkhorn on probabilities q [B, K]: rows sum to 1, prototypes get B/K each."""
    q = q.T / q.sum()
    k, b = q.shape
    for _ in range(iters):
        q = q / q.sum(dim=1, keepdim=True) / k
        q = q / q.sum(dim=0, keepdim=True) / b
    return (q * b).T
