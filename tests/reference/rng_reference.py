#!/usr/bin/env python3
"""Independent implementation of the library's RNG (splitmix64 seeding,
xoshiro256**), from the published algorithms, to produce the reference
values hard-coded in tests/lib/test_rng.c. Run: python3 rng_reference.py"""

M = (1 << 64) - 1


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return x, z ^ (z >> 31)


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M


def xoshiro_next(s):
    result = (rotl((s[1] * 5) & M, 7) * 9) & M
    t = (s[1] << 17) & M
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= t
    s[3] = rotl(s[3], 45)
    return result


def seeded(seed):
    s, x = [], seed
    for _ in range(4):
        x, z = splitmix64(x)
        s.append(z)
    return s


def uniform(s):
    return (xoshiro_next(s) >> 11) * 2.0**-53


def normal(s):
    """Marsaglia's polar method, one value per accepted pair."""
    import math
    while True:
        a = 2.0 * uniform(s) - 1.0
        b = 2.0 * uniform(s) - 1.0
        q = a * a + b * b
        if 0.0 < q < 1.0:
            return a * math.sqrt(-2.0 * math.log(q) / q)


if __name__ == "__main__":
    s = [1, 2, 3, 4]
    print("state {1,2,3,4}:", [hex(xoshiro_next(s)) for _ in range(4)])
    for seed in (0, 42):
        s = seeded(seed)
        print(f"seed {seed}: state", [hex(v) for v in s])
        print(f"seed {seed}: outputs", [hex(xoshiro_next(s)) for _ in range(3)])
    s = seeded(42)
    print("seed 42: normals", [repr(normal(s)) for _ in range(5)])
