"""The fixture file format shared by gen_*_fixtures.py and read by
tests/support/testutil.c (fixture_load): little-endian, b"SRPFIX01", u32 record
count, then per record u32 name length, the name, u32 float count and the
float32 values. Also what the generators share: their start, what they
record of a layer and of a step, and the SGD step between steps."""
import os
import struct

import torch


def start_fixtures(seed):
    """A FixtureWriter, with torch seeded and on one thread (the same draws
    on every machine)."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    return FixtureWriter()


class FixtureWriter:
    def __init__(self):
        self.records = []

    def put(self, name, tensor):
        self.records.append((name, tensor.detach().reshape(-1).float().tolist()))

    def write(self, filename):
        out = os.path.join(os.path.dirname(os.path.abspath(__file__)), filename)
        with open(out, "wb") as f:
            f.write(b"SRPFIX01")
            f.write(struct.pack("<I", len(self.records)))
            for name, values in self.records:
                raw = name.encode()
                f.write(struct.pack("<I", len(raw)))
                f.write(raw)
                f.write(struct.pack("<I", len(values)))
                f.write(struct.pack(f"<{len(values)}f", *values))
        print(f"wrote {len(self.records)} records to {out}")


def record_training_step(put, prefix, module, x_shape, dy_shape):
    """A training forward of module on a random x and the backward of a
    random dy (x drawn first); puts x, dy, y and dx under prefix."""
    module.train()
    x = torch.randn(*x_shape, requires_grad=True)
    dy = torch.randn(*dy_shape)
    y = module(x)
    y.backward(dy)
    for name, value in (("x", x), ("dy", dy), ("y", y), ("dx", x.grad)):
        put(prefix + name, value)


def record_initial_state(put, prefix, layer):
    """An SNLinear's starting point: w0, b0 (when it has a bias), u0, gamma0."""
    put(prefix + "w0", layer.weight)
    if layer.bias is not None:
        put(prefix + "b0", layer.bias)
    put(prefix + "u0", layer.spectral_normed_weight.u)
    put(prefix + "gamma0", layer.sigma)


def sgd_step(parameters, lr):
    """Plain SGD between the steps, on the parameters that have a gradient."""
    with torch.no_grad():
        for prm in parameters:
            if prm is not None and prm.grad is not None:
                prm.add_(prm.grad, alpha=-lr)
                prm.grad = None


def record_layer_steps(put, tag, layer, steps, lr, x_shape, y_shape):
    """steps training steps of an SNLinear or SNConv2d, SGD between them:
    under <tag>/step<i>/ record_training_step's arrays, dw, db (with a
    bias), dgamma (unless stats only), u and sigma."""
    for step in range(steps):
        p = f"{tag}/step{step}/"
        record_training_step(put, p, layer, x_shape, y_shape)
        put(p + "dw", layer.weight.grad)
        if layer.bias is not None:
            put(p + "db", layer.bias.grad)
        if not layer.stats_only:
            put(p + "dgamma", layer.sigma.grad)
        put(p + "u", layer.spectral_normed_weight.u)
        put(p + "sigma", layer.last_sigma)
        sgd_step((layer.weight, layer.bias, layer.sigma), lr)


def record_eval(put, tag, layer, x_shape):
    """An eval forward of layer on a random x: <tag>/eval/x, y and sigma."""
    layer.eval()
    x = torch.randn(*x_shape)
    with torch.no_grad():
        y = layer(x)
    put(f"{tag}/eval/x", x)
    put(f"{tag}/eval/y", y)
    put(f"{tag}/eval/sigma", layer.last_sigma)
