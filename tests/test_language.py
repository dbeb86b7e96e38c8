"""The language's features, end to end: spec text -> IR -> live module."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import netdsl
from netdsl.ir.verify import verify

SPECS = sorted((Path(__file__).parents[1] / "specs").glob("*.net"))


def build(text: str, model: str | None = None):
    spec = netdsl.loads(text)
    return spec, spec.build(model)


def shapes(spec, model=None):
    g = spec.graph(model)
    return {o.name: g.type_of(o.ref).shape for o in g.outputs}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_spec_satisfies_ir_invariants(path):
    spec = netdsl.load(path)
    for name in spec.model_names:
        verify(spec.graph(name), shaped=True)


def test_chain_binds_its_trailing_name_and_infers_sizes():
    spec, m = build("model M {\n input x: [1, 28, 28]\n x -> Flatten -> Linear(10) -> y\n output y\n}")
    assert m.fc1.in_features == 784
    assert m(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_chains_continue_across_lines_and_arguments_across_brackets():
    text = """
model M {
  input x: [8]
  x -> Linear(
         16,
         bias=false)
    -> ReLU ->
       Linear(4) -> y   # a comment at the end
  output y
}
"""
    spec, m = build(text)
    assert m.fc1.bias is None and shapes(spec) == {"y": (4,)}


def test_block_with_defaults_arithmetic_and_repetition():
    text = """
block Widen(c, factor = 2) {
  input x
  output x -> Linear(c * factor) -> ReLU
}
model M {
  input x: [3]
  x -> Widen(4) * 3 -> Widen(c=5, factor=1 + 1) -> y
  output y
}
"""
    spec, m = build(text)
    g = spec.graph()
    blocks = [n for n in g.nodes if n.kind == "block"]
    assert [n.name for n in blocks] == ["widen1", "widen2", "widen3", "widen4"]
    assert m.widen2.fc1.in_features == 8 and m.widen4.fc1.out_features == 10
    assert m(torch.zeros(2, 3)).shape == (2, 10)


def test_conditional_picks_a_branch_from_block_parameters():
    text = """
block B(c, stride = 1) {
  input x
  s = x -> Conv2d(c, 1, stride=stride) if stride != 1 or c > 100 else x
  output s
}
model M {
  input x: [4, 8, 8]
  x -> B(4) -> B(8, stride=2) -> y
  output y
}
"""
    spec, m = build(text)
    assert not hasattr(m.b1, "conv1") and hasattr(m.b2, "conv1")
    assert shapes(spec) == {"y": (8, 4, 4)}


def test_fan_out_merges_concat_and_several_outputs():
    text = """
model M {
  input a: [4]
  input b: [4]
  s = a + b
  p = a * b
  c = (s, p) -> Concat(dim=1)
  output s, c
}
"""
    spec, m = build(text)
    a, b = torch.randn(2, 4), torch.randn(2, 4)
    s, c = m(a, b)
    torch.testing.assert_close(s, a + b)
    torch.testing.assert_close(c, torch.cat([a + b, a * b], dim=1))
    assert shapes(spec) == {"s": (4,), "c": (8,)}


def test_applying_a_layer_to_a_value_and_multi_input_layers():
    text = """
model M {
  input a: [3]
  input b: [5]
  y = Bilinear(a, b, 2)
  z = ReLU(y + y)
  output z
}
"""
    spec, m = build(text)
    assert m.bilinear1.in1_features == 3 and m.bilinear1.in2_features == 5
    assert m(torch.randn(2, 3), torch.randn(2, 5)).shape == (2, 2)


def test_recurrent_outputs_destructure_and_only_the_sequence_flows_on():
    text = """
model M {
  input x: [7, 3]
  out, h, _ = x -> LSTM(6, num_layers=2)
  seq = x -> GRU(4) -> Select(1, -1)
  output out, h, seq
}
"""
    spec, m = build(text)
    out, h, seq = m(torch.randn(5, 7, 3))
    assert out.shape == (5, 7, 6) and h.shape == (5, 2, 6) and seq.shape == (5, 4)
    assert shapes(spec) == {"out": (7, 6), "h": (2, 6), "seq": (4,)}


def test_names_with_as_become_parameter_names():
    spec, m = build("model M {\n input x: [2]\n x -> Linear(3) as encoder -> Linear(1) as head -> y\n"
                    " output y\n}")
    assert set(m.state_dict()) == {"encoder.weight", "encoder.bias", "head.weight", "head.bias"}


def test_statements_may_come_in_any_order():
    spec, m = build("model M {\n output y\n y = h -> Linear(1)\n h = x -> Linear(4)\n input x: [2]\n}")
    assert m(torch.zeros(1, 2)).shape == (1, 1)


def test_several_models_per_file_and_model_selection():
    text = "model A {\n input x: [2]\n x -> Linear(1) -> y\n output y\n}\n" \
           "model B {\n input x: [2]\n x -> Linear(5) -> y\n output y\n}\n"
    spec = netdsl.loads(text)
    assert spec.model_names == ["A", "B"]
    assert spec.build("B")(torch.zeros(1, 2)).shape == (1, 5)
    assert spec.build()(torch.zeros(1, 2)).shape == (1, 1)
    with pytest.raises(netdsl.NetdslError) as e:
        spec.build("b")
    assert "did you mean 'B'" in str(e.value)


def test_integer_inputs_and_embeddings():
    spec, m = build("model M {\n input t: [12] int64\n t -> Embedding(100, 8) -> Mean(1) -> y\n output y\n}")
    assert m(torch.randint(0, 100, (3, 12))).shape == (3, 8)


def test_init_and_trainable_are_applied():
    text = "model M {\n input x: [4]\n x -> Linear(3, init=zeros, bias_init=ones) -> Linear(2, trainable=false) -> y\n output y\n}"
    spec, m = build(text)
    assert torch.all(m.fc1.weight == 0) and torch.all(m.fc1.bias == 1)
    assert not any(p.requires_grad for p in m.fc2.parameters())
    s = spec.summary()
    assert s.total_params == 15 + 8 and s.trainable_params == 15


def test_reshape_and_unflatten():
    spec, m = build("model M {\n input x: [784]\n x -> Reshape(1, 28, -1) -> Conv2d(2, 3) -> y\n output y\n}")
    assert shapes(spec) == {"y": (2, 26, 26)}
    assert m(torch.zeros(2, 784)).shape == (2, 2, 26, 26)


def test_live_module_is_the_generated_source():
    import inspect

    spec = netdsl.load(Path(__file__).parents[1] / "specs" / "lenet.net")
    m = spec.build()
    src = inspect.getsource(type(m))
    assert "self.conv1 = nn.Conv2d(1, 6, 5)" in src and "logits = self.fc3(x)" in src


def test_each_build_is_fresh():
    spec = netdsl.load(Path(__file__).parents[1] / "specs" / "mlp.net")
    a, b = spec.build(), spec.build()
    assert a is not b and a.fc1.weight is not b.fc1.weight


def test_power_operator_and_precedence():
    spec = netdsl.loads("model M {\n input x: [2**3]\n x -> Linear(2 ** 2 * 3) -> y\n output y\n}")
    assert shapes(spec) == {"y": (12,)}
    assert spec.graph().inputs[0].types[0].shape == (8,)


def test_a_huge_integer_literal_is_a_diagnostic_not_a_crash():
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.loads("model M {\n input x: [" + "9" * 5000 + "]\n x -> Linear(2) -> y\n output y\n}")
    (d,) = e.value.diagnostics
    assert d.code == "E001" and d.span.line == 2 and "5000 digits" in d.message


def test_a_repeat_count_of_zero_is_the_identity_and_still_checked():
    text = """
block B(c) {
  input x
  output x -> Linear(c) -> ReLU
}
model M {
  input x: [4]
  x -> B(8) * 0 -> Linear(3) * depth -> y
  output y
}
""".replace("depth", "0")
    spec, m = build(text)
    x = torch.randn(2, 4)
    assert shapes(spec) == {"y": (4,)} and len(list(m.parameters())) == 0
    torch.testing.assert_close(m(x), x)
    with pytest.raises(netdsl.NetdslError, match="unknown layer 'Lnear'"):
        netdsl.loads(text.replace("Linear(3) * 0", "Lnear(3) * 0"))
    with pytest.raises(netdsl.NetdslError, match=r"B needs a value for 'c'"):
        netdsl.loads(text.replace("B(8) * 0", "B * 0"))
