"""`netdsl compile`: the generated source, imported from a file, is the live module.

For every spec in specs/ and tests/compile_corpus/ (blocks with conditions, nested blocks,
several structures, sequence layers, initialisation, merges): the generated classes have
exactly the live module's state_dict keys and shapes, and with its weights they give identical
outputs, gradients and optimizer steps, in training and evaluation mode. Plus golden files
for the seed specs (`pytest --update-goldens` rewrites them), determinism, formatting
(`ruff format --check` and `ruff check`), ResNet-18 against torchvision, and the command line.
Hostile names and strings, and compiling without torch, are in test_compile_safety.py.
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
import py_compile
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import netdsl
from netdsl.cli import main
from netdsl.targets.compile import compile_spec
from netdsl.targets.inlined import (
    MODULES, RUNTIME, standalone)

ROOT = Path(__file__).parents[1]
SPECS = sorted((ROOT / "specs").glob("*.net"))
CORPUS = sorted((Path(__file__).parent / "compile_corpus").glob("*.net"))
RUFF = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
_counter = itertools.count()


def import_source(source: str, directory: Path, stem: str = "model"):
    """Write `source` to a file and import it as a fresh module."""
    path = directory / f"{stem}_{next(_counter)}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = sys.modules[path.stem] = importlib.util.module_from_spec(spec)  # as `import` does
    spec.loader.exec_module(module)
    return module


# The largest reference networks run at batch 1, and GPT-2 (whose module takes any length up to
# its context) on 8 tokens rather than 1,024: the comparison is exact either way, at a tenth of
# the time.
LARGE = {"vit_b_16.net": {"batch": 1}, "gpt2.net": {"batch": 1, "length": 8}}


def example_inputs(graph, batch: int = 3, length: int | None = None) -> list[torch.Tensor]:
    xs = []
    for node in graph.inputs:
        t = node.types[0].concrete()  # symbolic sizes at their smallest
        shape = (batch, *t.shape) if length is None else (batch, length, *t.shape[1:])
        if t.dtype == "bool":  # a padding mask: a random tail, never the whole sequence
            xs.append(torch.arange(shape[-1]) >= torch.randint(1, shape[-1] + 1, (*shape[:-1], 1)))
        elif t.dtype in ("int64", "int32", "uint8"):
            xs.append(torch.randint(0, 3, shape, dtype=getattr(torch, t.dtype)))
        else:
            xs.append(torch.randn(shape, dtype=getattr(torch, t.dtype)))
    return xs


def as_tuple(y):
    return y if isinstance(y, tuple) else (y,)


def cases():
    for path in SPECS + CORPUS:
        for name in netdsl.load(path).model_names:
            yield pytest.param(path, name, id=f"{path.name}:{name}")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """path -> the module generated from it (each spec compiled once, all its models)."""
    cache = {}
    directory = tmp_path_factory.mktemp("compiled")

    def get(path: Path):
        if path not in cache:
            cache[path] = import_source(compile_spec(path, train=False), directory, path.stem)
        return cache[path]

    return get


@pytest.mark.parametrize("path,name", list(cases()))
def test_generated_class_is_the_live_module(path, name, compiled):
    spec = netdsl.load(path)
    torch.manual_seed(0)
    live = spec.build(name)
    gen = getattr(compiled(path), name)()
    want, got = live.state_dict(), gen.state_dict()
    assert list(got) == list(want)  # the same keys, in the same order
    assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in want.items()}
    gen.load_state_dict(want)
    assert [p.requires_grad for p in gen.parameters()] == [p.requires_grad for p in live.parameters()]
    xs = example_inputs(spec.graph(name), **LARGE.get(path.name, {}))

    # training mode: outputs and gradients (dropout draws the same masks from the same seed)
    live.train()
    gen.train()
    outs = []
    for m in (live, gen):
        torch.manual_seed(1)
        ys = as_tuple(m(*xs))
        torch.manual_seed(2)
        loss = sum((y.float() * torch.randn_like(y.float())).sum() for y in ys)
        loss.backward()
        outs.append((ys, [p.grad for p in m.parameters()]))
    (ya, ga), (yb, gb) = outs
    for a, b in zip(ya, yb, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
    for a, b in zip(ga, gb, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a, rtol=0, atol=0)
    torch.testing.assert_close(gen.state_dict(), live.state_dict(), rtol=0, atol=0)  # BN stats

    # evaluation mode
    live.eval()
    gen.eval()
    with torch.no_grad():
        for a, b in zip(as_tuple(live(*xs)), as_tuple(gen(*xs)), strict=True):
            torch.testing.assert_close(b, a, rtol=0, atol=0)


@pytest.mark.parametrize("path,name", list(cases()))
def test_one_optimizer_step_from_the_same_state_gives_the_same_loss(path, name, compiled):
    spec = netdsl.load(path)
    torch.manual_seed(0)
    live = spec.build(name)
    gen = getattr(compiled(path), name)()
    gen.load_state_dict(live.state_dict())
    xs = example_inputs(spec.graph(name), **LARGE.get(path.name, {}))
    live.eval()  # (an evaluation pass leaves batch-norm statistics alone)
    with torch.no_grad():
        targets = [torch.randn_like(y.float()) for y in as_tuple(live(*xs))]
    losses = []
    for m in (live, gen):
        m.train()
        params = [p for p in m.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=0.05, momentum=0.9)
        step = []
        for _ in range(2):
            opt.zero_grad()
            torch.manual_seed(3)
            ys = as_tuple(m(*xs))
            loss = sum(torch.nn.functional.mse_loss(y.float(), t) for y, t in zip(ys, targets))
            loss.backward()
            opt.step()
            step.append(loss.detach())
        losses.append(step)
    torch.testing.assert_close(losses[1], losses[0], rtol=0, atol=0)
    torch.testing.assert_close(gen.state_dict(), live.state_dict(), rtol=0, atol=0)


def test_resnet18_matches_torchvision(compiled):
    """The compiled ResNet18 has torchvision's 11,689,512 parameters, in torchvision's order, and
    with torchvision's weights gives torchvision's outputs."""
    torchvision = pytest.importorskip("torchvision")
    gen = compiled(ROOT / "specs" / "resnet18.net").ResNet18()
    ref = torchvision.models.resnet18()
    assert sum(p.numel() for p in gen.parameters()) == 11_689_512
    ours, theirs = gen.state_dict(), ref.state_dict()
    assert [v.shape for v in ours.values()] == [v.shape for v in theirs.values()]
    gen.load_state_dict(dict(zip(ours, theirs.values())))
    gen.eval()
    ref.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(gen(x), ref(x))


def test_resnet18_basic_block_is_one_class_with_a_condition():
    src = compile_spec(ROOT / "specs" / "resnet18.net", train=False)
    assert src.count("class Basic") == 1
    assert "def __init__(self, in_channels, c, stride=1):" in src
    assert "        if stride != 1:\n            self.conv3 = nn.Conv2d(in_channels, c, 1, stride=stride" in src
    # (a symbolic shape comment too long for the line goes on a line of its own)
    assert re.search(r'        if hasattr\(self, "conv3"\):\n(            # .*\n)?            s = self.conv3\(x\)', src)
    assert "self.basic3 = Basic(64, 128, stride=2)" in src


def without_runtime(src: str) -> str:
    """The source with each inlined runtime module's code (checked to be exactly the formatted
    module) replaced by one line: the golden files hold what the compiler writes itself."""
    for m in MODULES:
        body = standalone(m).body
        if body in src:
            src = src.replace(body, f"# <the code of netdsl/runtime/{m}.py>\n")
    return src


@pytest.mark.parametrize("name", ["Blocks", "Small"])
def test_classes_with_conditions_are_torchscript(name, compiled):
    """forward tells a block's branches apart by `hasattr(self, layer)`, which TorchScript
    decides when it compiles: each instance scripts with its own branch only."""
    import warnings

    path = Path(__file__).parent / "compile_corpus" / "blocks.net"
    spec = netdsl.load(path)
    gen = getattr(compiled(path), name)().eval()
    xs = example_inputs(spec.graph(name))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.compile
        torch.testing.assert_close(torch.jit.script(gen)(*xs), gen(*xs), rtol=0, atol=0)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_golden_source_of_the_seed_specs(path, golden):
    golden(f"goldens/compile/{path.stem}.py", without_runtime(compile_spec(path)))


# The seed specs whose plans compile to a script of their own (the others use what the writer
# does not cover yet: per-sample augmentation, text windows, siamese pairs, dense labels).
WRITTEN_OUT = ["autoencoder", "image_and_table", "lenet", "linear_regression", "mlp", "mlp_deep",
               "mlp_wide", "mnist", "multitask"]


@pytest.mark.parametrize("name", WRITTEN_OUT)
def test_the_training_script_stays_the_size_a_person_would_write(name):
    """The part after the model classes (data, step, metrics, the epoch, evaluation, main),
    blank lines included. 350: the richest seed plan, mnist.net (a held-out split, OneCycleLR,
    early stopping, best and last checkpoints with resume, two metrics), takes 340 laid out
    by ruff; the smallest about 290, of which about 80 are argparse, the device, the
    divergence check and safe saving, which any careful script has.
    The runtime this replaced was over 5,000 lines: a bound this tight keeps it out."""
    src = compile_spec(ROOT / "specs" / f"{name}.net")
    assert "netdsl/runtime/loop.py" not in src and "PLAN = {" not in src
    script = src[src.index("# ---- the data"):]
    assert len(script.splitlines()) <= 350


@pytest.mark.parametrize("module", MODULES)
def test_inlined_runtime_modules_are_in_ruff_layout_and_inlined_unchanged(module):
    """runtime/{data,loop}.py are kept as `ruff format --isolated` writes them (88 columns), so
    the compiler can inline them unchanged into a ruff-clean file. After editing one, run
    `ruff format --isolated netdsl/runtime/data.py netdsl/runtime/loop.py`."""
    if not Path(RUFF).exists():
        pytest.skip("ruff is not installed")
    path = RUNTIME / f"{module}.py"
    r = subprocess.run([RUFF, "format", "--isolated", "--no-cache", "--check", str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"{path} is not in ruff's layout: ruff format --isolated {path}"
    src = compile_spec(ROOT / "specs" / "mnist_augment.net")  # (its augmentation: inlined)
    assert standalone(module).body in src


@pytest.mark.parametrize("train", [None, False], ids=["default", "no-train"])
@pytest.mark.parametrize("path", SPECS + CORPUS, ids=lambda p: p.name)
def test_output_is_deterministic_compiles_and_is_formatted_and_lint_clean(path, train, tmp_path):
    src = compile_spec(path, train=train)
    assert compile_spec(netdsl.load(path), train=train) == src  # same spec, same bytes
    assert ("def main(argv=None):" in src) == (train is None and bool(netdsl.load(path).trains))
    file = tmp_path / f"{path.stem}.py"
    file.write_text(src, encoding="utf-8")
    py_compile.compile(str(file), doraise=True)
    ruff_clean(file)
    imports = {a.name.split(".")[0] for node in ast.walk(ast.parse(src))
               if isinstance(node, ast.Import | ast.ImportFrom)
               for a in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
    # numpy and PIL only inside runtime/data.py's image-folder and CSV readers: torchvision's own
    # dependencies, imported when those sources are used
    assert imports <= set(sys.stdlib_module_names) | {"torch", "torchvision", "numpy", "PIL"}


def ruff_clean(*files: Path) -> None:
    """`ruff format --check` and `ruff check` (default rules) pass, with ruff's defaults."""
    if not Path(RUFF).exists():
        pytest.skip("ruff is not installed")
    for cmd in (["format", "--check", "--diff"], ["check"]):
        r = subprocess.run([RUFF, *cmd, "--isolated", "--no-cache", *map(str, files)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr


def test_small_spec_edits_change_few_lines():
    base = (ROOT / "specs" / "mlp.net").read_text()
    edited = base.replace("-> ReLU ->", "-> ReLU -> Linear(64) -> ReLU ->")
    a = compile_spec(netdsl.loads(base, "mlp.net"), train=False).splitlines()
    b = compile_spec(netdsl.loads(edited, "mlp.net"), train=False).splitlines()
    import difflib

    changed = [ln for ln in difflib.unified_diff(a, b, lineterm="", n=0)
               if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    assert 0 < len(changed) <= 8, changed


def test_live_module_runs_the_same_lowering():
    import inspect

    spec = netdsl.load(ROOT / "specs" / "resnet18.net")
    live_src = inspect.getsource(type(spec.build().basic1))
    assert live_src in compile_spec(spec, train=False)


# ---- the command line ---------------------------------------------------------------------------
def run_cli(*args, capsys):
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_writes_stdout_or_a_file(tmp_path, capsys):
    path = ROOT / "specs" / "lenet.net"
    code, out, _ = run_cli("compile", str(path), "--no-train", capsys=capsys)
    assert code == 0 and out == compile_spec(path, train=False)
    target = tmp_path / "lenet.py"
    code, out, err = run_cli("compile", str(path), "--no-train", "-o", str(target), capsys=capsys)
    assert code == 0 and out == "" and "wrote" in err and "LeNet" in err
    assert target.read_text() == compile_spec(path, train=False)


def test_cli_compiles_a_spec_without_a_plan_to_classes(tmp_path, capsys):
    path = ROOT / "specs" / "resnet18.net"
    code, out, err = run_cli("compile", str(path), capsys=capsys)
    assert code == 0 and err == "" and out == compile_spec(path, train=False).replace(
        "Regenerate with: netdsl compile resnet18.net --no-train", "Regenerate with: netdsl compile resnet18.net")
    code, _, err = run_cli("compile", str(ROOT / "specs" / "mlp.net"), "-o", str(tmp_path / "m.py"),
                           capsys=capsys)
    assert code == 0 and err.strip() == f"wrote {tmp_path / 'm.py'} (MLP 101,770 parameters, with its training script)"


def test_cli_model_selection_and_mistakes(tmp_path, capsys):
    path = str(Path(__file__).parent / "compile_corpus" / "blocks.net")
    code, out, _ = run_cli("compile", path, "--model", "Small", "--no-train", capsys=capsys)
    assert code == 0 and "class Small(nn.Module)" in out and "class Blocks" not in out
    assert "class Res(nn.Module)" in out and "class Tri" not in out
    code, out, err = run_cli("compile", path, "--model", "small", "--no-train", capsys=capsys)
    assert code == 1 and "error[E502]" in err and "did you mean 'Small'" in err
    bad = tmp_path / "bad.net"
    bad.write_text("model M {\n input x: [4]\n x -> Linear(q) -> y\n output y\n}\n")
    code, out, err = run_cli("compile", str(bad), "--no-train", capsys=capsys)
    assert code == 1 and f"{bad}:3:14: error[E201]" in err and out == ""
    code, _, err = run_cli("compile", str(ROOT / "specs" / "mlp.net"), "--no-train", "-o",
                           str(tmp_path / "missing" / "x.py"), capsys=capsys)
    assert code == 1 and "error[E501]" in err and "does not exist" in err


def test_cli_help_has_examples(capsys):
    code, out, _ = run_cli("compile", "--help", capsys=capsys)
    assert code == 0
    for word in ("--output", "--model", "--no-train", "Examples:", "netdsl compile specs/mnist.net"):
        assert word in out


def test_python_api_entry_point():
    assert netdsl.compile is compile_spec
    with pytest.raises(netdsl.NetdslError):
        netdsl.compile(ROOT / "specs" / "no_such.net")
