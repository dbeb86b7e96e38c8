"""A user's own layer whose constructor takes `**kwargs`: the spec's other keyword arguments are
forwarded to it, in the live module and in the generated source alike; names Python cannot pass
by keyword are a located E102 saying why. (Registration, shape functions, inference and the
opt-in itself are in test_api.py.)"""

from __future__ import annotations

import importlib.util
import itertools

import pytest
import torch

import netdsl
from netdsl.ops.custom import unregister_layer

_counter = itertools.count()


@pytest.fixture
def allowed():
    names = []

    def allow(*paths):
        for p in paths:
            names.append(netdsl.register_layer(p).kind)

    yield allow
    for n in names:
        unregister_layer(n)


def model(body: str, shape: str = "[4, 6, 6]") -> str:
    return f"model M {{\n  input x: {shape}\n  {body}\n  output y\n}}\n"


def compiled(spec, tmp_path):
    """An instance of the class `netdsl compile` writes, imported from its file."""
    path = tmp_path / f"custom_{next(_counter)}.py"
    source = netdsl.compile(spec, train=False)
    path.write_text(source, encoding="utf-8")
    loader = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return source, module.M()


def same_outputs(spec, gen, x):
    torch.manual_seed(0)
    live = spec.build()
    assert list(gen.state_dict()) == list(live.state_dict())
    gen.load_state_dict(live.state_dict())
    torch.testing.assert_close(gen(x), live(x), rtol=0, atol=0)
    return live


def test_kwargs_reach_the_constructor_live_and_compiled(allowed, tmp_path):
    allowed("custom_layers:Wrapped")
    spec = netdsl.loads(model("x -> Wrapped(8, kernel_size=3, padding=1, bias=false) -> y"))
    g = spec.graph()
    assert g.type_of(g.outputs[0].ref).shape == (8, 6, 6)  # traced with the forwarded padding
    source, gen = compiled(spec, tmp_path)
    assert "custom_layers.Wrapped(4,8,kernel_size=3,padding=1,bias=False)" in "".join(source.split())
    live = same_outputs(spec, gen, torch.randn(2, 4, 6, 6))
    for m in (live, gen):
        conv = m.wrapped1.conv
        assert (conv.kernel_size, conv.padding, conv.bias) == ((3, 3), (1, 1), None)
    assert spec.summary().total_params == 4 * 8 * 9 == sum(p.numel() for p in live.parameters())


def test_any_constant_is_forwarded_as_given(allowed, tmp_path):
    allowed("custom_layers:Options")
    text = model('x -> Options(scale=2.0, mode="fast", sizes=[1, 2], flag=true, nothing=none) -> y')
    spec = netdsl.loads(text)
    _, gen = compiled(spec, tmp_path)
    want = {"mode": "fast", "sizes": (1, 2), "flag": True, "nothing": None}
    live = same_outputs(spec, gen, torch.randn(2, 4, 6, 6))
    assert live.options1.options == gen.options1.options == want
    assert live.options1.scale == gen.options1.scale == 2.0


def test_kwargs_in_a_block_become_its_parameters(allowed, tmp_path):
    """One class for both instances: the forwarded numbers differ, the code does not."""
    allowed("custom_layers:Wrapped")
    text = ("block B(k) {\n  input x\n  output x -> Wrapped(4, kernel_size=k, padding=k // 2)\n}\n"
            + model("x -> B(1) -> B(3) -> y"))
    spec = netdsl.loads(text)
    source, gen = compiled(spec, tmp_path)
    assert source.count("class B(") == 1
    live = same_outputs(spec, gen, torch.randn(2, 4, 6, 6))
    assert [m.wrapped1.conv.kernel_size for m in (live.b1, live.b2, gen.b1, gen.b2)] == [(1, 1), (3, 3)] * 2


def test_a_shape_function_gets_the_forwarded_keywords(allowed, tmp_path):
    allowed("custom_layers:Cropped")
    spec = netdsl.loads(model("x -> Cropped(keep=3) -> y", "[2, 5]"))
    g = spec.graph()
    assert g.type_of(g.outputs[0].ref).shape == (2, 3)
    _, gen = compiled(spec, tmp_path)
    same_outputs(spec, gen, torch.randn(2, 2, 5))
    with pytest.raises(netdsl.NetdslError) as info:
        netdsl.loads(model("x -> Cropped(keep=9) -> y", "[2, 5]"))
    assert "keep=9 is not in 1..5" in info.value.diagnostics[0].message


def test_what_the_constructor_refuses_is_an_error_at_the_layer(allowed):
    allowed("custom_layers:Wrapped")
    text = model("x -> Wrapped(8, kernel_size=3, dilatoin=2) -> y")
    with pytest.raises(netdsl.NetdslError) as info:
        netdsl.loads(text)
    (d,) = info.value.diagnostics
    assert d.code == "E301" and "unexpected keyword argument 'dilatoin'" in d.message
    assert (d.span.line, d.span.col) == (3, 8)  # the layer


@pytest.mark.parametrize("name, why", [("lambda", "it is a Python keyword"),
                                       ("_hidden", "names starting with '_' are private")])
def test_names_python_cannot_pass_are_refused_at_the_argument(allowed, name, why):
    allowed("custom_layers:Options")
    text = model(f"x -> Options(2.0, {name}=1) -> y")
    with pytest.raises(netdsl.NetdslError) as info:
        netdsl.loads(text)
    (d,) = info.value.diagnostics
    assert d.code == "E102" and f"'{name}' cannot go to Options's **options: {why}" in d.message
    line = text.splitlines()[d.span.line - 1]
    assert line[:d.span.col - 1].endswith(f"{name}=")  # the caret is under the argument


def test_without_kwargs_an_unknown_argument_is_still_e102(allowed):
    allowed("custom_layers:Scale")
    with pytest.raises(netdsl.NetdslError) as info:
        netdsl.loads(model("x -> Scale(factor=2.0, mode=1) -> y"))
    assert [(d.code, d.message) for d in info.value.diagnostics] == [
        ("E102", "Scale has no argument 'mode'")]


def test_the_documented_shape_and_infer_example(tmp_path):
    """README's "Layers of your own" and register_layer's docstring, as written there."""
    import custom_layers

    netdsl.register_layer(custom_layers.Patches, shape=custom_layers.patches_shape,
                          infer={"in_channels": lambda shapes: shapes[0][0]})
    try:
        text = "model M {\n  input x: [3, 32, 32]\n  x -> Patches(64, patch=8) -> LayerNorm -> y\n  output y\n}\n"
        spec = netdsl.loads(text)
        g = spec.graph()
        assert g.type_of(g.outputs[0].ref).shape == (16, 64)
        assert spec.build().patches1.proj.in_channels == 3  # inferred
        _, gen = compiled(spec, tmp_path)
        same_outputs(spec, gen, torch.randn(2, 3, 32, 32))
        with pytest.raises(netdsl.NetdslError) as info:
            netdsl.loads(text.replace("[3, 32, 32]", "[3, 30, 30]"))
        assert [(d.code, d.message) for d in info.value.diagnostics] == [
            ("E301", ("Patches does not accept input [3, 30, 30]: ValueError: 30x30 is not a whole "
                      "number of 8x8 patches"))]
        with pytest.raises(netdsl.NetdslError) as info:
            netdsl.loads(text.replace("Patches(64", "Patches(1, 64"))
        assert [d.code for d in info.value.diagnostics] == ["E302"]
    finally:
        unregister_layer("Patches")
