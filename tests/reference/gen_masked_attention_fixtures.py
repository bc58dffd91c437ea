#!/usr/bin/python3
"""Writes masked_attention_fixtures.bin: the attention with padding masks
(Attention.forward(x, key_len)) and the cross-attention (CrossAttention) of
sigma_reparam.py, the shared re-implementation, as libsigmareparam defines
them (attention.h): training steps with SGD between them, as
gen_attention_fixtures.py records them, plus the memory, its gradient and
the key lengths. The cases cover Tq != Tk, sequences of length 1 and
fully padded tails.

Run with Debian's interpreter (python3-torch):
    /usr/bin/python3 gen_masked_attention_fixtures.py
Format: fixture_io.py. Per case <tag>/config is [B, T, Tk, D, H, causal,
cross, separate_kv, masked, steps]; the linears are recorded in the order of
srp_attention_in_proj, then proj.
"""
import torch

from fixture_io import record_initial_state, sgd_step, start_fixtures
from sigma_reparam import Attention, CrossAttention, SNLinear

fixtures = start_fixtures(7654321)
put = fixtures.put


def linear(dim, out_f, weight_scale=0.3):
    """Weights N(0, 0.3^2), biases N(0, 0.1^2)."""
    return SNLinear(torch.randn(out_f, dim) * weight_scale, torch.randn(out_f) * 0.1)


def case(tag, B, T, D, H, key_len, causal=False, Tk=None, separate=False, steps=2, lr=0.05):
    cross = Tk is not None
    if cross:
        q = linear(D, D)
        kv = (linear(D, D), linear(D, D)) if separate else linear(D, 2 * D)
        m = CrossAttention(q, kv, linear(D, D), H, track_entropy=True)
        named = [("q", q)] + ([("k", kv[0]), ("v", kv[1])] if separate else [("kv", kv)])
    else:
        m = Attention(linear(D, 3 * D), linear(D, D), H, causal, track_entropy=True)
        named = [("qkv", m.qkv)]
    named.append(("proj", m.proj))
    keys = Tk if cross else T
    put(f"{tag}/config", torch.tensor([B, T, keys, D, H, int(causal), int(cross), int(separate),
                                       int(key_len is not None), steps]))
    if key_len is not None:
        put(f"{tag}/key_len", torch.tensor(key_len))
    for name, lin in named:
        record_initial_state(put, f"{tag}/{name}/", lin)
    for step in range(steps):
        p = f"{tag}/step{step}/"
        m.train()
        x = torch.randn(B, T, D, requires_grad=True)
        mem = torch.randn(B, keys, D, requires_grad=True) if cross else None
        dy = torch.randn(B, T, D)
        y = m(x, mem, key_len) if cross else m(x, key_len)
        y.backward(dy)
        for name, value in (("x", x), ("dy", dy), ("y", y), ("dx", x.grad)):
            put(p + name, value)
        if cross:
            put(p + "memory", mem)
            put(p + "dmemory", mem.grad)
        put(p + "ent_mean", m.ent_mean)
        put(p + "ent_min", m.ent_min)
        for name, lin in named:
            put(p + name + "/dw", lin.weight.grad)
            put(p + name + "/db", lin.bias.grad)
            put(p + name + "/dgamma", lin.sigma.grad)
            put(p + name + "/sigma", lin.last_sigma)
        sgd_step(m.parameters(), lr)


case("self_masked", B=3, T=6, D=8, H=2, key_len=[6, 3, 1])
case("self_causal_masked", B=3, T=5, D=8, H=2, key_len=[2, 5, 1], causal=True)
case("self_padded_tail", B=2, T=9, D=12, H=3, key_len=[3, 9])
case("cross_fused", B=2, T=4, D=12, H=3, Tk=7, key_len=[7, 3])
case("cross_separate", B=3, T=6, D=8, H=2, Tk=3, key_len=[1, 3, 2], separate=True)
case("cross_one_query", B=2, T=1, D=8, H=4, Tk=5, key_len=None)
case("cross_one_key", B=2, T=5, D=6, H=1, Tk=1, key_len=None, separate=True)

fixtures.write("masked_attention_fixtures.bin")
