"""The Python API: what `spec.build()` returns is an ordinary nn.Module (optimizers, state_dict
files, TorchScript, torch.compile), errors are NetdslError with diagnostics, summaries agree with
torch, and layers beyond torch.nn (torchvision backbones, allowed custom classes) behave."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import netdsl
from netdsl.diagnostics import Diagnostic, NetdslError
from netdsl.ops.custom import unregister_layer

SPECS = sorted((Path(__file__).parents[1] / "specs").glob("*.net"))
TESTS = Path(__file__).parent
LENET = Path(__file__).parents[1] / "specs" / "lenet.net"


FIXED_SIZE = {"ViT_B_16"}  # its position embedding holds 197 tokens: 224x224 images only


def example_inputs(spec, model=None, batch=2, small=False):
    """Random inputs of the declared shapes (`small`: images at most 64x64, which the specs'
    adaptive pooling accepts, and token sequences of at most 8, which GPT-2 takes as it takes
    1,024; ResNet-18 at 224x224 makes the TorchScript tests slow)."""
    xs = []
    for n in spec.graph(model).inputs:
        t = n.types[0].concrete()  # symbolic sizes at their smallest
        shape = (batch, *t.shape)
        if small and len(shape) == 4 and spec.model_names[0] not in FIXED_SIZE:
            shape = (*shape[:2], min(shape[2], 64), min(shape[3], 64))
        if small and len(shape) == 2 and t.dtype.startswith("int"):
            shape = (batch, min(shape[1], 8))
        if t.dtype == "bool":  # a padding mask: a random tail, never the whole sequence
            xs.append(torch.arange(shape[-1]) >= torch.randint(1, shape[-1] + 1, (*shape[:-1], 1)))
        else:
            xs.append(torch.randint(0, 3, shape) if t.dtype.startswith("int") else torch.randn(shape))
    return xs


def outputs(module, xs):
    out = module(*xs)
    return out if isinstance(out, tuple) else (out,)


def same(a, b):
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v)


# ---- build() makes an ordinary module ----------------------------------------------------------
@pytest.mark.parametrize("opt", ["SGD", "Adam"])
def test_build_trains_with_an_optimizer(opt):
    torch.manual_seed(0)
    spec = netdsl.loads("model M {\n  input x: [8]\n  x -> Linear(16) -> ReLU -> Linear(1) -> y\n"
                        "  output y\n}\n")
    model = spec.build()
    optimizer = getattr(torch.optim, opt)(model.parameters(), lr=0.05)
    x = torch.randn(64, 8)
    target = x.sum(dim=1, keepdim=True)
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


def test_each_build_is_a_fresh_module():
    spec = netdsl.load(LENET)
    a, b = spec.build(), spec.build()
    assert a is not b and type(a) is type(b)
    assert not torch.equal(a.conv1.weight, b.conv1.weight)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_state_dict_round_trips_through_a_file(path, tmp_path):
    spec = netdsl.load(path)
    a, b = spec.build().eval(), spec.build().eval()
    torch.save(a.state_dict(), tmp_path / "weights.pt")
    b.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
    xs = example_inputs(spec, small=True)
    with torch.no_grad():
        same(outputs(a, xs), outputs(b, xs))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_torchscript_script_and_trace(path, tmp_path):
    spec = netdsl.load(path)
    model = spec.build().eval()
    xs = example_inputs(spec, batch=1, small=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.compile
        want = outputs(model, xs)
        scripted = torch.jit.script(model)
        same(outputs(scripted, xs), want)
        traced = torch.jit.trace(model, tuple(xs))
        same(outputs(traced, xs), want)
        scripted.save(str(tmp_path / "model.pt"))  # a TorchScript file runs without netdsl
        same(outputs(torch.jit.load(str(tmp_path / "model.pt")), xs), want)


@pytest.mark.parametrize("name", ["lenet", "multitask"])
def test_torch_compile(name):
    """torch.compile traces the module (TorchDynamo). backend="aot_eager" runs the whole
    pipeline except Inductor's C++ code generation, which takes ~20 s per model on 2 CPU cores."""
    spec = netdsl.load(Path(__file__).parents[1] / "specs" / f"{name}.net")
    model = spec.build().eval()
    xs = example_inputs(spec, batch=4)
    compiled = torch.compile(model, backend="aot_eager")
    with torch.no_grad():
        same(outputs(compiled, xs), outputs(model, xs))


def test_parameter_names_are_the_specs_node_names():
    spec = netdsl.loads("""
block Head(n) {
  input x
  output x -> Linear(n) -> ReLU -> Linear(2) as out
}
model M {
  input x: [1, 8, 8]
  x -> Conv2d(4, 3) -> BatchNorm2d -> ReLU -> Flatten -> Linear(32) as trunk -> h
  a = h -> Head(16)
  b = h -> Head(8) as second
  output a, b
}
""")
    names = list(spec.build().state_dict())
    assert names == [
        "conv1.weight", "conv1.bias",
        "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
        "trunk.weight", "trunk.bias",
        "head1.fc1.weight", "head1.fc1.bias", "head1.out.weight", "head1.out.bias",
        "second.fc1.weight", "second.fc1.bias", "second.out.weight", "second.out.bias",
    ]
    qualified = {q for q, n, _ in spec.graph().walk()}
    assert {k.rsplit(".", 1)[0] for k in names} <= qualified


# ---- errors --------------------------------------------------------------------------------------
def test_loads_raises_netdsl_error_with_diagnostics():
    text = "model M {\n  input x: [4]\n  x -> Lineer(2) -> y\n  h = x -> Linear(0)\n  output y, h\n}\n"
    with pytest.raises(NetdslError) as info:
        netdsl.loads(text, "mine.net")
    diags = info.value.diagnostics
    assert all(isinstance(d, Diagnostic) for d in diags)
    assert [(d.code, d.span.line, d.span.col) for d in diags] == [("E101", 3, 8), ("E104", 4, 19)]
    assert diags[0].hint == "did you mean 'Linear'?"
    assert diags[0].to_dict() == {"code": "E101", "severity": "error", "message": "unknown layer 'Lineer'",
                                  "file": "mine.net", "line": 3, "col": 8, "hint": "did you mean 'Linear'?"}
    assert str(info.value).startswith("mine.net:3:8: error[E101]: unknown layer 'Lineer'")
    assert str(info.value).endswith("2 errors")


def test_load_of_a_missing_file_is_a_diagnostic(tmp_path):
    with pytest.raises(NetdslError) as info:
        netdsl.load(tmp_path / "nope.net")
    assert info.value.diagnostics[0].code == "E501"


def test_unknown_model_name_suggests_the_right_one():
    spec = netdsl.load(LENET)
    with pytest.raises(NetdslError) as info:
        spec.build("Lenet")
    d = info.value.diagnostics[0]
    assert (d.code, d.hint) == ("E502", "did you mean 'LeNet'?")


# ---- summaries -----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_summary_json_fields_and_counts_agree_with_torch(path):
    spec = netdsl.load(path)
    for name in spec.model_names:
        data = json.loads(json.dumps(spec.summary(name).to_dict()))
        assert data["model"] == name
        dims = {d.name for d in spec.graph(name).dims}
        for io in data["inputs"] + data["outputs"]:
            assert set(io) >= {"name", "shape", "dtype"}
            # a size is a number, or a formula over the declared dimensions ("H/4")
            assert all(type(d) is int or set(re.findall(r"[A-Za-z_]\w*", d)) <= dims for d in io["shape"])
        module = spec.build(name)
        total = sum(p.numel() for p in module.parameters())
        trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
        assert (data["total_params"], data["trainable_params"]) == (total, trainable)
        assert data["layers"] and all({"name", "layer", "output_shape", "params"} <= set(r)
                                      for r in data["layers"])
        g = spec.graph(name)
        xs = example_inputs(spec, name, batch=1)
        with torch.no_grad():
            outs = outputs(module.eval(), xs)
        for out, o in zip(outs, data["outputs"]):
            assert list(out.shape[1:]) == list(g.type_of(next(
                x.ref for x in g.outputs if x.name == o["name"])).concrete().shape)
            assert str(out.dtype).removeprefix("torch.") == o["dtype"]
        assert [i["name"] for i in data["inputs"]] == [n.name for n in g.inputs]


def test_resnet18_multiply_adds():
    spec = netdsl.load(Path(__file__).parents[1] / "specs" / "resnet18.net")
    macs = spec.summary(at={"H": 224, "W": 224}).macs  # any size from 32: at torchvision's 224
    assert 1.80e9 < macs < 1.83e9  # torchvision's figure: 1.81 GFLOPS (multiply-adds)


def test_summary_needs_no_torch():
    code = ("import sys, netdsl\n"
            f"s = netdsl.load({str(LENET)!r})\n"
            "s.summary().table()\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- torchvision backbones ---------------------------------------------------------------------
def test_backbone_layer_shapes_params_and_code():
    spec = netdsl.loads("model C {\n  input image: [3, 96, 96]\n"
                        "  image -> mobilenet_v3_small(num_classes=10, trainable=false) as encoder"
                        " -> Linear(2) -> logits\n  output logits\n}\n")
    g = spec.graph()
    assert g.type_of(g.outputs[0].ref).shape == (2,)
    model = spec.build()
    s = spec.summary()
    frozen = sum(p.numel() for p in model.encoder.parameters())
    assert s.total_params == frozen + 22
    assert s.trainable_params == 22 == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert s.macs > 0
    assert model(torch.randn(2, 3, 96, 96)).shape == (2, 2)


@pytest.mark.parametrize("text, code, words", [
    ("image: [1, 28, 28]", "E301", "expects an RGB image [3, height, width]"),
    ("image: [3, 16, 16]", "E301", "vgg11 cannot run on an input of shape [3, 16, 16]"),
    ("image: [3, 64, 64] int64", "E303", "needs floating-point input"),
])
def test_backbone_shape_errors(text, code, words):
    with pytest.raises(NetdslError) as info:
        netdsl.loads(f"model C {{\n  input {text}\n  image -> vgg11 -> y\n  output y\n}}\n")
    d = info.value.diagnostics[0]
    assert d.code == code and words in d.message and d.span.line == 3


def test_backbone_weights_are_never_downloaded(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    with pytest.raises(NetdslError) as info:
        netdsl.loads('model C {\n  input image: [3, 64, 64]\n  image -> resnet18(weights="DEFAULT")'
                     ' -> y\n  output y\n}\n')
    d = info.value.diagnostics[0]
    assert d.code == "E104" and "not downloaded" in d.message and "downloads nothing" in d.message
    assert "python -c" in d.hint
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, field, words", [
    ('weights="IMAGENET"', "weights", "has no weights 'IMAGENET'"),
    ('num_classes=10, weights="DEFAULT"', "num_classes", "trained for 1000 classes"),
])
def test_backbone_weights_are_checked(args, field, words):
    text = f"model C {{\n  input image: [3, 64, 64]\n  image -> resnet18({args}) -> y\n  output y\n}}\n"
    with pytest.raises(NetdslError) as info:
        netdsl.loads(text)
    d = info.value.diagnostics[0]
    assert d.code == "E104" and words in d.message
    line = text.splitlines()[2]
    assert line[d.span.col - 1:].startswith(args.split(field + "=")[1].split(",")[0])


# ---- custom layers -------------------------------------------------------------------------------
CUSTOM = """
model M {
  input x: [16, 8, 8]
  x -> custom_layers.Bottleneck(32, stride=2) -> Scale(0.5) -> h
  first, second = h -> Halves
  output first, second
}
"""


@pytest.fixture
def allowed():
    names = []

    def allow(*paths):
        for p in paths:
            names.append(netdsl.register_layer(p).kind)

    yield allow
    for n in names:
        unregister_layer(n)


def test_a_spec_alone_imports_nothing():
    """Checked in a fresh interpreter, where nothing imported custom_layers before."""
    code = ("import sys, netdsl\n"
            "try:\n"
            f"    netdsl.loads({CUSTOM!r})\n"
            "except netdsl.NetdslError as e:\n"
            "    codes = [d.code for d in e.diagnostics]\n"
            "assert codes == ['E108', 'E101', 'E101'], codes\n"
            "assert 'custom_layers' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=TESTS)


def test_custom_layers_once_allowed(allowed):
    allowed("custom_layers:Bottleneck", "custom_layers:Scale", "custom_layers:Halves")
    spec = netdsl.loads(CUSTOM)
    g = spec.graph()
    assert [g.type_of(o.ref).shape for o in g.outputs] == [(16, 4, 4), (16, 4, 4)]
    model = spec.build()
    import custom_layers

    assert isinstance(model.bottleneck1, custom_layers.Bottleneck)
    assert model.bottleneck1.reduce.in_channels == 16  # inferred, as for Conv2d
    assert model.scale1.factor == 0.5
    a, b = model(torch.randn(2, 16, 8, 8))
    assert a.shape == b.shape == (2, 16, 4, 4)
    s = spec.summary()
    assert s.total_params == sum(p.numel() for p in model.parameters()) > 0
    assert s.macs > 0


def test_custom_layer_arguments_are_checked(allowed):
    allowed("custom_layers:Bottleneck")
    with pytest.raises(NetdslError) as info:
        netdsl.loads("model M {\n  input x: [4, 8, 8]\n  x -> Bottleneck(2.5, strid=2) -> y\n  output y\n}\n")
    assert [(d.code, d.hint) for d in info.value.diagnostics] == [("E102", "did you mean 'stride'?")]
    with pytest.raises(NetdslError) as info:
        netdsl.loads("model M {\n  input x: [4, 8, 8]\n  x -> Bottleneck(2.5) -> y\n  output y\n}\n")
    assert info.value.diagnostics[0].message == "Bottleneck: out_channels must be an integer, not 2.5"
    with pytest.raises(NetdslError) as info:
        netdsl.loads("model M {\n  input x: [4, 8, 8]\n  x -> Bottleneck(8, in_channels=3) -> y\n  output y\n}\n")
    assert info.value.diagnostics[0].code == "E302"


def test_custom_layer_with_a_shape_function(allowed):
    """DataDependent cannot run on the meta device; its netdsl_shape says what it returns."""
    allowed("custom_layers:DataDependent")
    spec = netdsl.loads("model M {\n  input x: [3, 5]\n  x -> DataDependent(7) -> y\n  output y\n}\n")
    g = spec.graph()
    assert g.type_of(g.outputs[0].ref).shape == (3, 7)
    assert spec.build()(torch.randn(2, 3, 5)).shape == (2, 3, 7)
    with pytest.raises(NetdslError) as info:
        netdsl.loads("model M {\n  input x: [3, 1]\n  x -> DataDependent(7) -> y\n  output y\n}\n")
    assert "needs at least 2 steps" in info.value.diagnostics[0].message


def test_custom_layer_that_cannot_take_the_input(allowed):
    allowed("custom_layers:Bottleneck")
    with pytest.raises(NetdslError) as info:
        netdsl.loads("model M {\n  input x: [4]\n  x -> Bottleneck(8) -> y\n  output y\n}\n")
    d = info.value.diagnostics[0]
    assert d.code == "E301" and "cannot run on an input of shape [4]" in d.message


def test_register_layer_refuses_what_it_cannot_use():
    with pytest.raises(NetdslError) as info:
        netdsl.register_layer("custom_layers:not_a_module")
    assert info.value.diagnostics[0].code == "E109"
    with pytest.raises(NetdslError) as info:
        netdsl.register_layer("no_such_module_anywhere:Block")
    assert "cannot import module" in info.value.diagnostics[0].message

    class Local(torch.nn.Module):
        pass

    with pytest.raises(NetdslError, match="define it at module level"):
        netdsl.register_layer(Local)
    import custom_layers

    with pytest.raises(NetdslError, match="already a built-in layer"):
        netdsl.register_layer(custom_layers.Scale, name="Linear")


def test_register_layer_is_idempotent(allowed):
    allowed("custom_layers:Scale")
    import custom_layers

    assert netdsl.register_layer(custom_layers.Scale) is netdsl.register_layer("custom_layers.Scale")


def test_an_installed_entry_point_is_an_opt_in(monkeypatch):
    """A package that declares `[project.entry-points."netdsl.layers"] Triple = "..."` makes
    `Triple` usable; it is imported the first time a spec names it, not before."""
    from importlib.metadata import EntryPoint

    from netdsl.ops import custom

    ep = EntryPoint(name="Triple", value="custom_layers:Scale", group=custom.ENTRY_POINT_GROUP)
    monkeypatch.setattr(custom, "_ENTRY_POINTS", {"Triple": ep})
    try:
        spec = netdsl.loads("model M {\n  input x: [4]\n  x -> Triple(3.0) -> y\n  output y\n}\n")
        model = spec.build()
        assert type(model.triple1).__name__ == "Scale"
        torch.testing.assert_close(model(torch.ones(1, 4)), torch.full((1, 4), 3.0))
    finally:
        if "Triple" in custom.LAYERS:
            unregister_layer("Triple")


def test_build_releases_its_generated_module_when_the_model_is_garbage(monkeypatch):
    """A process that builds thousands of specs keeps only what it still uses (issue 18)."""
    import gc
    import inspect
    import linecache
    import sys

    from netdsl.targets import module

    def generated():
        return {n for n in sys.modules if n.startswith("netdsl.generated.")}, \
            {f for f in linecache.cache if f.startswith("<netdsl:")}

    def spec(i):
        return netdsl.loads(f"block B{i} {{\n input x\n output x -> Linear({i + 1})\n}}\n"
                            f"model Released{i} {{\n input x: [4]\n x -> B{i} -> y\n output y\n}}")

    gc.collect()
    mods, lines = generated()
    # what outlives its model (a block's module, a deep copy) stays usable while recent
    part = spec(900).build().b9001
    assert "class B900" in inspect.getsource(type(part))
    monkeypatch.setattr(module, "RECENT", 2)
    kept = spec(500).build()
    twin = spec(500).build()  # the same source: one registration, two users
    for i in range(50):
        spec(i).build()(torch.randn(1, 4))
    del twin
    gc.collect()
    now_mods, now_lines = generated()
    assert len(now_mods - mods) == len(now_lines - lines) == 1 + 2  # `kept`'s and the 2 recent
    assert kept(torch.randn(2, 4)).shape == (2, 501)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.compile
        assert "def forward" in torch.jit.script(kept).code  # TorchScript still reads its source
    monkeypatch.setattr(module, "RECENT", 0)
    del kept, part
    spec(0).build()  # a build makes room; nothing is in use now
    gc.collect()
    left_mods, left_lines = generated()
    assert not left_mods - mods and not left_lines - lines  # (earlier tests' may be gone too)
