#!/usr/bin/python3
"""Writes conv2d_fixtures.bin: what the official sigmaReparam convolution
computes (SNConv2d of sigma_reparam.py, the shared re-implementation of
apple/ml-sigma-reparam vision/layers.py). Each case runs training steps
(forward, backward of a given dy, SGD update of W, b, gamma) and one eval
forward, and records everything the C test (tests/lib/test_conv2d.c) needs.

Run with Debian's interpreter (python3-torch): /usr/bin/python3 gen_conv2d_fixtures.py
Format: fixture_io.py.
"""
import torch

from fixture_io import record_eval, record_initial_state, record_layer_steps, start_fixtures
from sigma_reparam import SNConv2d

fixtures = start_fixtures(20230724)
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
    record_layer_steps(put, tag, layer, steps, lr, (batch, in_ch, height, width),
                       (batch, out_ch, out_h, out_w))
    record_eval(put, tag, layer, (batch, in_ch, height, width))


# stride 1 and 2, padding 0 and 1, kernels 1, 3 and 5, non-square images:
# tag, batch, in_ch, out_ch, kernel, height, width, stride, padding, bias, stats_only
for args in (("k3s1p1", 2, 3, 4, 3, 6, 5, 1, 1, True, False),
             ("k3s2p1", 3, 2, 5, 3, 7, 9, 2, 1, True, False),
             ("k1s1p0", 2, 4, 3, 1, 3, 4, 1, 0, False, False),
             ("k5s2p0", 2, 2, 3, 5, 8, 11, 2, 0, True, False),
             ("k5s1p1", 1, 3, 2, 5, 5, 7, 1, 1, True, False),
             ("k3s2p0", 2, 1, 6, 3, 10, 6, 2, 0, False, False),
             ("stats", 2, 2, 3, 3, 5, 4, 1, 1, True, True)):
    case(*args)

fixtures.write("conv2d_fixtures.bin")
