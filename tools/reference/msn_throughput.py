"""PyTorch's training throughput for the fmnist-tiny preset on this machine.

The same network and step as `msn pretrain --preset fmnist-tiny` (ViT 192x6,
3 heads, patch 4 on 28x28 gray images; head 192-1024-1024-128; 512
prototypes; batch 128 with 1 masked anchor view keeping 34 of 49 patches, 4
focal views of 12x12 and 1 target view), eager mode, float32, on random views
(augmentation is excluded on both sides: the Rust loader prepares views on its
own thread). Prints images per second (median over the timed steps).

    python tools/reference/msn_throughput.py [--threads 2] [--steps 12]
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
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)

B, FOCAL, D, K = 128, 4, 192, 512


anchor = Network().train()
target = copy.deepcopy(anchor)
for p in target.parameters():
    p.requires_grad_(False)
prototypes = nn.Parameter(torch.empty(K, 128).uniform_(-1 / 16, 1 / 16))
opt = torch.optim.AdamW([{"params": anchor.parameters()}, {"params": [prototypes], "weight_decay": 0.0}], lr=1e-3)


def step():
    views_t, views_a = torch.randn(B, 1, 28, 28), torch.randn(B, 1, 28, 28)
    focal = torch.randn(FOCAL * B, 1, 12, 12)
    keep = torch.randperm(49)[:34]
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
print(f"pytorch {torch.__version__} eager, {args.threads} threads: {median:.3f} s/step, {B / median:.1f} images/s (median of {len(times)} steps)")
