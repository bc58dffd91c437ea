#!/usr/bin/python3
"""Writes attention_fixtures.bin: what timm's Attention computes when its two
linears are the official sigmaReparam SNLinear (apple/ml-sigma-reparam,
vision/layers.py and vision/vit.py, which converts a timm ViT): Attention and
SNLinear of sigma_reparam.py, the shared re-implementation. Per head, the
fixture also holds the mean and min row entropy -sum_j A_ij log A_ij over
batch and queries.

Run with Debian's interpreter (python3-torch):
    /usr/bin/python3 gen_attention_fixtures.py
Format: fixture_io.py.
"""
import torch

from fixture_io import record_initial_state, record_training_step, sgd_step, start_fixtures
from sigma_reparam import Attention, SNLinear

fixtures = start_fixtures(1234567)
put = fixtures.put


def make_attention(dim, heads, causal, weight_scale=0.3):
    """Weights N(0, 0.3^2), biases N(0, 0.1^2): qkv's, then proj's."""
    layers = []
    for out_f in (3 * dim, dim):
        w = torch.randn(out_f, dim) * weight_scale
        b = torch.randn(out_f) * 0.1
        layers.append(SNLinear(w, b))
    return Attention(layers[0], layers[1], heads, causal, track_entropy=True)


def case(tag, B, T, D, H, causal, steps=2, lr=0.05):
    m = make_attention(D, H, causal)
    put(f"{tag}/config", torch.tensor([B, T, D, H, int(causal), steps]))
    for name, lin in (("qkv", m.qkv), ("proj", m.proj)):
        record_initial_state(put, f"{tag}/{name}/", lin)
    for step in range(steps):
        p = f"{tag}/step{step}/"
        record_training_step(put, p, m, (B, T, D), (B, T, D))
        put(p + "ent_mean", m.ent_mean)
        put(p + "ent_min", m.ent_min)
        for name, lin in (("qkv", m.qkv), ("proj", m.proj)):
            put(p + name + "/dw", lin.weight.grad)
            put(p + name + "/db", lin.bias.grad)
            put(p + name + "/dgamma", lin.sigma.grad)
            put(p + name + "/sigma", lin.last_sigma)
        sgd_step(m.parameters(), lr)


case("vit", B=2, T=7, D=12, H=3, causal=False)
case("causal", B=3, T=6, D=8, H=2, causal=True)
case("onehead", B=1, T=9, D=6, H=1, causal=False)
case("onetoken", B=2, T=1, D=8, H=4, causal=False)

fixtures.write("attention_fixtures.bin")
