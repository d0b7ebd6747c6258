"""PyTorch's MSN training throughput, for `msn pretrain`'s presets.

The same network and step as `msn pretrain --preset P`, eager mode, on random
views (augmentation is excluded on both sides: the Rust loader prepares views
on its own thread):
- fmnist-tiny: ViT 64x4, 2 heads, patch 7 on 28x28 gray images; head
  64-1024-1024-128; 128 prototypes; batch 64 with 1 masked anchor view
  keeping 11 of 16 patches, 4 focal views of 14x14 and 1 target view;
- fmnist-tiny-v1 (the preset until 2026-11-30): ViT 192x6, 3 heads, patch 4;
  head 192-1024-1024-128; 512 prototypes; batch 128 with 1 masked anchor
  view keeping 34 of 49 patches, 4 focal views of 12x12 and 1 target view;
- msn-vit-small-16: ViT-S/16 (384x12, 6 heads) on 224x224 RGB; head
  384-2048-2048-256; 1024 prototypes; batch 64 with 1 masked anchor view
  keeping 166 of 196 patches, 10 focal views of 96x96 and 1 target view.
`--bf16` runs the step under torch.autocast(dtype=torch.bfloat16), as
`msn pretrain --precision bf16` does. Prints images per second (median over
the timed steps).

    python tools/reference/msn_throughput.py [--threads 2] [--steps 12]
    python tools/reference/msn_throughput.py --preset msn-vit-small-16 --device cuda [--bf16]
"""
import argparse
import copy
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from msn_torch import Network, sinkhorn

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--steps", type=int, default=12)
parser.add_argument("--warmup", type=int, default=2)
parser.add_argument("--preset", choices=["fmnist-tiny", "fmnist-tiny-v1", "msn-vit-small-16"], default="fmnist-tiny")
parser.add_argument("--device", default="cpu")
parser.add_argument("--batch", type=int, help="the preset's batch size unless given")
parser.add_argument("--bf16", action="store_true", help="matrix products in bf16 (autocast)")
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)
DEV = torch.device(args.device)

PRESETS = {
    # fmnist-tiny since 2026-11-30 (msn/presets/fmnist-tiny.toml): ViT 64x4, 2 heads, patch 7.
    "fmnist-tiny": dict(net=dict(width=64, depth=4, heads=2, patch=7), chans=1, size=28, focal=4, focal_size=14,
                        keep=11, batch=64, K=128, out=128),
    # The first fmnist-tiny (tests/fixtures/fmnist-tiny-v1.toml): `msn bench --config` that file beside this.
    "fmnist-tiny-v1": dict(net=dict(), chans=1, size=28, focal=4, focal_size=12, keep=34, batch=128, K=512, out=128),
    "msn-vit-small-16": dict(
        net=dict(width=384, depth=12, heads=6, hidden=2048, out=256, img_size=224, patch=16, in_chans=3),
        chans=3, size=224, focal=10, focal_size=96, keep=166, batch=64, K=1024, out=256),
}
P = PRESETS[args.preset]
B, FOCAL, K = args.batch or P["batch"], P["focal"], P["K"]
C, S, FS, GRID = P["chans"], P["size"], P["focal_size"], (P["size"] // P["net"].get("patch", 4)) ** 2


anchor = Network(**P["net"]).to(DEV).train()
target = copy.deepcopy(anchor)
for p in target.parameters():
    p.requires_grad_(False)
prototypes = nn.Parameter(torch.empty(K, P["out"], device=DEV).uniform_(-1 / 16, 1 / 16))
opt = torch.optim.AdamW([{"params": anchor.parameters()}, {"params": [prototypes], "weight_decay": 0.0}], lr=1e-3)


def step():
    views_t, views_a = torch.randn(B, C, S, S, device=DEV), torch.randn(B, C, S, S, device=DEV)
    focal = torch.randn(FOCAL * B, C, FS, FS, device=DEV)
    keep = torch.randperm(GRID, device=DEV)[:P["keep"]]
    # Autocast covers the whole forward pass, as --precision bf16 covers every product of ours.
    with torch.autocast(DEV.type, dtype=torch.bfloat16, enabled=args.bf16):
        z = torch.cat([anchor(views_a, keep), anchor(focal)], dim=0)
        with torch.no_grad():
            h = target(views_t)
        protos = F.normalize(prototypes, dim=1)
        probs = F.softmax(F.normalize(z, dim=1) @ protos.T / 0.1, dim=1)
        with torch.no_grad():
            q = F.softmax(F.normalize(h, dim=1) @ protos.T / 0.025, dim=1)
            q = sinkhorn(q).repeat(1 + FOCAL, 1)
        ce = torch.mean(torch.sum(-q * torch.log(probs), dim=1))
        avg = probs.mean(dim=0)
        loss = ce + torch.sum(avg * torch.log(avg)) + math.log(K)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(anchor.parameters(), 3.0)
    opt.step()
    with torch.no_grad():
        for pt, pa in zip(target.parameters(), anchor.parameters()):
            pt.mul_(0.996).add_(0.004 * pa)
    return loss.item()


times = []
for i in range(args.warmup + args.steps):
    start = time.perf_counter()
    step()
    if i >= args.warmup:
        times.append(time.perf_counter() - start)
median = statistics.median(times)
where = f"{args.threads} threads" if DEV.type == "cpu" else torch.cuda.get_device_name(DEV)
precision = "bf16 autocast" if args.bf16 else "f32"
print(f"pytorch {torch.__version__} eager, {args.preset}, batch {B}, {precision}, {where}: "
      f"{median:.3f} s/step, {B / median:.1f} images/s (median of {len(times)} steps)")
