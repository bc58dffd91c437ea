#!/usr/bin/python3
"""PyTorch's time for one training step of the same ViT-lite as bench_train:
28x28x1, patch 4 (49 patches + CLS), D 128, depth 6, 4 heads, MLP 256,
batch 128, 10 classes, no LayerNorm, every linear an SNLinear with the
official semantics (apple/ml-sigma-reparam vision/layers.py: SVD init, one
power step per training forward, W / sigma * gamma), SGD momentum 0.9.

Prints JSON lines like bench_train --json. Needs Debian's python3-torch:
    /usr/bin/python3 bench/torch_train_step.py [--threads N] [--repeats N]
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F


class SNLinear(torch.nn.Linear):
    """sigmaReparam linear, as the official code computes it."""

    def __init__(self, in_f, out_f):
        super().__init__(in_f, out_f)
        torch.nn.init.trunc_normal_(self.weight, std=0.02)
        torch.nn.init.zeros_(self.bias)
        with torch.no_grad():
            _, s, vh = torch.linalg.svd(self.weight, full_matrices=False)
        self.register_buffer("u", vh[0].clone())
        self.gamma = torch.nn.Parameter(s[0].clone().reshape(1))

    def forward(self, x):
        with torch.no_grad():
            v = F.normalize(self.weight.mv(self.u), dim=0)
            u = F.normalize(self.weight.T.mv(v), dim=0)
            if self.training:
                self.u.copy_(u)
        sigma = torch.einsum("c,cd,d->", v, self.weight, u)
        return F.linear(x, self.weight / sigma * self.gamma, self.bias)


class Block(torch.nn.Module):
    def __init__(self, dim, heads, mlp):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = SNLinear(dim, 3 * dim), SNLinear(dim, dim)
        self.fc1, self.fc2 = SNLinear(dim, mlp), SNLinear(mlp, dim)

    def forward(self, x):
        B, T, D = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        a = (qkv[0] @ qkv[1].transpose(-2, -1)) * (D // self.heads) ** -0.5
        o = (a.softmax(-1) @ qkv[2]).transpose(1, 2).reshape(B, T, D)
        x = x + self.proj(o)
        return x + self.fc2(F.gelu(self.fc1(x)))


class ViTLite(torch.nn.Module):
    def __init__(self, dim=128, depth=6, heads=4, mlp=256, patch=4, classes=10):
        super().__init__()
        self.patch = patch
        self.embed = SNLinear(patch * patch, dim)
        self.cls = torch.nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = torch.nn.Parameter(torch.randn(1, 50, dim) * 0.02)
        self.blocks = torch.nn.ModuleList(Block(dim, heads, mlp) for _ in range(depth))
        self.head = SNLinear(dim, classes)

    def forward(self, img):
        B, p = img.shape[0], self.patch
        x = img.unfold(2, p, p).unfold(3, p, p).reshape(B, -1, p * p)
        x = torch.cat([self.cls.expand(B, -1, -1), self.embed(x)], 1) + self.pos
        for blk in self.blocks:
            x = blk(x)
        return self.head(x[:, 0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, action="append")
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    torch.manual_seed(0)
    images, labels = torch.randn(128, 1, 28, 28), torch.arange(128) % 10
    for threads in args.threads or [1, 2]:
        torch.set_num_threads(threads)
        model = ViTLite()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step():
            opt.zero_grad(set_to_none=False)
            F.cross_entropy(model(images), labels).backward()
            opt.step()

        step()  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        sec = statistics.median(times)
        print(json.dumps({"bench": "torch_train_step", "threads": threads, "batch": 128,
                          "step_ms": round(sec * 1e3, 3), "images_per_s": round(128 / sec, 1),
                          "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
