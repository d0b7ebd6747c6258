"""torchvision's speed at MSN's views, beside `msn bench --data`.

The views MSN's reference makes for ViT-S/16 (its data_manager, torchvision
on PIL images): per image one target and one anchor view (RandomResizedCrop
224, scale 0.3-1) and 10 focal views (RandomResizedCrop 96, scale 0.05-0.3),
each with a horizontal flip, ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8,
RandomGrayscale 0.2, PIL Gaussian blur with p 0.5 (radius U[0.1, 2]),
ToTensor and Normalize. Images are opened and decoded per view set, as a
DataLoader worker does. One process, one thread by default (a DataLoader
worker's share); prints images per second (median over the timed batches).

    python tools/reference/views_throughput.py DIR [--batch 16] [--batches 8] [--threads 1]
"""
import argparse
import os
import random
import statistics
import time

import torch
from PIL import Image, ImageFilter
from torchvision import transforms


class GaussianBlur:
    """MSN's blur: PIL's GaussianBlur with a radius drawn from U[0.1, 2], with probability p."""

    def __init__(self, p=0.5, radius_min=0.1, radius_max=2.0):
        self.p, self.radius_min, self.radius_max = p, radius_min, radius_max

    def __call__(self, img):
        if random.random() > self.p:
            return img
        return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(self.radius_min, self.radius_max)))


def view(size, scale):
    return transforms.Compose([
        transforms.RandomResizedCrop(size, scale=scale, interpolation=transforms.InterpolationMode.BILINEAR),
        transforms.RandomHorizontalFlip(),
        transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        transforms.RandomGrayscale(p=0.2),
        GaussianBlur(p=0.5),
        transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="one sub-folder per class of JPEG/PNG images")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--focal-views", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    random.seed(0)
    torch.manual_seed(0)
    files = sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(args.folder)
        for name in names
        if name.lower().endswith((".jpg", ".jpeg", ".png")) and not name.startswith(".")
    )
    if not files:
        raise SystemExit(f"no JPEG or PNG files under {args.folder}")
    target, focal = view(224, (0.3, 1.0)), view(96, (0.05, 0.3))
    rates = []
    for b in range(args.warmup + args.batches):
        start = time.perf_counter()
        for i in range(args.batch):
            with open(files[(b * args.batch + i) % len(files)], "rb") as f:
                img = Image.open(f).convert("RGB")
            views = [target(img), target(img)] + [focal(img) for _ in range(args.focal_views)]
            assert len(views) == 2 + args.focal_views
        if b >= args.warmup:
            rates.append(args.batch / (time.perf_counter() - start))
    print(f"torchvision {torch.__version__.split('+')[0]} views, {args.threads} thread(s): "
          f"{statistics.median(rates):.1f} images/s (median of {len(rates)} batches of {args.batch}; "
          f"{min(rates):.1f} to {max(rates):.1f})")


if __name__ == "__main__":
    main()
