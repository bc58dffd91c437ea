#!/usr/bin/python3
"""Writes conv2d_fixtures.bin: what the official sigmaReparam convolution
computes (SNConv2d of sigma_reparam.py, the shared re-implementation of
apple/ml-sigma-reparam vision/layers.py). Each case runs training steps
(forward, backward of a given dy, SGD update of W, b, gamma) and one eval
forward, and records everything the C test (tests/test_conv2d.c) needs.

Run with Debian's interpreter (python3-torch): /usr/bin/python3 gen_conv2d_fixtures.py
Format: fixture_io.py.
"""
import torch

from fixture_io import FixtureWriter, record_initial_state, record_training_step
from sigma_reparam import SNConv2d

torch.manual_seed(20230724)
torch.set_num_threads(1)


fixtures = FixtureWriter()
put = fixtures.put


def case(tag, batch, in_ch, out_ch, kernel, height, width, stride, padding, bias, stats_only,
         steps=2, lr=0.05):
    weight = torch.randn(out_ch, in_ch, kernel, kernel) * 0.4
    b = torch.randn(out_ch) * 0.1 if bias else None
    layer = SNConv2d(weight, b, stride, padding, stats_only)
    out_h = (height + 2 * padding - kernel) // stride + 1
    out_w = (width + 2 * padding - kernel) // stride + 1
    put(f"{tag}/config", torch.tensor([batch, in_ch, out_ch, kernel, height, width, stride,
                                       padding, int(bias), int(stats_only), steps]))
    record_initial_state(put, f"{tag}/", layer)
    for step in range(steps):
        p = f"{tag}/step{step}/"
        record_training_step(put, p, layer, (batch, in_ch, height, width),
                             (batch, out_ch, out_h, out_w))
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
    x = torch.randn(batch, in_ch, height, width)
    with torch.no_grad():
        y = layer(x)
    put(f"{tag}/eval/x", x)
    put(f"{tag}/eval/y", y)
    put(f"{tag}/eval/sigma", layer.last_sigma)


# stride 1 and 2, padding 0 and 1, kernels 1, 3 and 5, non-square images
case("k3s1p1", batch=2, in_ch=3, out_ch=4, kernel=3, height=6, width=5, stride=1, padding=1,
     bias=True, stats_only=False)
case("k3s2p1", batch=3, in_ch=2, out_ch=5, kernel=3, height=7, width=9, stride=2, padding=1,
     bias=True, stats_only=False)
case("k1s1p0", batch=2, in_ch=4, out_ch=3, kernel=1, height=3, width=4, stride=1, padding=0,
     bias=False, stats_only=False)
case("k5s2p0", batch=2, in_ch=2, out_ch=3, kernel=5, height=8, width=11, stride=2, padding=0,
     bias=True, stats_only=False)
case("k5s1p1", batch=1, in_ch=3, out_ch=2, kernel=5, height=5, width=7, stride=1, padding=1,
     bias=True, stats_only=False)
case("k3s2p0", batch=2, in_ch=1, out_ch=6, kernel=3, height=10, width=6, stride=2, padding=0,
     bias=False, stats_only=False)
case("stats", batch=2, in_ch=2, out_ch=3, kernel=3, height=5, width=4, stride=1, padding=1,
     bias=True, stats_only=True)

fixtures.write("conv2d_fixtures.bin")
