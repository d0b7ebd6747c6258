"""One full MSN step in PyTorch, written from msn-spec.md, for the Rust parity test.

Builds a tiny ViT (timm) + projection head + prototypes with fixed random
weights, fixed views and a fixed patch-drop mask, then runs exactly one MSN
update: anchor forward (masked view, then the focal views, one head call per
resolution group), target forward under no_grad, the loss (cross-entropy
against sharpened, Sinkhorn-balanced targets plus me-max), backward, gradient
clipping over encoder and head, AdamW with MSN's parameter groups and the
schedules' values at step 0, and the EMA update of the target.

    python tools/reference/msn_step_fixture.py   # writes tests/fixtures/msn_step.safetensors (float64)

Names follow the Rust trainer: `encoder.<timm name>`, `head.fc1.weight`, ...,
`prototypes`. Prefixes: `init.`, `grad.`, `after_adam.`, `after_ema.`.
"""
import copy
import math
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

from msn_torch import Network, sinkhorn

torch.manual_seed(0)
B, FOCAL, D, K, HID, OUT = 4, 2, 24, 8, 32, 16
STEPS = 10  # schedules: total steps of the run this update belongs to
TAU, T, LAMBDA, CLIP = 0.1, 0.25, 1.0, 3.0
LR, START_LR, FINAL_LR, WARMUP = 1e-3, 2e-4, 1e-6, 1  # warmup = round(0.1 * 10)
WD0, WD1, M0, M1, STRETCH = 0.04, 0.4, 0.996, 1.0, 1.25


anchor = Network(width=D, depth=2, heads=3, hidden=HID, out=OUT)
with torch.no_grad():  # every parameter non-trivial
    for p in anchor.parameters():
        p.add_(0.05 * torch.randn_like(p))
# The step runs in float64, so that the comparison sees the algorithm, not f32
# rounding (several gradients are zero analytically, e.g. biases followed by
# batch norm, and in f32 they are pure rounding noise that Adam would amplify).
anchor.double().train()
target = copy.deepcopy(anchor)
prototypes = nn.Parameter(torch.empty(K, OUT).uniform_(-1 / 16, 1 / 16).double())

views = {
    "view.target": torch.randn(B, 1, 28, 28).double(),
    "view.anchor": torch.randn(B, 1, 28, 28).double(),
    "view.focal": torch.randn(FOCAL * B, 1, 12, 12).double(),
}
keep = torch.randperm(49)[:34]


def named(net):
    out = OrderedDict()
    for name, p in net.named_parameters():
        out[name] = p
    return out


init = {f"init.{k}": v.detach().clone() for k, v in named(anchor).items()}
init["init.prototypes"] = prototypes.detach().clone()

# Anchor: masked view, then the focal views, each through the head on its own.
z = torch.cat([anchor(views["view.anchor"], keep), anchor(views["view.focal"])], dim=0)
with torch.no_grad():
    h = target(views["view.target"])


protos_n = F.normalize(prototypes, dim=1)
probs = F.softmax(F.normalize(z, dim=1) @ protos_n.T / TAU, dim=1)
with torch.no_grad():
    t_probs = F.softmax(F.normalize(h, dim=1) @ protos_n.T / TAU, dim=1)
    sharp = t_probs ** (1 / T)
    sharp = sharp / sharp.sum(dim=1, keepdim=True)
    targets = sinkhorn(sharp).repeat(1 + FOCAL, 1)
ce = torch.mean(torch.sum(-targets * torch.log(probs), dim=1))
avg = probs.mean(dim=0)
memax = torch.sum(avg * torch.log(avg)) + math.log(K)
loss = ce + LAMBDA * memax
loss.backward()

grads = {f"grad.{k}": v.grad.detach().clone() for k, v in named(anchor).items()}
grads["grad.prototypes"] = prototypes.grad.detach().clone()
norm = torch.nn.utils.clip_grad_norm_(anchor.parameters(), CLIP)

horizon = int(STRETCH * STEPS)
t1 = 1
lr = START_LR + (t1 / WARMUP) * (LR - START_LR) if t1 < WARMUP else max(
    FINAL_LR, FINAL_LR + (LR - FINAL_LR) * 0.5 * (1 + math.cos(math.pi * (t1 - WARMUP) / (horizon - WARMUP))))
wd = WD1 + (WD0 - WD1) * 0.5 * (1 + math.cos(math.pi * t1 / horizon))
decay = [p for n, p in anchor.named_parameters() if "bias" not in n and "bn" not in n and p.ndim > 1]
no_decay = [p for n, p in anchor.named_parameters() if not ("bias" not in n and "bn" not in n and p.ndim > 1)]
opt = torch.optim.AdamW([
    {"params": decay, "weight_decay": wd},
    {"params": no_decay, "weight_decay": 0.0},
    {"params": [prototypes], "weight_decay": 0.0},
], lr=lr)
opt.step()
after_adam = {f"after_adam.{k}": v.detach().clone() for k, v in named(anchor).items()}
after_adam["after_adam.prototypes"] = prototypes.detach().clone()

m = M0  # momentum of update 0
with torch.no_grad():
    for pt, pa in zip(target.parameters(), anchor.parameters()):
        pt.mul_(m).add_((1 - m) * pa)
after_ema = {f"after_ema.{k}": v.detach().clone() for k, v in named(target).items()}

out = {**init, **views, **grads, **after_adam, **after_ema,
       "view.keep": keep.float(), "out.z": z.detach(), "out.h": h,
       "loss.total": loss.detach().reshape(1), "loss.ce": ce.detach().reshape(1),
       "loss.memax": memax.detach().reshape(1), "grad_norm": norm.reshape(1),
       "lr": torch.tensor([lr], dtype=torch.float64), "wd": torch.tensor([wd], dtype=torch.float64)}
save_file({k: v.contiguous().double() for k, v in out.items()}, "tests/fixtures/msn_step.safetensors")
print(f"loss {loss.item():.6f} (ce {ce.item():.6f}, memax {memax.item():.6f}), grad norm {norm.item():.4f}, lr {lr:.3e}, wd {wd:.4f}")
