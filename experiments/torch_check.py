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

3. The weight average: a run with --ema exports the model it evaluated
   (the average, its sigma recomputed); the PyTorch model's logits from
   that file must match those of the run's checkpoint evaluated as the
   run did (--resume --eval-only --logits, the average swapped in).
4. Folded: the same run's --export-folded file (gamma / sigma * W baked
   into each weight) loads into PlainViTLite (nn.Linear, nn.Conv2d) and
   must give those logits too.
5. The trainer's default model: a convolutional stem and separate q, k, v
   sigmas (tests/reference/sigma_reparam.py's DefaultViTLite), both ways
   as in 1 and 2: the default stem (48/2,96/2,128/2,128, whose last map is
   cut into 1 x 1 patches) and a stem whose map is cut into 7 x 7 patches
   of 8 channels (where the patch embedding's columns are permuted from
   our channels-last order to PyTorch's (c, y, x)); and its folded file
   into the plain model (nn.Conv2d, nn.Linear q, k, v).

All within 1e-4, relative to the largest logit. Needs Debian's
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
from sigma_reparam import DefaultViTLite, PlainViTLite, ViTLite  # noqa: E402  (the one model of the official code)

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


def default_vit(stem, plain=False):
    return DefaultViTLite(dim=DIM, depth=DEPTH, heads=HEADS, mlp=MLP, patch=PATCH, classes=CLASSES,
                          image=IMAGE, stem=stem, qkv="separate", plain=plain)


def stem_text(stem):
    return ",".join(f"{k}/{s}" if s != 1 else str(k) for k, s in stem)


def plain_vit():
    return PlainViTLite(dim=DIM, depth=DEPTH, heads=HEADS, mlp=MLP, patch=PATCH, classes=CLASSES,
                        image=IMAGE)


def c_logits(exe, model, out, how="--init-from", flags=()):
    subprocess.run([exe, *FLAGS, *flags, how, model, "--eval-only", "--logits", out],
                   check=True, stdout=subprocess.DEVNULL)
    return read_safetensors(out)["logits"]


def metadata(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)).get("__metadata__", {})


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
        # 3. the weight average, and 4. folded, against what the run evaluated
        ema = ["--ema", "0.9"]
        ckpt, averaged = os.path.join(tmp, "ema.ckpt"), os.path.join(tmp, "ema.safetensors")
        folded = os.path.join(tmp, "folded.safetensors")
        subprocess.run([exe, *FLAGS, *ema, "--epochs", "1", "--checkpoint", ckpt, "--export",
                        averaged, "--export-folded", folded], check=True,
                       stdout=subprocess.DEVNULL)
        evaluated = c_logits(exe, ckpt, os.path.join(tmp, "e_logits"), "--resume", ema)
        ok &= metadata(averaged).get("weights") == "average" == metadata(folded).get("weights")
        model = vit().eval()
        model.load_state_dict(read_safetensors(averaged), strict=True)
        ok &= compare("C (weight average) -> PyTorch", evaluated, model(images))
        plain = plain_vit().eval()
        plain.load_state_dict(read_safetensors(folded), strict=True)
        ok &= compare("C (folded) -> plain PyTorch", evaluated, plain(images))
        # 5. the default model, both ways (a short run: the stem is slow here)
        for stem in ([(48, 2), (96, 2), (128, 2), (128, 1)], [(4, 1), (8, 1)]):
            flags = ["--stem", stem_text(stem), "--qkv-sigma", "separate"]
            exported = os.path.join(tmp, "default.safetensors")
            subprocess.run([exe, *FLAGS, *flags, "--epochs", "1", "--stop-after-steps", "20",
                            "--export", exported, "--export-folded", folded], check=True,
                           stdout=subprocess.DEVNULL)
            model = default_vit(stem).eval()
            model.load_state_dict(read_safetensors(exported), strict=True)
            evaluated = c_logits(exe, exported, os.path.join(tmp, "d_logits"), flags=flags)
            ok &= compare(f"C -> PyTorch, stem {stem_text(stem)}, q k v separate", evaluated,
                          model(images))
            plain = default_vit(stem, plain=True).eval()
            plain.load_state_dict(read_safetensors(folded), strict=True)
            ok &= compare(f"C (folded) -> plain PyTorch, stem {stem_text(stem)}", evaluated,
                          plain(images))
            fresh = default_vit(stem).eval()
            write_safetensors(ours, fresh.state_dict())
            ok &= compare(f"PyTorch -> C, stem {stem_text(stem)}, q k v separate",
                          c_logits(exe, ours, os.path.join(tmp, "dt_logits"), flags=flags),
                          fresh(images))
    print("torch check:", "passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
