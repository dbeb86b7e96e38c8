"""Differential tests of values: a layer as a spec writes it, built by netdsl, against the same
layer written by hand in PyTorch (micrograd's test: the same thing built twice, values and
gradients compared).

tests/test_ops.py holds every op to torch's shapes, dtypes, parameter counts and signatures by
feeding the declaration's own constructor arguments to torch; that cannot see an argument bound
to the wrong parameter (`Hardtanh(min_val=...)` passed as max_val, PReLU's `init` taken for an
init function, a padding tuple read in the wrong order). Here the reference is written out by
hand. Both modules start from the same seed, so their initial states must be equal; then the
weights and running statistics are drawn at random (default inits, ones and zeros, hide
mistakes) and copied into the reference, and outputs, input gradients, parameter gradients and
running statistics must agree exactly, in train mode (stochastic layers draw from the same
seed) and in eval mode.
"""

from __future__ import annotations

import importlib.util
import itertools

import pytest
import torch
import torchvision
from torch import nn

import netdsl


def R(call: str, shape: tuple[int, ...], reference, dtype: str = "float32"):
    """One layer: its spec text, one sample's shape, a function making torch's own."""
    return pytest.param(call, shape, reference, dtype, id=f"{call}-{'x'.join(map(str, shape))}")


LAYERS = [
    R("ReLU6", (3, 4), lambda: nn.ReLU6()),
    R("ReLU6(inplace=true)", (5,), lambda: nn.ReLU6(inplace=True)),
    R("Hardtanh(min_val=-0.5, max_val=2.0)", (2, 6), lambda: nn.Hardtanh(-0.5, 2.0)),
    R("Hardtanh(-2.0, max_val=0.25, inplace=true)", (8,), lambda: nn.Hardtanh(-2.0, 0.25, inplace=True)),
    R("Hardsigmoid", (3, 5), lambda: nn.Hardsigmoid()),
    R("Hardsigmoid", (4,), lambda: nn.Hardsigmoid(), dtype="float64"),
    R("PReLU", (3, 4, 4), lambda: nn.PReLU()),
    R("PReLU(num_parameters=3, init=-0.5)", (3, 4, 4), lambda: nn.PReLU(3, -0.5)),
    R("PReLU(4, init=0.1)", (4, 5), lambda: nn.PReLU(4, 0.1)),
    R("Mish", (6,), lambda: nn.Mish()),
    R("Mish(inplace=true)", (2, 3), lambda: nn.Mish(inplace=True)),
    R("Softplus", (7,), lambda: nn.Softplus()),
    R("Softplus(beta=2.0, threshold=0.5)", (3, 4), lambda: nn.Softplus(2.0, 0.5)),
    R("StochasticDepth(0.3, mode=\"row\")", (4, 3), lambda: torchvision.ops.StochasticDepth(0.3, "row")),
    R("StochasticDepth(0.5, mode=\"batch\")", (2, 3, 3),
      lambda: torchvision.ops.StochasticDepth(0.5, "batch")),
    R("MaxPool3d(2, stride=1, padding=1)", (2, 3, 4, 4), lambda: nn.MaxPool3d(2, 1, 1)),
    R("MaxPool3d([1, 2, 3], stride=[1, 2, 1], dilation=[2, 1, 1], ceil_mode=true)", (1, 5, 6, 7),
      lambda: nn.MaxPool3d((1, 2, 3), (1, 2, 1), dilation=(2, 1, 1), ceil_mode=True)),
    R("AvgPool3d(3, stride=2, padding=1, count_include_pad=false)", (2, 5, 5, 5),
      lambda: nn.AvgPool3d(3, 2, 1, count_include_pad=False)),
    R("AvgPool3d([2, 1, 2], divisor_override=3)", (4, 4, 4), lambda: nn.AvgPool3d((2, 1, 2), divisor_override=3)),
    R("AdaptiveAvgPool3d([2, none, 3])", (2, 5, 4, 7), lambda: nn.AdaptiveAvgPool3d((2, None, 3))),
    R("AdaptiveMaxPool1d(3)", (2, 10), lambda: nn.AdaptiveMaxPool1d(3)),
    R("BatchNorm3d(momentum=0.3)", (3, 2, 4, 4), lambda: nn.BatchNorm3d(3, momentum=0.3)),
    R("BatchNorm3d(affine=false, eps=0.01)", (2, 3, 3, 3), lambda: nn.BatchNorm3d(2, eps=0.01, affine=False)),
    R("ConvTranspose3d(4, 3, stride=2, padding=1, output_padding=1, groups=2)", (2, 3, 3, 3),
      lambda: nn.ConvTranspose3d(2, 4, 3, stride=2, padding=1, output_padding=1, groups=2)),
    R("ConvTranspose3d(3, [1, 2, 3], bias=false, dilation=[1, 1, 2])", (2, 2, 3, 3),
      lambda: nn.ConvTranspose3d(2, 3, (1, 2, 3), bias=False, dilation=(1, 1, 2))),
    R("PixelShuffle(2)", (8, 3, 3), lambda: nn.PixelShuffle(2)),
    R("PixelUnshuffle(3)", (2, 6, 3), lambda: nn.PixelUnshuffle(3)),
    R("ZeroPad2d([1, 0, 2, -1])", (2, 4, 5), lambda: nn.ZeroPad2d((1, 0, 2, -1))),
    R("ZeroPad2d(2)", (3, 3), lambda: nn.ZeroPad2d(2)),
    R("ConstantPad2d([0, 3, 1, 0], value=-1.5)", (2, 2, 2), lambda: nn.ConstantPad2d((0, 3, 1, 0), -1.5)),
]


def spec_text(call: str, shape, dtype: str = "float32") -> str:
    kind = "" if dtype == "float32" else f" {dtype}"
    return (f"model M {{\n  input x: [{', '.join(map(str, shape))}]{kind}\n  x -> {call} -> y\n"
            "  output y\n}\n")


def randomise(module: nn.Module) -> None:
    """Weights uniform in [-1, 1], running variances in [0.5, 1.5]: nothing left at its init."""
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if name.endswith("running_var") else torch.rand_like(t) * 2 - 1)


def run(module: nn.Module, x: torch.Tensor, grad: torch.Tensor | None, seed: int):
    """Output, input gradient and parameter gradients for `grad` as the output's gradient."""
    module.zero_grad()
    x = x.clone().requires_grad_(x.is_floating_point())
    torch.manual_seed(seed)
    y = module(x * 1 if x.requires_grad else x)  # in-place layers may not overwrite a leaf
    if grad is None:
        grad = torch.randn_like(y)
    y.backward(grad)
    return y.detach(), grad, x.grad, [p.grad for p in module.parameters()]


@pytest.mark.parametrize("call, shape, reference, dtype", LAYERS)
def test_layer_against_torch_written_by_hand(call, shape, reference, dtype):
    spec = netdsl.loads(spec_text(call, shape, dtype))
    torch.manual_seed(0)
    live = spec.build()
    (layer,) = live.children()
    torch.manual_seed(0)
    ref = reference()
    assert type(layer) is type(ref)
    torch.testing.assert_close(layer.state_dict(), ref.state_dict(), rtol=0, atol=0)  # init, sizes
    randomise(live)
    ref.load_state_dict(layer.state_dict())
    dt = getattr(torch, dtype)
    live.to(dt)
    ref.to(dt)
    for mode in ("train", "eval"):
        live.train(mode == "train")
        ref.train(mode == "train")
        x = torch.randn(4, *shape, dtype=dt)
        y, grad, gx, gp = run(live, x, None, seed=1)
        y_ref, _, gx_ref, gp_ref = run(ref, x, grad, seed=1)
        assert y.shape == (4, *spec.graph().type_of(spec.graph().outputs[0].ref).shape)
        torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
        torch.testing.assert_close(gx, gx_ref, rtol=0, atol=0)
        for a, b in zip(gp, gp_ref, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(layer.state_dict(), ref.state_dict(), rtol=0, atol=0)  # BN stats


def test_stochastic_depth_modes_differ_as_torchvision_says():
    """"row" zeroes whole samples independently; "batch" the whole batch or nothing."""
    for mode, per_sample in (("row", True), ("batch", False)):
        m = netdsl.loads(spec_text(f'StochasticDepth(0.5, mode="{mode}")', (3, 4))).build().train()
        torch.manual_seed(0)
        kept = {tuple((m(torch.ones(8, 3, 4)) != 0).flatten(1).all(1).tolist()) for _ in range(20)}
        mixed = any(len(set(k)) > 1 for k in kept)
        assert mixed == per_sample, (mode, kept)
        assert torch.equal(m.eval()(torch.ones(8, 3, 4)), torch.ones(8, 3, 4))


# ---- Embedding(padding_idx=): the padding row is zero and learns nothing ------------------------
_counter = itertools.count()


def _compiled(spec, tmp_path):
    """The class `netdsl compile` writes, imported from its file."""
    path = tmp_path / f"compiled_{next(_counter)}.py"
    path.write_text(netdsl.compile(spec, train=False), encoding="utf-8")
    loader = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module.M()


@pytest.mark.parametrize("padding_idx", [2, -1])
@pytest.mark.parametrize("init", ["", ", init=normal", ", init=xavier_uniform"])
def test_embedding_padding_row_stays_zero(padding_idx, init, tmp_path):
    text = ("model M {\n  input t: [6] int64\n"
            f"  t -> Embedding(10, 4, padding_idx={padding_idx}{init}) -> y\n  output y\n}}\n")
    spec = netdsl.loads(text)
    g = spec.graph()
    assert g.type_of(g.outputs[0].ref).shape == (6, 4)
    row = padding_idx % 10
    ids = torch.tensor([[row, 1, row, 3, 9, 0], [5, row, 7, 7, 2, 9]])
    torch.manual_seed(0)
    for module in (spec.build(), _compiled(spec, tmp_path)):
        emb = module.embed1
        assert emb.padding_idx == row
        assert torch.count_nonzero(emb.weight[row]) == 0  # as torch's own init leaves it
        ref = nn.Embedding(10, 4, padding_idx=padding_idx)
        ref.load_state_dict(emb.state_dict())
        y, y_ref = module(ids), ref(ids)
        torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
        grad = torch.randn_like(y)
        y.backward(grad)
        y_ref.backward(grad)
        torch.testing.assert_close(emb.weight.grad, ref.weight.grad, rtol=0, atol=0)
        assert torch.count_nonzero(emb.weight.grad[row]) == 0  # the padding row learns nothing
        used = sorted(set(ids.flatten().tolist()) - {row})
        assert all(torch.count_nonzero(emb.weight.grad[i]) > 0 for i in used)
        torch.optim.SGD(module.parameters(), lr=0.5).step()
        assert torch.count_nonzero(emb.weight[row]) == 0


@pytest.mark.parametrize("layer, module", [
    ("Dropout(0.5)", lambda: nn.Dropout(0.5)), ("Dropout2d(0.1)", lambda: nn.Dropout2d(0.1)),
    ('StochasticDepth(0.5, mode="row")', lambda: torchvision.ops.StochasticDepth(0.5, "row"))])
def test_in_place_after_a_layer_that_returns_its_input(layer, module):
    """In eval mode these return their input itself, so a ReLU(inplace=true) after one would
    overwrite the value another layer reads: E301, as after a view."""
    x = torch.randn(2, 2, 3, 3)
    assert module().eval()(x) is x  # torch's behaviour, the reason for the rule
    text = (f"model M {{\n  input x: [2, 3, 3]\n  h = x -> Linear(3)\n  a = h -> {layer} -> ReLU(inplace=true)\n"
            "  b = h -> Tanh\n  output a, b\n}\n")
    with pytest.raises(netdsl.NetdslError) as info:
        netdsl.loads(text)
    assert [(d.code, d.message, d.span.line) for d in info.value.diagnostics] == [
        ("E301", "ReLU(inplace=true) would overwrite a value that Tanh (line 5) also reads", 4)]
    netdsl.loads(text.replace("  b = h -> Tanh\n", "  b = x -> Tanh\n"))  # nothing else reads h
