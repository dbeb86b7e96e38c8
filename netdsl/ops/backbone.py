"""torchvision classification models as layers: `image -> resnet18(num_classes=10) -> logits`.

Each backbone is one op named as in `torchvision.models` (resnet18, mobilenet_v3_small, ...),
taking `num_classes` (default 1000) and `weights` (default none: random initialisation, as in
torchvision). `trainable=false` freezes it. The generated code calls the torchvision builder
(`torchvision.models.resnet18(num_classes=10)`), so parameter names are torchvision's
(`backbone1.layer1.0.conv1.weight`).

Shapes, parameter counts and multiply-adds come from building the model on PyTorch's meta
device and running it on a meta tensor: exact for every input size the model accepts, and a
clear error for the ones it does not (too small an image, ViT's fixed 224x224). So torch is
imported only when a spec uses a backbone; `netdsl check` stays torch-free otherwise.

Pretrained weights are never downloaded during a check: `weights="DEFAULT"` (or a name such as
"IMAGENET1K_V1") needs the file in torch's hub cache already, and says how to get it otherwise.
"""

from __future__ import annotations

import os
from typing import ClassVar, Literal, Optional

from typing_extensions import Annotated

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


class WeightsError(ShapeError):
    """A weights= problem: an invalid argument value (E104), not a shape mismatch."""

    code = "E104"


class Backbone(Op):
    """A torchvision classification model; subclasses name the builder."""

    num_classes: PosInt = 1000
    weights: Optional[str] = None
    trainable: Annotated[Bool, Extra()] = True

    family = "backbone"
    prefix = "backbone"
    imports = ("import torchvision",)
    key_args = ("num_classes", "weights")
    builder: ClassVar[str] = ""

    def _build(self):
        import torchvision

        return getattr(torchvision.models, self.builder)(num_classes=self.num_classes)

    def shape(self, ins):
        x = ins[0]
        if x.rank != 3 or x.shape[0] != 3:
            raise ShapeError(
                f"{self.kind} expects an RGB image [3, height, width], but gets {x}",
                hint=f"map other channels to 3 first, e.g. x -> Conv2d(3, 1) -> {self.kind}(...)"
                if x.rank == 3
                else None,
            )
        self._check_weights()
        outs, _ = self._trace(ins)
        return outs

    def _trace(self, ins):
        key = (self.builder, self.num_classes, tuple(t.shape for t in ins))
        if key not in _TRACES:
            _TRACES[key] = meta_trace(self._build, ins, self.kind)
        return _TRACES[key]

    def param_count(self):
        module = meta_module(self._build, self.kind, ("backbone", self.builder, self.num_classes))
        return sum(p.numel() for p in module.parameters())

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
        return f"{self.num_classes} classes" + (f", {self.weights}" if self.weights else "")

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


_TRACES: dict = {}


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
