#!/usr/bin/python3
"""Writes linear_fixtures.bin: what the official sigmaReparam linear computes
(SNLinear of sigma_reparam.py, the shared re-implementation of
apple/ml-sigma-reparam vision/layers.py). Each case runs training steps
(forward, backward of a given dy, SGD update of W, b, gamma) and one eval
forward, and records everything the C test needs.

Run with Debian's interpreter (python3-torch): /usr/bin/python3 gen_linear_fixtures.py
Format: fixture_io.py.
"""
import torch

from fixture_io import FixtureWriter, record_initial_state, record_training_step
from sigma_reparam import SNLinear

torch.manual_seed(20230723)
torch.set_num_threads(1)


fixtures = FixtureWriter()
put = fixtures.put


def case(tag, n, in_f, out_f, bias, stats_only, steps=3, lr=0.05):
    weight = torch.randn(out_f, in_f) * 0.4
    b = torch.randn(out_f) * 0.1 if bias else None
    layer = SNLinear(weight, b, stats_only)
    put(f"{tag}/config", torch.tensor([n, in_f, out_f, int(bias), int(stats_only), steps]))
    record_initial_state(put, f"{tag}/", layer)
    put(f"{tag}/sigma0", layer.spectral_norm)
    for step in range(steps):
        p = f"{tag}/step{step}/"
        record_training_step(put, p, layer, (n, in_f), (n, out_f))
        put(p + "dw", layer.weight.grad)
        if bias:
            put(p + "db", layer.bias.grad)
        if not stats_only:
            put(p + "dgamma", layer.gamma.grad)
        put(p + "u", layer.u)
        put(p + "sigma", layer.last_sigma)
        with torch.no_grad():  # plain SGD between the steps
            for prm in (layer.weight, layer.bias, layer.gamma):
                if prm is not None and prm.grad is not None:
                    prm.add_(prm.grad, alpha=-lr)
                    prm.grad = None
    layer.eval()
    x = torch.randn(n, in_f)
    with torch.no_grad():
        y = layer(x)
    put(f"{tag}/eval/x", x)
    put(f"{tag}/eval/y", y)
    put(f"{tag}/eval/sigma", layer.last_sigma)
    put(f"{tag}/eval/u", layer.u)  # unchanged by the eval forward


case("small", n=4, in_f=8, out_f=5, bias=True, stats_only=False)
case("wide", n=7, in_f=16, out_f=24, bias=False, stats_only=False)
case("stats", n=3, in_f=12, out_f=6, bias=True, stats_only=True)
case("scalar", n=2, in_f=1, out_f=1, bias=True, stats_only=False)
case("tall", n=1, in_f=40, out_f=9, bias=True, stats_only=False, steps=4)

fixtures.write("linear_fixtures.bin")
