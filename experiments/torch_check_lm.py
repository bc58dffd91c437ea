#!/usr/bin/env python3
"""Checks char-lm-train's safetensors files against PyTorch, both ways.

For the trainer's default model (--arch sigma: SNLinears, no LayerNorm,
learned positions, untied head, one sigma for the fused qkv) and each
variant its flags build (the other --arch placements, --qkv-sigma qk-v and
separate, --positions fixed, --tied-head), on a small model of each:

1. C -> PyTorch: char-lm-train trains a few steps and --export's the model
   (--export-folded too); tests/reference/sigma_reparam.py's CharLM (the
   one PyTorch model of the official code: SNLinear with
   SpectralNormedWeight) loads it with load_state_dict(strict=True), and
   its eval logits on the --eval-windows validation windows must match
   those of char-lm-train --init-from FILE --eval-only --logits.
2. Folded: the --export-folded file (gamma / sigma * W baked into each
   weight) loads into CharLM(folded=True), plain nn.Linear and
   nn.Embedding modules, and must give those logits too.
3. PyTorch -> C: the loaded model with every tensor perturbed and one
   training-mode forward (the official code's power step, u and
   spectral_norm updated) is written as safetensors; char-lm-train
   --init-from it must give PyTorch's logits.
4. The weight average (--ema, default model): --export writes the model
   the run evaluated; PyTorch's logits from it must match those of the
   run's checkpoint evaluated as the run did (--resume --eval-only --ema).

All within 1e-4 of the largest logit. The text is the repository's docs
(any fixed text will do). Needs Debian's python3-torch and python3-numpy;
run with /usr/bin/python3:
    /usr/bin/python3 experiments/torch_check_lm.py build/examples/char_lm/char-lm-train
"""
import glob
import os
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
sys.path.insert(0, HERE)
from sigma_reparam import CharLM  # noqa: E402  (the one model of the official code)
from torch_check import metadata, read_safetensors, write_safetensors  # noqa: E402

CONTEXT, DIM, DEPTH, HEADS, MLP = 32, 32, 2, 4, 64
FLAGS = ["--context", str(CONTEXT), "--dim", str(DIM), "--depth", str(DEPTH), "--heads",
         str(HEADS), "--mlp-dim", str(MLP), "--batch", "8", "--threads", "1", "--eval-windows",
         "16"]
TRAIN = ["--steps", "30", "--warmup", "5", "--eval-every", "1000", "--minutes", "0"]
TOLERANCE = 1e-4
# Each variant: its flags and CharLM's arguments.
VARIANTS = [
    ([], {}),
    (["--arch", "sigma-preln"], {"arch": "sigma-preln"}),
    (["--arch", "preln"], {"arch": "preln"}),
    (["--arch", "postln"], {"arch": "postln"}),
    (["--arch", "sigma-postln"], {"arch": "sigma-postln"}),
    (["--qkv-sigma", "qk-v"], {"qkv": "qk-v"}),
    (["--qkv-sigma", "separate", "--tied-head"], {"qkv": "separate", "tied_head": True}),
    (["--positions", "fixed"], {"positions": "fixed"}),
]


def lm(kwargs, folded=False):
    return CharLM(context=CONTEXT, dim=DIM, depth=DEPTH, heads=HEADS, mlp=MLP, folded=folded,
                  **kwargs).eval()


def c_logits(exe, text, flags, how, model, out):
    """tokens [n, T] and logits [n, T, 256] of char-lm-train's eval forward."""
    subprocess.run([exe, "--text", text, *FLAGS, *flags, how, model, "--eval-only", "--logits",
                    out], check=True, stdout=subprocess.DEVNULL)
    got = read_safetensors(out)
    return got["tokens"].long(), got["logits"]


def compare(what, ours, theirs):
    err = ((ours - theirs).abs().max() / theirs.abs().max()).item()
    agree = (ours.argmax(-1) == theirs.argmax(-1)).float().mean().item()
    print(f"{what}: max |difference| / max |logit| = {err:.2e} over {ours.shape[0]} windows of "
          f"{ours.shape[1]} bytes (tolerance {TOLERANCE:.0e}); the argmax agrees on {agree:.2%}")
    return err <= TOLERANCE


def perturbed(model):
    """Every tensor moved by noise (the learned scales and norms kept
    positive), then one training-mode forward: PyTorch's own u and
    spectral_norm."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.1 * p.abs().mean() + 1e-3
            p.add_(scale * torch.randn_like(p))
            if name.endswith(".sigma"):
                p.abs_()
        model.train()
        model(torch.randint(0, 256, (2, CONTEXT)))
    return model.eval()


def variant(exe, text, tmp, flags, kwargs):
    ok = True
    label = " ".join(flags) or "the default model"
    exported, folded = os.path.join(tmp, "c.safetensors"), os.path.join(tmp, "f.safetensors")
    subprocess.run([exe, "--text", text, *FLAGS, *flags, *TRAIN, "--export", exported,
                    "--export-folded", folded], check=True, stdout=subprocess.DEVNULL)
    tokens, ours = c_logits(exe, text, flags, "--init-from", exported,
                            os.path.join(tmp, "c_logits"))
    model = lm(kwargs)
    model.load_state_dict(read_safetensors(exported), strict=True)
    ok &= compare(f"C -> PyTorch, {label}", ours, model(tokens))
    plain = lm(kwargs, folded=True)
    plain.load_state_dict(read_safetensors(folded), strict=True)
    ok &= compare(f"C (folded) -> plain PyTorch, {label}", ours, plain(tokens))
    theirs = os.path.join(tmp, "t.safetensors")
    write_safetensors(theirs, perturbed(model).state_dict())
    tokens, ours = c_logits(exe, text, flags, "--init-from", theirs,
                            os.path.join(tmp, "t_logits"))
    ok &= compare(f"PyTorch (perturbed) -> C, {label}", ours, model(tokens))
    return ok


def weight_average(exe, text, tmp):
    ema = ["--ema", "0.9"]
    ckpt, averaged = os.path.join(tmp, "ema.ckpt"), os.path.join(tmp, "ema.safetensors")
    subprocess.run([exe, "--text", text, *FLAGS, *ema, *TRAIN, "--checkpoint", ckpt, "--export",
                    averaged], check=True, stdout=subprocess.DEVNULL)
    tokens, evaluated = c_logits(exe, text, ema, "--resume", ckpt, os.path.join(tmp, "e_logits"))
    model = lm({})
    model.load_state_dict(read_safetensors(averaged), strict=True)
    said = metadata(averaged).get("weights")
    print(f"--ema 0.9 --export: metadata weights = {said}")
    return said == "average" and compare("C (weight average) -> PyTorch", evaluated,
                                         model(tokens))


def main():
    exe = sys.argv[1] if len(sys.argv) > 1 else "build/examples/char_lm/char-lm-train"
    start = time.time()
    torch.manual_seed(0)
    torch.set_num_threads(1)  # a model this small: threads would only wait for each other
    ok = True
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        text = os.path.join(tmp, "text.txt")
        with open(text, "wb") as out:
            for doc in sorted(glob.glob(os.path.join(HERE, "..", "docs", "*.md"))):
                with open(doc, "rb") as f:
                    out.write(f.read())
        for flags, kwargs in VARIANTS:
            ok &= variant(exe, text, tmp, flags, kwargs)
        ok &= weight_average(exe, text, tmp)
    print(f"char LM torch check: {'passed' if ok else 'FAILED'} in {time.time() - start:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
