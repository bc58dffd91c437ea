#!/usr/bin/env python3
"""Checks vit-lite-train's safetensors files against PyTorch, both ways.

1. C -> PyTorch: vit-lite-train trains a small ViT-lite for an epoch and
   --export's it; the one PyTorch model of the official code
   (tests/reference/sigma_reparam.py's ViTLite, under the names of timm's
   ViT converted by apple/ml-sigma-reparam's convert_to_sn: SNLinear with
   SpectralNormedWeight) loads the file with
   load_state_dict(strict=True); its eval logits on the test set must match
   those of vit-lite-train --init-from FILE --eval-only --logits.
2. PyTorch -> C: a PyTorch-initialized model (the official init: u and
   sigma from the SVD, gamma = sigma) is written as safetensors, and
   vit-lite-train --init-from it must give the same logits.

Both within 1e-4, relative to the largest logit. Needs Debian's
python3-torch and python3-numpy and the Fashion-MNIST package; run with
/usr/bin/python3:
    /usr/bin/python3 experiments/torch_check.py build/examples/vit_lite/vit-lite-train
"""
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "reference"))
from sigma_reparam import ViTLite  # noqa: E402  (the one model of the official code)

DATA = "/usr/share/datasets/fashion-mnist"
DIM, DEPTH, HEADS, MLP, PATCH, CLASSES, IMAGE = 64, 2, 4, 128, 7, 10, 28
# The official model has no convolutional stem; its logits are one image's,
# without test-time flips, from the weights themselves, not an average.
FLAGS = ["--dim", str(DIM), "--depth", str(DEPTH), "--heads", str(HEADS),
         "--mlp-dim", str(MLP), "--patch", str(PATCH), "--threads", "2",
         "--stem", "0", "--qkv-sigma", "fused", "--ema", "0", "--no-tta-flip"]
TOLERANCE = 1e-4
DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "U64": np.uint64, "U8": np.uint8}


# ---- safetensors, by the format's description (no safetensors package) ----

def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        begin, end = e["data_offsets"]
        arr = np.frombuffer(data[begin:end], dtype=np.dtype(DTYPES[e["dtype"]]).newbyteorder("<"))
        out[name] = torch.from_numpy(arr.reshape(e["shape"]).copy())
    return out


def write_safetensors(path, tensors):
    header, blobs, at = {}, [], 0
    for name, t in tensors.items():
        raw = t.detach().contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


# ---- data, normalized as examples/vit_lite/data.c does ----

def idx_images(name):
    with gzip.open(os.path.join(DATA, name)) as f:
        raw = f.read()
    n, h, w = struct.unpack(">III", raw[4:16])
    return np.frombuffer(raw[16:], dtype=np.uint8).reshape(n, 1, h, w)


def test_images():
    train = idx_images("train-images-idx3-ubyte.gz").astype(np.float64) / 255.0
    mean = np.float32(train.mean())
    std = np.float32(np.sqrt((train * train).mean() - train.mean() ** 2))
    test = idx_images("t10k-images-idx3-ubyte.gz").astype(np.float32) / np.float32(255.0)
    return torch.from_numpy((test - mean) / std)


def vit():
    return ViTLite(dim=DIM, depth=DEPTH, heads=HEADS, mlp=MLP, patch=PATCH, classes=CLASSES,
                   image=IMAGE)


def c_logits(exe, model, out):
    subprocess.run([exe, *FLAGS, "--init-from", model, "--eval-only", "--logits", out],
                   check=True, stdout=subprocess.DEVNULL)
    return read_safetensors(out)["logits"]


def compare(what, ours, theirs):
    err = ((ours - theirs).abs().max() / theirs.abs().max()).item()
    agree = (ours.argmax(1) == theirs.argmax(1)).float().mean().item()
    print(f"{what}: max |difference| / max |logit| = {err:.2e} over {ours.shape[0]} images "
          f"(tolerance {TOLERANCE:.0e}); the predicted classes agree on {agree:.2%}")
    return err <= TOLERANCE


def main():
    exe = sys.argv[1] if len(sys.argv) > 1 else "build/examples/vit_lite/vit-lite-train"
    torch.manual_seed(0)
    torch.set_num_threads(2)
    images = test_images()
    ok = True
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        # 1. C -> PyTorch
        exported = os.path.join(tmp, "c.safetensors")
        subprocess.run([exe, *FLAGS, "--epochs", "1", "--export", exported], check=True,
                       stdout=subprocess.DEVNULL)
        model = vit().eval()
        model.load_state_dict(read_safetensors(exported), strict=True)
        ok &= compare("C -> PyTorch", c_logits(exe, exported, os.path.join(tmp, "c_logits")),
                      model(images))
        # 2. PyTorch -> C
        fresh = vit().eval()
        ours = os.path.join(tmp, "torch.safetensors")
        write_safetensors(ours, fresh.state_dict())
        ok &= compare("PyTorch -> C", c_logits(exe, ours, os.path.join(tmp, "t_logits")),
                      fresh(images))
    print("torch check:", "passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
