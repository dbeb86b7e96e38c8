"""Training plans: a `train MODEL { ... }` section, checked and resolved into a `Plan`.

    train LeNet {
      data = MNIST(root="data", download=true, val=0.1,
                   transform=[ToTensor, Normalize(0.1307, 0.3081)])
      loss = CrossEntropyLoss(logits, label)
      optimizer = Adam(lr=1e-3)
      optimizer.weight_decay = 1e-4        # NAME.ARGUMENT sets one argument
      epochs = 3
    }

The settings are declared once in `SETTINGS` (what each takes, its default); losses,
optimizers and schedulers come from runtime/catalog.py, data sources and transforms from
runtime/sources.py. Every mistake is a diagnostic at the setting or argument it is about,
all of them reported together. `Plan.settings()` is the plain dict that the standalone loop
(runtime/loop.py) and `netdsl compile` read. Torch-free.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    StrictStr,
)

from ..diagnostics import NetdslError, Reporter, did_you_mean
from ..ir.dims import is_symbolic
from ..ir.graph import Graph
from ..ir.types import Size
from ..ops.base import Bool, NonNegInt, PosInt
from ..source import Span
from ..syntax import ast
from .catalog import (
    CHECKPOINTS,
    DISTRIBUTED,
    EARLY_STOPPING,
    OPTIMIZERS,
    SCHEDULERS,
    Checkpoint,
    Distributed,
    EarlyStopping,
    Loss,
    Optimizer,
    PosFloat,
    Scheduler,
    metric_mode,
    names,
)
from .decl import Family, show
from .sources import SOURCES, DataSig, Source

TARGETS = ("target", "label")  # the data's one target, by either name


@dataclass(frozen=True)
class SettingDecl:
    """One top-level setting: `kind` is value (a constant of `type`), call (a declaration
    from `family`), source, loss or metrics."""

    kind: str
    type: Any = None
    default: Any = None
    family: Family | None = None
    doc: str = ""
    enable: str | None = None  # the declaration `KEY = true` or `KEY.ARG = ...` turns on
    optional: bool = True  # whether `KEY = none` may turn it off


SETTINGS: dict[str, SettingDecl] = {
    "data": SettingDecl("source", family=SOURCES, optional=False,
                        doc="where the samples come from"),
    "inputs": SettingDecl("mapping", doc='which field feeds a model input: inputs.NAME = "field" '
                          "(default: the field of the input's name)"),
    "batch_size": SettingDecl("value", PosInt, 64, doc="samples per micro-batch"),
    "eval_batch_size": SettingDecl("value", Optional[PosInt], None,
                                   doc="samples per evaluation batch (none: batch_size)"),
    "epochs": SettingDecl("value", PosInt, 10, doc="passes over the training data"),
    "loss": SettingDecl("loss", doc="a loss, or a weighted sum of losses"),
    "optimizer": SettingDecl("call", default="Adam", family=OPTIMIZERS, enable="Adam",
                             optional=False, doc="how the weights move"),
    "scheduler": SettingDecl("call", family=SCHEDULERS, doc="a learning-rate schedule"),
    "warmup": SettingDecl("value", NonNegInt, 0, doc="optimizer steps of linear lr warmup"),
    "clip_grad_norm": SettingDecl("value", Optional[PosFloat], None,
                                  doc="clip the gradients' total norm to this"),
    "clip_grad_value": SettingDecl("value", Optional[PosFloat], None,
                                   doc="clip every gradient value to +-this"),
    "accumulate": SettingDecl("value", PosInt, 1, doc="micro-batches per optimizer step"),
    "precision": SettingDecl("value", StrictStr, "fp32",
                             doc="fp32, bf16 or fp16 (autocast; fp16 needs CUDA)"),
    "seed": SettingDecl("value", NonNegInt, 0, doc="initial weights, shuffling and splits"),
    "deterministic": SettingDecl("value", Bool, False, doc="demand deterministic kernels"),
    "early_stopping": SettingDecl("call", family=EARLY_STOPPING, enable="EarlyStopping",
                                  doc="EarlyStopping(monitor, patience=5, min_delta=0)"),
    "checkpoint": SettingDecl("call", default="Checkpoint", family=CHECKPOINTS,
                              enable="Checkpoint",
                              doc='Checkpoint(every=1, keep="best"); none: off'),
    "metrics": SettingDecl("metrics", doc="what to report besides the loss"),
    "distributed": SettingDecl("call", family=DISTRIBUTED, enable="Distributed",
                               doc='several processes (--nproc N, torchrun): Distributed('
                               'backend="auto", batch="global")'),
    "device": SettingDecl("value", StrictStr, "auto", doc="auto, cpu, cuda, cuda:N or mps"),
    "shuffle": SettingDecl("value", Bool, True, doc="a new sample order every epoch"),
    "drop_last": SettingDecl("value", Bool, False, doc="skip a last, smaller batch"),
    "workers": SettingDecl("value", NonNegInt, 0,
                           doc="loader processes: give them to the data source (ImageFolder("
                           "..., workers=N)), which streams"),
    "freeze": SettingDecl("value", Optional[Union[StrictStr, tuple[StrictStr, ...]]], None,
                          doc='parameters that do not train: glob patterns over their names '
                          '("backbone1.*")'),
    "unfreeze_at": SettingDecl("value", Optional[PosInt], None,
                               doc="the epoch (from 1) from which frozen parameters train"),
}
# keys people write out of habit -> what netdsl calls them
HABITS = {"lr": "optimizer.lr", "learning_rate": "optimizer.lr", "criterion": "loss",
          "loss_fn": "loss", "dataset": "data", "lr_scheduler": "scheduler",
          "max_epochs": "epochs", "num_epochs": "epochs", "grad_clip": "clip_grad_norm",
          "weight_decay": "optimizer.weight_decay", "momentum": "optimizer.momentum",
          "gradient_accumulation": "accumulate", "patience": "early_stopping.patience",
          "amp": "precision", "mixed_precision": "precision", "num_workers": "workers"}
_DEVICE = re.compile(r"^(auto|cpu|mps(:0)?|cuda(:\d+)?|xpu(:\d+)?)$")
_DEVICE_INDEX = re.compile(r"^(cpu|mps|cuda|xpu):(.*)$")
MAX_DEVICE_INDEX = 127  # torch keeps a device index in 8 bits: cuda:128 wraps around, cuda:255 is "cuda"


def device_problem(name: str) -> tuple[str, str] | None:
    """(message, hint) when `name` is a known device type with an index torch cannot use
    (E411: "cuda:99999999999999999999", "cuda:-1", "cuda:abc", "cpu:5", "mps:9"); None
    otherwise, also for names `_DEVICE` rejects as unknown. Torch-free, so `check` finds it."""
    m = _DEVICE_INDEX.match(name)
    if not m:
        return None
    kind, index = m.groups()
    first = f'write device = "{kind}" for the first one, or {kind}:N for device N (from 0)'
    if kind == "cpu":
        return (f'device index out of range: "{name}" (the cpu takes no device index)',
                'write device = "cpu"')
    if not re.fullmatch(r"[+-]?[0-9]+", index):
        return (f'malformed device index in "{name}": {show(index)} is not a whole number',
                first)
    n = int(index)
    if kind == "mps" and n != 0:
        return (f'device index out of range: "{name}" (a Mac has one MPS device, mps:0)',
                'write device = "mps"')
    if n < 0 or n > MAX_DEVICE_INDEX or not _DEVICE.match(name):
        shown = index if len(index) <= 24 else index[:20] + "..."
        return (f'device index out of range: "{name}" ({kind} devices are numbered from 0, and '
                f"torch takes at most {MAX_DEVICE_INDEX}; got {shown})"), first
    return None


@dataclass
class Note:
    """Something netdsl decided for the user, shown by `netdsl run`."""

    message: str
    span: Span | None = None

    def format(self) -> str:
        return f"{self.span.where}: note: {self.message}" if self.span else f"note: {self.message}"


class LossTerm(BaseModel):
    model_config = ConfigDict(frozen=True)

    loss: SerializeAsAny[Loss]
    output: str
    output_index: int
    output_shape: tuple[Size, ...]
    target: str
    weight: float
    prefix: str  # "" for a single term, else "OUTPUT." in metric keys
    metrics: tuple[str, ...] = ()

    def scores_shape(self) -> tuple[Size, ...]:
        """The output as the loss reads it: classes first (`classes_last` moves them)."""
        out = tuple(self.output_shape)
        return (out[-1], *out[:-1]) if getattr(self.loss, "classes_last", False) and out else out

    def classes(self) -> Size | None:
        """A class loss's number of classes (None for other losses)."""
        out = self.scores_shape()
        return out[0] if type(self.loss).target == "class" and out else None

    def label_rule(self) -> dict[str, Any] | None:
        """What this term needs of class labels (None when it trains no class labels): an
        entry of load_data's `label_check`."""
        kind = type(self.loss).target
        if kind not in ("class", "binary") or (kind == "class" and not self.output_shape):
            return None
        return {"output": self.output, "field": self.target, "loss": self.loss.kind,
                "classes": self.classes() if kind == "class" else 2,
                "ignore_index": getattr(self.loss, "ignore_index", None),
                "binary": kind == "binary"}


class Plan(BaseModel):
    """A validated training plan for one model."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: str
    data: SerializeAsAny[Source]
    task: Optional[str]
    batch_size: int
    eval_batch_size: Optional[int]
    epochs: int
    loss: list[LossTerm]
    optimizer: SerializeAsAny[Optimizer]
    scheduler: Optional[SerializeAsAny[Scheduler]]
    warmup: int
    clip_grad_norm: Optional[float]
    clip_grad_value: Optional[float]
    accumulate: int
    precision: str
    seed: int
    deterministic: bool
    early_stopping: Optional[EarlyStopping]
    checkpoint: Optional[Checkpoint]
    distributed: Optional[Distributed] = None
    metrics: tuple[str, ...]
    device: str
    shuffle: bool
    drop_last: bool
    workers: int = 0  # accepted, never needed: batches are slices of preloaded tensors
    freeze: Optional[Union[str, tuple[str, ...]]] = None
    unfreeze_at: Optional[int] = None
    monitor: str  # the metric that picks the best epoch
    inputs: list[tuple[str, str]] = Field(default_factory=list)  # (model input, data field)
    fields: dict[str, dict[str, Any]] = Field(default_factory=dict)  # how load_data reads each
    spans: dict[str, Span] = Field(default_factory=dict, exclude=True, repr=False)
    notes: list[Note] = Field(default_factory=list, exclude=True, repr=False)
    signature: Optional[DataSig] = Field(default=None, exclude=True, repr=False)

    def span(self, key: str) -> Span | None:
        """Where a setting (`optimizer.lr`, `data`) was written, else the nearest enclosing one."""
        while key:
            if key in self.spans:
                return self.spans[key]
            key = key.rpartition(".")[0]
        return self.spans.get("train")

    def freeze_patterns(self) -> list[str]:
        return list(names(self.freeze))

    def settings(self) -> dict[str, Any]:
        """The resolved plan as plain values: what runtime/loop.py and compiled scripts read."""
        data = self.data.load_kwargs()
        data["seed"] = self.seed
        if type(self.data).by_use:  # how each field is read follows from its use
            data["fields"] = self.fields
        label_checks = self.label_checks()
        if label_checks:
            data["label_check"] = label_checks
        sched = None
        if self.scheduler is not None:
            s = self.scheduler
            sched = {"name": s.kind, "kwargs": s.kwargs(), "interval": s.interval,
                     "infer": {k: v for k, v in s.infer.items() if getattr(s, k) is None},
                     "monitor": getattr(s, "monitor", None)}
        es = self.early_stopping
        ck = self.checkpoint
        return {
            "model": self.model,
            "data": data,
            "batch_size": self.batch_size,
            "eval_batch_size": self.eval_batch_size or self.batch_size,
            "epochs": self.epochs,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
            "accumulate": self.accumulate,
            "warmup": self.warmup,
            "clip_grad_norm": self.clip_grad_norm,
            "clip_grad_value": self.clip_grad_value,
            "precision": self.precision,
            "seed": self.seed,
            "deterministic": self.deterministic,
            "device": self.device,
            "inputs": [f for _, f in self.inputs],
            "losses": [{"name": t.loss.kind, "kwargs": t.loss.kwargs(),
                        "tensors": list(type(t.loss).tensors), "output": t.output_index,
                        "output_name": t.output, "field": t.target,
                        "target": type(t.loss).target,
                        "weight": t.weight, "prefix": t.prefix, "metrics": list(t.metrics),
                        # only where they matter, so older plans keep their hashes
                        **({"classes": t.classes()} if "miou" in t.metrics else {}),
                        **({"classes_last": True}
                           if getattr(t.loss, "classes_last", False) else {}),
                        # labels per position (pixels, tokens): the loss is per position
                        **({"dense": True} if type(t.loss).target == "class"
                           and len(t.scores_shape()) > 1 else {}),
                        # values per sample; None where they vary with a declared dimension
                        "numel": None if is_symbolic(t.output_shape) else math.prod(t.output_shape)}
                       for t in self.loss],
            "optimizer": {"name": self.optimizer.kind, "kwargs": self.optimizer.kwargs(),
                          # only when written, so plans without keep their hashes
                          **({"groups": self.optimizer.group_settings()}
                             if self.optimizer.groups else {})},
            **({"freeze": self.freeze_patterns(), "unfreeze_at": self.unfreeze_at}
               if self.freeze else {}),
            "scheduler": sched,
            "early_stopping": None if es is None else {
                "monitor": es.monitor, "mode": es.mode, "patience": es.patience,
                "min_delta": es.min_delta, "restore_best": es.restore_best},
            "checkpoint": None if ck is None else {
                "every": ck.every, "every_steps": ck.every_steps,
                "every_minutes": ck.every_minutes, "keep": ck.keep, "monitor": ck.monitor,
                "mode": ck.mode},
            "monitor": {"monitor": self.monitor, "mode": metric_mode(self.monitor)},
            # only when written, so plans without keep their hashes (a resume may change it)
            **({"distributed": self.distributed.model_dump()} if self.distributed else {}),
        }

    def label_checks(self) -> list[dict[str, Any]]:
        """What every class label must be, one entry per loss on class labels (load_data's
        `label_check`): a class of the output it trains (0 or 1 for a binary loss), or the
        loss's ignore_index."""
        return [r for t in self.loss if self.fields.get(t.target, {}).get("kind") == "class"
                and (r := t.label_rule()) is not None]

    def describe(self) -> str:
        """The plan as aligned `setting  value` lines."""
        rows = [("data", self.data.describe()),
                ("loss", " + ".join(
                    (f"{t.weight:g} * " if t.weight != 1 else "") +
                    t.loss.describe().replace("(", f"({t.output}, {t.target}" +
                                              (", " if t.loss.kwargs() else ""), 1)
                    for t in self.loss)),
                ("optimizer", self.optimizer.describe())]
        for i, g in enumerate(self.optimizer.groups):  # shown one per line, in order
            rows.append((f"  group {i + 1}", g.describe()))
        if self.scheduler is not None:
            s = self.scheduler
            filled = {"lr": f"{self.optimizer.lr:g} (the optimizer's lr)", "total": "the whole run"}
            text = s.describe()
            for arg, what in s.infer.items():
                if getattr(s, arg) is None:
                    text = text.replace(f"{arg}=none", f"{arg}={filled[what]}")
            rows.append(("scheduler", text + (", per optimizer step" if s.interval == "step"
                                              else ", per epoch")))
        for key in ("epochs", "batch_size", "eval_batch_size", "warmup", "accumulate",
                    "clip_grad_norm", "clip_grad_value", "precision", "seed", "deterministic",
                    "device", "freeze", "unfreeze_at"):
            v = getattr(self, key)
            if v != SETTINGS[key].default or key in ("epochs", "batch_size", "seed", "device"):
                rows.append((key, show(v)))
        rows.append(("metrics", ", ".join(self.metrics) or "loss"))
        if self.early_stopping is not None:
            rows.append(("early_stopping", self.early_stopping.describe()))
        rows.append(("checkpoint", self.checkpoint.describe() if self.checkpoint else "none"))
        if self.distributed is not None:
            rows.append(("distributed", self.distributed.describe()))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


# ---- building a plan ------------------------------------------------------------------------
def build_plan(graph: Graph, train: ast.TrainDef | None, overrides: Sequence[ast.Setting] = (),
               rep: Reporter | None = None, where: Span | None = None) -> Plan | None:
    """Check a train section (plus overrides) against its model. With `rep` the errors are
    left in it (None returned); without, they are raised as NetdslError."""
    from .planner import Builder

    own = rep is None
    rep = rep if rep is not None else Reporter()
    plan = Builder(graph, train, overrides, rep, where).build()
    if own:
        rep.check()
    return plan if not rep.has_errors else None


def spec_plans(spec, rep: Reporter) -> dict[str, Plan]:
    """Every train section of a spec, checked (errors left in `rep`)."""
    plans = {}
    for name, train in spec.trains.items():
        if name not in spec.graphs:
            rep.error("E405", f"'train {name}': there is no model '{name}'", train.name_span,
                      did_you_mean(name, spec.graphs) or
                      f"models here: {', '.join(spec.graphs) or 'none'}")
            continue
        plan = build_plan(spec.graphs[name], train, (), rep)
        if plan is not None:
            plans[name] = plan
    return plans


def python_override(key: str, value: Any, label: str = "fit()") -> ast.Setting:
    """An override from Python: `optimizer__lr=0.1` or `{"optimizer.lr": 0.1}`. A string given
    for a whole declaration setting (`optimizer="SGD(lr=0.1)"`) is read as spec text."""
    from .overrides import literal_setting, parse_set

    key = key.replace("__", ".")
    decl = SETTINGS.get(key)
    if isinstance(value, str) and decl is not None and decl.kind != "value":
        return parse_set(f"{key}={value}", label)
    return literal_setting(key, value, label)


def plan_for(spec, model: str | None, overrides: Sequence[ast.Setting] = (),
             settings: dict[str, Any] | None = None) -> Plan:
    """The plan of `model` in `spec` with overrides applied; raises NetdslError."""
    from ..diagnostics import Diagnostic

    if model is None:
        trained = [m for m in spec.graphs if m in spec.trains]
        model = trained[0] if trained else None
        if model is None and len(spec.graphs) == 1:
            model = next(iter(spec.graphs))
    graph = spec.graph(model)  # E502 for a model that does not exist
    ovr = list(overrides) + [python_override(k, v) for k, v in (settings or {}).items()]
    train = spec.trains.get(graph.name)
    if train is None and not any(s.key[0] == "data" for s in ovr):
        names = [m for m in spec.graphs if m in spec.trains]
        raise NetdslError([Diagnostic(
            "E401", f"{graph.name} has no training plan" +
            (f" (models with one: {', '.join(names)})" if names else ""), graph.span,
            f"add a section such as: train {graph.name} {{ data = MNIST(root=\"data\", "
            "download=true) }")])
    if not ovr and graph.name in spec.plans:
        return spec.plans[graph.name]
    return build_plan(graph, train, ovr, where=graph.span)


__all__ = ["SETTINGS", "TARGETS", "LossTerm", "NetdslError", "Note", "Plan", "build_plan",
           "plan_for", "python_override", "spec_plans"]
