#!/usr/bin/python3
"""Writes attention_fixtures.bin: what timm's Attention computes when its two
linears are the official sigmaReparam SNLinear (apple/ml-sigma-reparam,
vision/layers.py and vision/vit.py, which converts a timm ViT).

The SNLinear semantics are re-implemented as in gen_linear_fixtures.py. The
attention is timm's: qkv = x W_qkv^T + b, reshaped [B, T, 3, H, dh] (so the
qkv row is [q | k | v], head h in columns h*dh..), S = q k^T * dh^-0.5,
A = softmax(S) (optionally causal), O = A v, y = proj(concat_h O).
Per head, the fixture also holds the mean and min row entropy
-sum_j A_ij log A_ij over batch and queries.

Run with Debian's interpreter (python3-torch):
    /usr/bin/python3 gen_attention_fixtures.py
Format: fixture_io.py.
"""
import torch
import torch.nn.functional as F

from fixture_io import FixtureWriter

torch.manual_seed(1234567)
torch.set_num_threads(1)


class SNLinear(torch.nn.Module):
    def __init__(self, in_f, out_f, weight_scale):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(out_f, in_f) * weight_scale)
        self.bias = torch.nn.Parameter(torch.randn(out_f) * 0.1)
        with torch.no_grad():
            _, s, vh = torch.linalg.svd(self.weight, full_matrices=False)
        self.u = vh[0].clone()
        self.gamma = torch.nn.Parameter(s[0].clone().reshape(1))

    def forward(self, x):
        with torch.no_grad():
            v = F.normalize(self.weight.mv(self.u), dim=0)
            u = F.normalize(self.weight.T.mv(v), dim=0)
            if self.training:
                self.u = u.clone()
        sigma = torch.einsum("c,cd,d->", v, self.weight, u)
        self.last_sigma = sigma.detach().clone()
        return F.linear(x, self.weight / sigma * self.gamma, self.bias)


class Attention(torch.nn.Module):
    def __init__(self, dim, heads, causal):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.qkv = SNLinear(dim, 3 * dim, 0.3)
        self.proj = SNLinear(dim, dim, 0.3)

    def forward(self, x):
        B, T, D = x.shape
        H = self.heads
        qkv = self.qkv(x).reshape(B, T, 3, H, D // H).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        s = (q @ k.transpose(-2, -1)) * (D // H) ** -0.5
        if self.causal:
            mask = torch.ones(T, T, dtype=torch.bool).triu(1)
            s = s.masked_fill(mask, float("-inf"))
        a = s.softmax(dim=-1)
        with torch.no_grad():
            plogp = torch.where(a > 0, a * a.log(), torch.zeros_like(a))
            ent = -plogp.sum(-1)  # [B, H, T]
            self.ent_mean = ent.mean(dim=(0, 2))
            self.ent_min = ent.amin(dim=(0, 2))
        o = (a @ v).transpose(1, 2).reshape(B, T, D)
        return self.proj(o)


fixtures = FixtureWriter()
put = fixtures.put


def case(tag, B, T, D, H, causal, steps=2, lr=0.05):
    m = Attention(D, H, causal)
    put(f"{tag}/config", torch.tensor([B, T, D, H, int(causal), steps]))
    for name, lin in (("qkv", m.qkv), ("proj", m.proj)):
        put(f"{tag}/{name}/w0", lin.weight)
        put(f"{tag}/{name}/b0", lin.bias)
        put(f"{tag}/{name}/u0", lin.u)
        put(f"{tag}/{name}/gamma0", lin.gamma)
    for step in range(steps):
        m.train()
        x = torch.randn(B, T, D, requires_grad=True)
        dy = torch.randn(B, T, D)
        y = m(x)
        y.backward(dy)
        p = f"{tag}/step{step}/"
        put(p + "x", x)
        put(p + "dy", dy)
        put(p + "y", y)
        put(p + "dx", x.grad)
        put(p + "ent_mean", m.ent_mean)
        put(p + "ent_min", m.ent_min)
        for name, lin in (("qkv", m.qkv), ("proj", m.proj)):
            put(p + name + "/dw", lin.weight.grad)
            put(p + name + "/db", lin.bias.grad)
            put(p + name + "/dgamma", lin.gamma.grad)
            put(p + name + "/sigma", lin.last_sigma)
        with torch.no_grad():
            for prm in m.parameters():
                prm.add_(prm.grad, alpha=-lr)
                prm.grad = None


case("vit", B=2, T=7, D=12, H=3, causal=False)
case("causal", B=3, T=6, D=8, H=2, causal=True)
case("onehead", B=1, T=9, D=6, H=1, causal=False)
case("onetoken", B=2, T=1, D=8, H=4, causal=False)

fixtures.write("attention_fixtures.bin")
