"""`netdsl import` (issue 12): an existing nn.Module as a spec a person would write.

For every torchvision classifier the zoo covers and for modules built from netdsl's
vocabulary: the imported spec checks, has the original's parameter count, and with the
original's weights (randomised first: default inits hide a wrong mapping) loaded through the
spec's names gives the original's outputs. The round trip import -> compile -> the compiled
class equals the original. Goldens hold the specs of a few models, read when they change.
What netdsl cannot express is E508 naming the module and the operation.
"""

from __future__ import annotations

import copy
import json
import types

import pytest
import torch
import torchvision
from torch import nn

import netdsl
from netdsl.diagnostics import NetdslError
from netdsl.importer import import_module

ZOO = ["resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0", "densenet121",
       "convnext_tiny", "vit_b_16", "vgg11", "alexnet", "squeezenet1_0"]
GOLDEN = {"resnet18", "mobilenet_v2", "squeezenet1_0", "vit_b_16", "convnext_tiny"}


def randomised(module: nn.Module, seed: int = 1) -> nn.Module:
    twin = copy.deepcopy(module).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, t in twin.state_dict(keep_vars=True).items():
            if t.is_floating_point():
                r = torch.randn(t.shape, generator=g) * 0.05
                t.copy_(r.abs() + 0.5 if key.endswith("running_var") else r)
    return twin


def spec_equals(original: nn.Module, result, args) -> None:
    """Build the spec, load the (randomised) original's weights through its names, compare."""
    spec = netdsl.loads(result.text, f"{result.model}.net")
    built = spec.build().eval()
    ref = randomised(original)
    theirs = ref.state_dict()
    ours = built.state_dict()
    names = {k: result.key_map.get(k, k) for k in ours}
    assert sorted(names.values()) == sorted(theirs)  # every weight and buffer, once
    built.load_state_dict({k: theirs[names[k]] for k in ours})
    assert sum(p.numel() for p in built.parameters()) == sum(p.numel() for p in ref.parameters())
    with torch.no_grad():
        a, b = built(*args), ref(*args)
    a, b = (a if isinstance(a, tuple) else (a,)), (b if isinstance(b, tuple) else (b,))
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ZOO)
def test_torchvision_classifier_imports_and_is_proven(name, golden):
    original = getattr(torchvision.models, name)().eval()
    result = import_module(original)
    if name in GOLDEN:
        golden(f"goldens/import/{name}.net", result.text)
    size = 224 if name == "vit_b_16" else 64
    spec_equals(original, result, (torch.randn(2, 3, size, size + (0 if size == 224 else 8)),))


def test_resnet18_reads_as_written_by_hand():
    text = import_module(torchvision.models.resnet18()).text
    assert "block BasicBlock(c) {" in text and "block Layer(c) {" in text
    assert "-> Layer(256) as layer3" in text and "-> BasicBlock(64) as layer1_0" in text
    assert "  input x: [3, H, W]\n" in text  # any size: every layer takes any
    assert max(len(line) for line in text.splitlines()) <= 100


def test_densenet_layers_are_one_block_whatever_they_are_given():
    text = import_module(torchvision.models.densenet121()).text
    assert text.count("block DenseLayer") == 1 and "block DenseLayer {" in text
    assert "input x: [3, H, W] where H >= 29, W >= 29" in text  # what `check` proves


def test_vit_sizes_read_off_shapes_and_fixed_input():
    text = import_module(torchvision.models.vit_b_16()).text
    assert "  input x: [3, 224, 224]\n" in text  # the position embedding fixes the size
    assert "class_token.expand(" in text and ".size(0), -1, -1)" in text
    assert "Parameter(1, 197, 768)" in text and "-> Select(1, 0)" in text


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(8 * 12 * 12, 32)

    def forward(self, x):
        return self.fc(torch.flatten(self.act(self.conv(x)), 1))


class Siamese(nn.Module):
    """One encoder applied twice: shared weights."""

    def __init__(self):
        super().__init__()
        self.enc = Encoder()
        self.head = nn.Linear(32, 1)

    def forward(self, a, b):
        return self.head(torch.abs(self.enc(a) - self.enc(b)))


class TwoHeads(nn.Module):
    """A learned tensor, a Sequential, two outputs, a function."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.LayerNorm(32))
        self.scale = nn.Parameter(torch.ones(32))
        self.a = nn.Linear(32, 3)
        self.b = nn.Linear(32, 1)

    def forward(self, x):
        h = self.body(x) * self.scale
        return self.a(h), torch.sigmoid(self.b(h))


class Tagger(nn.Module):
    """Tokens through an embedding, an LSTM and a scaled residual."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 16)
        self.rnn = nn.LSTM(16, 16, batch_first=True)
        self.out = nn.Linear(16, 5)

    def forward(self, tokens):
        e = self.embed(tokens)
        h, _ = self.rnn(e)
        return self.out(h + 0.5 * e)


def test_shared_module_is_one_block_declared_once():
    result = import_module(Siamese(), input_shape={"a": "1,12,12", "b": "1,12,12"})
    assert "block Encoder {" in result.text and "  enc = Encoder\n" in result.text
    assert result.key_map == {}  # the same state_dict keys as the original
    spec_equals(Siamese(), result, (torch.randn(3, 1, 12, 12), torch.randn(3, 1, 12, 12)))


def test_learned_tensor_sequential_and_two_outputs():
    result = import_module(TwoHeads())
    assert "scale = Parameter(32)" in result.text and "output a_out, sigmoid" in result.text
    spec_equals(TwoHeads(), result, (torch.randn(4, 16),))


def test_tokens_and_a_recurrent_layer():
    result = import_module(Tagger())
    assert "input tokens: [T] int64" in result.text
    spec_equals(Tagger(), result, (torch.randint(0, 100, (3, 7)),))


def test_round_trip_through_compile_gives_the_original():
    """import -> compile -> the compiled class, with the original's weights, is the original."""
    for original, args in ((torchvision.models.resnet18().eval(), (torch.randn(2, 3, 40, 48),)),
                           (Siamese().eval(), (torch.randn(2, 1, 12, 12),) * 2)):
        shape = {"a": "1,12,12", "b": "1,12,12"} if isinstance(original, Siamese) else None
        result = import_module(original, input_shape=shape)
        source = netdsl.compile(netdsl.loads(result.text, "m.net"), train=False)
        namespace = types.ModuleType("compiled_import")
        exec(compile(source, "compiled_import.py", "exec"), namespace.__dict__)
        compiled = getattr(namespace, result.model)().eval()
        ref = randomised(original)
        compiled.load_state_dict({k: ref.state_dict()[result.key_map.get(k, k)]
                                  for k in compiled.state_dict()})
        with torch.no_grad():
            torch.testing.assert_close(compiled(*args), ref(*args), rtol=0, atol=0)


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x) if x.sum() > 0 else x


class Cumulative(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(4, 4))

    def forward(self, x):
        return torch.cumsum(self.block(x), 1)


class Masked(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x, pad):
        return self.attn(x, x, x, key_padding_mask=pad)[0]


@pytest.mark.parametrize("module, words", [
    (Branchy(), ["cannot trace Branchy", "control flow"]),
    (Cumulative(), ["torch.cumsum", "has no netdsl counterpart"]),
    (Masked(), ["attn", "key_padding_mask="]),
])
def test_what_cannot_be_imported_is_named(module, words):
    with pytest.raises(NetdslError) as err:
        import_module(module, input_shape="5,8" if isinstance(module, Masked) else None)
    text = str(err.value)
    assert "error[E508]" in text and all(w in text for w in words), text



def test_cli_writes_the_spec_its_key_map_and_the_weights(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(["import", "torchvision.models:squeezenet1_0", "--arg", "num_classes=7",
                          "-o", "sq.net", "--save-weights", "sq.pt"])
    assert code == 0, err
    assert "wrote sq.net: SqueezeNet" in err and "sq.keys.json" in err
    keys = json.loads((tmp_path / "sq.keys.json").read_text())
    assert keys["features_3.squeeze.weight"] == "features.3.squeeze.weight"
    spec = netdsl.load(tmp_path / "sq.net")
    built = spec.build()
    built.load_state_dict(torch.load(tmp_path / "sq.pt", weights_only=True))
    assert built(torch.randn(1, 3, 64, 64)).shape == (1, 7)
    code, out, err = cli(["check", "sq.net"])
    assert code == 0 and "ok" in out


def test_cli_mistakes(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(["import", "torchvision.models:resnet1"])
    assert code == 1 and "E508" in err and "did you mean 'resnet18'" in err
    code, _, err = cli(["import", "no_such_module_here:Net"])
    assert code == 1 and "cannot import no_such_module_here" in err
    code, _, err = cli(["import", "resnet18"])
    assert code == 2 and "MODULE:FACTORY" in err
    code, _, err = cli(["import", "torchvision.models:resnet18", "--arg", "num_classes"])
    assert code == 2 and "NAME=VALUE" in err
    (tmp_path / "mine.py").write_text("import torch\nnet = torch.nn.Linear(3, 2)\n"
                                      "def broken():\n    raise RuntimeError('no')\n")
    code, out, err = cli(["import", "mine:net"])
    assert code == 0 and "input x: [3]" in out
    code, _, err = cli(["import", "mine:broken"])
    assert code == 1 and "mine:broken() failed: RuntimeError: no" in err
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".pyc") == \
        ["__pycache__", "mine.py"] or sorted(p.name for p in tmp_path.iterdir()) == ["mine.py"]


def test_help_lists_import(cli):
    code, out, _ = cli(["--help"])
    assert code == 0 and "import" in out and "netdsl import torchvision.models:resnet18" in out
