#!/usr/bin/env python3
"""Checks vit-lite-train's safetensors files against PyTorch, both ways.

1. C -> PyTorch: vit-lite-train trains a small ViT-lite for an epoch and
   --export's it; a PyTorch ViT whose modules carry the official code's
   names (timm's ViT converted by apple/ml-sigma-reparam's convert_to_sn:
   SNLinear with SpectralNormedWeight) loads the file with
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
import torch.nn.functional as F

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


# ---- the official modules: the same state_dict names ----

class SpectralNormedWeight(torch.nn.Module):
    """Holds W (the SNLinear's own parameter), u and the last sigma."""

    def __init__(self, weight):
        super().__init__()
        self.weight = weight
        with torch.no_grad():
            _, s, vh = torch.linalg.svd(weight, full_matrices=False)
        self.register_buffer("u", vh[0].clone())
        self.register_buffer("spectral_norm", s[0] * torch.ones(1))

    def forward(self):
        with torch.no_grad():  # eval: one step from u, nothing stored
            v = F.normalize(self.weight.mv(self.u), dim=0)
            u = F.normalize(self.weight.T.mv(v), dim=0)
        return self.weight / torch.einsum("c,cd,d->", v, self.weight, u)


class SNLinear(torch.nn.Linear):
    """nn.Linear with sigmaReparam; the learned scale is named `sigma`."""

    def __init__(self, in_f, out_f, std=0.02):
        super().__init__(in_f, out_f)
        with torch.no_grad():
            torch.nn.init.trunc_normal_(self.weight, std=std, a=-2 * std, b=2 * std)
            self.bias.zero_()
        self.spectral_normed_weight = SpectralNormedWeight(self.weight)
        s0 = self.spectral_normed_weight.spectral_norm
        self.sigma = torch.nn.Parameter(s0.clone())
        self.register_buffer("effective_spectral_norm", s0.clone())

    def forward(self, x):
        return F.linear(x, self.spectral_normed_weight() * self.sigma, self.bias)


class PatchEmbed(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = SNLinear(PATCH * PATCH, DIM)

    def forward(self, img):  # img: [B, 1, H, W] -> [B, patches, D], row-major patches
        b = img.shape[0]
        return self.proj(img.unfold(2, PATCH, PATCH).unfold(3, PATCH, PATCH).reshape(b, -1, PATCH * PATCH))


class Attention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv, self.proj = SNLinear(DIM, 3 * DIM), SNLinear(DIM, DIM)

    def forward(self, x):
        b, t, d = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, HEADS, d // HEADS).permute(2, 0, 3, 1, 4)
        a = ((qkv[0] @ qkv[1].transpose(-2, -1)) * (d // HEADS) ** -0.5).softmax(dim=-1)
        return self.proj((a @ qkv[2]).transpose(1, 2).reshape(b, t, d))


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = SNLinear(DIM, MLP), SNLinear(MLP, DIM)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attn, self.mlp = Attention(), Mlp()

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


class ViT(torch.nn.Module):
    """timm's ViT layout without LayerNorms (remove_all_normalization_layers)."""

    def __init__(self):
        super().__init__()
        tokens = (IMAGE // PATCH) ** 2 + 1
        self.patch_embed = PatchEmbed()
        self.cls_token = torch.nn.Parameter(torch.zeros(1, 1, DIM))
        self.pos_embed = torch.nn.Parameter(torch.randn(1, tokens, DIM) * 0.02)
        self.blocks = torch.nn.ModuleList(Block() for _ in range(DEPTH))
        self.head = SNLinear(DIM, CLASSES)

    def forward(self, img):
        x = self.patch_embed(img)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(x[:, 0])


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
        model = ViT().eval()
        model.load_state_dict(read_safetensors(exported), strict=True)
        ok &= compare("C -> PyTorch", c_logits(exe, exported, os.path.join(tmp, "c_logits")),
                      model(images))
        # 2. PyTorch -> C
        fresh = ViT().eval()
        ours = os.path.join(tmp, "torch.safetensors")
        write_safetensors(ours, fresh.state_dict())
        ok &= compare("PyTorch -> C", c_logits(exe, ours, os.path.join(tmp, "t_logits")),
                      fresh(images))
    print("torch check:", "passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
