"""The PyTorch reference run: MSN on Fashion-MNIST with the fmnist-tiny preset,
for comparing with `msn pretrain` at equal wall-clock time and evaluating both
the same way (`msn eval`).

Same network, views, loss, optimizer, schedules and EMA as the Rust trainer
(msn-spec.md; the preset in msn/src/config.rs), torchvision's augmentations on
a DataLoader worker. At the end it writes the target encoder under timm's key
names, which `msn eval` reads as plain timm weights:

    python tools/reference/msn_train_reference.py --steps 330 --out runs/torch
    msn eval --checkpoint runs/torch/target_encoder.safetensors --heads 3 --protocol fewshot
"""
import argparse
import copy
import gzip
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms.v2 as T
from safetensors.torch import save_file

from msn_torch import Network, sinkhorn

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--out", default="runs/torch")
parser.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "../../data/fashion-mnist"))
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(args.seed)

B, FOCAL, D, K, DROP = 128, 4, 192, 512, 0.3
TAU, SHARPEN, LAMBDA, CLIP = 0.1, 0.25, 1.0, 3.0
LR, START_LR, FINAL_LR, WD0, WD1, M0, M1, STRETCH = 1e-3, 2e-4, 1e-6, 0.04, 0.4, 0.996, 1.0, 1.25
MEAN, STD = 0.2860, 0.3530


def read_images(path):
    with gzip.open(path) as f:
        raw = f.read()
    n, rows, cols = np.frombuffer(raw[4:16], dtype=">u4")
    return torch.from_numpy(np.frombuffer(raw[16:], dtype=np.uint8).reshape(n, 1, rows, cols).copy())


images = read_images(os.path.join(args.data, "train-images-idx3-ubyte.gz"))


def view(size, scale):
    return T.Compose([
        T.RandomResizedCrop(size, scale=scale, interpolation=T.InterpolationMode.BILINEAR, antialias=False),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(brightness=0.4, contrast=0.4)], p=0.8),
        T.ToDtype(torch.float32, scale=True),
        T.Normalize([MEAN], [STD]),
    ])


class Views(torch.utils.data.Dataset):
    def __init__(self):
        self.big, self.small = view(28, (0.3, 1.0)), view(12, (0.05, 0.3))

    def __len__(self):
        return len(images)

    def __getitem__(self, i):
        img = images[i]
        return [self.big(img), self.big(img)] + [self.small(img) for _ in range(FOCAL)]


anchor = Network().msn_init().train()
target = copy.deepcopy(anchor)
for p in target.parameters():
    p.requires_grad_(False)
prototypes = nn.Parameter(torch.empty(K, 128).uniform_(-1 / 16, 1 / 16))
decay = [p for n, p in anchor.named_parameters() if "bias" not in n and "bn" not in n and p.ndim > 1]
rest = [p for n, p in anchor.named_parameters() if not ("bias" not in n and "bn" not in n and p.ndim > 1)]
opt = torch.optim.AdamW([{"params": decay}, {"params": rest, "weight_decay": 0.0},
                         {"params": [prototypes], "weight_decay": 0.0}], lr=LR)
horizon, warmup = int(STRETCH * args.steps), round(0.1 * args.steps)
loader = torch.utils.data.DataLoader(Views(), batch_size=B, shuffle=True, drop_last=True, num_workers=1,
                                     persistent_workers=True, prefetch_factor=4)
os.makedirs(args.out, exist_ok=True)
started, step = time.time(), 0
while step < args.steps:
    for views in loader:
        if step >= args.steps:
            break
        t1 = step + 1
        lr = START_LR + t1 / warmup * (LR - START_LR) if t1 < warmup else max(
            FINAL_LR, FINAL_LR + (LR - FINAL_LR) * 0.5 * (1 + math.cos(math.pi * (t1 - warmup) / (horizon - warmup))))
        wd = WD1 + (WD0 - WD1) * 0.5 * (1 + math.cos(math.pi * t1 / horizon))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.param_groups[0]["weight_decay"] = wd
        keep = torch.randperm(49)[:int(49 * (1 - DROP))]
        z = torch.cat([anchor(views[1], keep), anchor(torch.cat(views[2:], dim=0))], dim=0)
        with torch.no_grad():
            h = target(views[0])
        protos = F.normalize(prototypes, dim=1)
        logits = F.normalize(z, dim=1) @ protos.T / TAU
        with torch.no_grad():
            q = sinkhorn(F.softmax(F.normalize(h, dim=1) @ protos.T / (TAU * SHARPEN), dim=1)).repeat(1 + FOCAL, 1)
        ce = torch.mean(torch.sum(-q * F.log_softmax(logits, dim=1), dim=1))
        avg = F.softmax(logits, dim=1).mean(dim=0)
        loss = ce + LAMBDA * (torch.sum(avg * torch.log(avg)) + math.log(K))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(anchor.parameters(), CLIP)
        opt.step()
        m = M0 + step * (M1 - M0) / horizon
        with torch.no_grad():
            for pt, pa in zip(target.parameters(), anchor.parameters()):
                pt.mul_(m).add_((1 - m) * pa)
        step += 1
        if step % 25 == 0 or step == args.steps:
            used = len(set(q[:B].argmax(dim=1).tolist()))
            print(f"step {step} loss {loss.item():.4f} protos_used {used} elapsed {time.time() - started:.1f} s", flush=True)
elapsed = time.time() - started
state = {k: v.contiguous() for k, v in target.encoder.state_dict().items()}
save_file(state, os.path.join(args.out, "target_encoder.safetensors"))
print(f"done: {args.steps} steps in {elapsed:.1f} s ({B * args.steps / elapsed:.1f} images/s); wrote {args.out}/target_encoder.safetensors")
