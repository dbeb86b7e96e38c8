"""Values without a batch and what reads shapes: Parameter, Buffer, arange, expand, weight tying,
`x.size(d)` in blocks. Each against the PyTorch a person would write for it, with the
reference's weights randomised and loaded into the netdsl module."""

from __future__ import annotations

import pytest
import torch
from test_ops import WITHOUT_BATCH
from torch import nn

import netdsl
from netdsl import NetdslError


def codes(text: str) -> list[str]:
    with pytest.raises(NetdslError) as e:
        netdsl.loads(text)
    return [d.code for d in e.value.diagnostics]


def load_into(model: nn.Module, ref: nn.Module) -> None:
    """The reference's tensors into the netdsl model, by position (shapes must agree)."""
    mine, theirs = model.state_dict(), ref.state_dict()
    assert [tuple(v.shape) for v in mine.values()] == [tuple(v.shape) for v in theirs.values()]
    model.load_state_dict(dict(zip(mine, theirs.values())))


def randomise(ref: nn.Module) -> None:
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.5)


EMBED = """
block Embed(dim, tokens) {
  input x
  class_token = Parameter(1, 1, dim)
  pos = Parameter(1, tokens + 1, dim, init=normal, std=0.02)
  seq = (class_token.expand(x.size(0), -1, -1), x) -> Concat(dim=1)
  output seq + pos
}
model M {
  input patches: [6, 8]
  gamma = Parameter(8, init=constant, value=0.5)
  patches * gamma -> Embed(8, 6) -> Select(1, 0) -> Linear(3) -> logits
  output logits
}
"""


class Embed(nn.Module):  # as torchvision's VisionTransformer writes it
    def __init__(self):
        super().__init__()
        self.class_token = nn.Parameter(torch.zeros(1, 1, 8))
        self.pos = nn.Parameter(torch.empty(1, 7, 8).normal_(std=0.02))

    def forward(self, x):
        return torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos


class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((8,), 0.5))
        self.embed1 = Embed()
        self.fc1 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc1(self.embed1(x * self.gamma)[:, 0])


def test_parameters_expand_and_broadcast_as_torch():
    spec = netdsl.loads(EMBED)
    model, ref = spec.build(), M()
    assert list(model.state_dict()) == ["gamma", "embed1.class_token", "embed1.pos", "fc1.weight", "fc1.bias"]
    randomise(ref)
    load_into(model, ref)
    x = torch.randn(4, 6, 8)
    torch.testing.assert_close(model(x), ref(x), rtol=0, atol=0)
    model(x).sum().backward()
    ref(x).sum().backward()
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0, msg=name)
    s = spec.summary()
    assert s.total_params == sum(p.numel() for p in ref.parameters()) == 8 + 8 + 56 + 27


def test_parameter_fills_and_buffers():
    spec = netdsl.loads("""
model M {
  input x: [4, 100]
  a = Parameter(1, 4, 100)
  b = Parameter(4, 100, init=ones, trainable=false)
  c = Parameter(1, 4, 100, init=constant, value=-2.5)
  d = Parameter(400, 100, init=normal, std=0.02)
  e = Parameter(400, 100, init=trunc_normal, std=0.5)
  f = Parameter(400, 100, init=uniform, a=-3, b=-1)
  g = Parameter(400, 100, init=xavier_uniform)
  kept = Buffer(4, 100, init=ones)
  y = x + a + b + c + kept
  output y -> Flatten -> Linear(2) -> (d -> Flatten -> Linear(2)) + ((e + f + g) -> Flatten -> Linear(2)) * 0
}
""".replace("output y -> Flatten -> Linear(2) -> (d -> Flatten -> Linear(2)) + ((e + f + g) -> Flatten -> Linear(2)) * 0",
            "output y -> Flatten -> Linear(2)\n  w = d + e + f + g"))
    torch.manual_seed(0)
    m = spec.build()
    sd = m.state_dict()
    assert (sd["a"] == 0).all() and (sd["b"] == 1).all() and (sd["c"] == -2.5).all()
    assert abs(sd["d"].std().item() - 0.02) < 0.002 and abs(sd["d"].mean().item()) < 0.002
    assert sd["e"].abs().max() <= 2 and abs(sd["e"].std().item() - 0.5) < 0.05  # cut at ±2, as torch
    assert sd["f"].min() >= -3 and sd["f"].max() < -1
    bound = (6 / (400 + 100)) ** 0.5
    assert sd["g"].abs().max() <= bound and sd["g"].abs().max() > 0.9 * bound
    assert "kept" in sd and "kept" not in dict(m.named_parameters())
    assert not m.b.requires_grad and m.a.requires_grad
    x = torch.randn(2, 4, 100)
    # the buffer moves with the module and is read in forward
    assert m.to(torch.float64)(x.double()).dtype == torch.float64


def test_arange_positions_as_nanogpt():
    spec = netdsl.loads("""
model Pos {
  input idx: [12] int64
  tok = idx -> Embedding(50, 16) as wte
  pos = arange(idx.size(1)) -> Embedding(12, 16) as wpe
  output tok + pos
}
""")
    m = spec.build()
    graph = spec.graph()
    t = graph.node("arange1").types[0]
    assert (t.shape, t.dtype, t.has_batch) == ((12,), "int64", False)
    idx = torch.randint(0, 50, (3, 12))
    want = m.wte(idx) + m.wpe(torch.arange(12))
    torch.testing.assert_close(m(idx), want, rtol=0, atol=0)
    # shorter sequences too, as nanoGPT's forward allows
    torch.testing.assert_close(m(idx[:, :5]), m.wte(idx[:, :5]) + m.wpe(torch.arange(5)), rtol=0, atol=0)


TIED = """
model LM {
  input idx: [8] int64
  x = idx -> Embedding(40, 16) as wte -> LayerNorm
  logits = x -> Linear(40, bias=false, weight=wte.weight) as lm_head
  output logits
}
"""


def test_weight_tying_is_one_tensor():
    spec = netdsl.loads(TIED)
    m = spec.build()
    assert m.lm_head.weight is m.wte.weight
    assert spec.summary().total_params == 40 * 16 + 32 == sum(p.numel() for p in m.parameters())
    sd = m.state_dict()
    assert {"wte.weight", "lm_head.weight"} <= set(sd)  # both names, as torch keeps them
    assert sd["wte.weight"].data_ptr() == sd["lm_head.weight"].data_ptr()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    m(torch.randint(0, 40, (2, 8))).logsumexp(-1).sum().backward()
    opt.step()
    assert m.lm_head.weight is m.wte.weight
    source = netdsl.compile(spec)
    assert "self.lm_head.weight = self.wte.weight" in source


def test_tying_errors():
    assert codes(TIED.replace("Linear(40,", "Linear(41,")) == ["E301"]
    assert codes(TIED.replace("weight=wte.weight", "weight=wtee.weight")) == ["E201"]
    assert codes(TIED.replace("weight=wte.weight", "weight=3")) == ["E104"]
    assert codes(TIED.replace("-> LayerNorm", "-> LayerNorm as ln").replace("weight=wte", "weight=ln")) == ["E301"]


def test_blocks_read_their_input_shape():
    spec = netdsl.loads("""
block Res(c, stride = 1) {
  input x
  y = x -> Conv2d(c, 3, stride=stride, padding=1, bias=false) -> BatchNorm2d
  output y + x if stride == 1 and x.size(1) == c else y
}
block Head(classes) {
  input x
  features = x.shape[1] * x.size(-1) * x.shape[-2]
  output x -> Flatten -> Linear(classes, in_features=features)
}
model M {
  input img: [3, 8, 8]
  img -> Conv2d(4, 1) -> Res(4) -> Res(8) -> Res(8, stride=2) -> Res(8) -> Head(5) -> y
  output y
}
""")
    g = spec.graph()
    adds = {n.name: any(m.op is not None and m.op.kind == "Add" for m in n.graph.nodes) for n in g.nodes
            if n.kind == "block" and n.block == "Res"}
    assert adds == {"res1": True, "res2": False, "res3": False, "res4": True}
    assert spec.build()(torch.randn(2, 3, 8, 8)).shape == (2, 5)


def test_shape_reading_errors():
    base = """
model M {
  input x: [3, 8, 8]
  x -> Flatten -> Linear(SIZE) -> y
  output y
}
"""
    assert codes(base.replace("SIZE", "x.size(0)")) == ["E104"]  # the batch
    assert codes(base.replace("SIZE", "x.size(4)")) == ["E104"]  # out of range
    assert codes(base.replace("SIZE", "x.shape")) == ["E104"]
    assert netdsl.loads(base.replace("SIZE", "x.ndim * x.size(-1)")).graph().node("fc1").op.out_features == 32
    assert netdsl.loads(base.replace("SIZE", "x.size()[1]")).graph().node("fc1").op.out_features == 3
    # torch's spellings of what is built in point at the built-in
    assert codes(base.replace("x -> Flatten -> Linear(SIZE)", "F.relu(x)")) == ["E108"]
    assert codes(base.replace("x -> Flatten -> Linear(SIZE)", "torch.cat((x, x), dim=1)")) == ["E108"]


def test_without_batch_errors():
    assert codes("""
model M {
  input x: [4, 8]
  t = Parameter(1, 1, 8)
  y = (t, x) -> Concat(dim=1)
  output y
}
""") == ["E301"]
    assert codes("""
model M {
  input x: [4, 8]
  t = Parameter(2, 1, 8)
  y = (t.expand(x.size(0), -1, -1), x) -> Concat(dim=1)
  output y
}
""") == ["E301"]
    assert codes("""
model M {
  input x: [4, 8]
  p = arange(5)
  output x
}
""") == ["E209"]
    assert codes("""
model M {
  input x: [4, 8]
  y = x.view(2, 16)
  output y
}
""") == ["E209"]
    assert codes("""
model M {
  input x: [4, 8]
  t = Parameter(4, 8)
  output x, t
}
""") == ["E306"]
    assert codes("""
model M {
  input x: [4, 8]
  t = Parameter(3, 4, 8)
  output x + t
}
""") == ["E301"]  # its 3 would meet the batch


def test_without_batch_ops_are_all_covered_here():
    import inspect
    import sys

    text = inspect.getsource(sys.modules[__name__])
    for kind in WITHOUT_BATCH:
        assert f"{kind}(" in text
