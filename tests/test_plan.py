"""Training plans: golden diagnostics for every E4xx mistake (tests/plans/), the declarations
against torch's own signatures and the data layer, overrides, and the resolved settings."""

from __future__ import annotations

import inspect
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import netdsl
from netdsl.cli import main
from netdsl.diagnostics import CODES, NetdslError
from netdsl.ops.base import Extra, Inferred, _marker
from netdsl.runtime import sources
from netdsl.runtime.catalog import LOSSES, OPTIMIZERS, SCHEDULERS
from netdsl.runtime.overrides import literal_setting, parse_set

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).parent / "plans"
CASES = sorted(HERE.glob("*.net"))
STATIC = ("E401", "E402", "E403", "E405", "E407")  # found by `netdsl check`, without torch

MLP = ("model MLP {\n  input x: [1, 28, 28]\n  x -> Flatten -> Linear(10) -> logits\n"
       "  output logits\n}\n")


def report(path: Path, monkeypatch, capsys, tmp_path) -> str:
    """What a user sees for one case: `netdsl check` (or the `# cli:` command) on it."""
    text = path.read_text(encoding="utf-8")
    first = text.splitlines()[0]
    args = shlex.split(first[len("# cli:"):]) if first.startswith("# cli:") else ["check",
                                                                                  path.name]
    monkeypatch.chdir(HERE)
    monkeypatch.setenv("NO_COLOR", "1")
    if args[0] == "run":
        args += ["--out", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out = capsys.readouterr()
    return out.err + f"[exit status {exit_info.value.code}]\n"


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_golden(path, golden, monkeypatch, capsys, tmp_path):
    if path.stem.startswith("e404") and _cuda():
        pytest.skip("this machine has CUDA")
    text = report(path, monkeypatch, capsys, tmp_path)
    assert "Traceback" not in text and "internal error" not in text
    golden(f"plans/{path.stem}.expected", text)
    code = path.stem.split("_")[0].upper()
    assert f"error[{code}]" in text, f"{path.name} does not report {code}"
    assert text.endswith("[exit status 1]\n")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_every_plan_code_has_a_golden_case():
    covered = {p.stem.split("_")[0].upper() for p in CASES}
    assert {c for c in CODES if c.startswith("E40") and c in (*STATIC, "E404", "E406")} <= covered


def test_static_mistakes_are_all_reported_together():
    """One plan, eight mistakes: one pass reports every one of them."""
    text = (HERE / "e401_values.net").read_text()
    with pytest.raises(NetdslError) as exc:
        netdsl.loads(text, "values.net")
    codes = [d.code for d in exc.value.diagnostics]
    assert len(codes) == 7 and set(codes) == {"E401"}
    lines = sorted(d.span.line for d in exc.value.diagnostics)
    assert lines == [7, 8, 9, 10, 11, 12, 13]


def test_check_validates_plans_without_torch():
    code = ("import sys; from netdsl.cli import main\n"
            "try:\n    main(['check', '-q', *sys.argv[1:]])\nexcept SystemExit as e:\n"
            "    assert e.code in (0, None), e.code\n"
            "assert 'torch' not in sys.modules, 'netdsl check imported torch'\n")
    specs = [str(p) for p in sorted((ROOT / "specs").glob("*.net"))]
    out = subprocess.run([sys.executable, "-c", code, *specs], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    bad = subprocess.run([sys.executable, "-c", code.replace("(0, None)", "(1,)"),
                          str(HERE / "e403_shape_mismatch.net")], capture_output=True, text=True)
    assert bad.returncode == 0, bad.stderr


# ---- declarations against torch and the data layer -------------------------------------------
@pytest.mark.parametrize("family,module", [(OPTIMIZERS, "torch.optim"),
                                           (SCHEDULERS, "torch.optim.lr_scheduler"),
                                           (LOSSES, "torch.nn")], ids=["optim", "sched", "loss"])
def test_declarations_follow_torch_signatures(family, module):
    import importlib

    mod = importlib.import_module(module)
    for name, cls in family.members.items():
        assert cls.torch == f"{module}.{name}", cls.torch
        params = inspect.signature(getattr(mod, name)).parameters
        order = list(params)
        torch_fields = [f for f, info in cls.model_fields.items() if not _marker(info, Extra)]
        for f in torch_fields:
            assert f in params, f"{name}.{f} is not an argument of {module}.{name}"
            info, p = cls.model_fields[f], params[f]
            if _marker(info, Inferred):
                continue
            want = p.default
            if want is inspect.Parameter.empty:
                assert info.is_required(), f"{name}.{f} is required in torch"
            else:
                assert info.default == want, f"{name}.{f}: default {info.default!r} != {want!r}"
        idx = [order.index(f) for f in torch_fields]
        assert idx == sorted(idx), f"{name}'s fields are not in torch's order"


def test_transforms_and_sources_agree_with_the_data_layer():
    from netdsl.runtime import data

    assert set(sources.TRANSFORMS.members) == set(data.TRANSFORMS)
    for name, cls in sources.TRANSFORMS.members.items():
        allowed, required, is_random = data.TRANSFORMS[name]
        assert set(cls.model_fields) == set(allowed), name
        assert set(cls.required_fields()) == set(required), name
        assert cls.random == is_random, name
        for f, v in allowed.items():
            if f not in required:
                assert cls.model_fields[f].default == v, (name, f)
        assert tuple(cls.positional_fields()[:len(data._POSITIONAL.get(name, ()))]) == \
            data._POSITIONAL.get(name, ()), name
    assert set(sources.SOURCES.members) == set(data.SOURCES)


def test_static_data_shapes_follow_the_transforms():
    """What `netdsl check` predicts for a pipeline is what loading the data gives."""
    from netdsl.runtime import data

    root = ROOT.parent / "shared" / "data"
    if not (root / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip("no MNIST")
    T = sources.TRANSFORMS.lookup
    for pipeline in ([], [T("ToTensor")(), T("Resize")(size=20)], [T("CenterCrop")(size=20)],
                     [T("Resize")(size=(30, 24)), T("Grayscale")(num_output_channels=3)],
                     [T("RandomCrop")(size=24, padding=2)]):
        sig = sources.MNIST(root=str(root), transform=tuple(pipeline)).signature(None)
        steps = [[t.kind, t.kwargs()] for t in pipeline]
        loaded = data.load_data("MNIST", root=root, transforms=steps, limit=8)
        assert tuple(sig.fields["image"].shape) == loaded.info.fields["image"].shape, steps


# ---- overrides -------------------------------------------------------------------------------
def test_set_spans_point_into_the_set_text():
    s = parse_set("optimizer.lr=3e-4")
    assert s.key == ["optimizer", "lr"] and s.key_span.col == 1 and s.key_span.end_col == 13
    assert s.value.value == 3e-4 and s.value.span.col == 14 and s.value.span.source.name == "--set"
    call = parse_set("scheduler=StepLR(step_size=2, gamma=0.5)").value
    assert call.kwargs[1].value.span.col == 37
    with pytest.raises(NetdslError) as exc:
        parse_set("epochs=(3")
    d = exc.value.diagnostics[0]
    assert d.span.source.text == "epochs=(3" and d.span.line == 1 and d.code == "E001"


def test_overrides_replace_arguments_and_whole_settings():
    spec = netdsl.load(ROOT / "specs" / "mlp.net")
    base = spec.plan()
    assert base.optimizer.kind == "SGD" and base.optimizer.momentum == 0.9
    p = spec.plan(None, [parse_set("optimizer.lr=0.5"), parse_set("epochs=2")])
    assert (p.optimizer.lr, p.optimizer.momentum, p.epochs) == (0.5, 0.9, 2)
    q = spec.plan(optimizer="Adam(lr=3e-4)", data__root="/elsewhere",
                  **{"scheduler": "StepLR(step_size=1)", "scheduler.gamma": 0.5})
    assert q.optimizer.kind == "Adam" and q.optimizer.lr == 3e-4
    assert q.scheduler.step_size == 1 and q.scheduler.gamma == 0.5
    assert q.settings()["data"]["root"] == "/elsewhere"
    with pytest.raises(NetdslError) as exc:
        spec.plan(optimizer__lr=-1)
    assert exc.value.diagnostics[0].span.source.name == "fit()"


def test_data_root_is_ignored_with_a_note_where_the_data_has_none():
    spec = netdsl.load(ROOT / "specs" / "linear_regression.net")
    p = spec.plan(None, [literal_setting("data.root", "../shared/data", "--data-root")])
    assert any("--data-root is ignored" in n.message for n in p.notes)


def test_a_model_without_a_plan_says_so():
    spec = netdsl.load(ROOT / "specs" / "resnet18.net")
    with pytest.raises(NetdslError) as exc:
        spec.plan()
    assert "ResNet18 has no training plan" in str(exc.value)
    p = spec.plan(data="synthetic(shape=[3, 224, 224], num_classes=1000, n=4)")
    assert p.loss[0].loss.kind == "CrossEntropyLoss" and p.task == "classification"


# ---- resolved plans --------------------------------------------------------------------------
def test_every_spec_plan_resolves_to_plain_settings():
    for path in sorted((ROOT / "specs").glob("*.net")):
        spec = netdsl.load(path)
        for plan in spec.plans.values():
            settings = plan.settings()
            assert json.loads(json.dumps(settings)) == settings, path
            assert settings["losses"] and settings["optimizer"]["name"], path


def test_linear_regression_reads_y_per_sample_and_says_so():
    spec = netdsl.load(ROOT / "specs" / "linear_regression.net")
    plan = spec.plan()
    s = plan.settings()
    assert s["data"] == {"source": "tensors", "X": [[1, 2], [3, 4], [5, 6]], "y": [2, 4, 6],
                         "seed": 0, "fields": {"X": {"kind": "input"}, "y": {"kind": "values"}}}
    assert s["inputs"] == ["X"]
    assert s["losses"] == [{"name": "MSELoss", "kwargs": {}, "tensors": [], "output": 0,
                            "output_name": "y", "field": "y", "target": "same", "weight": 1.0, "prefix": "",
                            "metrics": ["mae"], "numel": 1}]
    assert s["optimizer"] == {"name": "SGD", "kwargs": {"lr": 0.01}}
    (note,) = [n for n in plan.notes if "one value per sample" in n.message]
    assert "[N, N]" in note.message and note.span.line == 13


def test_a_head_narrower_than_the_classes_is_an_error():
    with pytest.raises(NetdslError) as exc:  # h has 3 scores, MNIST has 10 classes
        netdsl.loads(MLP.replace("output logits",
                                 "h = x -> Flatten -> Linear(3)\n  output logits, h")
                     + 'train MLP {\n  data = MNIST(root="data", val=100)\n'
                       '  loss = 0.5 * CrossEntropyLoss(logits, label) + '
                       'CrossEntropyLoss(h, label) / 4\n'
                          '  early_stopping.monitor = "val.h.accuracy"\n}\n', "mt.net")
    assert "has 3 class scores, but MNIST has 10 classes" in str(exc.value)


def test_multitask_plan_settings():
    spec = netdsl.load(ROOT / "specs" / "multitask.net")
    s = spec.plan(**{"data.val": 0.1, "early_stopping.monitor": "val.b.accuracy"}).settings()
    assert [t["prefix"] for t in s["losses"]] == ["a.", "b.", "c."]
    assert [t["output"] for t in s["losses"]] == [0, 1, 2]
    assert s["early_stopping"]["mode"] == "max" and s["monitor"]["monitor"] == "val.loss"


def test_inferred_scheduler_arguments_and_warmup():
    spec = netdsl.load(ROOT / "specs" / "mnist.net")
    s = spec.plan().settings()
    assert s["scheduler"]["infer"] == {"max_lr": "lr", "total_steps": "total"}
    assert s["scheduler"]["interval"] == "step"
    s = spec.plan(scheduler="ReduceLROnPlateau(patience=1)").settings()
    assert s["scheduler"]["kwargs"]["mode"] == "min" and s["scheduler"]["monitor"] == "val.loss"
    s = spec.plan(scheduler='ReduceLROnPlateau(monitor="val.accuracy")').settings()
    assert s["scheduler"]["kwargs"]["mode"] == "max"


def test_describe_lists_the_plan():
    text = netdsl.load(ROOT / "specs" / "mnist.net").plan().describe()
    assert re.search(r"optimizer\s+AdamW\(lr=0.003, weight_decay=0.0001\)", text)
    assert "max_lr=0.003 (the optimizer's lr)" in text and 'root="data"' in text
