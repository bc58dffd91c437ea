"""The fixture file format shared by gen_*_fixtures.py and read by
tests/testutil.c (fixture_load): little-endian, b"SRPFIX01", u32 record
count, then per record u32 name length, the name, u32 float count and the
float32 values."""
import os
import struct


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
