"""`netdsl compile` is injection-proof, formats like ruff, and needs no torch.

Names from a spec become code only as validated identifiers (a keyword, builtin, standard
module or name of the script gets a trailing underscore, `class_`, `time_`); strings and numbers become
literals. The hostile specs below are compiled, checked by `ruff`, imported in a fresh process
that would notice any side effect, and run against the live module.
"""

from __future__ import annotations

import ast
import builtins
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import netdsl
from netdsl.targets.compile import compile_spec
from netdsl.targets.lower import lower_models
from netdsl.targets.pyformat import format_header, format_statement
from netdsl.targets.pysource import literal
from test_compile import ROOT, RUFF, SPECS, as_tuple, example_inputs, import_source, ruff_clean

TESTS = Path(__file__).parent


def spec_string(s: str) -> str:
    """`s` as a netdsl string literal."""
    return '"' + s.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'


def assert_parity(spec: netdsl.Spec, module, name: str) -> None:
    torch.manual_seed(0)
    live = spec.build(name)
    gen = getattr(module, name)()
    assert list(gen.state_dict()) == list(live.state_dict())
    gen.load_state_dict(live.state_dict())
    live.eval()
    gen.eval()
    xs = example_inputs(spec.graph(name))
    with torch.no_grad():
        for a, b in zip(as_tuple(live(*xs)), as_tuple(gen(*xs)), strict=True):
            torch.testing.assert_close(b, a, equal_nan=True)


def import_in_fresh_process(file: Path, tmp_path: Path) -> str:
    """Import `file` in a new interpreter (cwd `tmp_path`); returns what it printed. Fails if
    the import wrote any file or printed anything."""
    before = set(tmp_path.iterdir())
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]))
    code = f"import sys, importlib.util as u; s = u.spec_from_file_location('m', {str(file)!r}); " \
           "m = sys.modules['m'] = u.module_from_spec(s); s.loader.exec_module(m)"
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""
    assert set(tmp_path.iterdir()) == before  # importing created nothing
    return r.stdout


# ---- names ---------------------------------------------------------------------------------------
def _python_names() -> list[str]:
    """Every name a generated file can see: keywords, soft keywords, builtins, dunders,
    standard-library modules, what the training script defines or imports, and the module names
    generated code uses. (netdsl's own keywords cannot be written as names.)"""
    import keyword

    from netdsl.syntax.parser import KEYWORDS
    from netdsl.targets.trainscript import script_names

    names = set(keyword.kwlist) | set(keyword.softkwlist) | set(dir(builtins))
    names |= set(sys.stdlib_module_names) | set(script_names())
    names |= {"self", "torch", "nn", "F", "math", "torchvision", "__class__", "__init__",
              "__dict__", "__name__", "__module__", "__qualname__", "forward", "super"}
    from netdsl.ops import get_op

    # layer names (`abs`, `Split`) name layers only: E202 elsewhere, tested in test_diagnostics
    out = sorted(n for n in names if n.isidentifier() and n.isascii() and n not in KEYWORDS
                 and get_op(n) is None
                 and n not in ("true", "false", "none", "True", "False", "None"))
    return out


NAMES = _python_names()
CHUNK = 60


def _names_spec(k: int, swap: bool) -> tuple[str, list[str]]:
    """Spec k: 30 blocks and 30 models named after chunk k, each block with two parameters
    (chunk k+1), each model with an input and an output value (chunk k+2), each block with an
    input and an output value (chunk k+3): over every k, each name plays every part."""
    m = -(-len(NAMES) // CHUNK)

    def chunk(i):
        # the last chunk is short: fill it from a chunk this spec uses for nothing else
        part = NAMES[(i % m) * CHUNK:(i % m + 1) * CHUNK]
        spare = NAMES[((k + 5) % m) * CHUNK:((k + 5) % m + 1) * CHUNK]
        return (part + spare)[:CHUNK]

    classes, params, values, inner = chunk(k), chunk(k + 1), chunk(k + 2), chunk(k + 3)
    blocks, models = (classes[30:], classes[:30]) if swap else (classes[:30], classes[30:])
    out = []
    for j, b in enumerate(blocks):
        p, q, i, o = params[2 * j], params[2 * j + 1], inner[2 * j], inner[2 * j + 1]
        out.append(f"block {b}({p} = 1, {q} = 2) {{\n  input {i}\n"
                   f"  {o} = {i} -> Linear({p} + {q}) -> Tanh\n"
                   f"  output ({o}, {i}) -> Concat(dim=-1) -> Linear({q})\n}}\n")
    for j, name in enumerate(models):
        a, y = values[2 * j], values[2 * j + 1]
        out.append(f"model {name} {{\n  input {a}: [4]\n  {y} = {a} -> {blocks[j]}(1) -> Linear(3)\n"
                   f"  output {y}\n}}\n")
    out.append(f"train {models[0]} {{\n  data = synthetic(shape=[4], target_shape=3, n=32, n_test=8)\n"
               f"  batch_size = 8\n  epochs = 1\n  loss = MSELoss({values[1]}, target)\n}}\n")
    return "\n".join(out), models


@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("k", range(-(-len(NAMES) // CHUNK)))
def test_every_python_name_can_name_anything(k, swap, tmp_path, capsys):
    """Models, blocks, block parameters and values named after every keyword, builtin, dunder,
    standard module and name of the training script: the spec builds, compiles, the compiled
    classes match the live ones, and the compiled script trains. Names that Python would read
    otherwise are renamed in the code; the state_dict keys stay as the spec writes them."""
    text, models = _names_spec(k, swap)
    spec = netdsl.loads(text, "names.net")
    src = compile_spec(spec)
    module = import_source(src, tmp_path, f"names{k}{int(swap)}")
    classes = {c.model: c.name for c in lower_models([spec.graph(m) for m in models])
               if c.model is not None}
    for name in models[:3] + models[-2:]:
        torch.manual_seed(0)
        live = spec.build(name)
        assert type(live).__name__ == classes[name]
        gen = getattr(module, classes[name])()
        assert list(gen.state_dict()) == list(live.state_dict())
        gen.load_state_dict(live.state_dict())
        x = torch.randn(2, 4)
        torch.testing.assert_close(gen(x), live(x))
        live(x).sum().backward()
    capsys.readouterr()
    assert module.main(["--epochs", "1", "--out", str(tmp_path / "run"), "--json"]) == 0
    assert '"status": "completed"' in capsys.readouterr().out


HOSTILE_NAMES = """
block Blk(self, nn, lambda = 2, torch = 3, __class__ = 1) {
  input print
  __import__ = print -> Linear(lambda * torch + self) as exec
  super = __import__ -> ReLU as nn_
  output super + __import__
}

model Hostile {
  input self: [3]
  input torch: [3]
  class = self + torch
  def = class -> Blk(1, 2, lambda=3) -> Blk(2, 1) -> Linear(4) as print
  __x = def -> Linear(4) as int
  F = __x * def
  output F, class
}
"""


def test_hostile_names_become_safe_identifiers(tmp_path, capsys):
    spec = netdsl.loads(HOSTILE_NAMES, "hostile.net")
    src = compile_spec(spec, train=False)
    tree = ast.parse(src)
    bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    bound |= {a.arg for n in ast.walk(tree) if isinstance(n, ast.arguments) for a in n.args}
    shadows = (bound - {"self"}) & (set(dir(builtins)) | {"torch", "nn", "F"})
    assert not shadows  # `self` only as the first parameter, never a builtin or module name
    for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        assert [a.arg for a in fn.args.args].count("self") == 1
    assert "def __init__(self, in_features, self_, lambda_=2, torch_=3):" in src
    assert "def forward(self, self_, torch_):" in src
    assert "self.exec = nn.Linear(" in src and "self.print = nn.Linear(" in src
    file = tmp_path / "hostile.py"
    file.write_text(src)
    ruff_clean(file)
    module = import_source(src, tmp_path, "hostile")
    assert {k for k in vars(module) if not k.startswith("__")} == {"nn", "Blk", "Hostile"}
    assert_parity(spec, module, "Hostile")
    assert capsys.readouterr().out == ""


# ---- strings -------------------------------------------------------------------------------------
HOSTILE_STRINGS = [
    '"""', "'''", '"', "'", 'a"b', "a'b", "\\", "\\n", "line\nbreak", "tab\there", "\r",
    '"; import os; os.system("touch PWNED"); "',
    "''' + __import__('os').system('touch PWNED') + '''",
    '"""\nimport os\nos.system("touch PWNED")\n"""',
    "\\\"", "\x00\x1b[31m", "\u2028\u2029", "é€😀", "#", "{0}", "%s", "",
]


@pytest.fixture
def tagged():
    layer = netdsl.register_layer("compile_layers:Tagged")
    yield layer
    from netdsl.ops.custom import unregister_layer

    unregister_layer("Tagged")


def test_hostile_strings_stay_data(tagged, tmp_path):
    blocks, steps = [], []
    for k, s in enumerate(HOSTILE_STRINGS):
        blocks.append(f"block S{k}(s = {spec_string(s)}) {{\n  input x\n  output x -> Tagged(tag=s)\n}}")
        steps.append(f"S{k}")
    text = "\n".join(blocks) + "\nmodel Strings {\n  input x: [2]\n  x -> " + " -> ".join(steps) + \
        " -> Linear(1) -> y\n  output y\n}\n"
    spec = netdsl.loads(text, "strings.net")
    src = compile_spec(spec, train=False)
    assert "import compile_layers" in src
    assert "Regenerate with: netdsl --allow-layer compile_layers:Tagged compile strings.net" in src
    file = tmp_path / "strings.py"
    file.write_text(src, encoding="utf-8")
    ruff_clean(file)
    tree = ast.parse(src)
    tags = [kw.value.value for call in ast.walk(tree) if isinstance(call, ast.Call)
            for kw in call.keywords if kw.arg == "tag"]
    # each string is one constant, exactly the spec's ("" is the layer's default: left out)
    assert tags == [s for s in HOSTILE_STRINGS if s != ""]
    import_in_fresh_process(file, tmp_path)
    module = import_source(src, tmp_path, "strings")
    for k, s in enumerate(HOSTILE_STRINGS):
        cls = getattr(module, f"S{k}")
        assert cls.__doc__.startswith(f"Block S{k}(s={literal(s)})")
        assert cls().tagged1.tag == s
    assert_parity(spec, module, "Strings")
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()


def test_a_hostile_spec_file_name_stays_in_comments_and_docstrings(tmp_path):
    name = 'we"ird\\ """name\nimport os; os.system("touch PWNED")\n.net'
    spec = netdsl.loads("model M {\n input x: [2]\n x -> Linear(1) -> y\n output y\n}\n"
                        "train M {\n data = synthetic(shape=[2], target_shape=1)\n"
                        " loss = MSELoss(y, target)\n}\n", name)
    src = compile_spec(spec)
    assert "def main(argv=None):" in src
    assert not any(isinstance(n, ast.Attribute) and n.attr == "system" for n in ast.walk(ast.parse(src)))
    file = tmp_path / "weird.py"
    file.write_text(src)
    ruff_clean(file)
    import_in_fresh_process(file, tmp_path)
    module = import_source(src, tmp_path, "weird")
    assert module.__doc__.startswith(f"The model M in plain PyTorch, generated by netdsl {netdsl.__version__} "
                                     f"from {name}.")


# ---- numbers -------------------------------------------------------------------------------------
def test_extreme_numbers_are_literals(tmp_path):
    """Finite extremes become exact literals; what is not finite, or beyond the bounds, is an
    error at the number (issue 15: 1e999 reached a shape rule and crashed). A slope of 1e308 on
    float32 input is E301 (torch converts it to float32); on float64 it is torch's to take."""
    text = textwrap.dedent("""
        model N {
          input x: [4]
          input d: [4] float64
          a = d -> LeakyReLU(1e308) -> LeakyReLU(-1e308) -> LeakyReLU(-0.0)
          b = x -> LeakyReLU(1e-320) -> LeakyReLU(5e-324) -> Linear(1000, bias=false)
          output a, b
        }
    """)
    spec = netdsl.loads(text, "numbers.net")
    src = compile_spec(spec, train=False)
    for lit in ("=1e308)", "=-1e308)", "-0.0", "1e-320", "5e-324", "nn.Linear(4, 1000, bias=False)"):
        assert lit in src
    file = tmp_path / "numbers.py"
    file.write_text(src)
    ruff_clean(file)
    small = netdsl.loads(text.replace("LeakyReLU(1e308) -> LeakyReLU(-1e308) -> ", ""), "n.net")
    assert_parity(small, import_source(compile_spec(small, train=False), tmp_path, "n2"), "N")
    for bad, code in [("1e309", "E104"), ("-1e309", "E104"), ("0.0 * 1e309", "E104"),
                      ("1e308 * 10", "E104"), ("4294967296 * 4294967296 * 4294967296", "E104")]:
        with pytest.raises(netdsl.NetdslError) as e:
            netdsl.loads(text.replace("LeakyReLU(-0.0)", f"LeakyReLU({bad})"), "n.net")
        assert [d.code for d in e.value.diagnostics] == [code], bad
        assert e.value.diagnostics[0].span.line == 5  # at the number
    with pytest.raises(netdsl.NetdslError) as e:  # 2**63 - 1 outputs: 3.7e19 weights
        netdsl.loads(text.replace("Linear(1000", "Linear(9223372036854775807"), "n.net")
    assert [d.code for d in e.value.diagnostics] == ["E305"]


# ---- no torch ------------------------------------------------------------------------------------
BLOCK_TORCH = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ImportError(f"{name} is blocked in this test")
        return None
sys.meta_path.insert(0, Blocker())
from netdsl.cli import main
main(sys.argv[1:])
"""


def uses_backbone(path: Path) -> bool:
    from netdsl.ops.backbone import Backbone

    spec = netdsl.load(path)
    return any(isinstance(n.op, Backbone) for name in spec.model_names
               for _, n, _ in spec.graph(name).walk() if n.kind == "op")


@pytest.mark.parametrize("train", [True, False], ids=["default", "no-train"])
@pytest.mark.parametrize("path", [p for p in SPECS if not uses_backbone(p)], ids=lambda p: p.name)
def test_compiling_does_not_import_torch(path, train):
    args = [] if train else ["--no-train"]
    r = subprocess.run([sys.executable, "-c", BLOCK_TORCH, "compile", str(path), *args],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == compile_spec(path, train=None if train else False)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_importing_a_compiled_file_only_defines_things(path, tmp_path):
    """With its training script too: importing trains nothing, prints nothing, writes nothing."""
    file = tmp_path / f"{path.stem}.py"
    file.write_text(compile_spec(path), encoding="utf-8")
    import_in_fresh_process(file, tmp_path)


# ---- layout: pyformat against ruff itself ----------------------------------------------------------
def random_statements(rng: random.Random, n: int) -> list[str]:
    def name(cap=95):
        return "v" + "x" * rng.choice([rng.randint(0, 7), rng.randint(0, 50), rng.randint(0, cap)])

    def atom():
        k = rng.random()
        if k < 0.5:
            return name()
        if k < 0.6:
            return str(rng.randint(0, 10 ** rng.randint(1, 12)))
        if k < 0.7:
            return f"{name()}.shape[0]"
        if k < 0.8:
            return "(" + ", ".join(str(rng.randint(1, 999)) for _ in range(rng.randint(2, 12))) + ")"
        if k < 0.9:
            return "[" + ", ".join(name() for _ in range(rng.randint(1, 4))) + "]"
        return f"{name(40)}=" + rng.choice([name(), "True", "(3, 3)", repr(rng.random()), '"zeros"'])

    def call():
        f = rng.choice(["self." + name(), "nn.Conv2d", "torch.cat", name() + ".reshape", name()])
        args = [atom() for _ in range(rng.randint(1, 6))]
        return f"{f}({', '.join(sorted(args, key=lambda a: '=' in a.split('(')[0]))})"

    out = []
    for _ in range(n):
        k = rng.random()
        target = ", ".join(name() for _ in range(rng.choice([1, 1, 2, 3, 5])))
        if k < 0.5:
            out.append(f"{target} = {call()}")
        elif k < 0.65:
            out.append(f"{name()} = " + rng.choice([" + ", " * "]).join(name() for _ in range(rng.randint(2, 4))))
        elif k < 0.75:
            out.append(f"{name()} = {name()}")
        elif k < 0.85:
            out.append("return " + ", ".join(name() for _ in range(rng.randint(1, 4))))
        else:
            out.append(call())
    return out


@pytest.mark.parametrize("seed", range(3))
def test_layout_is_ruffs(seed, tmp_path):
    rng = random.Random(seed)
    lines = ["class A:"]
    for k in range(30):
        params = ["self"] + sorted((("v" + "x" * rng.randint(0, 40) + f"{j}") + rng.choice(["", "=1"])
                                    for j in range(rng.randint(0, 5))), key=lambda p: "=" in p)
        lines += [""] if k else []
        lines += format_header("def", "f" + "x" * rng.randint(0, 80), params, 4)
        for st in random_statements(rng, 15):
            indent = rng.choice([8, 12])
            if indent == 12:
                lines.append("        if x:")
            comment = rng.choice(["", "", "(B, 64, 56, 56)"])
            lines += format_statement(st, indent, comment if not st.startswith("return") else "")
    lines += ["", "", *format_header("class", "C" + "x" * rng.randint(0, 100), ["nn.Module"], 0),
              "    pass"]
    file = tmp_path / "layout.py"
    file.write_text("\n".join(lines) + "\n")
    if not Path(RUFF).exists():
        pytest.skip("ruff is not installed")
    r = subprocess.run([RUFF, "format", "--check", "--diff", "--isolated", "--no-cache", str(file)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[:4000]
