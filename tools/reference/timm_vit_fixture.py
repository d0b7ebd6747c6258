"""Writes tests/fixtures/timm_vit.safetensors: a small timm VisionTransformer's
state dict (as `safetensors.torch.save_file` writes it), a fixed input batch,
and timm's outputs for it, so that the Rust ViT can be checked against timm.

    python tools/reference/timm_vit_fixture.py   # needs torch, timm, safetensors

Outputs (float32):
  input            [2, 1, 28, 28]  the batch
  out.cls_prenorm  [2, D]          last block's CLS before the final norm
  out.cls          [2, D]          CLS after the final norm
  focal.input      [2, 1, 12, 12]  a smaller view (pos-embed resized 7x7 -> 3x3)
  focal.cls        [2, D]
  masked.keep      [K]             kept patch indices (as float)
  masked.cls       [2, D]          CLS after the final norm with only those patches
"""
import functools

import torch
import torch.nn.functional as F
import timm
from safetensors.torch import save_file

torch.manual_seed(0)
model = timm.models.vision_transformer.VisionTransformer(
    img_size=28, patch_size=4, in_chans=1, embed_dim=24, depth=2, num_heads=3,
    mlp_ratio=4.0, qkv_bias=True, num_classes=0, global_pool="token", class_token=True,
    norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6), dynamic_img_size=False,
)
# Make every parameter non-trivial (LayerNorm starts at 1/0, biases at 0).
with torch.no_grad():
    for p in model.parameters():
        p.add_(0.05 * torch.randn_like(p))
model.eval()


def forward(x, keep=None):
    """MSN's forward: patch embed, CLS, pos-embed (bicubic-resized by size), token drop, blocks."""
    b = x.shape[0]
    t = model.patch_embed.proj(x).flatten(2).transpose(1, 2)
    g0 = int((model.pos_embed.shape[1] - 1) ** 0.5)
    g = int(t.shape[1] ** 0.5)
    pos = model.pos_embed
    if g != g0:
        grid = pos[:, 1:].reshape(1, g0, g0, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(g, g), mode="bicubic", align_corners=False)
        pos = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, g * g, -1)], dim=1)
    h = torch.cat([model.cls_token.expand(b, -1, -1), t], dim=1) + pos
    if keep is not None:
        h = h[:, torch.cat([torch.zeros(1, dtype=torch.long), keep + 1])]
    for blk in model.blocks:
        h = blk(h)
    return h[:, 0], model.norm(h)[:, 0]


x = torch.randn(2, 1, 28, 28)
focal = torch.randn(2, 1, 12, 12)
keep = torch.randperm(49)[:34]
with torch.no_grad():
    pre, cls = forward(x)
    # The same through timm's own forward, to show that forward() is timm's model.
    assert torch.allclose(model.forward_features(x)[:, 0], cls, atol=1e-6)
    _, focal_cls = forward(focal)
    _, masked_cls = forward(x, keep)

state = {k: v.contiguous() for k, v in model.state_dict().items()}
save_file(state, "tests/fixtures/timm_vit_weights.safetensors")
io = {
    "input": x, "out.cls_prenorm": pre, "out.cls": cls,
    "focal.input": focal, "focal.cls": focal_cls,
    "masked.keep": keep.float(), "masked.cls": masked_cls,
}
save_file({k: v.contiguous() for k, v in io.items()}, "tests/fixtures/timm_vit_io.safetensors")
print(sorted(state.keys())[:6], "...", len(state), "tensors")
