"""The official sigmaReparam semantics in PyTorch: the one reference that the
fixture generators (gen_*_fixtures.py), the interop check
(experiments/torch_check.py) and the PyTorch benchmark
(bench/torch_train_step.py) share, so that a fix lands in one place.

SNLinear re-implements SNLinear of apple/ml-sigma-reparam (vision/layers.py),
under its state_dict names (so that experiments/torch_check.py loads our
safetensors files into these very modules):
  - u (length in_features) and sigma0 from torch.linalg.svd(W): u = Vh[0];
  - the learned scalar (the official code calls it `sigma`, we call it gamma)
    starts at sigma0;
  - get_sigma, under no_grad: v = normalize(W u); u = normalize(W^T v);
    u is stored in training mode only; sigma = einsum("c,cd,d->", v, W, u)
    with u, v constants, so autograd sees dsigma/dW = v u^T;
  - W_hat = W / sigma * gamma (stats_only: W_hat = W), y = F.linear(x, W_hat, b).
SNConv2d is the official SNConv2d: an SNLinear on the kernel flattened to
[out][in*kh*kw], y = F.conv2d(x, W_hat viewed as the kernel, b, stride, padding).
Attention is timm's with two SNLinears (vision/vit.py converts a timm ViT):
qkv = x W_qkv^T + b reshaped [B, T, 3, H, dh] (the qkv row is [q | k | v],
head h in columns h*dh..), S = q k^T dh^-0.5, A = softmax(S) (optionally
causal), O = A v, y = proj(concat_h O); with padding masks, and
CrossAttention (queries from x, keys and values from a memory) as the
library defines them (attention.h). ViTLite is the model of
examples/vit_lite with --stem 0 --qkv-sigma fused (patch embedding, class
token, positions, blocks of attention and GELU MLP, no LayerNorm, head on
the class token), under timm's names. PlainViTLite is the same model with
plain nn.Linear layers and timm's nn.Conv2d patch embedding: what
vit-lite-train --export-folded writes (W_hat = gamma / sigma * W baked in)
loads into it. DefaultViTLite adds what the trainer's default model has
beyond it: the convolutional stem (SNConv2d 3x3, padding 1, each followed
by a GELU; stem.conv<l>) and q, k and v under three SNLinears (attn.q,
attn.k, attn.v; --qkv-sigma separate).

CharLM is examples/char_lm's model (model.h) under the names
char-lm-train --export writes: nn.Embedding wte, learned positions wpe (or
the fixed sinusoids, a buffer), blocks of causal attention and GELU MLP in
each --arch's placement of LayerNorms (ln1, ln2, and ln_f after pre-LN
blocks), the head lm_head (or wte's transpose, tied); SNLinears in the
sigma architectures, nn.Linear in the others and in the folded model.

Needs Debian's python3-torch; run the scripts with /usr/bin/python3.
"""
import torch
import torch.nn.functional as F


class SpectralNormedWeight(torch.nn.Module):
    """The official module of this name: it holds the layer's W (the same
    Parameter as the layer's own weight, so state_dict lists it twice), u,
    and spectral_norm, sigma of the last training forward; u and sigma0 come
    from torch.linalg.svd(W), u = Vh[0]."""

    def __init__(self, weight):
        super().__init__()
        self.weight = weight
        with torch.no_grad():
            _, s, vh = torch.linalg.svd(weight, full_matrices=False)
        self.register_buffer("u", vh[0].clone())
        self.register_buffer("spectral_norm", s[0].clone().reshape(1))

    def get_sigma(self):
        """One power step from u (u stored in training mode only); sigma =
        v^T W u with u and v constants, so that dsigma/dW = v u^T."""
        with torch.no_grad():
            v = F.normalize(self.weight.mv(self.u), dim=0)
            u = F.normalize(self.weight.T.mv(v), dim=0)
            if self.training:
                self.u.copy_(u)
        return torch.einsum("c,cd,d->", v, self.weight, u)


class SNLinear(torch.nn.Module):
    """sigmaReparam linear with the official semantics and state_dict names,
    from given tensors: weight, bias, sigma (the learned scale, which we
    call gamma; it starts at sigma0), effective_spectral_norm (a copy of it,
    refreshed at each forward), spectral_normed_weight.{weight, u,
    spectral_norm}. last_sigma is the sigma of the last forward, for the
    fixtures."""

    def __init__(self, weight, bias=None, stats_only=False):
        super().__init__()
        self.weight = torch.nn.Parameter(weight.clone())
        self.bias = torch.nn.Parameter(bias.clone()) if bias is not None else None
        self.stats_only = stats_only
        self.spectral_normed_weight = SpectralNormedWeight(self.weight)
        sigma0 = self.spectral_normed_weight.spectral_norm
        self.sigma = torch.nn.Parameter(sigma0.clone())
        self.register_buffer("effective_spectral_norm", sigma0.clone())
        self.last_sigma = sigma0[0].clone()

    @classmethod
    def initialized(cls, in_f, out_f, std=0.02):
        """Truncated normal weights (std, cut at +-2 std) and a zero bias."""
        w = torch.empty(out_f, in_f)
        torch.nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)
        return cls(w, torch.zeros(out_f))

    def weight_hat(self):
        """The forward's weight: W / sigma * gamma (stats_only: W), sigma
        from this forward's power step."""
        sigma = self.spectral_normed_weight.get_sigma()
        with torch.no_grad():
            if self.training:
                self.spectral_normed_weight.spectral_norm.copy_(sigma.reshape(1))
            self.effective_spectral_norm.copy_(self.sigma)
        self.last_sigma = sigma.detach().clone()
        return self.weight if self.stats_only else self.weight / sigma * self.sigma

    def forward(self, x):
        return F.linear(x, self.weight_hat(), self.bias)


class SNConv2d(SNLinear):
    """sigmaReparam 2-D convolution as the official SNConv2d: an SNLinear
    whose weight is the kernel [out][in][kh][kw] flattened to [out][in*kh*kw]
    (sigma, u and gamma are that matrix's), viewed back as the kernel of
    F.conv2d (zero padding, dilation 1, groups 1)."""

    def __init__(self, weight, bias=None, stride=1, padding=0, stats_only=False):
        self.kernel_shape = tuple(weight.shape)
        super().__init__(weight.reshape(weight.shape[0], -1), bias, stats_only)
        self.stride, self.padding = stride, padding

    def forward(self, x):
        return F.conv2d(x, self.weight_hat().view(self.kernel_shape), self.bias,
                        stride=self.stride, padding=self.padding)


class Attention(torch.nn.Module):
    """timm's attention over two SNLinears. With track_entropy it keeps the
    last forward's per-head mean and min row entropy, -sum_j A_ij log A_ij
    over batch and queries (the official code does not: off by default).

    forward(x, key_len) adds padding masks as libsigmareparam defines them
    (attention.h; the official code has none): key j of example b is masked
    (-inf before the softmax) when j >= key_len[b], and a query row
    i >= key_len[b] is padding: its attention row and its output row are 0
    (so it gets no gradient) and the entropies leave it out."""

    def __init__(self, qkv, proj, heads, causal=False, track_entropy=False):
        super().__init__()
        self.qkv, self.proj, self.heads, self.causal = qkv, proj, heads, causal
        self.track_entropy = track_entropy

    def forward(self, x, key_len=None):
        B, T, D = x.shape
        H = self.heads
        qkv = self.qkv(x).reshape(B, T, 3, H, D // H).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        query_ok = None if key_len is None else padding(key_len, T)
        return attend(self, q, k, v, key_len, query_ok)


class CrossAttention(torch.nn.Module):
    """The decoder's cross-attention as libsigmareparam builds it
    (attention.h, cfg.cross): q = q(x), [k | v] = kv(memory) from one SNLinear
    D -> 2D (one sigma), or k(memory) and v(memory) when kv is a pair of
    SNLinears; then the attention above over the memory's keys, key_len
    masking the memory's padding (every query row attends)."""

    def __init__(self, q, kv, proj, heads, track_entropy=False):
        super().__init__()
        self.q, self.proj, self.heads, self.causal = q, proj, heads, False
        if isinstance(kv, tuple):
            self.k, self.v = kv
        else:
            self.kv = kv
        self.track_entropy = track_entropy

    def forward(self, x, memory, key_len=None):
        B, T, D = x.shape
        Tk, H = memory.shape[1], self.heads
        q = self.q(x).reshape(B, T, H, D // H).transpose(1, 2)
        if hasattr(self, "kv"):
            kv = self.kv(memory).reshape(B, Tk, 2, H, D // H).permute(2, 0, 3, 1, 4)
            k, v = kv[0], kv[1]
        else:
            k = self.k(memory).reshape(B, Tk, H, D // H).transpose(1, 2)
            v = self.v(memory).reshape(B, Tk, H, D // H).transpose(1, 2)
        return attend(self, q, k, v, key_len, None)


def padding(key_len, T):
    """[B, T] bool: True where position t < key_len[b]."""
    return torch.arange(T)[None, :] < torch.as_tensor(key_len)[:, None]


def attend(m, q, k, v, key_len, query_ok):
    """softmax(q k^T / sqrt(dh)) v and proj, for module m (heads, causal,
    track_entropy, proj): q [B, H, T, dh], k, v [B, H, Tk, dh]; key_len
    masks the keys, query_ok ([B, T] bool, or None) zeroes padded query rows
    (before the softmax they mask only what causality does, so that no row
    is all -inf)."""
    B, H, T, dh = q.shape
    Tk = k.shape[2]
    s = (q @ k.transpose(-2, -1)) * dh ** -0.5
    masked = torch.zeros(B, 1, T, Tk, dtype=torch.bool)
    if m.causal:
        masked |= torch.ones(T, Tk, dtype=torch.bool).triu(1)
    if key_len is not None:
        keys_out = ~padding(key_len, Tk)[:, None, None, :]
        if query_ok is not None:
            keys_out = keys_out & query_ok[:, None, :, None]
        masked |= keys_out
    s = s.masked_fill(masked, float("-inf"))
    a = s.softmax(dim=-1)
    if query_ok is not None:
        a = a * query_ok[:, None, :, None]
    if m.track_entropy:
        record_entropy(m, a, query_ok)
    o = (a @ v).transpose(1, 2).reshape(B, T, H * dh)
    y = m.proj(o)
    return y if query_ok is None else y * query_ok[:, :, None]


def record_entropy(m, a, query_ok=None):
    """m.ent_mean, m.ent_min: per head over batch and the query rows that
    attend (query_ok)."""
    with torch.no_grad():
        plogp = torch.where(a > 0, a * a.log(), torch.zeros_like(a))
        ent = -plogp.sum(-1)  # [B, H, T]
        if query_ok is None:
            m.ent_mean = ent.mean(dim=(0, 2))
            m.ent_min = ent.amin(dim=(0, 2))
        else:
            rows = query_ok[:, None, :].expand_as(ent)
            m.ent_mean = torch.where(rows, ent, 0.0).sum(dim=(0, 2)) / rows.sum(dim=(0, 2))
            m.ent_min = torch.where(rows, ent, float("inf")).amin(dim=(0, 2))


class Mlp(torch.nn.Module):
    def __init__(self, dim, hidden, linear=SNLinear.initialized):
        super().__init__()
        self.fc1, self.fc2 = linear(dim, hidden), linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(torch.nn.Module):
    def __init__(self, dim, heads, mlp):
        super().__init__()
        self.attn = Attention(SNLinear.initialized(dim, 3 * dim),
                              SNLinear.initialized(dim, dim), heads)
        self.mlp = Mlp(dim, mlp)

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


class PatchEmbed(torch.nn.Module):
    """Row-major p x p patches of a [B, 1, H, W] image, embedded by proj."""

    def __init__(self, patch, dim):
        super().__init__()
        self.patch = patch
        self.proj = SNLinear.initialized(patch * patch, dim)

    def forward(self, img):
        b, p = img.shape[0], self.patch
        return self.proj(img.unfold(2, p, p).unfold(3, p, p).reshape(b, -1, p * p))


class ViTLite(torch.nn.Module):
    """timm's ViT layout without LayerNorms, under the official state_dict
    names (what apple/ml-sigma-reparam's convert_to_sn makes of it)."""

    def __init__(self, dim=128, depth=6, heads=4, mlp=256, patch=4, classes=10, image=28):
        super().__init__()
        tokens = (image // patch) ** 2 + 1
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = torch.nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = torch.nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.blocks = torch.nn.ModuleList(Block(dim, heads, mlp) for _ in range(depth))
        self.head = SNLinear.initialized(dim, classes)

    def forward(self, img):
        x = self.patch_embed(img)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(x[:, 0])


# ---- the plain model: what --export-folded files load into ----

class PlainMlp(Mlp):
    def __init__(self, dim, hidden):
        super().__init__(dim, hidden, torch.nn.Linear)


class PlainBlock(torch.nn.Module):
    def __init__(self, dim, heads, mlp):
        super().__init__()
        self.attn = Attention(torch.nn.Linear(dim, 3 * dim), torch.nn.Linear(dim, dim), heads)
        self.mlp = PlainMlp(dim, mlp)

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


class PlainPatchEmbed(torch.nn.Module):
    """timm's patch embedding: a p x p convolution of stride p, tokens row-major."""

    def __init__(self, patch, dim, channels=1):
        super().__init__()
        self.proj = torch.nn.Conv2d(channels, dim, patch, stride=patch)

    def forward(self, img):
        return self.proj(img).flatten(2).transpose(1, 2)


class PlainViTLite(ViTLite):
    """ViTLite with nn.Linear and nn.Conv2d, no sigmaReparam: a deployment's model."""

    def __init__(self, dim=128, depth=6, heads=4, mlp=256, patch=4, classes=10, image=28):
        super().__init__(dim, depth, heads, mlp, patch, classes, image)
        self.patch_embed = PlainPatchEmbed(patch, dim)
        self.blocks = torch.nn.ModuleList(PlainBlock(dim, heads, mlp) for _ in range(depth))
        self.head = torch.nn.Linear(dim, classes)


# ---- the trainer's default model: a stem and separate q, k, v sigmas ----

class SeparateAttention(Attention):
    """Attention whose q, k and v are three linears D -> D (state_dict
    names attn.q, attn.k, attn.v; SNLinears, or linear(in, out)'s): their
    outputs side by side are the fused qkv's row [q | k | v]."""

    def __init__(self, dim, heads, linear=SNLinear.initialized):
        super().__init__(None, linear(dim, dim), heads)
        self.q, self.k, self.v = (linear(dim, dim) for _ in range(3))
        # a plain attribute (not a module): Attention.forward calls it
        self.qkv = lambda x: torch.cat([self.q(x), self.k(x), self.v(x)], -1)


def plain_conv2d(in_ch, out_ch, kernel, stride, padding):
    return torch.nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding)


def sn_conv2d(in_ch, out_ch, kernel, stride, padding, std=0.02):
    w = torch.empty(out_ch, in_ch, kernel, kernel)
    torch.nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)
    return SNConv2d(w, torch.zeros(out_ch), stride=stride, padding=padding)


class Stem(torch.nn.Module):
    """layers = [(channels, stride), ...]: conv<l> = SNConv2d (or conv's)
    3x3, padding 1, then a GELU."""

    def __init__(self, layers, channels=1, conv=sn_conv2d):
        super().__init__()
        self.count = len(layers)
        for i, (k, stride) in enumerate(layers):
            setattr(self, f"conv{i}", conv(channels, k, 3, stride, 1))
            channels = k

    def forward(self, x):
        for i in range(self.count):
            x = F.gelu(getattr(self, f"conv{i}")(x))
        return x


class ConvPatchEmbed(torch.nn.Module):
    """The patch embedding of a stem's map: a q x q SNConv2d of stride q
    (its weight [D][K q q], columns in the order (c, y, x)), tokens row-major."""

    def __init__(self, channels, q, dim, conv=sn_conv2d):
        super().__init__()
        self.proj = conv(channels, dim, q, q, 0)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class DefaultViTLite(ViTLite):
    """ViTLite with the trainer's default stem (stem=[(K, s), ...]) and
    qkv="separate" (or "fused"). plain: nn.Linear and nn.Conv2d throughout,
    what --export-folded files of it load into."""

    def __init__(self, dim=128, depth=6, heads=4, mlp=256, patch=4, classes=10, image=28,
                 stem=(), qkv="separate", plain=False):
        super().__init__(dim, depth, heads, mlp, patch, classes, image)
        conv, linear = (plain_conv2d, torch.nn.Linear) if plain else (sn_conv2d,
                                                                       SNLinear.initialized)
        if plain:
            self.patch_embed = PlainPatchEmbed(patch, dim)
            self.blocks = torch.nn.ModuleList(PlainBlock(dim, heads, mlp) for _ in range(depth))
            self.head = torch.nn.Linear(dim, classes)
        self.has_stem = bool(stem)
        if stem:
            self.stem = Stem(stem, conv=conv)
            side = image
            for _, stride in stem:
                side = (side - 1) // stride + 1
            self.patch_embed = ConvPatchEmbed(stem[-1][0], side // (image // patch), dim, conv)
        if qkv == "separate":
            for blk in self.blocks:
                blk.attn = SeparateAttention(dim, heads, linear)

    def forward(self, img):
        return super().forward(self.stem(img) if self.has_stem else img)


# ---- the char LM (examples/char_lm) ----

class QkVAttention(Attention):
    """Attention whose q and k share one linear D -> 2D (its row [q | k];
    state_dict name attn.qk) and v has its own (attn.v): --qkv-sigma qk-v."""

    def __init__(self, dim, heads, linear=SNLinear.initialized, causal=False):
        super().__init__(None, linear(dim, dim), heads, causal)
        self.qk, self.v = linear(dim, 2 * dim), linear(dim, dim)
        self.qkv = lambda x: torch.cat([self.qk(x), self.v(x)], -1)


def lm_attention(dim, heads, linear, qkv):
    """Causal attention with one sigma for the fused qkv ("fused"), q and k
    sharing one ("qk-v"), or q, k and v one each ("separate")."""
    if qkv == "fused":
        return Attention(linear(dim, 3 * dim), linear(dim, dim), heads, causal=True)
    if qkv == "qk-v":
        return QkVAttention(dim, heads, linear, causal=True)
    attn = SeparateAttention(dim, heads, linear)
    attn.causal = True
    return attn


class LMBlock(torch.nn.Module):
    """srp_block as the LM places its LayerNorms (eps 1e-5): norm "none"
    x + attn(x), then + mlp; "pre" x + attn(ln1(x)), then x + mlp(ln2(x));
    "post" ln1(x + attn(x)), then ln2(x + mlp(x))."""

    def __init__(self, dim, heads, mlp, norm, linear, qkv):
        super().__init__()
        self.norm = norm
        if norm != "none":
            self.ln1 = torch.nn.LayerNorm(dim, eps=1e-5)
            self.ln2 = torch.nn.LayerNorm(dim, eps=1e-5)
        self.attn = lm_attention(dim, heads, linear, qkv)
        self.mlp = Mlp(dim, mlp, linear)

    def forward(self, x):
        if self.norm == "post":
            x = self.ln1(x + self.attn(x))
            return self.ln2(x + self.mlp(x))
        if self.norm == "pre":
            x = x + self.attn(self.ln1(x))
            return x + self.mlp(self.ln2(x))
        x = x + self.attn(x)
        return x + self.mlp(x)


LM_ARCHS = {"sigma": (True, "none"), "sigma-preln": (True, "pre"), "preln": (False, "pre"),
            "postln": (False, "post"), "sigma-postln": (True, "post")}


def fixed_positions(context, dim, scale):
    """The sinusoids of model.c, in float32 as it stores them: pos[t][d] =
    scale sin(t w) (d even) or scale cos(t w) (d odd), w = 10000^(-(d - d % 2) / D)."""
    t = torch.arange(context, dtype=torch.float64)[:, None]
    d = torch.arange(dim)
    w = 10000.0 ** (-(d - d % 2).double() / dim)
    wave = torch.where(d % 2 == 1, torch.cos(t * w), torch.sin(t * w)).float()
    return torch.tensor(scale, dtype=torch.float32) * wave


class CharLM(torch.nn.Module):
    """The char LM over bytes: tokens [B, T] -> logits [B, T, 256]. arch,
    positions ("learned" or "fixed", the sinusoids scaled by embed_std),
    tied_head and qkv as char-lm-train's flags; folded: every linear a
    plain nn.Linear (what --export-folded files load into)."""

    def __init__(self, context=128, dim=128, depth=4, heads=4, mlp=512, arch="sigma",
                 positions="learned", tied_head=False, qkv="fused", embed_std=1.0, folded=False):
        super().__init__()
        sigma, norm = LM_ARCHS[arch]
        linear = SNLinear.initialized if sigma and not folded else torch.nn.Linear
        self.wte = torch.nn.Embedding(256, dim)
        if positions == "learned":
            self.wpe = torch.nn.Embedding(context, dim)
        else:
            self.register_buffer("pos", fixed_positions(context, dim, embed_std),
                                 persistent=False)
        self.blocks = torch.nn.ModuleList(LMBlock(dim, heads, mlp, norm, linear, qkv)
                                          for _ in range(depth))
        self.ln_f = torch.nn.LayerNorm(dim, eps=1e-5) if norm == "pre" else None
        self.lm_head = None if tied_head else linear(dim, 256)

    def forward(self, tokens):
        T = tokens.shape[1]
        pos = self.wpe.weight[:T] if hasattr(self, "wpe") else self.pos[:T]
        x = self.wte(tokens) + pos
        for blk in self.blocks:
            x = blk(x)
        if self.ln_f is not None:
            x = self.ln_f(x)
        return x @ self.wte.weight.T if self.lm_head is None else self.lm_head(x)
