"""specs/gpt2.net against GPT-2 small as nanoGPT's model.py writes it (by hand, below): the
same parameter count with the tied head counted once, the same state_dict order and shapes,
and identical logits and gradients with the reference's randomised weights loaded."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import netdsl

SPEC = Path(__file__).parent.parent / "specs" / "gpt2.net"
VOCAB, CONTEXT, LAYERS, HEADS, EMBED = 50257, 1024, 12, 12, 768
PARAMETERS = 124_439_808


class CausalSelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_attn = nn.Linear(EMBED, 3 * EMBED)
        self.c_proj = nn.Linear(EMBED, EMBED)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, HEADS, C // HEADS).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, HEADS, C // HEADS).transpose(1, 2)
        v = v.view(B, T, HEADS, C // HEADS).transpose(1, 2)
        # attention by hand (nanoGPT's slow path), so that the fused op netdsl emits is checked
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
        att = F.softmax(att.masked_fill(~mask, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_fc = nn.Linear(EMBED, 4 * EMBED)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * EMBED, EMBED)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = nn.LayerNorm(EMBED)
        self.attn = CausalSelfAttention()
        self.ln_2 = nn.LayerNorm(EMBED)
        self.mlp = MLP()

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(VOCAB, EMBED), "wpe": nn.Embedding(CONTEXT, EMBED),
            "h": nn.ModuleList([Block() for _ in range(LAYERS)]), "ln_f": nn.LayerNorm(EMBED)})
        self.lm_head = nn.Linear(EMBED, VOCAB, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying, as nanoGPT

    def forward(self, idx):
        pos = torch.arange(0, idx.size(1), dtype=torch.long, device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


@functools.lru_cache(maxsize=1)
def models():
    torch.manual_seed(0)
    spec = netdsl.load(SPEC)
    ours, ref = spec.build(), GPT()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # random, fan-in scaled: default inits would hide a swapped tensor
        for name, p in ref.named_parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
    ours.load_state_dict(dict(zip(ours.state_dict(), ref.state_dict().values())))
    return spec, ours, ref


def test_parameters_counted_once_with_the_tied_head():
    spec, ours, ref = models()
    assert spec.summary().total_params == PARAMETERS
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters()) == PARAMETERS
    assert ours.lm_head.weight is ours.wte.weight


def test_state_dict_in_nanogpts_order():
    _, ours, ref = models()
    assert [tuple(t.shape) for t in ours.state_dict().values()] == \
        [tuple(t.shape) for t in ref.state_dict().values()]
    assert [k.rsplit(".", 1)[-1] for k in ours.state_dict()] == [k.rsplit(".", 1)[-1] for k in ref.state_dict()]


@pytest.mark.parametrize("length", [16, 5])
def test_same_logits_and_gradients(length):
    _, ours, ref = models()
    idx = torch.randint(0, VOCAB, (2, length), generator=torch.Generator().manual_seed(length))
    a, b = ours(idx), ref(idx)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    ours.zero_grad()
    ref.zero_grad()
    F.cross_entropy(a[:, :-1].flatten(0, 1), idx[:, 1:].flatten()).backward()
    F.cross_entropy(b[:, :-1].flatten(0, 1), idx[:, 1:].flatten()).backward()
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)
