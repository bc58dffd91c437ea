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

from fixture_io import record_eval, record_initial_state, record_layer_steps, start_fixtures
from sigma_reparam import SNLinear

fixtures = start_fixtures(20230723)
put = fixtures.put


def case(tag, n, in_f, out_f, bias, stats_only, steps=3, lr=0.05):
    weight = torch.randn(out_f, in_f) * 0.4
    b = torch.randn(out_f) * 0.1 if bias else None
    layer = SNLinear(weight, b, stats_only)
    put(f"{tag}/config", torch.tensor([n, in_f, out_f, int(bias), int(stats_only), steps]))
    record_initial_state(put, f"{tag}/", layer)
    put(f"{tag}/sigma0", layer.spectral_normed_weight.spectral_norm)
    record_layer_steps(put, tag, layer, steps, lr, (n, in_f), (n, out_f))
    record_eval(put, tag, layer, (n, in_f))
    put(f"{tag}/eval/u", layer.spectral_normed_weight.u)  # unchanged by the eval forward


case("small", n=4, in_f=8, out_f=5, bias=True, stats_only=False)
case("wide", n=7, in_f=16, out_f=24, bias=False, stats_only=False)
case("stats", n=3, in_f=12, out_f=6, bias=True, stats_only=True)
case("scalar", n=2, in_f=1, out_f=1, bias=True, stats_only=False)
case("tall", n=1, in_f=40, out_f=9, bias=True, stats_only=False, steps=4)

fixtures.write("linear_fixtures.bin")
