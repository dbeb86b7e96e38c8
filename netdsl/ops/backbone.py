"""torchvision classification models as layers: `image -> resnet18(num_classes=10) -> logits`.

Each backbone is one op named as in `torchvision.models` (resnet18, mobilenet_v3_small, ...),
taking `num_classes` (default 1000) and `weights` (default none: random initialisation, as in
torchvision). `trainable=false` freezes it. The generated code calls the torchvision builder
(`torchvision.models.resnet18(num_classes=10)`), so parameter names are torchvision's
(`backbone1.layer1.0.conv1.weight`).

Shapes, parameter counts and multiply-adds come from building the model on PyTorch's meta
device and running it on a meta tensor: exact for every input size the model accepts, and a
clear error for the ones it does not (too small an image, ViT's fixed 224x224). What one such
trace finds is kept on disk (`facts()`: ~/.cache/netdsl/backbones-<torchvision version>.json,
or $NETDSL_CACHE): a spec checked once is checked again without importing torch (0.9 GB and
about 4 s of imports). torch is never imported for a spec without a backbone.

Pretrained weights are never downloaded during a check: `weights="DEFAULT"` (or a name such as
"IMAGENET1K_V1") needs the file in torch's hub cache already, and says how to get it otherwise.
"""

from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path
from typing import ClassVar, Literal, Optional

from typing_extensions import Annotated

from ..ir.types import TensorType
from .base import Bool, Extra, Op, PosInt, ShapeError
from .custom import meta_module, meta_trace, register_extra

# A sensible set of torchvision classification models: small and large CNNs, and a ViT.
BACKBONES = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "wide_resnet50_2",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_v2_s",
    "vgg11",
    "vgg11_bn",
    "vgg16",
    "vgg16_bn",
    "alexnet",
    "densenet121",
    "squeezenet1_1",
    "shufflenet_v2_x1_0",
    "mnasnet1_0",
    "regnet_y_400mf",
    "convnext_tiny",
    "vit_b_16",
    "swin_t",
)

# Where each model keeps its last classification layer: `features=true` replaces it with
# nn.Identity, so the model gives the features its head would have read (resnet18: [512]).
# tests/test_finetune.py checks each against the model's last Linear (squeezenet's 1x1 Conv2d).
HEADS = {
    **dict.fromkeys(("resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                     "resnext50_32x4d", "wide_resnet50_2", "regnet_y_400mf",
                     "shufflenet_v2_x1_0"), "fc"),
    **dict.fromkeys(("mobilenet_v2", "efficientnet_b0", "efficientnet_b1", "efficientnet_v2_s",
                     "mnasnet1_0", "squeezenet1_1"), "classifier[1]"),
    **dict.fromkeys(("mobilenet_v3_small", "mobilenet_v3_large"), "classifier[3]"),
    **dict.fromkeys(("vgg11", "vgg11_bn", "vgg16", "vgg16_bn", "alexnet"), "classifier[6]"),
    "densenet121": "classifier",
    "convnext_tiny": "classifier[2]",
    "vit_b_16": "heads.head",
    "swin_t": "head",
}


def drop_head(model, builder: str) -> None:
    """Replace `model`'s classification layer (HEADS) with nn.Identity."""
    import torch.nn as nn

    *path, last = HEADS[builder].replace("]", "").replace("[", ".").split(".")
    owner = model
    for part in path:
        owner = owner[int(part)] if part.isdigit() else getattr(owner, part)
    if last.isdigit():
        owner[int(last)] = nn.Identity()
    else:
        setattr(owner, last, nn.Identity())


class WeightsError(ShapeError):
    """A weights= problem: an invalid argument value (E104), not a shape mismatch."""

    code = "E104"


class Backbone(Op):
    """A torchvision classification model; subclasses name the builder."""

    num_classes: PosInt = 1000
    weights: Optional[str] = None
    trainable: Annotated[Bool, Extra()] = True
    features: Annotated[Bool, Extra()] = False  # the head removed: the features it reads

    family = "backbone"
    prefix = "backbone"
    imports = ("import torchvision",)
    key_args = ("num_classes", "weights")
    builder: ClassVar[str] = ""

    def _build(self):
        import torchvision

        model = getattr(torchvision.models, self.builder)(num_classes=self.num_classes)
        if self.features:
            drop_head(model, self.builder)
        return model

    def _key(self) -> str:
        return f"{self.builder}:{self.num_classes}" + (":features" if self.features else "")

    def setup_lines(self, attr: str) -> list[str] | None:
        if not self.features:
            return None
        return [f"self.{attr}.{HEADS[self.builder]} = nn.Identity()  # its features, no head"]

    def shape(self, ins):
        x = ins[0]
        if x.rank != 3 or x.shape[0] != 3:
            raise ShapeError(
                f"{self.kind} expects an RGB image [3, height, width], but gets {x}",
                hint=f"map other channels to 3 first, e.g. x -> Conv2d(3, 1) -> {self.kind}(...)"
                if x.rank == 3
                else None,
            )
        if self.features and self.num_classes != 1000:
            raise ShapeError(
                f"{self.kind}(features=true) has no classification head, so num_classes "
                "has no effect",
                arg="num_classes",
                hint=f"leave num_classes out and put your own head after it: "
                f"{self.kind}(features=true) -> Linear({self.num_classes})",
            )
        self._check_weights()
        outs, _ = self._trace(ins)
        return outs

    def _trace(self, ins):
        """(output types, multiply-adds) on these inputs: from the disk cache, or a meta trace."""
        if any(t.symbolic for t in ins):  # E307 from the trace, never remembered on disk
            return meta_trace(self._build, ins, self.kind)
        key = f"{self._key()}:" + ";".join(f"{list(t.shape)} {t.dtype}" for t in ins)
        fact = facts().get(key)
        if fact is None:
            try:
                outs, macs = meta_trace(self._build, ins, self.kind)
                fact = {"outs": [[list(t.shape), t.dtype] for t in outs], "macs": macs}
            except ShapeError as exc:  # the input the model cannot take: as final as a shape
                fact = {"error": exc.message}
            remember(key, fact)
        if "error" in fact:
            raise ShapeError(fact["error"])
        return [TensorType(shape=tuple(s), dtype=d) for s, d in fact["outs"]], fact["macs"]

    def param_count(self):
        key = f"{self._key()}:parameters"
        if key not in facts():
            module = meta_module(self._build, self.kind,
                                 ("backbone", self.builder, self.num_classes, self.features))
            remember(key, sum(p.numel() for p in module.parameters()))
        return facts()[key]

    def macs(self, ins, outs):
        return self._trace(ins)[1]

    def ctor_args(self):
        kwargs = {}
        if self.num_classes != 1000:
            kwargs["num_classes"] = self.num_classes
        if self.weights is not None:
            kwargs["weights"] = self.weights
        return [], kwargs

    def args_label(self):
        what = "features" if self.features else f"{self.num_classes} classes"
        return what + (f", {self.weights}" if self.weights else "")

    def _check_weights(self) -> None:
        if self.weights is None:
            return
        import torch
        import torchvision

        from ..diagnostics import did_you_mean

        enum = torchvision.models.get_model_weights(self.builder)
        names = ["DEFAULT", *enum.__members__]
        try:
            w = enum.verify(self.weights)
        except (KeyError, ValueError, TypeError):
            hint = did_you_mean(self.weights, names)
            raise WeightsError(
                f"{self.kind} has no weights '{self.weights}'; it has: {', '.join(names)}",
                arg="weights",
                hint=hint,
            ) from None
        classes = len(w.meta.get("categories") or [])
        if classes and classes != self.num_classes:
            raise WeightsError(
                f"{self.kind} weights {w} were trained for {classes} classes, not "
                f"num_classes={self.num_classes}",
                arg="num_classes",
                hint=f"keep num_classes={classes} and add a head after it: "
                f'{self.kind}(weights="{self.weights}") -> Linear({self.num_classes})',
            )
        file = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(w.url))
        if not os.path.exists(file):
            raise WeightsError(
                f"{self.kind} weights {w} are not downloaded ({file} does not exist), and netdsl "
                "downloads nothing: this machine may be offline",
                arg="weights",
                hint=f'download them once where there is internet: python -c "import torchvision; '
                f"torchvision.models.{self.builder}(weights='{self.weights}')\"; or leave weights "
                "out for a randomly initialised model",
            )


_FACTS: dict | None = None


def _cache_file() -> Path:
    """Where traces are kept: one file per torchvision version (its models may change)."""
    try:
        version = metadata.version("torchvision")
    except metadata.PackageNotFoundError:
        version = "none"
    root = os.environ.get("NETDSL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "netdsl")
    return Path(root) / f"backbones-{version}.json"


def facts() -> dict:
    """What meta traces found, by builder, classes and input types (read once per process; a
    file that cannot be read or parsed is as good as none)."""
    global _FACTS
    if _FACTS is None:
        try:
            _FACTS = json.loads(_cache_file().read_text(encoding="utf-8"))
            if not isinstance(_FACTS, dict):
                _FACTS = {}
        except (OSError, ValueError):
            _FACTS = {}
    return _FACTS


def remember(key: str, fact) -> None:
    """Add a fact and write the file whole (a temporary file renamed into place); a cache that
    cannot be written is skipped: it only saves time."""
    facts()[key] = fact
    path = _cache_file()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(facts(), sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass


def _declare(name: str) -> type[Op]:
    cls = type(
        name,
        (Backbone,),
        {
            "__annotations__": {"op": Literal[name]},
            "op": name,
            "__module__": __name__,
            "torch": f"torchvision.models.{name}",
            "builder": name,
            "__doc__": f"torchvision.models.{name} as a layer: [3, H, W] -> [num_classes].",
        },
    )
    return register_extra(cls)


for _name in BACKBONES:
    _declare(_name)
