"""The fixture file format shared by gen_*_fixtures.py and read by
tests/testutil.c (fixture_load): little-endian, b"SRPFIX01", u32 record
count, then per record u32 name length, the name, u32 float count and the
float32 values. Also what both generators record of a layer and a step."""
import os
import struct

import torch


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
    put(prefix + "u0", layer.u)
    put(prefix + "gamma0", layer.gamma)
