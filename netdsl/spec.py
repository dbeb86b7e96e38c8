"""`Spec`: a parsed and validated spec file, the object the Python API hands out."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .diagnostics import Diagnostic, NetdslError, Reporter, did_you_mean
from .ir.graph import Graph
from .passes import analyze
from .syntax import parse

if TYPE_CHECKING:  # torch is imported only by the targets that need it
    import torch


class Spec:
    """Every model of one spec file, validated and shaped.

    >>> spec = loads("model M {\\n input x: [4]\\n x -> Linear(2) -> y\\n output y\\n}")
    >>> spec.model_names
    ['M']
    >>> spec.graph().outputs[0].name
    'y'
    """

    def __init__(self, text: str, filename: str = "<string>", *, file=None):
        """`file`: the AST of `text` when the caller has parsed it already."""
        self.filename = filename
        self.file = file if file is not None else parse(text, filename)
        self.definitions, self.graphs, rep = analyze(self.file)
        self.warnings: list[Diagnostic] = rep.warnings
        self.source = self.file.source
        from .runtime.plan import spec_plans  # torch-free, like everything at load time

        plan_rep = Reporter()
        self.plans = spec_plans(self, plan_rep)  # every `train` section, validated
        plan_rep.check()

    @property
    def model_names(self) -> list[str]:
        return list(self.graphs)

    @property
    def trains(self):
        """Training plans (`train MODEL { ... }`) by model name, as AST."""
        return self.definitions.trains

    def graph(self, model: str | None = None) -> Graph:
        """The IR of one model: the only one, the first, or the one named."""
        if not self.graphs:
            raise NetdslError([Diagnostic("E502", f"{self.filename} defines no model")])
        if model is None:
            return next(iter(self.graphs.values()))
        if model not in self.graphs:
            rep = Reporter()
            rep.error("E502", f"{self.filename} has no model '{model}' (it has: "
                      f"{', '.join(self.graphs)})", hint=did_you_mean(model, self.graphs))
            rep.check()
        return self.graphs[model]

    def plan(self, model: str | None = None, overrides=(), **settings):
        """The validated training plan of a model (the only or first one with a `train`
        section when `model` is None). `overrides` are `ast.Setting`s (see
        runtime/overrides.py); keyword `settings` are Python values (`epochs=3`,
        `optimizer__lr=0.1` or `**{"optimizer.lr": 0.1}`). Raises NetdslError."""
        from .runtime.plan import plan_for

        return plan_for(self, model, overrides, settings)

    def build(self, model: str | None = None) -> "torch.nn.Module":
        """A fresh `torch.nn.Module` for a model; parameter names follow the spec's node names."""
        from .targets.module import build_module

        return build_module(self.graph(model), Path(self.filename).name)

    def summary(self, model: str | None = None, at: dict[str, int] | None = None):
        """Per-layer shapes, parameter counts and multiply-adds (no torch needed); a model
        with symbolic shapes counts its multiply-adds at the sizes `at` ({"H": 224}), by
        default each dimension's largest, or its smallest where it has no largest."""
        from .targets.summary import summarize

        return summarize(self.graph(model), at)

    def __repr__(self) -> str:
        return f"<Spec {self.filename}: {', '.join(self.graphs)}>"


def loads(text: str, filename: str = "<string>") -> Spec:
    """Parse and validate spec text. Raises `NetdslError` carrying the diagnostics."""
    return Spec(text, filename)


def load(path: str | Path) -> Spec:
    """Parse and validate a `.net` file. Raises `NetdslError` carrying the diagnostics."""
    p = Path(path)
    try:
        with p.open("rb") as f:  # read at most the limit: /dev/zero never ends
            data = f.read(MAX_SPEC_BYTES + 1)
        if len(data) > MAX_SPEC_BYTES:
            raise NetdslError([Diagnostic(
                "E501", f"{path}: more than {MAX_SPEC_BYTES // 2**20} MiB, too large to be a spec",
                hint="a spec of 20,000 layers is about 1 MiB; is this the file you meant?")])
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise NetdslError([Diagnostic("E501", f"{path}: no such file")]) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError, OSError) as exc:
        raise NetdslError([Diagnostic("E501", f"{path}: cannot read: {exc}")]) from None
    return Spec(text, str(path))


MAX_SPEC_BYTES = 64 * 2**20
