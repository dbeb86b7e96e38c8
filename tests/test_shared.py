"""Shared weights: a layer or block declared once (`enc = Encoder(64)`) and applied several
times is one module with one set of weights, in the live module, the compiled source, the
summary and the diagram alike."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import netdsl
from netdsl.diagnostics import NetdslError
from netdsl.targets.compile import compile_spec
from netdsl.targets.diagram import render

SIAMESE = """
block Encoder(d) {
  input x
  output x -> Conv2d(8, 3, padding=1) -> ReLU -> Flatten -> Linear(d)
}
model Siamese {
  input a: [1, 8, 8]
  input b: [1, 8, 8]
  enc = Encoder(16)
  ea = a -> enc
  eb = enc(b)
  output abs(ea - eb) -> Linear(1) -> Sigmoid
}
"""


class Reference(nn.Module):
    """The siamese network as a person writes it in PyTorch."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(512, 16))
        self.head = nn.Linear(16, 1)

    def forward(self, a, b):
        return torch.sigmoid(self.head((self.enc(a) - self.enc(b)).abs()))


def test_siamese_encoder_is_one_module_matching_a_hand_written_one():
    spec = netdsl.loads(SIAMESE)
    m = spec.build()
    ref = Reference()
    torch.manual_seed(0)
    for p in ref.parameters():
        p.data.normal_()
    sd = m.state_dict()
    assert sorted(sd) == ["enc.conv1.bias", "enc.conv1.weight", "enc.fc1.bias", "enc.fc1.weight",
                          "fc1.bias", "fc1.weight"]  # one copy of the encoder
    assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in ref.parameters()) == 8305
    m.load_state_dict({"enc.conv1.weight": ref.enc[0].weight, "enc.conv1.bias": ref.enc[0].bias,
                       "enc.fc1.weight": ref.enc[3].weight, "enc.fc1.bias": ref.enc[3].bias,
                       "fc1.weight": ref.head.weight, "fc1.bias": ref.head.bias})
    a, b = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(m(a, b), ref(a, b), rtol=1e-5, atol=1e-6)
    # the gradient of the one encoder gathers both uses, as in torch
    m(a, b).sum().backward()
    ref(a, b).sum().backward()
    torch.testing.assert_close(m.enc.conv1.weight.grad, ref.enc[0].weight.grad, rtol=1e-4, atol=1e-5)


def test_compiled_source_summary_and_diagram_show_one_encoder():
    spec = netdsl.loads(SIAMESE)
    src = compile_spec(spec, train=False)
    assert src.count("self.enc = Encoder(16)") == 1 and "self.enc(a)" in src and "self.enc(b)" in src
    assert "enc_2" not in src
    summary = spec.summary()
    shared = next(r for r in summary.rows if r.name == "enc_2")
    assert shared.layer == "Encoder(d=16) · shares enc" and shared.params == 0 and shared.macs > 0
    assert not any(r.name.startswith("enc_2.") for r in summary.rows)  # its layers are enc's
    assert summary.total_params == 8305 and "shares enc" in summary.table()
    dot = render(spec).source
    assert "shares enc" in dot and "style=dashed" in dot


def test_a_shared_layer_repeated_is_albert_style_weight_sharing():
    spec = netdsl.loads("""
model Albert {
  input x: [6, 16]
  layer = TransformerEncoderLayer(4, dim_feedforward=32, dropout=0.0)
  x -> layer * 3 -> y
  output y
}
""")
    m = spec.build().eval()
    assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in m.layer.parameters())
    x = torch.randn(2, 6, 16)
    want = m.layer(m.layer(m.layer(x)))
    torch.testing.assert_close(m(x), want, rtol=0, atol=0)
    assert spec.summary().total_params == sum(p.numel() for p in m.parameters())


def test_the_live_module_and_the_compiled_source_agree(tmp_path):
    import importlib.util

    spec = netdsl.loads(SIAMESE)
    path = tmp_path / "siamese.py"
    path.write_text(compile_spec(spec, train=False))
    loaded = importlib.util.spec_from_file_location("siamese_compiled", path)
    mod = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(mod)
    ours, theirs = spec.build(), mod.Siamese()
    theirs.load_state_dict(ours.state_dict())
    a, b = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(ours(a, b), theirs(a, b), rtol=0, atol=0)


MISUSES = [
    ("fc = Linear(3)\n  ya = a -> fc\n  yb = b -> fc\n  output ya, yb", "E301", "one set of weights"),
    ("fc = Linear(3)\n  ya = a -> fc(4)\n  output ya, b", "E105", "declared layer"),
    ("fc = Linear(3)\n  ya = a -> fc as head\n  output ya, b", "E107", "already names"),
    ("fc = Linear(3)\n  ya = a -> Lnear(3)\n  output ya, b", "E101", "unknown layer"),
]


@pytest.mark.parametrize("body, code, words", MISUSES)
def test_misuse_of_a_shared_layer_is_a_located_error(body, code, words):
    text = f"model M {{\n  input a: [8]\n  input b: [4]\n  {body}\n}}\n"
    with pytest.raises(NetdslError) as exc:
        netdsl.loads(text)
    assert f"error[{code}]" in str(exc.value) and words in str(exc.value), str(exc.value)


def test_a_declared_layer_never_applied_is_a_warning():
    spec = netdsl.loads("model M {\n  input a: [8]\n  fc = Linear(3)\n  a -> Linear(2) -> y\n  output y\n}\n")
    assert any(d.code == "W210" and "never applied" in d.message for d in spec.warnings)


def test_shared_graphs_keep_the_ir_invariants():
    from netdsl.ir.verify import verify

    spec = netdsl.loads(SIAMESE)
    verify(spec.graph(), shaped=True)
    g = spec.graph()
    assert [n.shares for n in g.nodes if n.shares] == ["enc"]


def test_the_siamese_reference_spec_matches_a_hand_written_network():
    from pathlib import Path

    class Siamese(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Sequential(
                nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Flatten(), nn.Linear(64 * 7 * 7, 64), nn.ReLU())
            self.head = nn.Linear(64, 1)

        def forward(self, left, right):
            return self.head((self.enc(left) - self.enc(right)).abs())

    ref = Siamese()
    torch.manual_seed(3)
    for p in ref.parameters():
        p.data.normal_(0, 0.1)
    m = netdsl.load(Path(__file__).parents[1] / "specs" / "siamese.net").build().eval()
    assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in ref.parameters()) == 219_649
    theirs = list(ref.state_dict().values())
    assert [v.shape for v in m.state_dict().values()] == [v.shape for v in theirs]
    m.load_state_dict(dict(zip(m.state_dict(), theirs)))
    left, right = torch.randn(5, 1, 28, 28), torch.randn(5, 1, 28, 28)
    torch.testing.assert_close(m(left, right), ref(left, right), rtol=1e-4, atol=1e-5)
