"""The training vocabulary: losses, optimizers, schedulers and callbacks, each declared once.

Fields are the torch constructor's parameters in torch's order with torch's defaults
(tests/test_plan.py compares them with `inspect.signature`); class variables say what a
declaration needs (a loss's kind of target, a scheduler's cadence). Torch-free.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Optional, Union

from pydantic import Field, StrictStr

from ..ops.base import Bool, Extra, Float, Inferred, Int, NonNegInt, PosInt, Prob
from ..diagnostics import did_you_mean
from .decl import Components, Decl, Family, show

NonNegFloat = Annotated[Float, Field(ge=0)]
PosFloat = Annotated[Float, Field(gt=0)]
Lr = Annotated[Float, Field(ge=0)]
Beta = Annotated[Float, Field(ge=0, lt=1)]
Betas = tuple[Beta, Beta]
Reduction = Literal["mean", "sum"]  # "none" would not give one number to minimise

LOSSES = Family("loss", "losses")
OPTIMIZERS = Family("optimizer", "optimizers")
SCHEDULERS = Family("scheduler", "schedulers")
EARLY_STOPPING = Family("early-stopping rule", "early-stopping rules")
CHECKPOINTS = Family("checkpoint policy", "checkpoint policies")
PARAM_GROUPS = Family("parameter group", "parameter groups")
DISTRIBUTED = Family("distributed setting", "distributed settings")


# ---- losses ------------------------------------------------------------------------------
class Loss(Decl):
    """A loss term. `target` says what it compares the output with:
    "class": class indices (the output holds one score per class);
    "same": a float target shaped like the output; "binary": 0/1 targets shaped like the output."""

    target: ClassVar[str] = "same"
    positional = ()  # a spec's positional arguments are (output, target), read by the plan
    expects: ClassVar[str] = ""  # what the output should be, for messages
    default_metrics: ClassVar[bool] = True  # whether its kind's metrics are reported unasked
    dense: ClassVar[bool] = False  # class scores [C, d1, ...] against labels [d1, ...]


CLASSES_LAST = ("true or false: the scores are [..., C], classes last, as a language model's "
                "[T, V] logits are (torch reads the classes in dim 1)")


@LOSSES.register
class CrossEntropyLoss(Loss):
    weight: Optional[tuple[NonNegFloat, ...]] = None
    ignore_index: Int = -100
    reduction: Reduction = "mean"
    label_smoothing: Prob = 0.0
    classes_last: Annotated[Bool, Extra()] = False
    torch = "torch.nn.CrossEntropyLoss"
    tensors = ("weight",)
    target = "class"
    dense = True
    descriptions = {"classes_last": CLASSES_LAST}
    expects = "raw class scores (logits), one per class"


@LOSSES.register
class NLLLoss(Loss):
    weight: Optional[tuple[NonNegFloat, ...]] = None
    ignore_index: Int = -100
    reduction: Reduction = "mean"
    classes_last: Annotated[Bool, Extra()] = False
    torch = "torch.nn.NLLLoss"
    tensors = ("weight",)
    target = "class"
    dense = True
    descriptions = {"classes_last": CLASSES_LAST}
    expects = "log-probabilities, one per class (end the model with LogSoftmax)"


@LOSSES.register
class MSELoss(Loss):
    reduction: Reduction = "mean"
    torch = "torch.nn.MSELoss"


@LOSSES.register
class L1Loss(Loss):
    reduction: Reduction = "mean"
    torch = "torch.nn.L1Loss"


@LOSSES.register
class SmoothL1Loss(Loss):
    reduction: Reduction = "mean"
    beta: NonNegFloat = 1.0
    torch = "torch.nn.SmoothL1Loss"


@LOSSES.register
class HuberLoss(Loss):
    reduction: Reduction = "mean"
    delta: PosFloat = 1.0
    torch = "torch.nn.HuberLoss"


@LOSSES.register
class BCEWithLogitsLoss(Loss):
    weight: Optional[tuple[NonNegFloat, ...]] = None
    reduction: Reduction = "mean"
    pos_weight: Optional[tuple[NonNegFloat, ...]] = None
    torch = "torch.nn.BCEWithLogitsLoss"
    tensors = ("weight", "pos_weight")
    target = "binary"
    expects = "one raw score (logit) per binary target"


@LOSSES.register
class BCELoss(Loss):
    weight: Optional[tuple[NonNegFloat, ...]] = None
    reduction: Reduction = "mean"
    torch = "torch.nn.BCELoss"
    tensors = ("weight",)
    target = "binary"
    expects = "one probability in [0, 1] per binary target (end the model with Sigmoid)"


@LOSSES.register
class KLDivLoss(Loss):
    """Kullback-Leibler divergence of a target distribution from the output's (soft targets,
    distillation). torch's default reduction "mean" divides by every value, not by the batch:
    reduction="batchmean" gives the true KL divergence per sample."""

    reduction: Literal["mean", "sum", "batchmean"] = "mean"
    log_target: Bool = False
    torch = "torch.nn.KLDivLoss"
    default_metrics = False  # MAE between log-probabilities and probabilities means nothing
    expects = ("log-probabilities (end the model with LogSoftmax) and a target distribution "
               "shaped like the output")


# ---- optimizers ----------------------------------------------------------------------------
Names = Union[StrictStr, tuple[StrictStr, ...]]


def names(v: Names | None) -> tuple[str, ...]:
    """One name or several, as a tuple (`"*.bias"` or `["*.bias", "*.norm*"]`)."""
    return (v,) if isinstance(v, str) else tuple(v or ())
Setting = Union[Bool, Float, tuple[Float, ...]]  # an optimizer argument's value


@PARAM_GROUPS.register
class Group(Decl):
    """Optimizer settings for some parameters: those whose names match one of the glob
    patterns `match` ("*.bias", "backbone1.*"), or that belong to a layer of one of `kinds`
    (LayerNorm, BatchNorm2d, Embedding, or a block's name). A parameter joins the first
    group that takes it; the rest keep the optimizer's own settings. Any optimizer argument
    may be given (lr, weight_decay, momentum, betas, ...)."""

    match: Names = ()
    kinds: Names = ()
    open_fields: Annotated[tuple[tuple[str, Setting], ...], Extra()] = ()
    open_type = Setting
    positional = ("match",)
    descriptions = {"match": "a glob pattern over parameter names, or a list of them",
                    "kinds": "a layer kind (LayerNorm, BatchNorm2d, ...) or a list of them",
                    "open_fields": "a number, a bool, or a tuple of numbers"}

    def patterns(self) -> tuple[str, ...]:
        return names(self.match)

    def kind_names(self) -> tuple[str, ...]:
        return names(self.kinds)

    def options(self) -> dict:
        return dict(self.open_fields)

    def check(self):
        if not self.patterns() and not self.kind_names():
            return [(None, 'say which parameters: Group("*.bias", ...) or '
                     'Group(kinds=["LayerNorm"], ...)')]
        if not self.options():
            return [(None, "give the group a setting of its own (lr=, weight_decay=, ...)")]
        return []

    def describe(self) -> str:
        """As a spec writes it: `Group("*.bias", kinds="LayerNorm", weight_decay=0.0)`."""
        args = [show(self.match)] if self.patterns() else []
        args += [f"kinds={show(self.kinds)}"] if self.kind_names() else []
        args += [f"{k}={show(v)}" for k, v in self.options().items()]
        return f"Group({', '.join(args)})"


class Optimizer(Decl):
    positional = ("lr",)
    state: ClassVar[int] = 2  # tensors of each parameter's size the optimizer keeps
    groups: Annotated[tuple[Group, ...], Components(PARAM_GROUPS), Extra()] = ()
    descriptions = {"groups": "a list of Group(...): settings for some parameters"}
    apart = ("groups",)  # the plan shows each group on a line of its own

    def check(self):
        own = set(type(self).model_fields) - {"groups"}
        for i, g in enumerate(self.groups):
            bad = [k for k in g.options() if k not in own]
            if bad:
                guess = did_you_mean(bad[0], sorted(own))
                return [("groups", f"group {i + 1}: {self.kind} has no setting "
                         f"'{bad[0]}'" + (f"; {guess}" if guess else
                                          f"; it takes {', '.join(sorted(own))}"))]
        return []

    def group_settings(self) -> list[dict]:
        """The groups as loop.make_optimizer reads them."""
        return [{"match": list(g.patterns()), "kinds": list(g.kind_names()),
                 "options": {k: list(v) if isinstance(v, tuple) else v
                             for k, v in g.options().items()}}
                for g in self.groups]

    def state_copies(self) -> int:
        """How many parameter-sized tensors of state this optimizer keeps (netdsl/memory.py;
        tests/test_faults.py checks every one against torch)."""
        return self.state


@OPTIMIZERS.register
class SGD(Optimizer):
    lr: Lr = 0.001
    momentum: NonNegFloat = 0
    dampening: Float = 0
    weight_decay: NonNegFloat = 0
    nesterov: Bool = False
    maximize: Bool = False
    foreach: Optional[Bool] = None
    fused: Optional[Bool] = None
    torch = "torch.optim.SGD"

    def state_copies(self):
        return 1 if self.momentum else 0

    def check(self):
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            return [("nesterov", "nesterov=true needs momentum > 0 and dampening = 0")]
        return super().check()


@OPTIMIZERS.register
class Adam(Optimizer):
    lr: Lr = 0.001
    betas: Betas = (0.9, 0.999)
    eps: NonNegFloat = 1e-08
    weight_decay: NonNegFloat = 0
    amsgrad: Bool = False
    foreach: Optional[Bool] = None
    maximize: Bool = False
    fused: Optional[Bool] = None
    decoupled_weight_decay: Bool = False
    torch = "torch.optim.Adam"

    def state_copies(self):
        return 3 if self.amsgrad else 2


@OPTIMIZERS.register
class AdamW(Optimizer):
    lr: Lr = 0.001
    betas: Betas = (0.9, 0.999)
    eps: NonNegFloat = 1e-08
    weight_decay: NonNegFloat = 0.01
    amsgrad: Bool = False
    maximize: Bool = False
    foreach: Optional[Bool] = None
    fused: Optional[Bool] = None
    torch = "torch.optim.AdamW"

    def state_copies(self):
        return 3 if self.amsgrad else 2


@OPTIMIZERS.register
class RMSprop(Optimizer):
    lr: Lr = 0.01
    alpha: NonNegFloat = 0.99
    eps: NonNegFloat = 1e-08
    weight_decay: NonNegFloat = 0
    momentum: NonNegFloat = 0
    centered: Bool = False
    foreach: Optional[Bool] = None
    maximize: Bool = False
    torch = "torch.optim.RMSprop"

    def state_copies(self):
        return 1 + (self.momentum > 0) + self.centered


@OPTIMIZERS.register
class Adagrad(Optimizer):
    lr: Lr = 0.01
    lr_decay: NonNegFloat = 0
    weight_decay: NonNegFloat = 0
    initial_accumulator_value: NonNegFloat = 0
    eps: NonNegFloat = 1e-10
    foreach: Optional[Bool] = None
    maximize: Bool = False
    fused: Optional[Bool] = None
    torch = "torch.optim.Adagrad"
    state = 1


@OPTIMIZERS.register
class Adadelta(Optimizer):
    lr: Lr = 1.0
    rho: Annotated[Float, Field(ge=0, le=1)] = 0.9
    eps: NonNegFloat = 1e-06
    weight_decay: NonNegFloat = 0
    foreach: Optional[Bool] = None
    maximize: Bool = False
    torch = "torch.optim.Adadelta"


@OPTIMIZERS.register
class Adamax(Optimizer):
    lr: Lr = 0.002
    betas: Betas = (0.9, 0.999)
    eps: NonNegFloat = 1e-08
    weight_decay: NonNegFloat = 0
    foreach: Optional[Bool] = None
    maximize: Bool = False
    torch = "torch.optim.Adamax"


@OPTIMIZERS.register
class NAdam(Optimizer):
    lr: Lr = 0.002
    betas: Betas = (0.9, 0.999)
    eps: NonNegFloat = 1e-08
    weight_decay: NonNegFloat = 0
    momentum_decay: NonNegFloat = 0.004
    decoupled_weight_decay: Bool = False
    foreach: Optional[Bool] = None
    maximize: Bool = False
    torch = "torch.optim.NAdam"


@OPTIMIZERS.register
class RAdam(Optimizer):
    lr: Lr = 0.001
    betas: Betas = (0.9, 0.999)
    eps: NonNegFloat = 1e-08
    weight_decay: NonNegFloat = 0
    decoupled_weight_decay: Bool = False
    foreach: Optional[Bool] = None
    maximize: Bool = False
    torch = "torch.optim.RAdam"


# ---- schedulers --------------------------------------------------------------------------
Interval = Literal["epoch", "step"]


class Scheduler(Decl):
    """`interval` (netdsl's own) says whether it steps after every epoch or every optimizer step."""

    interval: Annotated[Interval, Extra()] = "epoch"
    needs_metric: ClassVar[bool] = False
    # inferred arguments the loop fills in: "total" (how often it steps in the whole run,
    # known only once the data is loaded) or "lr" (the optimizer's learning rate)
    infer: ClassVar[dict[str, str]] = {}


@SCHEDULERS.register
class StepLR(Scheduler):
    step_size: PosInt
    gamma: PosFloat = 0.1
    torch = "torch.optim.lr_scheduler.StepLR"


@SCHEDULERS.register
class MultiStepLR(Scheduler):
    milestones: tuple[PosInt, ...]
    gamma: PosFloat = 0.1
    torch = "torch.optim.lr_scheduler.MultiStepLR"

    def check(self):
        if list(self.milestones) != sorted(set(self.milestones)):
            return [("milestones", "milestones must be increasing")]
        return []


@SCHEDULERS.register
class ExponentialLR(Scheduler):
    gamma: PosFloat
    torch = "torch.optim.lr_scheduler.ExponentialLR"


@SCHEDULERS.register
class CosineAnnealingLR(Scheduler):
    T_max: Annotated[Optional[PosInt], Inferred()] = None  # default: the whole run
    eta_min: NonNegFloat = 0.0
    torch = "torch.optim.lr_scheduler.CosineAnnealingLR"
    infer: ClassVar[dict[str, str]] = {"T_max": "total"}


@SCHEDULERS.register
class CosineAnnealingWarmRestarts(Scheduler):
    T_0: PosInt
    T_mult: PosInt = 1
    eta_min: NonNegFloat = 0.0
    torch = "torch.optim.lr_scheduler.CosineAnnealingWarmRestarts"


@SCHEDULERS.register
class LinearLR(Scheduler):
    start_factor: Annotated[Float, Field(gt=0, le=1)] = 1 / 3
    end_factor: Annotated[Float, Field(ge=0, le=1)] = 1.0
    total_iters: PosInt = 5
    torch = "torch.optim.lr_scheduler.LinearLR"


@SCHEDULERS.register
class ConstantLR(Scheduler):
    factor: Annotated[Float, Field(ge=0, le=1)] = 1 / 3
    total_iters: PosInt = 5
    torch = "torch.optim.lr_scheduler.ConstantLR"


@SCHEDULERS.register
class PolynomialLR(Scheduler):
    total_iters: PosInt = 5
    power: NonNegFloat = 1.0
    torch = "torch.optim.lr_scheduler.PolynomialLR"


@SCHEDULERS.register
class OneCycleLR(Scheduler):
    max_lr: Annotated[Optional[PosFloat], Inferred()] = None  # default: the optimizer's lr
    total_steps: Annotated[Optional[PosInt], Inferred()] = None  # default: the whole run
    pct_start: Annotated[Float, Field(gt=0, lt=1)] = 0.3
    anneal_strategy: Literal["cos", "linear"] = "cos"
    cycle_momentum: Bool = True
    base_momentum: NonNegFloat = 0.85
    max_momentum: NonNegFloat = 0.95
    div_factor: PosFloat = 25.0
    final_div_factor: PosFloat = 10000.0
    three_phase: Bool = False
    interval: Annotated[Interval, Extra()] = "step"
    torch = "torch.optim.lr_scheduler.OneCycleLR"
    positional = ("max_lr",)
    infer: ClassVar[dict[str, str]] = {"max_lr": "lr", "total_steps": "total"}

    def check(self):
        if self.interval != "step":
            return [("interval", 'it steps once per optimizer step (interval="step")')]
        return []


@SCHEDULERS.register
class ReduceLROnPlateau(Scheduler):
    mode: Annotated[Optional[Literal["min", "max"]], Inferred()] = None  # default: from monitor
    factor: Annotated[Float, Field(gt=0, lt=1)] = 0.1
    patience: NonNegInt = 10
    threshold: NonNegFloat = 0.0001
    threshold_mode: Literal["rel", "abs"] = "rel"
    cooldown: NonNegInt = 0
    min_lr: NonNegFloat = 0
    eps: NonNegFloat = 1e-08
    monitor: Annotated[Optional[str], Extra()] = None  # default: val.loss (train.loss without val)
    torch = "torch.optim.lr_scheduler.ReduceLROnPlateau"
    needs_metric = True
    positional = ()

    def check(self):
        if self.interval != "epoch":
            return [("interval", 'it reads its metric once per epoch (interval="epoch")')]
        return []


# ---- callbacks (netdsl's own) ---------------------------------------------------------------
@EARLY_STOPPING.register
class EarlyStopping(Decl):
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs."""

    monitor: Optional[str] = None  # default: val.loss (train.loss without a validation split)
    patience: NonNegInt = 5
    min_delta: NonNegFloat = 0.0
    mode: Optional[Literal["min", "max"]] = None  # default: from the metric (max for accuracy)
    restore_best: Bool = False  # load the best epoch's weights when training ends
    positional = ("monitor", "patience")


@CHECKPOINTS.register
class Checkpoint(Decl):
    """`last.pt` every `every` epochs (and on Ctrl-C), and within an epoch every `every_steps`
    optimizer steps or `every_minutes` minutes; `best.pt` by `monitor` when keep is "best" or
    "all"; `epoch_NNN.pt` for each epoch save when keep is "all"."""

    every: PosInt = 1
    every_steps: Optional[PosInt] = None
    every_minutes: Optional[Annotated[Float, Field(gt=0)]] = None
    keep: Literal["last", "best", "all"] = "best"
    monitor: Optional[str] = None  # default: val.loss (train.loss without a validation split)
    mode: Optional[Literal["min", "max"]] = None
    positional = ("every",)


@DISTRIBUTED.register
class Distributed(Decl):
    """How a run in several processes (`netdsl run --nproc N`, or torchrun) trains: with
    DistributedDataParallel (each process holds the model, gradients averaged), or sharded
    with FSDP2 (strategy="fsdp": parameters, gradients and optimizer state split over the
    processes, for models too big for one device); over the
    `backend` (auto: nccl on CUDA, gloo on the CPU); `batch` "global": batch_size is the
    batch of the whole job, split over the processes (1 and N processes train the same
    model), "per_rank": batch_size per process (the job's batch grows with N)."""

    strategy: Literal["ddp", "fsdp"] = "ddp"
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    batch: Literal["global", "per_rank"] = "global"
    descriptions = {"strategy": "ddp (DistributedDataParallel: each process holds the model) "
                                "or fsdp (FSDP2 fully_shard: each holds a shard of it)",
                    "batch": "global (batch_size split over the processes) or per_rank"}


# ---- metrics ------------------------------------------------------------------------------
# name -> (what loss targets it applies to, better when, description)
METRICS = {
    "accuracy": ("class binary", "max",
                 ("fraction of samples whose top-scoring class is the label (binary: of values "
                 "on the right side of the threshold)")),
    "top5": ("class", "max", "fraction of samples whose label is among the 5 top scores"),
    "miou": ("class", "max", "mean intersection over union of the classes (segmentation)"),
    "perplexity": ("class", "min", "exp of the mean cross-entropy (language models)"),
    "mae": ("same", "min", "mean absolute error"),
    "rmse": ("same", "min", "root mean squared error"),
}
BUILTIN_METRICS = ("loss",)
PRECISIONS = {"fp32": "fp32", "float32": "fp32", "32": "fp32", "bf16": "bf16", "bfloat16": "bf16",
              "fp16": "fp16", "float16": "fp16", "16": "fp16"}


def metric_mode(name: str) -> str:
    """"min" or "max": which direction is better for a metric key such as `val.accuracy`."""
    base = name.rsplit(".", 1)[-1]
    return METRICS[base][1] if base in METRICS else "min"
