"""Transformer layers with masks, and the encoder and decoder stacks, against the same torch.nn
modules called by hand: identical keys, outputs and gradients with random weights loaded, in
training (dropout off) and evaluation mode (torch's fast paths and nested tensors included)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import netdsl
from netdsl import NetdslError

D, HEADS, FF, T, S = 16, 4, 32, 6, 5


def causal(t: int) -> torch.Tensor:
    return torch.ones(t, t, dtype=torch.bool).triu(1)


def padding(batch: int, length: int, seed: int) -> torch.Tensor:
    """[B, length] bool, true at the padded tail of each sequence (never the whole sequence)."""
    g = torch.Generator().manual_seed(seed)
    keep = torch.randint(1, length + 1, (batch,), generator=g)
    return torch.arange(length)[None, :] >= keep[:, None]


def randomise(module: nn.Module) -> None:
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if p.dim() == 1 and p.shape[0] == D else 0))


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(D, HEADS, FF, 0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(D))
        self.attn = nn.MultiheadAttention(D, HEADS, batch_first=True)

    def forward(self, x, pad):
        y = self.encoder(x, mask=causal(x.size(1)), src_key_padding_mask=pad, is_causal=True)
        out, _ = self.attn(y, y, y, need_weights=False, key_padding_mask=pad)
        return out


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(D, HEADS, FF, 0.0, batch_first=True), 2)
        self.step = nn.TransformerDecoderLayer(D, HEADS, FF, 0.0, activation="gelu", norm_first=True,
                                               batch_first=True)

    def forward(self, tgt, memory, pad):
        y = self.decoder(tgt, memory, tgt_mask=causal(tgt.size(1)), tgt_is_causal=True,
                         memory_key_padding_mask=pad)
        return self.step(y, memory, tgt_key_padding_mask=torch.zeros(y.shape[:2], dtype=torch.bool))


ENCODER = f"""
model Encoder {{
  input x: [{T}, {D}]
  input pad: [{T}] bool
  y = x -> TransformerEncoder(TransformerEncoderLayer({D}, {HEADS}, {FF}, 0.0), 2, norm=LayerNorm({D}),
                              src_key_padding_mask=pad, is_causal=true) as encoder
  out = y -> MultiheadAttention({HEADS}, key_padding_mask=pad) as attn
  output out
}}
"""

DECODER = f"""
model Decoder {{
  input tgt: [{T}, {D}]
  input memory: [{S}, {D}]
  input pad: [{S}] bool
  input none_padded: [{T}] bool
  y = (tgt, memory) -> TransformerDecoder(TransformerDecoderLayer({D}, {HEADS}, {FF}, 0.0), 2,
                                          tgt_is_causal=true, memory_key_padding_mask=pad) as decoder
  out = (y, memory) -> TransformerDecoderLayer({HEADS}, dim_feedforward={FF}, dropout=0.0, activation="gelu", norm_first=true,
                                              tgt_key_padding_mask=none_padded) as step
  output out
}}
"""


def pair(text, ref):
    spec = netdsl.loads(text)
    ours = spec.build()
    randomise(ref)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    assert spec.summary().total_params == sum(p.numel() for p in ref.parameters())
    return spec, ours


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_encoder_stack_with_masks_is_torchs(mode):
    spec, ours = pair(ENCODER, ref := Encoder())
    x, pad = torch.randn(3, T, D), padding(3, T, 0)
    ours.train(mode == "train")
    ref.train(mode == "train")
    a, b = ours(x, pad), ref(x, pad)
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    if mode == "train":
        a.nan_to_num().sum().backward()
        b.nan_to_num().sum().backward()
        for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0, msg=name)
    assert "is_causal=True" in netdsl.compile(spec)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_decoder_stack_with_cross_attention_is_torchs(mode):
    _, ours = pair(DECODER, ref := Decoder())
    tgt, memory, pad = torch.randn(2, T, D), torch.randn(2, S, D), padding(2, S, 1)
    none = torch.zeros(2, T, dtype=torch.bool)
    ours.train(mode == "train")
    ref.train(mode == "train")
    torch.testing.assert_close(ours(tgt, memory, pad, none), ref(tgt, memory, pad), rtol=0, atol=0)


def test_the_causal_mask_hides_the_future():
    spec = netdsl.loads(f"""
model M {{
  input x: [{T}, {D}]
  y = x -> MultiheadAttention({HEADS}, is_causal=true)
  output y
}}
""")
    m = spec.build().eval()
    x = torch.randn(1, T, D)
    changed = x.clone()
    changed[:, -1] += 1  # the last position changes: no earlier output may
    torch.testing.assert_close(m(x)[:, :-1], m(changed)[:, :-1])
    assert not torch.allclose(m(x)[:, -1], m(changed)[:, -1])


def codes(text: str) -> list[str]:
    with pytest.raises(NetdslError) as e:
        netdsl.loads(text)
    return [d.code for d in e.value.diagnostics]


ATTEND = "  y = x -> MultiheadAttention(4, key_padding_mask=pad)"


@pytest.mark.parametrize("lines, code", [
    (["input pad: [5] bool", ATTEND], "E301"),  # one flag per key: 6 of them
    (["input pad: [6]", ATTEND], "E303"),  # float: not a key padding mask
    (["y = x -> MultiheadAttention(4, key_padding_mask=3)"], "E104"),
    (["input pad: [6] bool", "y = x -> MultiheadAttention(4, attn_mask=pad)"], "E102"),
    (["y = x -> MultiheadAttention(4, is_causal=true, need_weights=true)"], "E102"),
    (["y = x -> TransformerEncoder(LayerNorm, 2)"], "E104"),
    (["y = x -> TransformerEncoder(TransformerEncoderLayer(17, 4), 2)"], "E302"),
    (["y = x -> TransformerEncoder(TransformerEncoderLayer(4), 2, norm=LayerNorm(8))"], "E301"),
    (["input m: [6, 16]", "y = (x, m) -> TransformerDecoderLayer(4, tgt_is_causal=true, memory_key_padding_mask=x)"],
     "E303"),
])
def test_mask_mistakes(lines, code):
    body = "\n  ".join(lines)
    assert code in codes(f"model M {{\n  input x: [6, 16]\n  {body}\n  output y\n}}\n")
