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
import ctypes
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "reference"))
from sigma_reparam import ViTLite  # noqa: E402  (the shared official-semantics model)


def openblas_core():
    """The kernels the OpenBLAS that torch loaded picked on this CPU (its
    openblas_get_corename), or "none" when torch runs without OpenBLAS."""
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "libopenblas" in line}
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib.openblas_get_corename().decode()
        except (OSError, AttributeError):
            continue
    return "none"


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
                          "torch": torch.__version__, "openblas_core": openblas_core(),
                          "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE", "")}),
              flush=True)


if __name__ == "__main__":
    main()
