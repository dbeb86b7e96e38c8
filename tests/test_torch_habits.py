"""PyTorch habits keep their meaning: a layer written the torch way is the layer torch builds,
or an error with a hint; never a silent reinterpretation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import netdsl
from netdsl.diagnostics import NetdslError


def layer(call: str, shape: str):
    """The first layer a one-layer spec builds from `call` on an input of `shape`."""
    text = f"model M {{\n  input x: {shape}\n  x -> {call} -> y\n  output y\n}}\n"
    m = netdsl.loads(text).build()
    return next(c for c in m.children())


def errors(call: str, shape: str) -> str:
    text = f"model M {{\n  input x: {shape}\n  x -> {call} -> y\n  output y\n}}\n"
    with pytest.raises(NetdslError) as exc:
        netdsl.loads(text).build()
    return str(exc.value)


# Written in torch's own positional order, each means what torch means.
TORCH_FORM = [
    ("Conv2d(3, 16, 3)", "[3, 32, 32]"),
    ("Conv2d(3, 16, 3, 2, 1)", "[3, 32, 32]"),
    ("Conv2d(3, 16, (3, 5), 1, (1, 2), 1, 1, False)", "[3, 32, 32]"),
    ("Conv1d(4, 8, 3, 2)", "[4, 20]"),
    ("ConvTranspose2d(8, 4, 2, 2)", "[8, 5, 5]"),
    ("BatchNorm2d(16)", "[16, 4, 4]"),
    ("BatchNorm2d(16, 0.001)", "[16, 4, 4]"),
    ("BatchNorm2d(16, 0.001, 0.3, False)", "[16, 4, 4]"),
    ("BatchNorm1d(6, 1e-3)", "[6]"),
    ("InstanceNorm2d(3)", "[3, 8, 8]"),
    ("InstanceNorm2d(3, 1e-3, 0.2, True)", "[3, 8, 8]"),
    ("GroupNorm(1, 3)", "[3, 8, 8]"),
    ("GroupNorm(2, 4, 1e-3, False)", "[4, 8, 8]"),
    ("LayerNorm(8)", "[5, 8]"),
    ("LayerNorm((5, 8), 1e-3)", "[5, 8]"),
    ("Linear(784, 10)", "[784]"),
    ("Linear(784, 10, False)", "[784]"),
    ("LSTM(32, 64, batch_first=true)", "[7, 32]"),
    ("LSTM(32, 64, 2, batch_first=true)", "[7, 32]"),
    ("GRU(32, 64, 1, True, True)", "[7, 32]"),
    ("MultiheadAttention(16, 4)", "[7, 16]"),
    ("Dropout(0.25)", "[7]"),
    ("LeakyReLU(0.2)", "[7]"),
    ("MaxPool2d(3, 2, 1)", "[3, 8, 8]"),
]


@pytest.mark.parametrize("call, shape", TORCH_FORM)
def test_torch_positional_form_builds_what_torch_builds(call, shape):
    ours = layer(call, shape)
    python_call = call.replace("true", "True").replace("false", "False")
    theirs = eval(f"nn.{python_call}", {"nn": nn})  # the test's own literal, not spec input
    assert repr(ours) == repr(theirs)
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in theirs.state_dict().items()}
    if isinstance(ours, nn.MultiheadAttention):  # torch keeps its flags outside repr
        assert ours.batch_first is True


# The short form leaves the sizes the input gives out: fewer positional arguments than torch
# needs, so torch itself could not read them any other way.
SHORT_FORM = [
    ("Conv2d(16, 3)", "[3, 32, 32]", "Conv2d(3, 16, 3)"),
    ("Conv2d(16, 3, stride=2)", "[3, 32, 32]", "Conv2d(3, 16, 3, stride=2)"),
    ("BatchNorm2d", "[16, 4, 4]", "BatchNorm2d(16)"),
    ("BatchNorm2d(eps=1e-3)", "[16, 4, 4]", "BatchNorm2d(16, eps=1e-3)"),
    ("GroupNorm(2)", "[4, 8, 8]", "GroupNorm(2, 4)"),
    ("Linear(10)", "[784]", "Linear(784, 10)"),
    ("LSTM(64)", "[7, 32]", "LSTM(32, 64, batch_first=True)"),
    ("LayerNorm", "[5, 8]", "LayerNorm(8)"),
]


@pytest.mark.parametrize("call, shape, torch_call", SHORT_FORM)
def test_short_form_infers_the_left_out_sizes(call, shape, torch_call):
    assert repr(layer(call, shape)) == repr(eval(f"nn.{torch_call}", {"nn": nn}))


# What could be misread is an error that says how it was read.
MISREAD = [
    # three positional arguments are torch's: in_channels=16 disagrees with the input
    ("Conv2d(16, 3, 2)", "[3, 32, 32]", "E302", "torch's order"),
    # an integer on a float argument by position is a size in the wrong place
    ("BatchNorm2d(16, 1)", "[16, 4, 4]", "E105", "eps=1.0"),
    ("Dropout(1)", "[4]", "E105", "p=1.0"),
    ("GroupNorm(1, 3, 1)", "[3, 4, 4]", "E105", "eps"),
    # torch's LSTM(32, 64): input 32, hidden 64 -- not hidden 32 with 64 layers
    ("LSTM(32, 64)", "[7, 16]", "E302", "input_size"),
    ("InstanceNorm2d(3)", "[4, 8, 8]", "E302", "num_features"),
    ("Linear(784, 10)", "[100]", "E302", "in_features"),
]


@pytest.mark.parametrize("call, shape, code, words", MISREAD)
def test_a_call_read_another_way_is_an_error_with_a_hint(call, shape, code, words):
    text = errors(call, shape)
    assert f"error[{code}]" in text and words in text, text


def test_no_integer_lands_on_a_float_argument_by_position():
    """For every op, every float-valued field a positional integer could reach is refused."""
    from netdsl.ops import OPS

    checked = 0
    for cls in OPS.values():
        floats = set(cls.float_fields())
        for n in range(1, len(cls.torch_fields()) + 1):
            fields, _ = cls.positional_for(n)
            for f in fields[:n]:
                if f in floats:
                    checked += 1
    assert checked > 20  # eps, momentum, p, negative_slope, alpha, ... are all reachable
    assert "E105" in errors("ELU(1)", "[4]")
    assert "E105" in errors("LeakyReLU(0)", "[4]")


def test_the_torch_form_runs_like_torch():
    torch.manual_seed(0)
    ours = layer("Conv2d(3, 8, 3, 2, 1)", "[3, 16, 16]")
    theirs = nn.Conv2d(3, 8, 3, 2, 1)
    theirs.load_state_dict({k: torch.randn_like(v) for k, v in theirs.state_dict().items()})
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)


def test_summary_and_diagram_show_every_argument_that_differs_from_torch():
    from netdsl.targets.diagram import render

    text = """
model M {
  input x: [3, 32, 32]
  x -> Conv2d(16, 3, padding=1, padding_mode="reflect", bias=false)
    -> BatchNorm2d(eps=1e-3, momentum=0.3, affine=false) -> LeakyReLU(0.2)
    -> MaxPool2d(2, ceil_mode=true) -> Flatten -> Linear(10, init=xavier_uniform) -> y
  s = x -> Flatten -> Unflatten(1, (32, 96)) -> GRU(8, bidirectional=true, num_layers=2)
  output y, s
}
"""
    spec = netdsl.loads(text)
    rows = str(spec.summary())
    dot = render(spec).source
    for want in ("padding_mode=reflect", "bias=false", "eps=0.001", "momentum=0.3", "affine=false",
                 "negative_slope=0.2", "ceil_mode=true", "init=xavier_uniform",
                 "bidirectional=true", "layers=2"):
        assert want in rows, (want, rows)
        assert want in dot, (want, dot)
    # defaults stay out of the way
    assert "dilation" not in rows and "track_running_stats" not in rows
