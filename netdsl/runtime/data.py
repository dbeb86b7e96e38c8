"""The data layer: datasets as named fields, batches by slicing or streamed from files.

Every sample is a set of named fields (``image``, ``label``, ``tokens``, ``mask``, ...).
A split that fits in memory is loaded once, run once through the deterministic part of its
transform pipeline, moved once to the device, and served by a `DeviceLoader` that slices
batches out of it. Image folders too big for that are streamed: their image (and mask)
fields are `Lazy`, read per batch by torch's `DataLoader` (workers, pinned memory on CUDA,
persistent workers, prefetching). Either way a batch is a dict of tensors on the device, the
sample order of an epoch depends only on (seed, epoch), random crops and flips run per
batch, vectorised, on the device, and torchvision.transforms.v2 augmentations run per
sample in the DataLoader's workers from a seed of (seed, epoch, sample); so a streamed and
an in-memory run give the same batches.

API
---
`load_data(source, *, root=None, transforms=(), val=None, test=None, seed=0,
           download=False, limit=None, task=None, label_check=None, fields=None,
           **source_kwargs) -> Data`
    Load a source, apply the deterministic transforms, carve splits. `source` is one of
    (case-insensitive):

    * ``"MNIST"``, ``"FashionMNIST"``, ``"CIFAR10"``: torchvision datasets under `root`
      (default ``"data"``), fields ``image`` and ``label``. Their raw uint8 arrays are read
      directly, never per-sample PIL. ``pairs=True`` (also for ImageFolder) gives siamese
      pairs instead: ``left`` (each image), ``right`` (an image of the same class for half
      of them, of another class for the rest, seeded) and ``same`` (1 when they match).
    * ``"ImageFolder"``: ``path=`` (class-per-subfolder, torchvision layout), optional
      ``test_path=``; if `path` holds exactly ``train/`` and ``test/`` (or ``val/``)
      subfolders those are used. Images are decoded through PIL (``convert="RGB"`` by
      default); Resize/CenterCrop/Grayscale placed before ToTensor run per image on the PIL
      image with torchvision's own transforms, so images of different sizes work.
      ``stream=None`` streams when the decoded images would take more than
      `_in_memory_limit()` (a quarter of the machine's memory, or NETDSL_IN_MEMORY_LIMIT);
      ``True``/``False`` force it. ``workers=`` sets the DataLoader processes (default: one
      per core but one, 1 to 4; 0 reads in the training process).
    * ``"MaskFolder"``: ``images=``, ``masks=`` (each image's mask has its name, any image
      suffix; class ids per pixel), optional ``test_images=``, ``test_masks=``; fields
      ``image`` and ``mask`` (int64 [H, W]); ``convert``, ``stream``, ``workers`` as for
      ImageFolder. Resize/CenterCrop must come before ToTensor (masks get them by nearest
      neighbour); random flips and crops move each mask with its image (padding takes the
      loss's ignore_index, `DataInfo.masks`).
    * ``"CSV"``: ``path=``, optional ``test_path=``; ``targets=`` (column name or list) and
      ``features=`` (names; default every other column) give fields ``features`` and
      ``target``; or column groups, one keyword per field (``table=["a", "b"],
      price="price"``). Header row required, values numeric (class labels may be strings).
    * ``"tensors"`` (alias ``"inline"``): one keyword per field (nested lists, numpy arrays
      or tensors), ``NAME_test=`` for the test split of field NAME; ``X=``/``y=`` classic.
    * ``"Text"``: ``path=``, ``tokens="char"|"byte"|"uint16"|"int32"``, ``block_size=64``,
      ``stride=block_size``: windows of token ids (``tokens``) and the same windows shifted
      by one (``next``); `val` and `test` are held out from the end of the file as spans of
      tokens (test last), scored in disjoint windows.
    * ``"synthetic"``: ``shape=`` (per sample), ``num_classes=`` *or* ``target_shape=``
      give fields ``x`` and ``y``; without ``shape=``, one field per entry of `fields`
      (what the plan's model inputs and losses read: float or integer inputs, class labels
      one per sample or per position, values). ``n=512``, ``n_test=128``, ``vocab=``.
      Inputs are seeded noise (or tokens); targets come from a seeded random linear
      "teacher" of them (per position where a target lines up with an input), so a model
      can actually learn them.

    `fields` maps a field to how the plan reads it: ``{"kind": "input" | "class" |
    "values", "vocab": N, ...}``; sources whose fields the spec names (tensors, CSV column
    groups, synthetic, Text) read each accordingly, and integer inputs are checked against
    the ``vocab`` of the Embedding they feed (`LabelError`). `task` is
    ``"classification"`` or ``"regression"`` for a source's one target (inferred when
    None, see `infer_task`). `val` (fraction in (0, 1) or a count) carves a validation
    split out of train; `test` does the same for sources that have no test split. When a
    RandomCrop changes the sample size, val and test are center-cropped to that size; a
    RandomResizedCrop to S gives them Resize(S / 0.875) and CenterCrop(S)
    (`DataInfo.eval_transforms`). Both are seeded by `seed` and deterministic. `limit` keeps
    only the first `limit` train and test samples.

`Data`: ``.train``, ``.val``, ``.test`` (`Split` or None), ``.info`` (`DataInfo`),
    ``.augment`` (the random part of the pipeline: `Augment` or `PerSample`).
`Data.split(name) -> Split`
`Data.loader(split="train", batch_size=64, *, device="cpu", shuffle=None,
             drop_last=False, seed=0, augment=None, non_blocking=True,
             pin_memory=False) -> DeviceLoader`
    shuffle and augmentation default to on for "train", off otherwise. The split is moved
    to the device once and cached on the `Data`, so several loaders share it (a streamed
    split keeps one loader, and its workers, per way of reading it).
`Split({name: tensor_or_Lazy})`: fields with the same first dimension; ``split.n``,
    ``split["image"]``, ``split.take(index)``, ``split.replace(name=...)``.
`Lazy`: a field read from files per sample: ``.shape``, ``.dtype``, indexing selects
    samples, ``.then(steps)`` adds deterministic steps run as it is read.
`DataInfo`: ``source, fields ({name: FieldInfo(shape, dtype, kind, num_classes, classes)}),
    sizes, primary (the field transforms apply to), target (the one target), transforms,
    augmentations, eval_transforms, loading, workers``; ``classes``, ``streamed``,
    ``loading_note()`` ("data: streamed from disk (...)"), ``describe() -> str``.

`DeviceLoader(fields, batch_size, *, shuffle=False, drop_last=False, seed=0,
              device="cpu", augment=None, augment_field=None, non_blocking=True,
              pin_memory=False, workers=None)`
    ``len(loader)`` is steps per epoch; ``loader.num_samples`` samples per epoch.
    ``loader.batches(epoch, start_step=0)`` yields dicts of the fields for that epoch: a
    pure function of (seed, epoch), identical on every run and device, so a resumed run
    sees bit-identical batches (mid-epoch too, via `start_step`), streamed or not.
    ``set_epoch(epoch, start_step=0)`` then ``iter(loader)`` does the same; without
    `set_epoch`, iterating starts at epoch 0 and moves to the next epoch after each
    *complete* pass. ``loader.order(epoch)`` is the epoch's sample order (CPU int64).

`Transform(name, kwargs)`: one pipeline step; pipelines are lists of `Transform`s,
    ``(name, kwargs)`` pairs, bare names, or ``{"name": ..., **kwargs}`` dicts.
`parse_transforms(spec) -> list[Transform]`: validate names and keyword arguments.
`plan_transforms(spec, *, image=True) -> tuple[list[Transform], Augment | PerSample]`:
    split a pipeline into the deterministic steps (run once at load time) and the
    augmentation.
`Augment` (random crops and flips, per batch): ``sample(n, generator) -> params``,
    ``apply(x, params) -> x``, ``__call__(x, generator=None) -> x``; ``bool(augment)`` is
    False when empty.
`PerSample` (the rest of a pipeline from its first random step, when it has a
    torchvision.transforms.v2 step): ``__call__(x, masks=None, seed=0) -> (x, masks)``,
    ``eval_steps() -> list[Transform]``, ``describe() -> list[str]``.
`resolve_device(spec) -> torch.device`: ``"auto"`` picks cuda when available.
`infer_task(y) -> str`; `DataError`: every user-facing failure, with a readable message
    (``.code``: the diagnostic `netdsl run` reports it as; ``.hint``: what to do).
    `DamagedFileError` (E414): a file is there but is not what its name says (a wrong
    magic number, a truncated IDX file, bytes that are not text, an image that does not
    decode); `LabelError` (E412): a class label the model cannot train on.

Labels
------
``label_check=[{"output", "loss", "classes", "ignore_index", "binary"}, ...]`` (what
`netdsl run` and compiled scripts pass, one entry per loss on class labels): every label of
every split must be a class of that output, ``0 <= label < classes`` (0 or 1 when
`binary`), or equal to its `ignore_index`; else `LabelError`, before anything trains.
Without it, labels must be ``>= 0`` and, for sources that name their classes (MNIST,
CIFAR10, ImageFolder, CSV with string labels), one of those classes.

Transforms
----------
Deterministic: ToTensor, Normalize(mean, std), Resize(size, antialias=True),
CenterCrop(size), Grayscale(num_output_channels=1). Random: RandomCrop(size, padding=None,
pad_if_needed=False, fill=0, padding_mode="constant"|"edge"|"reflect"),
RandomHorizontalFlip(p=0.5), RandomVerticalFlip(p=0.5). Semantics follow torchvision.
Per sample (torchvision.transforms.v2, its arguments and defaults): RandomResizedCrop,
ColorJitter, RandAugment, TrivialAugmentWide, AutoAugment, AugMix, RandomRotation,
RandomAffine, RandomPerspective, GaussianBlur, RandomGrayscale, RandomErasing,
RandomInvert, RandomPosterize, RandomSolarize, RandomAdjustSharpness, RandomAutocontrast,
RandomEqualize, ElasticTransform.

The deterministic steps run first, in their written order; the random steps run
afterwards, per batch. That reordering is exact because random steps may only be followed
by pointwise or per-channel steps (ToTensor, Normalize, Grayscale): a constant `fill` is
pushed through those, so ``RandomCrop(padding=4)`` written before ``Normalize`` pads with
the normalised value of black, as torchvision would. A Resize or CenterCrop written after a
random step is rejected. Image sources are uint8 until ToTensor (divide by 255); if the
pipeline has no ToTensor it is implied before the first Normalize (or at the end).
ToTensor + Normalize reproduce torchvision's values bit for bit; Resize/Grayscale on the
tensor-backed sources use torchvision's tensor kernels, which can differ from PIL's by
rounding.

A pipeline with a per-sample step runs differently: the steps before its first random
step run once at load time (the images stay uint8 if ToTensor comes later), and every step
from there on runs per sample, in the written order, on the CPU, as the samples are read
by the DataLoader's workers (for in-memory data too); masks take the image's geometry by
nearest neighbour (`tv_tensors.Mask`), filled with the loss's ignore_index. A Resize or
CenterCrop after a random step is rejected here too. Evaluation splits, and the training
split read without augmentation, get `PerSample.eval_steps()`.

Randomness: the loader's order and augmentation parameters for an epoch are drawn on
the CPU from a generator seeded by (seed, epoch), so they do not depend on the device, on
the global RNG, or on how many batches were consumed before. A per-sample step draws from
the global RNG seeded by (seed, epoch, field, sample) just for that sample (its state is
saved and restored around it), so neither the worker count nor a resume changes it.
"""

from __future__ import annotations

import array
import codecs
import contextlib
import copy
import csv
import gzip
import hashlib
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as nnf

__all__ = [
    "SOURCES",
    "TRANSFORMS",
    "Augment",
    "DamagedFileError",
    "Data",
    "DataError",
    "DataInfo",
    "DeviceError",
    "DeviceLoader",
    "LabelError",
    "Split",
    "Transform",
    "infer_task",
    "load_data",
    "parse_transforms",
    "plan_transforms",
    "resolve_device",
]


class DataError(Exception):
    """A dataset could not be found, read or transformed; the message says what to do.

    `code` is the diagnostic `netdsl run` reports it under, `hint` what to do about it."""

    code = "E406"

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint

    def __str__(self) -> str:
        return self.message + (f"\n  hint: {self.hint}" if self.hint else "")


class DamagedFileError(DataError):
    """A data file is there but is not what its name says: damaged, truncated, foreign."""

    code = "E414"


class DeviceError(DataError):
    """A device name with an index torch cannot take (cuda:-1, cuda:abc, cpu:5)."""

    code = "E411"


class LabelError(DataError):
    """A class label outside the classes the model (or the dataset) has."""

    code = "E412"


# ---- small helpers ----------------------------------------------------------------------


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """`"auto"`/None: cuda if available, else mps if available, else cpu."""
    if isinstance(spec, torch.device):
        return spec
    if spec is None or str(spec).lower() == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind, sep, index = str(spec).partition(":")
    if sep and kind in ("cuda", "xpu", "mps", "cpu") and not _index_ok(kind, index):
        raise DeviceError(
            f"device index out of range: {str(spec)!r} ({kind} devices are "
            "numbered from 0, and torch takes at most 127)",
            f"use {kind!r} for the first device",
        )
    try:
        dev = torch.device(str(spec))
    except RuntimeError as e:
        raise DataError(f"unknown device {spec!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DataError(
            f"device {spec!r} requested but CUDA is not available on this machine"
        )
    return dev


def _index_ok(kind: str, index: str) -> bool:
    """Whether torch can take `kind:index` (it keeps an index in 8 bits; cuda:128 wraps)."""
    if not (index.isascii() and index.isdigit()):  # cuda:-1, cuda:abc, "cuda: 1"
        return False
    return int(index) <= (0 if kind in ("cpu", "mps") else 127)


def _derive_seed(seed: int, *tags: Any) -> int:
    """A 63-bit seed from `seed` and tags, stable across runs, platforms and Python hashing."""
    h = hashlib.blake2b(repr((int(seed),) + tags).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


def _generator(seed: int, *tags: Any) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(_derive_seed(seed, *tags))
    return g


def _pair(v: Any, what: str) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, (list, tuple)) and len(v) == 1:
        return (int(v[0]), int(v[0]))
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return (int(v[0]), int(v[1]))
    raise DataError(f"{what} must be an int or a pair (h, w), got {v!r}")


_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "uint8": torch.uint8,
    "bool": torch.bool,
}


def _dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    try:
        return _DTYPES[str(name)]
    except KeyError:
        raise DataError(
            f"unknown dtype {name!r}; expected one of {', '.join(_DTYPES)}"
        ) from None


def _dtype_name(dt: torch.dtype) -> str:
    return str(dt).removeprefix("torch.")


# ---- transforms -------------------------------------------------------------------------


class Transform(NamedTuple):
    """One pipeline step: a torchvision-style transform name and its keyword arguments."""

    name: str
    kwargs: dict


# name -> (allowed kwargs with defaults, required kwargs, is_random)
TRANSFORMS: dict[str, tuple[dict[str, Any], tuple[str, ...], bool]] = {
    "ToTensor": ({}, (), False),
    "Normalize": (
        {"mean": None, "std": None, "inplace": False},
        ("mean", "std"),
        False,
    ),
    "Resize": (
        {
            "size": None,
            "interpolation": "bilinear",
            "max_size": None,
            "antialias": True,
        },
        ("size",),
        False,
    ),
    "CenterCrop": ({"size": None}, ("size",), False),
    "Grayscale": ({"num_output_channels": 1}, (), False),
    "RandomCrop": (
        {
            "size": None,
            "padding": None,
            "pad_if_needed": False,
            "fill": 0,
            "padding_mode": "constant",
        },
        ("size",),
        True,
    ),
    "RandomHorizontalFlip": ({"p": 0.5}, (), True),
    "RandomVerticalFlip": ({"p": 0.5}, (), True),
}
# Per-sample augmentations: torchvision.transforms.v2 with its own arguments and defaults
# (tests/test_plan.py checks them against torchvision's signatures), run sample by sample.
_AUTO = {"interpolation": "nearest", "fill": None}
_PER_SAMPLE: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "RandomResizedCrop": (
        {
            "size": None,
            "scale": (0.08, 1.0),
            "ratio": (0.75, 4 / 3),
            "interpolation": "bilinear",
            "antialias": True,
        },
        ("size",),
    ),
    "ColorJitter": (
        {"brightness": None, "contrast": None, "saturation": None, "hue": None},
        (),
    ),
    "RandAugment": (
        {"num_ops": 2, "magnitude": 9, "num_magnitude_bins": 31, **_AUTO},
        (),
    ),
    "TrivialAugmentWide": ({"num_magnitude_bins": 31, **_AUTO}, ()),
    "AutoAugment": ({"policy": "imagenet", **_AUTO}, ()),
    "AugMix": (
        {
            "severity": 3,
            "mixture_width": 3,
            "chain_depth": -1,
            "alpha": 1.0,
            "all_ops": True,
            **_AUTO,
            "interpolation": "bilinear",
        },
        (),
    ),
    "RandomRotation": (
        {
            "degrees": None,
            "interpolation": "nearest",
            "expand": False,
            "center": None,
            "fill": 0,
        },
        ("degrees",),
    ),
    "RandomAffine": (
        {
            "degrees": None,
            "translate": None,
            "scale": None,
            "shear": None,
            "interpolation": "nearest",
            "fill": 0,
            "center": None,
        },
        ("degrees",),
    ),
    "RandomPerspective": (
        {"distortion_scale": 0.5, "p": 0.5, "interpolation": "bilinear", "fill": 0},
        (),
    ),
    "GaussianBlur": ({"kernel_size": None, "sigma": (0.1, 2.0)}, ("kernel_size",)),
    "RandomGrayscale": ({"p": 0.1}, ()),
    "RandomErasing": (
        {
            "p": 0.5,
            "scale": (0.02, 0.33),
            "ratio": (0.3, 3.3),
            "value": 0.0,
            "inplace": False,
        },
        (),
    ),
    "RandomInvert": ({"p": 0.5}, ()),
    "RandomPosterize": ({"bits": None, "p": 0.5}, ("bits",)),
    "RandomSolarize": ({"threshold": None, "p": 0.5}, ("threshold",)),
    "RandomAdjustSharpness": (
        {"sharpness_factor": None, "p": 0.5},
        ("sharpness_factor",),
    ),
    "RandomAutocontrast": ({"p": 0.5}, ()),
    "RandomEqualize": ({"p": 0.5}, ()),
    "ElasticTransform": (
        {"alpha": 50.0, "sigma": 5.0, "interpolation": "bilinear", "fill": 0},
        (),
    ),
}
TRANSFORMS.update(
    {k: (allowed, req, "sample") for k, (allowed, req) in _PER_SAMPLE.items()}
)
# the AutoAugment family moves pixels a mask would have to follow, and torchvision
# refuses masks in them
_NO_MASKS = ("RandAugment", "TrivialAugmentWide", "AutoAugment", "AugMix")
_BY_LOWER = {k.lower(): k for k in TRANSFORMS}
_POSITIONAL = {
    "Normalize": ("mean", "std"),
    "Resize": ("size",),
    "CenterCrop": ("size",),
    "RandomCrop": ("size", "padding"),
    "Grayscale": ("num_output_channels",),
    "RandomHorizontalFlip": ("p",),
    "RandomVerticalFlip": ("p",),
    **{k: tuple(allowed) for k, (allowed, _) in _PER_SAMPLE.items()},
}


def _one_transform(item: Any) -> Transform:
    if isinstance(item, str):
        name, kwargs = item, {}
    elif isinstance(item, Mapping):
        if "name" not in item:
            raise DataError(f"transform {dict(item)!r} has no 'name'")
        kwargs = {k: v for k, v in item.items() if k != "name"}
        name = item["name"]
    elif (
        isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)
    ):
        name, kwargs = item[0], item[1]
        if isinstance(kwargs, (list, tuple)):  # positional arguments
            canon = _BY_LOWER.get(name.lower(), name)
            pos = _POSITIONAL.get(canon, ())
            if len(kwargs) > len(pos):
                raise DataError(
                    f"{canon} takes at most {len(pos)} positional arguments"
                )
            kwargs = dict(zip(pos, kwargs))
        elif not isinstance(kwargs, Mapping):
            raise DataError(f"transform {item!r}: expected (name, kwargs)")
    else:
        raise DataError(f"cannot read {item!r} as a transform; expected (name, kwargs)")
    canon = _BY_LOWER.get(str(name).lower())
    if canon is None:
        raise DataError(
            f"unknown transform {name!r}; supported: {', '.join(TRANSFORMS)}"
        )
    allowed, required, _ = TRANSFORMS[canon]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise DataError(
            f"{canon} got unknown argument(s) {', '.join(unknown)}; "
            f"it takes {', '.join(allowed) or 'no arguments'}"
        )
    missing = [k for k in required if kwargs.get(k) is None]
    if missing:
        raise DataError(f"{canon} needs {', '.join(missing)}")
    full = {**allowed, **kwargs}
    _check_transform(canon, full)
    return Transform(canon, full)


def _check_transform(name: str, kw: dict) -> None:
    if TRANSFORMS[name][2] == "sample":
        _check_per_sample(name, kw)
        return
    if name == "Normalize":
        mean, std = kw["mean"], kw["std"]
        mean = [mean] if isinstance(mean, (int, float)) else list(mean)
        std = [std] if isinstance(std, (int, float)) else list(std)
        if any(float(s) == 0 for s in std):
            raise DataError("Normalize: std must not contain 0")
        kw["mean"], kw["std"] = (
            tuple(float(m) for m in mean),
            tuple(float(s) for s in std),
        )
    elif name in ("Resize",):
        s = kw["size"]
        if not (
            isinstance(s, int) or (isinstance(s, (list, tuple)) and len(s) in (1, 2))
        ):
            raise DataError(f"Resize: size must be an int or (h, w), got {s!r}")
        kw["size"] = s if isinstance(s, int) else list(s)
        if str(kw["interpolation"]).lower() not in ("nearest", "bilinear", "bicubic"):
            raise DataError(
                "Resize: interpolation must be nearest, bilinear or bicubic"
            )
    elif name in ("CenterCrop", "RandomCrop"):
        kw["size"] = _pair(kw["size"], f"{name}: size")
    if name == "RandomCrop":
        p = kw["padding"]
        if p is not None:
            p = [p] if isinstance(p, int) else list(p)
            if len(p) == 1:
                p = p * 4
            elif len(p) == 2:
                p = [p[0], p[1], p[0], p[1]]
            elif len(p) != 4:
                raise DataError(
                    "RandomCrop: padding must be an int, (lr, tb) or (l, t, r, b)"
                )
            kw["padding"] = tuple(int(v) for v in p)  # left, top, right, bottom
        if kw["padding_mode"] not in ("constant", "edge", "reflect"):
            raise DataError(
                "RandomCrop: padding_mode must be constant, edge or reflect "
                f"(got {kw['padding_mode']!r})"
            )
        f = kw["fill"]
        kw["fill"] = (
            (float(f),) if isinstance(f, (int, float)) else tuple(float(v) for v in f)
        )
    if (
        name in ("RandomHorizontalFlip", "RandomVerticalFlip")
        and not 0 <= float(kw["p"]) <= 1
    ):
        raise DataError(f"{name}: p must be in [0, 1]")
    if name == "Grayscale" and kw["num_output_channels"] not in (1, 3):
        raise DataError("Grayscale: num_output_channels must be 1 or 3")


def _check_per_sample(name: str, kw: dict) -> None:
    """A torchvision.transforms.v2 step: torchvision checks the values as it builds it."""
    for k, v in kw.items():
        if isinstance(v, list):  # a plan's JSON lists
            kw[k] = tuple(v)
    for k in ("scale", "ratio", "degrees", "sigma", "alpha", "brightness", "contrast"):
        v = kw.get(k)
        if isinstance(v, tuple) and len(v) == 2 and v[0] > v[1]:
            raise DataError(
                f"{name}: {k} is (min, max), but {v[0]} is more than {v[1]}"
            )
    if kw.get("expand"):
        raise DataError(
            f"{name}: expand=true gives every image a size of its own, and a batch "
            "needs one size; leave expand out"
        )
    if name == "RandAugment" and kw["magnitude"] >= kw["num_magnitude_bins"]:
        raise DataError(
            f"RandAugment: magnitude counts bins from 0, so it must be below "
            f"num_magnitude_bins ({kw['num_magnitude_bins']})"
        )
    try:
        _v2(Transform(name, kw))
    except (TypeError, ValueError) as e:
        raise DataError(f"{name}: {_short(e)}") from None


def _v2(t: Transform, mask_fill: int | None = None):
    """The torchvision.transforms.v2 object for a random step (a mask's `fill` is
    `mask_fill`: what the loss ignores)."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    kw = dict(t.kwargs)
    if t.name == "AutoAugment":
        kw["policy"] = v2.AutoAugmentPolicy(kw["policy"])
    if t.name == "RandomCrop":  # netdsl keeps padding as (left, top, right, bottom)
        kw["padding"] = list(kw["padding"]) if kw["padding"] is not None else None
    if "fill" in kw:
        f = kw["fill"]
        f = f[0] if isinstance(f, tuple) and len(f) == 1 else f
        kw["fill"] = {tv_tensors.Image: f, tv_tensors.Mask: mask_fill}
    return getattr(v2, t.name)(**kw)


def parse_transforms(spec: Sequence[Any] | None) -> list[Transform]:
    """Validate a pipeline (list of (name, kwargs), names or dicts) into `Transform`s."""
    if spec is None:
        return []
    if isinstance(spec, (str, Mapping, Transform)):
        spec = [spec]
    return [_one_transform(t) for t in spec]


_GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


def _push_fill(
    fill: tuple[float, ...], steps: list[Transform], uint8: bool
) -> tuple[float, ...]:
    """The value a constant fill has after the pointwise steps written after it."""
    for t in steps:
        if t.name == "ToTensor":
            if uint8:
                fill = tuple(f / 255 for f in fill)
                uint8 = False
        elif t.name == "Normalize":
            mean, std = t.kwargs["mean"], t.kwargs["std"]
            c = max(len(fill), len(mean), len(std))
            fill = tuple(
                (fill[i % len(fill)] - mean[i % len(mean)]) / std[i % len(std)]
                for i in range(c)
            )
        elif t.name == "Grayscale":
            if len(fill) == 3:
                fill = (sum(w * f for w, f in zip(_GRAY, fill)),)
            fill = fill * t.kwargs["num_output_channels"] if len(fill) == 1 else fill
    return fill


class _Op:
    """A random op: samples per-sample parameters, applies them to a batch."""

    name = ""

    def sample(self, n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def apply(self, x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return shape


class _Flip(_Op):
    def __init__(self, p: float, dim: int, name: str):
        self.p, self.dim, self.name = float(p), dim, name

    def sample(self, n, g):
        return {"flip": torch.rand(n, generator=g) < self.p}

    def apply(self, x, p):
        m = p["flip"].view(-1, *([1] * (x.dim() - 1)))
        return torch.where(m, x.flip(self.dim), x)

    def __repr__(self):
        return f"{self.name}(p={self.p})"


class _Crop(_Op):
    name = "RandomCrop"

    def __init__(self, kw: dict, in_shape: tuple[int, ...], fill: tuple[float, ...]):
        if len(in_shape) != 3:
            raise DataError(
                f"RandomCrop needs (C, H, W) samples, got shape {tuple(in_shape)}"
            )
        c, h, w = in_shape
        self.size = kw["size"]
        pad = list(kw["padding"] or (0, 0, 0, 0))  # l, t, r, b
        hp, wp = h + pad[1] + pad[3], w + pad[0] + pad[2]
        th, tw = self.size
        if (
            kw["pad_if_needed"] and wp < tw
        ):  # torchvision pads both sides by the difference
            pad[0] += tw - wp
            pad[2] += tw - wp
            wp += 2 * (tw - wp)
        if kw["pad_if_needed"] and hp < th:
            pad[1] += th - hp
            pad[3] += th - hp
            hp += 2 * (th - hp)
        if hp < th or wp < tw:
            raise DataError(
                f"RandomCrop: crop size {th}x{tw} is larger than the padded image {hp}x{wp}; "
                "use pad_if_needed=true or a smaller size"
            )
        self.pad, self.padded = tuple(pad), (hp, wp)
        self.mode = kw["padding_mode"]
        if len(fill) not in (1, c):
            raise DataError(f"RandomCrop: fill has {len(fill)} values for {c} channels")
        self.fill = fill
        self.channels = c
        self._fills: dict = {}

    def out_shape(self, shape):
        return (shape[0], *self.size)

    def sample(self, n, g):
        hp, wp = self.padded
        th, tw = self.size
        return {
            "i": torch.randint(0, hp - th + 1, (n,), generator=g),
            "j": torch.randint(0, wp - tw + 1, (n,), generator=g),
        }

    def _padded(self, x: torch.Tensor) -> torch.Tensor:
        l, t, r, b = self.pad
        if not any(self.pad):
            return x
        if self.mode == "constant":
            B, C, H, W = x.shape
            out = x.new_empty((B, C, H + t + b, W + l + r))
            if len(self.fill) == 1:
                out.fill_(self.fill[0])
            else:
                key = (x.device, x.dtype)
                if key not in self._fills:  # one small host-to-device copy per device
                    self._fills[key] = (
                        torch.tensor(self.fill, dtype=x.dtype)
                        .view(1, C, 1, 1)
                        .to(x.device)
                    )
                out.copy_(self._fills[key].expand_as(out))
            out[:, :, t : t + H, l : l + W] = x
            return out
        mode = "replicate" if self.mode == "edge" else "reflect"
        if x.dtype == torch.uint8:
            return nnf.pad(x.float(), (l, r, t, b), mode=mode).to(torch.uint8)
        return nnf.pad(x, (l, r, t, b), mode=mode)

    def apply(self, x, p):
        xp = self._padded(x)
        B, C = xp.shape[:2]
        th, tw = self.size
        dev = xp.device
        rows = (p["i"].view(B, 1) + torch.arange(th, device=dev)).view(B, 1, th, 1)
        cols = (p["j"].view(B, 1) + torch.arange(tw, device=dev)).view(B, 1, 1, tw)
        bidx = torch.arange(B, device=dev).view(B, 1, 1, 1)
        cidx = torch.arange(C, device=dev).view(1, C, 1, 1)
        return xp[bidx, cidx, rows, cols]

    def __repr__(self):
        return f"RandomCrop(size={self.size}, pad={self.pad}, mode={self.mode})"


class Augment:
    """The random part of a pipeline, applied per batch with per-sample parameters.

    `sample(n, generator)` draws parameters for n samples (CPU tensors); `apply(x, params)`
    applies them to a batch whose length matches the params; calling the object does both.
    """

    def __init__(self, ops: Sequence[_Op] = ()):
        self.ops = list(ops)

    def __bool__(self) -> bool:
        return bool(self.ops)

    def __repr__(self) -> str:
        return "Augment([" + ", ".join(map(repr, self.ops)) + "])"

    @property
    def names(self) -> list[str]:
        return [op.name for op in self.ops]

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        for op in self.ops:
            shape = op.out_shape(shape)
        return tuple(shape)

    def sample(self, n: int, generator: torch.Generator | None = None) -> list[dict]:
        g = generator if generator is not None else torch.default_generator
        return [op.sample(n, g) for op in self.ops]

    def apply(self, x: torch.Tensor, params: list[dict]) -> torch.Tensor:
        for op, p in zip(self.ops, params):
            x = op.apply(x, p)
        return x

    def apply_mask(
        self, mask: torch.Tensor, params: list[dict], fill: int
    ) -> torch.Tensor:
        """The same flips and crops on class-id masks [N, H, W] (every random step is
        geometric); what a crop's padding adds is `fill`, a label the loss ignores."""
        x = mask[:, None]
        for op, p in zip(self.ops, params):
            if isinstance(op, _Crop):
                op = copy.copy(op)
                op.fill, op._fills = (fill,), {}
            x = op.apply(x, p)
        return x[:, 0]

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        params = self.sample(x.shape[0], generator)
        params = [{k: v.to(x.device) for k, v in p.items()} for p in params]
        return self.apply(x, params)


def plan_transforms(
    spec: Sequence[Any] | None,
    *,
    image: bool = True,
    sample_shape: tuple[int, ...] | None = None,
) -> tuple[list[Transform], Augment]:
    """Split a pipeline into its deterministic steps (in order, with ToTensor made explicit
    for image sources) and the `Augment` that runs per batch afterwards.

    `sample_shape` is the per-sample shape the deterministic steps produce; it is needed to
    build a RandomCrop (without it the Augment is built by `load_data` later)."""
    steps = parse_transforms(spec)
    if image and not any(t.name == "ToTensor" for t in steps):
        at = next((i for i, t in enumerate(steps) if t.name == "Normalize"), len(steps))
        steps.insert(at, Transform("ToTensor", {}))
    seen_tensor = not image
    for t in steps:
        if t.name == "ToTensor":
            seen_tensor = True
        elif t.name == "Normalize" and not seen_tensor:
            raise DataError("Normalize must come after ToTensor")
    kinds = [TRANSFORMS[t.name][2] for t in steps]
    if "sample" in kinds:
        first = next(i for i, k in enumerate(kinds) if k)
        late = [t for t in steps[first:] if t.name in ("Resize", "CenterCrop")]
        if late:
            raise DataError(
                f"{late[0].name} is written after {steps[first].name}; put Resize and "
                "CenterCrop before the random augmentations (they run once, as the data "
                "is loaded)"
            )
        return steps[:first], PerSample(steps[first:])
    static: list[Transform] = []
    random_at: list[tuple[int, Transform]] = []
    for i, t in enumerate(steps):
        if TRANSFORMS[t.name][2]:
            random_at.append((i, t))
            continue
        if random_at and t.name in ("Resize", "CenterCrop"):
            raise DataError(
                f"{t.name} is written after {random_at[-1][1].name}; put Resize and CenterCrop "
                "before the random augmentations (they run once at load time, augmentations "
                "per batch)"
            )
        static.append(t)
    if not random_at:
        return static, Augment()
    if sample_shape is None:
        return static, _PendingAugment(steps, random_at, image)
    return static, _build_augment(steps, random_at, image, tuple(sample_shape))


class PerSample:
    """The random part of a pipeline that torchvision.transforms.v2 runs sample by sample
    (RandomResizedCrop, ColorJitter, RandAugment, ...: each sample draws its own geometry
    or colours), with every step written after it, in the written order. It runs on the
    CPU as samples are read, in the DataLoader's workers. `__call__(x, masks, seed)` draws
    from the global RNG seeded with `seed` (saved and restored around it); masks take the
    image's geometry, by nearest neighbour, and what a step fills in is the loss's
    ignore_index."""

    def __init__(self, steps: Sequence[Transform]):
        self.steps = list(steps)
        self._ops: dict[int | None, list] = {}  # built per process, per mask fill

    def __bool__(self) -> bool:
        return True

    def __getstate__(self):
        return {**self.__dict__, "_ops": {}}

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.steps if TRANSFORMS[t.name][2]]

    def describe(self) -> list[str]:
        """The random steps as written: `RandomResizedCrop(size=(28, 28), scale=...)`."""
        out = []
        for t in self.steps:
            if TRANSFORMS[t.name][2]:
                allowed = TRANSFORMS[t.name][0]
                kw = [f"{k}={v!r}" for k, v in t.kwargs.items() if v != allowed.get(k)]
                out.append(f"{t.name}({', '.join(kw)})")
        return out

    def eval_steps(self) -> list[Transform]:
        """What evaluation splits get instead: the deterministic steps, with torchvision's
        usual counterparts of the crops (a RandomResizedCrop to S: Resize to S/0.875 and
        CenterCrop to S, as its reference recipes do; a RandomCrop: CenterCrop)."""
        out = []
        for t in self.steps:
            kw = t.kwargs
            if not TRANSFORMS[t.name][2]:
                out.append(t)
            elif t.name == "RandomResizedCrop":
                size = _pair(kw["size"], "RandomResizedCrop: size")
                resize = {
                    "size": int(max(size) / 0.875),
                    "interpolation": kw["interpolation"],
                    "max_size": None,
                    "antialias": kw["antialias"],
                }
                out += [
                    Transform("Resize", resize),
                    Transform("CenterCrop", {"size": size}),
                ]
            elif t.name == "RandomCrop":
                out.append(Transform("CenterCrop", {"size": kw["size"]}))
        return out

    def _built(self, fill: int | None) -> list:
        """[(step, v2 object)] for the random steps, [(steps, None)] for each run of
        deterministic ones between them (run by `_run_steps` in one call)."""
        if fill not in self._ops:
            ops: list = []
            for t in self.steps:
                if TRANSFORMS[t.name][2]:
                    ops.append((t, _v2(t, fill)))
                elif ops and ops[-1][1] is None:
                    ops[-1][0].append(t)
                else:
                    ops.append(([t], None))
            self._ops[fill] = ops
        return self._ops[fill]

    def __call__(
        self,
        x: torch.Tensor,
        masks: Mapping[str, tuple[torch.Tensor, int]] | None = None,
        seed: int = 0,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        import warnings

        from torchvision import tv_tensors

        names = list(masks or {})
        ms = [m for m, _ in (masks or {}).values()]
        fill = next((f for _, f in (masks or {}).values()), None)
        g = torch.default_generator
        state = g.get_state()
        g.manual_seed(seed)
        try:
            for t, op in self._built(fill):
                if op is None:  # deterministic steps after random ones: the image only
                    x = _run_steps(x.as_subclass(torch.Tensor)[None], t)[0]
                    continue
                if x.dim() != 3:
                    raise DataError(
                        f"{t.name} needs (C, H, W) image samples, got {tuple(x.shape)}"
                    )
                if ms and t.name in _NO_MASKS:
                    raise DataError(
                        f"{t.name} moves pixels (rotations, shears) that a mask would have "
                        "to follow, and torchvision does not move masks in it",
                        "use RandomAffine for the geometry and ColorJitter for the colours",
                    )
                try:
                    with warnings.catch_warnings() if ms else contextlib.nullcontext():
                        if ms:  # RandomErasing passes masks through, and warns
                            warnings.simplefilter("ignore")
                        image = (
                            x
                            if isinstance(x, tv_tensors.Image)
                            else tv_tensors.Image(x)
                        )
                        got = op(image, *map(tv_tensors.Mask, ms))
                except (TypeError, ValueError, RuntimeError) as e:
                    raise DataError(
                        f"{t.name} cannot run on a {'×'.join(map(str, x.shape))} "
                        f"{_dtype_name(x.dtype)} sample: {_short(e)}",
                        "most of torchvision's colour steps want uint8 images: put them "
                        "before ToTensor"
                        if x.is_floating_point()
                        else None,
                    ) from None
                got = got if isinstance(got, tuple) else (got,)
                x, ms = got[0], [m.as_subclass(torch.Tensor) for m in got[1:]]
        finally:
            g.set_state(state)
        return x.as_subclass(torch.Tensor), dict(zip(names, ms))


class _PendingAugment(Augment):
    """An Augment whose RandomCrop still needs the sample shape (see `plan_transforms`)."""

    def __init__(self, steps, random_at, image):
        super().__init__([])
        self._args = (steps, random_at, image)

    def __bool__(self) -> bool:
        return True

    @property
    def names(self) -> list[str]:
        return [t.name for _, t in self._args[1]]

    def build(self, sample_shape: tuple[int, ...]) -> Augment:
        return _build_augment(*self._args, tuple(sample_shape))

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.build(shape).out_shape(shape)

    def sample(self, n, generator=None):
        raise DataError(
            "this augmentation needs the sample shape first: call build(shape)"
        )

    def __call__(self, x, generator=None):
        return self.build(tuple(x.shape[1:]))(x, generator)


def _build_augment(steps, random_at, image, sample_shape) -> Augment:
    ops: list[_Op] = []
    shape = tuple(sample_shape)
    for i, t in random_at:
        if t.name == "RandomCrop":
            # The fill is written in the units of the data at that point of the pipeline.
            uint8 = image and not any(s.name == "ToTensor" for s in steps[:i])
            fill = _push_fill(t.kwargs["fill"], [s for s in steps[i + 1 :]], uint8)
            op: _Op = _Crop(t.kwargs, shape, fill)
        else:
            if len(shape) < 2:
                raise DataError(
                    f"{t.name} needs (C, H, W) image samples, got shape {shape}"
                )
            op = _Flip(
                t.kwargs["p"], -1 if t.name == "RandomHorizontalFlip" else -2, t.name
            )
        shape = op.out_shape(shape)
        ops.append(op)
    return Augment(ops)


def _mask_fill(label_check) -> int:
    """The label a crop's padding gets in a mask: the ignore_index of the loss on it."""
    for c in label_check or ():
        if c.get("field", "mask") == "mask" and c.get("ignore_index") is not None:
            return int(c["ignore_index"])
    return -100


def _largest(values: list[torch.Tensor], ignored: set[int]) -> int:
    """The largest label of the splits, leaving out labels a loss ignores (255 for VOC
    masks); -1 when there is none."""
    top = -1
    for v in values:
        for i in ignored:
            v = v[v != i]
        if v.numel():
            top = max(top, int(v.max()))
    return top


def _checkable(x: torch.Tensor | Lazy) -> torch.Tensor | None:
    """The values to check a field's labels or ids on: the tensor, the smallest and largest
    of a streamed token file, or None where they are only seen as they are read."""
    if isinstance(x, Ragged):
        return x.values
    if not isinstance(x, Lazy):
        return x
    values = getattr(x.reader, "values", None)
    return values(x.key) if values is not None else None


def _static(
    x: torch.Tensor | Lazy, steps: list[Transform], mask: bool = False
) -> torch.Tensor | Lazy:
    """Deterministic steps over a field: now for a tensor, as it is read for a Lazy one
    (a mask [N, H, W] is cropped as a one-channel image)."""
    if isinstance(x, Lazy):
        return x.then(steps)
    if mask:
        return _apply_static_tensor(x[:, None], _mask_steps(steps))[:, 0]
    return _apply_static_tensor(x, steps)


def _mask_steps(steps: list[Transform]) -> list[Transform]:
    """What a mask of class ids takes of the image's steps: the geometry, by nearest
    neighbour (the values' steps, ToTensor, Normalize, Grayscale, leave it as it is)."""
    out = []
    for t in steps:
        if t.name == "Resize":
            kw = {**t.kwargs, "interpolation": "nearest", "antialias": False}
            out.append(Transform("Resize", kw))
        elif t.name == "CenterCrop":
            out.append(t)
    return out


def _in_memory_limit() -> int:
    """Bytes of decoded data a source keeps in memory before it streams instead: a quarter
    of the machine's memory, or NETDSL_IN_MEMORY_LIMIT (bytes; K, M, G suffixes)."""
    text = os.environ.get("NETDSL_IN_MEMORY_LIMIT", "").strip().upper()
    if text:
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1], 1)
        try:
            return int(float(text.rstrip("KMG")) * scale)
        except ValueError:
            raise DataError(
                f"NETDSL_IN_MEMORY_LIMIT={text!r} is not a size (bytes, or 512M, 8G)"
            ) from None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 2**30
    return total // 4


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return ""


def _choose_stream(
    stream,
    n: int,
    sample_bytes,
    what: str,
    whole: str | None = None,
    about: str | None = None,
) -> tuple[bool, str]:
    """Whether to stream `n` samples (stream=None: when they would take more than
    `_in_memory_limit()` as tensors, unless `whole` says why the source reads them all),
    and the line that says so when the run starts (`about`: what the data is, if not
    "N images, SIZE as tensors")."""
    if n == 0:
        return False, ""
    size = n * sample_bytes()
    limit = _in_memory_limit()
    about = about or f"{n:,} {what}, {_size(size)} as tensors"
    if stream is None:
        stream = size > limit and whole is None
        why = (
            f"more than the in-memory limit of {_size(limit)}"
            if size > limit
            else f"within the in-memory limit of {_size(limit)}"
        )
        if size > limit and whole is not None:
            why = f"{whole}; {why}"
    else:
        why = f"stream={'true' if stream else 'false'}"
    where = "streamed from disk" if stream else "loaded into memory"
    return bool(stream), f"data: {where} ({about}; {why})"


def _sample_bytes(file: str, pil_steps, convert, static) -> int:
    x = _decode(file, _pil_pipeline(pil_steps), convert)
    x = _run_steps(x[None], static)[0] if static else x
    return x.numel() * x.element_size()


def _apply_static_tensor(
    x: torch.Tensor, steps: list[Transform], chunk: int = 8192
) -> torch.Tensor:
    """Run deterministic steps over a whole (N, ...) tensor, in chunks to bound memory."""
    if not steps or x.shape[0] == 0:
        return _run_steps(x, steps) if steps else x
    first = _run_steps(x[:chunk], steps)
    if x.shape[0] <= chunk:
        return first
    out = first.new_empty((x.shape[0], *first.shape[1:]))
    out[:chunk] = first
    for s in range(chunk, x.shape[0], chunk):
        out[s : s + chunk] = _run_steps(x[s : s + chunk], steps)
    return out


def _run_steps(x: torch.Tensor, steps: list[Transform]) -> torch.Tensor:
    import torchvision.transforms.functional as F
    from torchvision.transforms import InterpolationMode

    for t in steps:
        kw = t.kwargs
        if t.name == "ToTensor":
            # torchvision: img.to(dtype=default_float_dtype).div(255) for uint8 images
            if x.dtype == torch.uint8:
                x = x.to(torch.get_default_dtype()).div(255)
        elif t.name == "Normalize":
            if not x.is_floating_point():
                raise DataError("Normalize needs float data; add ToTensor before it")
            c = x.shape[1] if x.dim() > 1 else 1
            mean = torch.as_tensor(kw["mean"], dtype=x.dtype, device=x.device)
            std = torch.as_tensor(kw["std"], dtype=x.dtype, device=x.device)
            for name, v in (("mean", mean), ("std", std)):
                if v.numel() not in (1, c):
                    raise DataError(
                        f"Normalize: {name} has {v.numel()} values but the data has {c} "
                        "channels/features"
                    )
            shape = (1, -1) + (1,) * (x.dim() - 2) if x.dim() > 1 else (1,)
            x = x.sub(mean.view(shape)).div(std.view(shape))  # same ops as F.normalize
        else:
            if x.dim() != 4:
                raise DataError(
                    f"{t.name} needs (C, H, W) image samples, got {tuple(x.shape[1:])}"
                )
            if t.name == "Resize":
                x = F.resize(
                    x,
                    kw["size"],
                    InterpolationMode(str(kw["interpolation"]).lower()),
                    kw["max_size"],
                    kw["antialias"],
                )
            elif t.name == "CenterCrop":
                x = F.center_crop(x, list(kw["size"]))
            elif t.name == "Grayscale":
                if x.shape[1] == 1:
                    x = (
                        x.repeat(1, kw["num_output_channels"], 1, 1)
                        if kw["num_output_channels"] == 3
                        else x
                    )
                else:
                    x = F.rgb_to_grayscale(x, kw["num_output_channels"])
    return x


# ---- containers -------------------------------------------------------------------------


class Lazy:
    """A field read from files sample by sample (the streaming path): it has a shape and a
    dtype like a tensor, and indexing it selects samples, but its values stay on disk until
    a loader reads a batch. `reader.read(i, key, steps)` gives sample i of the reader's
    field `key` after the deterministic `steps`."""

    def __init__(self, reader, key: str, index: torch.Tensor, steps=(), like=None):
        """`like`: a Lazy of the same reader, key and steps whose sample shape and dtype
        this one shares (else the first sample is read to learn them)."""
        self.reader, self.key, self.index = reader, key, index
        self.steps = list(steps)
        if like is None:
            if not len(index):
                raise DataError("a split needs at least one sample")
            first = reader.read(int(index[0]), key, self.steps)
            self.sample_shape, self.dtype = tuple(first.shape), first.dtype
        else:
            self.sample_shape, self.dtype = like.sample_shape, like.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return (int(self.index.shape[0]), *self.sample_shape)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def __getitem__(self, index) -> Lazy:
        return Lazy(self.reader, self.key, self.index[index], self.steps, like=self)

    def then(self, steps: list[Transform]) -> Lazy:
        """The field after more deterministic steps (run per sample as it is read)."""
        return Lazy(self.reader, self.key, self.index, [*self.steps, *steps])

    def read_many(self, positions: Sequence[int]) -> torch.Tensor:
        """Samples `positions` as one tensor, by the reader's `read_many` where it has
        one (a CSV file: the rows of a batch parsed and converted together)."""
        many = getattr(self.reader, "read_many", None)
        if many is None:
            return torch.stack([self.read(p) for p in positions])
        ids = self.index[list(positions)].tolist()
        x = many(ids, self.key, self.steps)
        if tuple(x.shape[1:]) != self.sample_shape:
            raise DataError(
                f"{self.reader.describe(ids[0], self.key)} is "
                f"{'×'.join(map(str, x.shape[1:]))}, but the first is "
                f"{'×'.join(map(str, self.sample_shape))}"
            )
        return x

    def read(self, pos: int) -> torch.Tensor:
        x = self.reader.read(int(self.index[pos]), self.key, self.steps)
        if tuple(x.shape) != self.sample_shape:
            raise DataError(
                f"{self.reader.describe(int(self.index[pos]), self.key)} is "
                f"{'×'.join(map(str, x.shape))} after the transforms, but the first is "
                f"{'×'.join(map(str, self.sample_shape))}",
                "add Resize and/or CenterCrop before ToTensor",
            )
        return x


class Ragged:
    """A field of variable-length sequences (one per sample), padded per batch to its
    longest: `values` holds them end to end, sample i is values[offsets[i]:offsets[i+1]],
    and padding positions take `pad` (a token id, -100 for labels, True for the padding
    mask). `shape` is (n, None): the length varies."""

    def __init__(self, values: torch.Tensor, offsets: torch.Tensor, pad):
        self.values, self.offsets, self.pad = values, offsets, pad
        self.lengths = (offsets[1:] - offsets[:-1]).cpu()  # on the CPU: no device sync

    @property
    def shape(self) -> tuple:
        return (int(self.lengths.shape[0]), None)

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    @property
    def device(self) -> torch.device:
        return self.values.device

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def __getitem__(self, index) -> Ragged:
        if isinstance(index, slice):
            index = torch.arange(len(self))[index]
        index = torch.as_tensor(index, dtype=torch.int64).cpu()
        lengths = self.lengths[index]
        offsets = torch.zeros(len(index) + 1, dtype=torch.int64)
        torch.cumsum(lengths, 0, out=offsets[1:])
        starts = self.offsets.cpu()[index]
        pos = torch.repeat_interleave(starts - offsets[:-1], lengths) + torch.arange(
            int(offsets[-1])
        )
        return Ragged(
            self.values[pos.to(self.device)], offsets.to(self.device), self.pad
        )

    def to(self, device, non_blocking: bool = False) -> Ragged:
        return Ragged(
            self.values.to(device, non_blocking=non_blocking),
            self.offsets.to(device, non_blocking=non_blocking),
            self.pad,
        )

    def padded(self, index: torch.Tensor) -> torch.Tensor:
        """Samples `index` (CPU int64) as one [len(index), longest] tensor."""
        lengths = self.lengths[index]
        longest = int(lengths.max()) if len(index) else 0
        dev = self.device
        steps = torch.arange(longest, device=dev)
        valid = steps[None, :] < lengths.to(dev)[:, None]
        at = self.offsets[index.to(dev)][:, None] + steps[None, :]
        got = self.values[at.clamp(max=max(self.values.numel() - 1, 0))]
        return got.masked_fill(~valid, self.pad)


class _ImageFiles:
    """Images (and masks) decoded from files per sample, for `Lazy` fields: `files[key]`
    lists one path per sample. Picklable, so DataLoader workers can read with it."""

    def __init__(self, files: dict[str, list[str]], pil_steps, convert, masks=()):
        self.files, self.pil_steps, self.convert = files, list(pil_steps), convert
        self.masks = set(masks)  # fields read as class ids per pixel
        self.checks: dict[str, Any] = {}  # field -> label checks (see check_labels)
        self._tf: dict[str, Any] = {}

    def describe(self, i: int, key: str) -> str:
        return f"{'mask' if key in self.masks else 'image'} {self.files[key][i]!r}"

    def read(self, i: int, key: str, steps) -> torch.Tensor:
        x = _decode(
            self.files[key][i],
            self._pil(key),
            None if key in self.masks else self.convert,
            key in self.masks,
        )
        if key in self.checks:
            check_labels([(x[None], self.describe(i, key))], self.checks[key])
        if steps and key in self.masks:  # a mask [H, W]: as a one-channel image
            return _run_steps(x[None, None], _mask_steps(steps))[0, 0]
        return _run_steps(x[None], steps)[0] if steps else x

    def _pil(self, key: str):
        if key not in self._tf:
            self._tf[key] = _pil_pipeline(self.pil_steps, nearest=key in self.masks)
        return self._tf[key]

    def __getstate__(self):
        return {**self.__dict__, "_tf": {}}


def _pil_pipeline(steps: list[Transform], nearest: bool = False):
    """torchvision's PIL transforms for the steps before ToTensor; masks are resized with
    nearest-neighbour interpolation, so class ids stay class ids."""
    import torchvision.transforms as T

    ops = []
    for t in steps:
        kw = t.kwargs
        if t.name == "Resize":
            mode = "nearest" if nearest else str(kw["interpolation"]).lower()
            ops.append(
                T.Resize(
                    kw["size"],
                    T.InterpolationMode(mode),
                    kw["max_size"],
                    kw["antialias"] and not nearest,
                )
            )
        elif t.name == "CenterCrop":
            ops.append(T.CenterCrop(list(kw["size"])))
        elif t.name == "Grayscale" and not nearest:
            ops.append(T.Grayscale(kw["num_output_channels"]))
    return T.Compose(ops)


# PNG colour types whose 8-bit pixels are an image of `convert`'s mode as they are
_PNG_AS_IS = {("L", 0): "GRAY", ("RGB", 2): "RGB"}
_LIBPNG: list = []  # torchvision.io's decode_png and its read modes, once looked up


def _png_as_is(head: bytes, convert: str | None) -> str | None:
    """torchvision.io's read mode for a PNG file (its first bytes) whose pixels PIL
    would give unchanged (8-bit grey for "L", 8-bit RGB for "RGB"); None otherwise."""
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return _PNG_AS_IS.get((convert, head[25])) if head[24] == 8 else None


def _libpng():
    """(decode_png, ImageReadMode), or None where this torchvision has no decoders.
    torchvision 0.29 deprecates them for TorchCodec, and says so on every call: that
    warning is silenced, and PIL takes over when they are gone."""
    if not _LIBPNG:
        import warnings

        try:
            from torchvision.io import ImageReadMode, decode_png
        except ImportError:
            _LIBPNG.append(None)
        else:
            warnings.filterwarnings(
                "ignore", "The image decoding and encoding capabilities of TorchVision"
            )
            _LIBPNG.append((decode_png, ImageReadMode))
    return _LIBPNG[0]


def _decode(file: str, tf, convert: str | None, mask: bool = False) -> torch.Tensor:
    """One image file as a uint8 (C, H, W) tensor, or a mask as int64 (H, W) class ids.
    A PNG file that needs no conversion and no PIL step is decoded by libpng through
    torchvision.io (a third faster per sample than PIL; the same pixels); the rest by PIL
    (an image already in the mode asked for is not converted, which would copy it)."""
    import numpy as np
    from PIL import Image

    if convert in ("L", "RGB") and not mask and not tf.transforms and _libpng():
        try:
            with open(file, "rb") as f:
                data = f.read()
        except OSError:
            data = b""  # PIL says what is wrong
        mode = _png_as_is(data[:26], convert)
        if mode is not None:
            decode_png, modes = _LIBPNG[0]
            with contextlib.suppress(RuntimeError):  # (PIL says what is wrong)
                raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
                return decode_png(raw, modes[mode])
    try:
        with Image.open(file) as im:
            if mask and im.mode not in ("L", "P", "I", "I;16", "1"):
                raise DataError(
                    f"mask {file!r} is a {im.mode} image; a mask holds one class id per "
                    "pixel (a grayscale or palette PNG)"
                )
            im = im.convert(convert) if convert and im.mode != convert else im
            a = np.array(tf(im) if tf.transforms else im)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 -- PIL raises many types
        raise DamagedFileError(
            f"cannot decode {'mask' if mask else 'image'} {file!r}: {e}",
            "delete or replace the file",
        ) from None
    if mask:
        return torch.from_numpy(a.astype(np.int64))
    a = a[:, :, None] if a.ndim == 2 else a
    return torch.from_numpy(a.astype(np.uint8, copy=False)).permute(2, 0, 1)


class Split:
    """The named fields of one split (`image`, `label`, ...): tensors that share their
    first dimension, the samples. `split["image"]`; `n` is the number of samples."""

    def __init__(self, fields: Mapping[str, torch.Tensor]):
        self.fields = dict(fields)
        sizes = {k: int(v.shape[0]) for k, v in self.fields.items()}
        if not sizes:
            raise DataError("a split needs at least one field")
        if len(set(sizes.values())) > 1:
            shown = ", ".join(f"{k} {v}" for k, v in sizes.items())
            raise DataError(f"the fields hold different numbers of samples: {shown}")

    @property
    def n(self) -> int:
        return int(next(iter(self.fields.values())).shape[0])

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.fields[name]

    def __contains__(self, name: object) -> bool:
        return name in self.fields

    def __iter__(self) -> Iterator[str]:
        return iter(self.fields)

    def __repr__(self) -> str:
        inner = ", ".join(
            f"{k}={tuple(v.shape[1:])} {_dtype_name(v.dtype)}"
            for k, v in self.fields.items()
        )
        return f"Split(n={self.n}, {inner})"

    def take(self, index: torch.Tensor | slice) -> Split:
        """The samples at `index` (a slice or an index tensor), every field alike."""
        return Split({k: v[index] for k, v in self.fields.items()})

    def replace(self, **fields: torch.Tensor) -> Split:
        return Split({**self.fields, **fields})


@dataclass
class FieldInfo:
    """One field of every sample: shape (no batch dimension), dtype, and what it holds:
    "image", "input" (other model input data), "class" (class labels, one per sample or
    one per position), "values" (real-valued targets)."""

    shape: tuple[int, ...]
    dtype: str
    kind: str
    num_classes: int | None = None
    classes: list[str] | None = None

    def describe(self) -> str:
        shape = "×".join(map(str, self.shape)) or "scalar"
        if self.kind == "class" and self.num_classes is not None:
            per = f" per {shape}" if self.shape else ""
            return f"{self.num_classes} classes{per}"
        return f"{shape} {self.dtype}"


@dataclass
class DataInfo:
    """What the runner needs to know about the data: its fields and split sizes. The
    `primary` field is the one the transforms and augmentations apply to (the image)."""

    source: str
    fields: dict[str, FieldInfo]
    sizes: dict[str, int]
    primary: str | None = None
    target: str | None = None  # the source's one target field, if it has one
    transforms: list[Transform] = field(default_factory=list)  # run once, every split
    augmentations: list[str] = field(
        default_factory=list
    )  # per batch, train loader only
    eval_transforms: list[Transform] = field(
        default_factory=list
    )  # run once, val/test only
    loading: str = ""  # "data: streamed from disk (...)" where the source decided
    workers: int | None = None  # DataLoader workers for streamed fields (None: auto)
    masks: dict[str, int] = field(
        default_factory=dict
    )  # follow the image's flips, crops
    augmented: list[str] = field(
        default_factory=list
    )  # the fields augmented, each on its own
    per_sample: bool = False  # augmented sample by sample, in the DataLoader's workers

    @property
    def streamed(self) -> bool:
        return self.loading.startswith("data: streamed")

    def loading_note(self) -> str:
        """How the data is read, for the start of a run ("" when there was no choice and
        nothing is augmented sample by sample)."""
        if not self.streamed and not self.per_sample:
            return self.loading
        w = auto_workers() if self.workers is None else self.workers
        by = (
            f"{w} DataLoader worker{'s' if w != 1 else ''}"
            if w
            else "the training process"
        )
        what = "augmented sample by sample" if self.per_sample else ""
        if self.streamed:
            what = "read and augmented" if self.per_sample else "read"
        if not self.loading:
            return f"data: {what} by {by}"
        return f"{self.loading[:-1]}; {what} by {by})"

    @property
    def classes(self) -> list[str] | None:
        t = self.fields.get(self.target) if self.target else None
        return t.classes if t is not None else None

    def describe(self) -> str:
        sizes = ", ".join(f"{k} {v}" for k, v in self.sizes.items())
        fields = "; ".join(f"{k} {f.describe()}" for k, f in self.fields.items())
        aug = (
            f"; augment: {', '.join(self.augmentations)}" if self.augmentations else ""
        )
        return f"{self.source}: {sizes}; {fields}{aug}"


@dataclass
class Data:
    train: Split
    val: Split | None
    test: Split | None
    info: DataInfo
    augment: Augment = field(default_factory=Augment)
    _cache: dict = field(default_factory=dict, repr=False)

    def split(self, name: str) -> Split:
        s = {"train": self.train, "val": self.val, "test": self.test}.get(name)
        if s is None:
            have = [k for k in ("train", "val", "test") if getattr(self, k) is not None]
            raise DataError(f"no {name!r} split; this dataset has {', '.join(have)}")
        return s

    def _on_device(
        self,
        name: str,
        device: torch.device,
        non_blocking: bool,
        pin: bool,
        leave: tuple[str, ...] = (),
    ) -> dict[str, torch.Tensor]:
        """The split's fields moved to `device` once (but those in `leave`)."""
        key = (name, str(device), leave)
        if key not in self._cache:
            s = self.split(name)
            self._cache[key] = {
                k: _to_device(v, device, non_blocking, pin)
                for k, v in s.fields.items()
                if k not in leave
            }
        return self._cache[key]

    def loader(
        self,
        split: str = "train",
        batch_size: int = 64,
        *,
        device: str | torch.device = "cpu",
        shuffle: bool | None = None,
        drop_last: bool = False,
        seed: int = 0,
        augment: bool | Augment | None = None,
        non_blocking: bool = True,
        pin_memory: bool = False,
        rank: int = 0,
        world: int = 1,
    ) -> DeviceLoader:
        dev = resolve_device(device)
        train = split == "train"
        aug = (
            (self.augment if train else None)
            if augment is None
            else (self.augment if augment is True else (augment or None))
        )
        args = {
            "shuffle": train if shuffle is None else shuffle,
            "drop_last": drop_last,
            "seed": seed,
            "device": dev,
            "augment": aug,
            "augment_field": self.info.augmented or self.info.primary,
            "non_blocking": non_blocking,
            "pin_memory": pin_memory,
            "workers": self.info.workers,
            "masks": self.info.masks,
            "rank": rank,
            "world": world,
        }
        own: tuple[str, ...] = ()  # the fields a per-sample augmentation reads
        if isinstance(self.augment, PerSample) and split == "train":
            own = (*(self.info.augmented or [self.info.primary]), *self.info.masks)
        fields = self._on_device(split, dev, non_blocking, pin_memory, own)
        if own:  # augmented on the CPU sample by sample, or as evaluation sees them
            read = (
                {k: self.train[k] for k in own} if aug else self._unaugmented(dev, own)
            )
            fields = {
                k: fields[k] if k in fields else read[k] for k in self.train.fields
            }
        if not any(isinstance(v, Lazy) for v in fields.values()):
            return DeviceLoader(fields, batch_size, **args)
        # a streamed split keeps one loader (and its worker processes) per way of reading
        key = ("loader", split, batch_size, repr(sorted(args.items(), key=str)))
        if key not in self._cache:
            self._cache[key] = DeviceLoader(fields, batch_size, **args)
        return self._cache[key]

    def _unaugmented(self, device: torch.device, own: tuple[str, ...]) -> dict:
        """The training split's augmented fields through the evaluation steps instead."""
        key = ("unaugmented", str(device))
        if key not in self._cache:
            steps = self.augment.eval_steps()
            self._cache[key] = {
                k: _to_device(
                    _static(self.train[k], steps, k in self.info.masks),
                    device,
                    True,
                    False,
                )
                for k in own
            }
        return self._cache[key]


def _to_device(t: torch.Tensor, device: torch.device, non_blocking: bool, pin: bool):
    if isinstance(t, Lazy):  # read per batch, moved then
        return t
    if isinstance(t, Ragged):
        return t.to(device, non_blocking=non_blocking and device.type == "cuda")
    if t.device == device:
        return t
    if pin and device.type == "cuda" and t.device.type == "cpu":
        t = t.pin_memory()
    return t.to(device, non_blocking=non_blocking and device.type == "cuda")


# ---- the loader -------------------------------------------------------------------------


class DeviceLoader:
    """Batches sliced out of tensors that live on the target device: each batch is a dict
    of the named fields. The augmentation applies to `augment_field` (the image).

    The order and augmentation parameters of epoch `e` depend only on (seed, e)."""

    def __init__(
        self,
        fields: Mapping[str, torch.Tensor],
        batch_size: int,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        device: str | torch.device = "cpu",
        augment: Augment | None = None,
        augment_field: str | None = None,
        non_blocking: bool = True,
        pin_memory: bool = False,
        workers: int | None = None,
        masks: Mapping[str, int] | None = None,
        rank: int = 0,
        world: int = 1,
    ):
        if int(batch_size) < 1:
            raise DataError(f"batch size must be at least 1, got {batch_size}")
        if not 0 <= int(rank) < int(world):
            raise DataError(f"rank {rank} outside 0..{int(world) - 1}")
        self.rank, self.world = int(rank), int(world)
        split = Split(fields)  # the fields agree on the number of samples
        self.device = resolve_device(device)
        self.non_blocking = non_blocking and self.device.type == "cuda"
        self.pin_memory = pin_memory and self.device.type == "cuda"
        self.fields = {
            k: _to_device(v, self.device, self.non_blocking, self.pin_memory)
            for k, v in split.fields.items()
        }
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        own = (
            [augment_field]
            if isinstance(augment_field, str)
            else list(augment_field or [])
        )
        missing = [k for k in own if k not in self.fields]
        if augment and (missing or not own):
            raise DataError(
                f"the augmentation applies to the field {(missing or [None])[0]!r}, which "
                f"this data does not have (its fields: {', '.join(self.fields)})"
            )
        self.augment_fields = own  # the first draws as a single field always has
        self.masks = dict(
            masks or {}
        )  # fields that take the image's flips and crops: fill
        self.per_sample = augment if isinstance(augment, PerSample) else None
        if self.per_sample is not None:
            # read sample by sample through the DataLoader, where the augmentation runs
            for k in (*own, *self.masks):
                v = self.fields[k]
                if not isinstance(v, Lazy):
                    reader = _Tensors({k: v.cpu()})
                    self.fields[k] = Lazy(reader, k, torch.arange(split.n))
            augment = None
        if isinstance(augment, _PendingAugment):
            augment = augment.build(tuple(self.fields[own[0]].shape[1:]))
        self.augment = augment if augment else None
        self.epoch = 0
        self._start_step = 0
        self._n = split.n
        # fields read from files per batch, through torch's DataLoader
        self.lazy = [k for k, v in self.fields.items() if isinstance(v, Lazy)]
        self.workers = auto_workers() if workers is None else int(workers)
        self._stream = None  # (DataLoader, its batch list), made on first use

    @property
    def dataset_size(self) -> int:
        return self._n

    def __len__(self) -> int:
        n, b = self.dataset_size, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    @property
    def num_samples(self) -> int:
        """Samples yielded per epoch (fewer than the dataset with drop_last)."""
        return len(self) * self.batch_size if self.drop_last else self.dataset_size

    def _bounds(self, step: int) -> tuple[int, int, int]:
        """(lo, hi, n): the positions of this rank's part of batch `step` in the epoch's
        order, and how many samples it really has: the batch split into `world` parts as
        near equal as can be. A rank whose part is empty (a last batch smaller than the
        world) gets the batch's last sample, counted as none (`n` = 0)."""
        lo = step * self.batch_size
        size = min(self.batch_size, self.dataset_size - lo)
        q, extra = divmod(size, self.world)
        a = lo + self.rank * q + min(self.rank, extra)
        n = q + (self.rank < extra)
        return (a, a + n, n) if n else (lo + size - 1, lo + size, 0)

    def local_sizes(self) -> torch.Tensor:
        """Samples per step on this rank (CPU int64): the batch sizes alone, this rank's
        part of them under several processes (0 where it has none)."""
        return torch.tensor([self._bounds(s)[2] for s in range(len(self))])

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """The next `iter(loader)` yields epoch `epoch`, starting at batch `start_step`."""
        self.epoch, self._start_step = int(epoch), int(start_step)

    def order(self, epoch: int) -> torch.Tensor:
        """The sample order of `epoch` (CPU int64), a pure function of (seed, epoch)."""
        n = self.dataset_size
        if not self.shuffle:
            return torch.arange(n)
        return torch.randperm(n, generator=_generator(self.seed, "order", int(epoch)))

    def _aug_params(self, epoch: int) -> list[list[dict]]:
        """Per augmented field, the epoch's draws (the second image of a pair draws its
        own, from a generator of its own)."""
        assert self.augment is not None
        out = []
        for i, k in enumerate(self.augment_fields):
            tags = ("augment", int(epoch)) if i == 0 else ("augment", int(epoch), k)
            params = self.augment.sample(self.num_samples, _generator(self.seed, *tags))
            out.append([{n: self._move(v) for n, v in p.items()} for p in params])
        return out

    def _move(self, t: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cpu":
            return t
        if self.pin_memory:
            t = t.pin_memory()
        return t.to(self.device, non_blocking=self.non_blocking)

    def batches(
        self, epoch: int, start_step: int = 0
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Yield the batches of `epoch`, from batch `start_step` on."""
        steps = len(self)
        if not 0 <= start_step <= steps:
            raise DataError(f"start_step {start_step} outside 0..{steps}")
        order = self.order(epoch) if self.shuffle else None
        idx = self._move(order) if order is not None else None
        params = self._aug_params(epoch) if self.augment else None
        fields = {
            k: v
            for k, v in self.fields.items()
            if k not in self.lazy and not isinstance(v, Ragged)
        }
        ragged = {k: v for k, v in self.fields.items() if isinstance(v, Ragged)}
        read = self._read(epoch, start_step, order) if self.lazy else None
        for step in range(start_step, steps):
            lo, hi, _ = self._bounds(step)
            if idx is None:
                batch = {k: v[lo:hi] for k, v in fields.items()}
            else:
                sel = idx[lo:hi]
                batch = {k: v.index_select(0, sel) for k, v in fields.items()}
            if ragged:  # padded to the batch's longest sequence
                rows = order[lo:hi] if order is not None else torch.arange(lo, hi)
                batch.update({k: v.padded(rows) for k, v in ragged.items()})
                batch = {k: batch[k] for k in self.fields}
            if read is not None:
                batch.update({k: self._move(v) for k, v in next(read).items()})
                batch = {k: batch[k] for k in self.fields}  # the fields' own order
            if params is not None:
                for k, drawn in zip(self.augment_fields, params):
                    mine = [{n: v[lo:hi] for n, v in p.items()} for p in drawn]
                    batch[k] = self.augment.apply(batch[k], mine)
                    if k == self.augment_fields[0]:  # a mask moves with its image
                        for m, fill in self.masks.items():
                            batch[m] = self.augment.apply_mask(batch[m], mine, fill)
            yield batch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        epoch, start = self.epoch, self._start_step
        self._start_step = 0
        yield from self.batches(epoch, start)
        self.epoch = epoch + 1

    def _read(self, epoch: int, start_step: int, order: torch.Tensor | None):
        """The streamed fields of each batch from `start_step` on, in the epoch's order,
        read by torch's DataLoader (workers, pinned memory, prefetching)."""
        pos = order if order is not None else torch.arange(self.dataset_size)
        bounds = [self._bounds(s)[:2] for s in range(start_step, len(self))]
        if self._stream is None:
            dataset = _Samples(
                {k: self.fields[k] for k in self.lazy},
                self.per_sample,
                self.augment_fields,
                self.masks,
                self.seed,
            )
            batches = _BatchList()
            w = self.workers
            loader = torch.utils.data.DataLoader(
                dataset,
                batch_sampler=batches,
                num_workers=w,
                pin_memory=self.device.type
                == "cuda",  # copied to the GPU asynchronously
                persistent_workers=w > 0,
                prefetch_factor=4 if w > 0 else None,
                # its seeds from (seed), never from the global RNG the model's dropout uses
                generator=_generator(self.seed, "loader"),
                worker_init_fn=_quiet_worker,
            )
            self._stream = (loader, batches, dataset)
        loader, batches, dataset = self._stream
        batches.epoch = (pos, bounds, int(epoch))
        it = iter(loader)
        for chunk in batches.chunks():
            try:
                got = next(it)
            except DataError:
                # a worker's error comes back as text with its traceback: read the batch
                # here to raise the error itself, with its hint
                for p in chunk:
                    dataset[p]
                raise
            yield got


def _quiet_worker(_: int) -> None:
    """A DataLoader worker leaves Ctrl-C to the training process, which stops cleanly."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def auto_workers() -> int:
    """DataLoader workers when the data does not say: one per core but one, 1 to 4."""
    return max(1, min(4, (os.cpu_count() or 1) - 1))


class _Samples(torch.utils.data.Dataset):
    """Sample `pos` of each streamed field in epoch `epoch` (a DataLoader reads batches of
    these), augmented sample by sample where the pipeline says so: field k of sample `pos`
    draws from a seed of (seed, epoch, k, pos) alone, so every worker count, both data
    paths and a resumed run see the same images."""

    def __init__(
        self,
        fields: Mapping[str, Lazy],
        augment: PerSample | None = None,
        augment_fields: Sequence[str] = (),
        masks: Mapping[str, int] | None = None,
        seed: int = 0,
    ):
        self.fields, self.augment = dict(fields), augment
        self.augment_fields, self.masks = list(augment_fields), dict(masks or {})
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(next(iter(self.fields.values())))

    def __getitems__(self, items: list[tuple[int, int]]) -> list[dict]:
        """A batch of samples; fields whose reader reads many rows at once read them so."""
        if self.augment is not None or not all(
            hasattr(v.reader, "read_many") for v in self.fields.values()
        ):
            return [self[item] for item in items]
        pos = [p for p, _ in items]
        got = {k: v.read_many(pos) for k, v in self.fields.items()}
        return [{k: v[j] for k, v in got.items()} for j in range(len(items))]

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        pos, epoch = item
        out = {k: v.read(pos) for k, v in self.fields.items()}
        for i, k in enumerate(self.augment_fields if self.augment else ()):
            tags = ("sample", epoch, pos) if i == 0 else ("sample", epoch, k, pos)
            masks = {m: (out[m], f) for m, f in self.masks.items()} if i == 0 else {}
            out[k], moved = self.augment(out[k], masks, _derive_seed(self.seed, *tags))
            out.update(moved)
        return out


class _Tensors:
    """In-memory fields read sample by sample (the reader of a `Lazy` field), so that a
    per-sample augmentation runs on them in the DataLoader's workers."""

    def __init__(self, fields: Mapping[str, torch.Tensor]):
        self.fields = dict(fields)

    def describe(self, i: int, key: str) -> str:
        return f"sample {i} of {key}"

    def read(self, i: int, key: str, steps) -> torch.Tensor:
        x = self.fields[key][i]
        return _run_steps(x[None], steps)[0] if steps else x.clone()

    def values(self, key: str) -> torch.Tensor:
        return self.fields[key]


class _BatchList(torch.utils.data.Sampler):
    """The batches of the current epoch, set before each pass as (the epoch's order, the
    (lo, hi) bounds of each batch in it, the epoch): each batch, a list of (position,
    epoch), is made as the DataLoader asks for it. (A list of every batch's positions
    made up front grows with the dataset, 100 MB of Python objects per million samples,
    and would be copied into every worker.)"""

    def __init__(self):
        self.epoch: tuple = (torch.zeros(0, dtype=torch.int64), [], 0)

    def chunks(self) -> Iterator[list[tuple[int, int]]]:
        pos, bounds, epoch = self.epoch
        for lo, hi in bounds:
            yield [(p, epoch) for p in pos[lo:hi].tolist()]

    def __iter__(self):
        return self.chunks()

    def __len__(self) -> int:
        return len(self.epoch[1])


# ---- sources ----------------------------------------------------------------------------

_TV_FILES = {
    "MNIST": (
        "MNIST/raw",
        [
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ],
    ),
    "FashionMNIST": (
        "FashionMNIST/raw",
        [
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ],
    ),
    "CIFAR10": (
        "cifar-10-batches-py",
        [
            "batches.meta",
            "data_batch_1",
            "data_batch_2",
            "data_batch_3",
            "data_batch_4",
            "data_batch_5",
            "test_batch",
        ],
    ),
}


def _missing_message(name: str, root: str | os.PathLike, reason: str | None) -> str:
    folder, files = _TV_FILES[name]
    base = Path(root) / folder
    lines = [f"{name} not found under root {str(root)!r}. Expected these files:"]
    for f in files:
        p = base / f
        lines.append(f"  {p}{'' if p.exists() else '   (missing)'}")
    if reason:
        lines.append(f"Download failed: {reason}")
        lines.append(
            "Copy the files there by hand, or retry where the network is reachable."
        )
    else:
        lines.append(
            "Set download=true to fetch them (needs network access), or point root "
            "at a folder that holds them."
        )
    return "\n".join(lines)


def _short(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    return (" ".join(lines) or type(e).__name__)[:300]


def _torchvision(name: str, root, train: bool, download: bool):
    import torchvision

    cls = getattr(torchvision.datasets, name)
    folder, files = _TV_FILES[name]
    try:
        return cls(str(root), train=train, download=False)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 -- a damaged file fails in many ways
        if all((Path(root) / folder / f).is_file() for f in files):
            raise DamagedFileError(
                f"{name} files under {str(Path(root) / folder)!r} are present but could not be "
                f"read ({_short(e)}); they may be truncated or corrupted",
                "delete them and load with download=true to fetch fresh copies",
            ) from None
        if not download:
            raise DataError(_missing_message(name, root, None)) from None
    try:
        return cls(str(root), train=train, download=True)
    except Exception as e:  # noqa: BLE001 -- network errors come in many types
        raise DataError(_missing_message(name, root, _short(e))) from None


# IDX files (the MNIST family): magic 0x0000 08 NDIM, NDIM big-endian sizes, then the bytes
_IDX_NDIM = {"image": 3, "label": 1}


def _idx_file(path: Path) -> Path:
    """The file itself, or its .gz copy when only that is there."""
    gz = path.with_name(path.name + ".gz")
    return gz if not path.is_file() and gz.is_file() else path


def _what_it_is(raw: bytes) -> str:
    """A guess at what a foreign file holds, for the message."""
    for magic, what in (
        (b"PK\x03\x04", "a zip archive"),
        (b"\x89PNG", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"<", "HTML or XML text"),
        (b"\x80", "a Python pickle"),
    ):
        if raw.startswith(magic):
            return f"; it looks like {what}"
    head = raw[:64]
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "; it holds text"
    return ""


def _read_idx(path: Path, name: str, kind: str) -> torch.Tensor:
    """One IDX file of `name` (MNIST, FashionMNIST) holding `kind` ("image" or "label") as
    a uint8 tensor, (N, 28, 28) or (N,); `DamagedFileError` when it is anything else."""
    file = _idx_file(path)
    fresh = (
        f"delete {file} and load with download=true to fetch a fresh copy, or copy the "
        f"original {path.name} there"
    )
    article = "an" if name[0] in "AEFHILMNORSX" else "a"
    try:
        raw = file.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {file}: {e.strerror or e}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DamagedFileError(
                f"{file} is gzip-compressed but does not decompress ({_short(e)}); "
                "it is truncated or damaged",
                fresh,
            ) from None
    ndim = _IDX_NDIM[kind]
    want = 0x800 | ndim
    if len(raw) < 4:
        raise DamagedFileError(
            f"{file}: this is not {article} {name} {kind} file: it holds {len(raw)} "
            "byte(s), fewer than an IDX header",
            fresh,
        )
    magic = int.from_bytes(raw[:4], "big")
    if magic != want:
        why = f"magic number 0x{magic:08X}, expected 0x{want:08X}"
        if magic in (0x801, 0x803):
            other = "label" if magic == 0x801 else "image"
            why += f", which marks {other}s; are the image and label files swapped?"
        elif magic >> 8 == 0x8:
            why += f"; it is an IDX file of {magic & 0xFF} dimension(s)"
        elif magic >> 16 == 0 and magic >> 8 in (0x9, 0xB, 0xC, 0xD, 0xE):
            why += "; it is an IDX file of values that are not bytes"
        raise DamagedFileError(
            f"{file}: this is not {article} {name} {kind} file ({why}{_what_it_is(raw)})",
            fresh,
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DamagedFileError(
            f"{file}: truncated: {len(raw)} bytes, shorter than the {header}-byte header "
            f"of {article} {name} {kind} file",
            fresh,
        )
    shape = tuple(
        int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    if shape[0] == 0:
        raise DamagedFileError(f"{file}: holds no {kind}s (its header says 0)", fresh)
    if kind == "image" and shape[1:] != (28, 28):
        raise DamagedFileError(
            f"{file}: holds {shape[1]}x{shape[2]} images; {name} images are 28x28",
            fresh,
        )
    need = header + math.prod(shape)
    if len(raw) < need:
        raise DamagedFileError(
            f"{file}: truncated: {len(raw):,} bytes, but its header promises "
            f"{shape[0]:,} {kind}s ({need:,} bytes)",
            fresh,
        )
    if len(raw) > need:
        raise DamagedFileError(
            f"{file}: {len(raw) - need:,} bytes more than the {shape[0]:,} {kind}s its "
            "header describes; it is damaged",
            fresh,
        )
    t = torch.frombuffer(bytearray(raw), dtype=torch.uint8, offset=header)
    return t.view(*shape)


def _load_idx(name: str, root, download: bool):
    """The MNIST family from its four raw IDX files (read here, checked byte by byte)."""
    import torchvision

    folder, files = _TV_FILES[name]
    base = Path(root) / folder
    if not all(_idx_file(base / f).is_file() for f in files):
        if not download:
            raise DataError(_missing_message(name, root, None)) from None
        try:
            getattr(torchvision.datasets, name)(str(root), train=True, download=True)
        except Exception as e:  # noqa: BLE001 -- network errors come in many types
            raise DataError(_missing_message(name, root, _short(e))) from None
    out = []
    for images, labels in ((files[0], files[1]), (files[2], files[3])):
        x = _read_idx(base / images, name, "image")
        y = _read_idx(base / labels, name, "label")
        if x.shape[0] != y.shape[0]:
            raise DamagedFileError(
                f"{_idx_file(base / images)} holds {x.shape[0]:,} images but "
                f"{_idx_file(base / labels)} {y.shape[0]:,} labels; one of them is damaged "
                "or they come from different versions",
                "download both again (delete them and load with download=true)",
            )
        out.append(Split({"image": x.unsqueeze(1), "label": y.to(torch.int64)}))
    classes = [str(c) for c in getattr(torchvision.datasets, name).classes]
    origin = (str(_idx_file(base / files[1])), str(_idx_file(base / files[3])))
    return out[0], out[1], classes, origin


def _load_torchvision(name: str, root, download: bool):
    if name in ("MNIST", "FashionMNIST"):
        return _load_idx(name, root, download)
    out = []
    for train in (True, False):
        ds = _torchvision(name, root, train, download)
        data = ds.data
        if not isinstance(data, torch.Tensor):  # CIFAR: numpy (N, H, W, C)
            data = torch.from_numpy(data)
            x = data.permute(0, 3, 1, 2).contiguous()
        else:  # MNIST family: (N, H, W)
            x = data.unsqueeze(1)
        try:
            y = torch.as_tensor(ds.targets, dtype=torch.int64)
        except (TypeError, ValueError, RuntimeError) as e:
            raise DamagedFileError(
                f"the {name} labels under {str(Path(root))!r} are not whole numbers "
                f"({_short(e)})",
                "delete the files and load with download=true to fetch fresh copies",
            ) from None
        if x.shape[0] != y.shape[0] or x.dim() != 4:
            raise DamagedFileError(
                f"the {name} files under {str(Path(root))!r} hold {x.shape[0]:,} images "
                f"but {y.shape[0]:,} labels",
                "delete them and load with download=true to fetch fresh copies",
            )
        out.append(Split({"image": x, "label": y}))
    classes = [str(c) for c in ds.classes]
    folder = str(Path(root) / _TV_FILES[name][0])
    return out[0], out[1], classes, (folder, folder)


def _folder_files(path: Path) -> tuple[list[str], list[int], list[str]]:
    """torchvision's ImageFolder layout: (files, labels, class names)."""
    import torchvision

    if not path.is_dir():
        raise DataError(f"image folder {str(path)!r} does not exist")
    try:
        ds = torchvision.datasets.ImageFolder(str(path), loader=lambda f: f)
    except (FileNotFoundError, RuntimeError) as e:
        raise DataError(f"cannot read image folder {str(path)!r}: {e}") from None
    files = [f for f, _ in ds.samples]
    return files, [y for _, y in ds.samples], list(ds.classes)


def _image_folder(
    path: Path,
    steps_pil: list[Transform],
    convert: str | None,
    stream: bool,
    found=None,
) -> tuple[Split, list[str]]:
    """An image folder's `image` and `label` fields: decoded into memory now, or (`stream`)
    a `Lazy` image field read per batch. `found`: the folder's `_folder_files`, if read."""
    files, labels, classes = found or _folder_files(path)
    split = _files_split({"image": files}, steps_pil, convert, stream, str(path))
    return split.replace(label=torch.tensor(labels, dtype=torch.int64)), classes


def _files_split(
    files: dict[str, list[str]], steps_pil, convert, stream: bool, where: str
) -> Split:
    """Fields read from files (`image`, and `mask` as class ids per pixel): decoded into
    memory now, or `Lazy` fields read per batch."""
    masks = [k for k in files if k == "mask"]
    if stream:
        reader = _ImageFiles(files, steps_pil, convert, masks)
        n = len(next(iter(files.values())))
        return Split({k: Lazy(reader, k, torch.arange(n)) for k in files})
    return Split(
        {
            k: _decode_all(paths, steps_pil, convert, where, mask=k in masks)
            for k, paths in files.items()
        }
    )


def _pil_prefix(static: list[Transform]) -> list[Transform]:
    """The steps before ToTensor: they run on PIL images as each file is decoded."""
    out: list[Transform] = []
    for t in static:
        if t.name == "ToTensor":
            break
        out.append(t)
    return out


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _mask_pairs(images: Path, masks: Path) -> dict[str, list[str]]:
    """Image files and the mask of each: the file in `masks` at the same relative path with
    the same name before the suffix (photo.jpg and photo.png); every image needs one mask
    and every mask an image."""
    for what, folder in (("image", images), ("mask", masks)):
        if not folder.is_dir():
            raise DataError(f"{what} folder {str(folder)!r} does not exist")

    def stems(folder: Path) -> dict[str, str]:
        out = {}
        for f in sorted(folder.rglob("*")):
            if f.is_file() and f.suffix.lower() in _IMAGE_SUFFIXES:
                out[f.relative_to(folder).with_suffix("").as_posix()] = str(f)
        return out

    image, mask = stems(images), stems(masks)
    if not image:
        raise DataError(f"no images in {str(images)!r} ({', '.join(_IMAGE_SUFFIXES)})")
    lonely = [k for k in image if k not in mask]
    extra = [k for k in mask if k not in image]
    if lonely or extra:
        parts = []
        for keys, what, where in ((lonely, "image", masks), (extra, "mask", images)):
            if keys:
                shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
                other = "a mask" if what == "image" else "an image"
                parts.append(
                    f"{len(keys):,} {what}{'s' if len(keys) != 1 else ''} without "
                    f"{other} in {str(where)!r} ({shown})"
                )
        raise DataError(
            f"the mask folder does not match the image folder: {'; '.join(parts)}",
            "each image needs a mask of the same name (any image suffix) at the same "
            "place in the mask folder",
        )
    keys = list(image)
    return {"image": [image[k] for k in keys], "mask": [mask[k] for k in keys]}


def _decode_all(
    files: list[str],
    steps_pil: list[Transform],
    convert,
    where: str,
    mask: bool = False,
) -> torch.Tensor:
    tf = _pil_pipeline(steps_pil, nearest=mask)
    xs = [_decode(f, tf, None if mask else convert, mask) for f in files]
    shapes = sorted({tuple(x.shape) for x in xs})
    if len(shapes) > 1:
        ex = ", ".join("×".join(map(str, s)) for s in shapes[:4])
        raise DataError(
            f"{'masks' if mask else 'images'} in {where!r} have different sizes ({ex}); "
            "add Resize and/or CenterCrop before ToTensor"
        )
    return torch.stack(xs) if xs else torch.empty(0)


def infer_task(y: Any) -> str:
    """ "classification" for 1-D integer (or string) labels, else "regression"."""
    if isinstance(y, torch.Tensor):
        return (
            "classification"
            if y.dim() == 1 and not y.is_floating_point() and not y.is_complex()
            else "regression"
        )
    try:
        import numpy as np

        a = np.asarray(y)
    except Exception:  # noqa: BLE001 -- ragged or exotic input: not labels
        return "regression"
    if a.ndim == 1 and (a.dtype.kind in "iub" or a.dtype.kind in "UO"):
        return "classification"
    return "regression"


def _span(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}..{hi}"


def check_labels(
    labelled: Sequence[tuple[torch.Tensor, str]],
    checks: Sequence[Mapping[str, Any]] | None,
    classes: Sequence[str] | None = None,
    source: str = "the data",
) -> None:
    """`LabelError` unless every label of each (labels, where) pair is one the losses in
    `checks` can train (see "Labels" in the module docstring), and one of the source's own
    `classes` when it names them."""
    for c in checks or ():
        n, ignore, binary = int(c["classes"]), c.get("ignore_index"), c.get("binary")
        n = 2 if binary else n
        for y, where in labelled:
            ok = (y >= 0) & (y < n)
            if ignore is not None:
                ok |= y == int(ignore)
            if bool(ok.all()):
                continue
            real = y[y != int(ignore)] if ignore is not None else y
            lo, hi = int(real.min()), int(real.max())
            first = int((~ok).flatten().nonzero()[0, 0])  # the first label outside
            per = max(1, y[0].numel()) if y.dim() > 1 else 1  # labels per sample
            at = ""
            if y.dim() > 1:  # dense labels: where in the sample
                spot = torch.unravel_index(torch.tensor(first % per), y.shape[1:])
                at = f" at [{', '.join(str(int(i)) for i in spot)}]"
            of = f" (sample {first // per})" if y.shape[0] > 1 or y.dim() == 1 else ""
            out = f"'{c['output']}'"
            msg = (
                f"{where} holds labels {_span(lo, hi)}, but {c['loss']} trains 0/1 labels "
                f"on {out}"
                if binary
                else f"{where} holds labels {_span(lo, hi)}, but {out} has {n} classes "
                f"(0..{n - 1}) for {c['loss']}"
            )
            msg += (
                f": {int((~ok).sum()):,} of {y.numel():,} labels are outside, the first "
                f"is {int(y.flatten()[first])}{at}{of}"
            )
            if lo < 0:
                hint = "class labels count from 0: fix the labels"
                negative = real[real < 0].unique()
                if ignore is not None and negative.numel() == 1:
                    hint += (
                        f", or write {c['loss']}(ignore_index={int(negative[0])}) to "
                        "skip the samples labelled so"
                    )
            elif binary:
                hint = "use CrossEntropyLoss with one score per class, or relabel the data 0/1"
            elif y.dim() > 1:
                hint = (
                    f"fix the labels, or give {out} {hi + 1} class scores per position "
                    f"if the data has {hi + 1} classes"
                )
            else:
                hint = (
                    f"fix the labels, or give {out} {hi + 1} class scores (end the model "
                    f"with Linear({hi + 1})) if the data has {hi + 1} classes"
                )
            raise LabelError(msg, hint)
    for y, where in labelled:
        if not y.numel():
            continue
        lo, hi = int(y.min()), int(y.max())
        if checks is None and lo < 0:
            raise LabelError(
                f"{where} holds labels {_span(lo, hi)}: class labels must be >= 0",
                "class labels count from 0: fix the labels",
            )
        if classes is not None and not checks and hi >= len(classes):
            raise LabelError(
                f"{where} holds labels {_span(lo, hi)}, but {source} has {len(classes)} "
                f"classes (0..{len(classes) - 1})",
                "the labels are damaged: fetch a fresh copy of the data",
            )


def _targets(y: Any, task: str, where: str) -> tuple[torch.Tensor, list[str] | None]:
    classes = None
    if task == "classification":
        if isinstance(y, (list, tuple)) and y and all(isinstance(v, str) for v in y):
            classes = sorted(set(y))
            lut = {c: i for i, c in enumerate(classes)}
            return torch.tensor([lut[v] for v in y], dtype=torch.int64), classes
        t = torch.as_tensor(y) if not isinstance(y, torch.Tensor) else y
        if t.dim() == 2 and t.shape[1] == 1:
            t = t[:, 0]
        if t.dim() != 1:
            raise DataError(
                f"{where}: classification targets must be one label per sample, "
                f"got shape {tuple(t.shape)}"
            )
        if t.is_floating_point() and not torch.equal(t, t.round()):
            raise DataError(
                f"{where}: classification targets must be whole numbers; "
                "use task=regression for real-valued targets"
            )
        if t.is_floating_point() and t.numel() and float(t.abs().max()) >= 2**62:
            raise LabelError(
                f"{where}: {float(t.abs().max()):g} is not a class label",
                "class labels are whole numbers from 0 to the number of classes - 1",
            )
        return t.to(torch.int64), None
    if task != "regression":
        raise DataError(f"task must be classification or regression, got {task!r}")
    try:
        t = (
            torch.as_tensor(y, dtype=torch.float32)
            if not isinstance(y, torch.Tensor)
            else y.to(torch.float32)
        )
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}: regression targets must be numeric ({e})") from None
    return (t.unsqueeze(1) if t.dim() == 1 else t), None


def _inputs(x: Any, dtype: torch.dtype, where: str) -> torch.Tensor:
    try:
        t = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as e:
        raise DataError(
            f"{where}: inputs must be a rectangular numeric array ({e})"
        ) from None
    return t.to(dtype)


def _csv_records(
    path: Path, delimiter: str
) -> Iterator[tuple[int, list[str], int, int]]:
    """The non-blank records of a CSV file: (line it starts on, its cells, byte offset,
    byte length). A record ends at a line break outside quotes (an even number of quote
    characters so far), so a quoted cell may span lines; it is found in bytes, so that a
    streamed file can read record i again from its offset."""
    if not path.is_file():
        raise DataError(f"CSV file {str(path)!r} does not exist")
    try:
        with open(path, "rb") as f:
            # a file that is not text at all says so before its first line is parsed
            head = f.read(1 << 16)
            try:
                codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
            except UnicodeDecodeError as e:
                _csv_row(head[: e.end], delimiter, path, 0, 1)
            pos = 3 if head[:3] == codecs.BOM_UTF8 else 0  # a UTF-8 byte order mark
            f.seek(pos)
            parts: list[bytes] = []
            quotes = line = first = start = 0
            for raw in f:
                line += 1
                if not parts:
                    start, first = pos, line
                parts.append(raw)
                pos += len(raw)
                quotes += raw.count(b'"')
                if quotes % 2:
                    continue  # a quoted cell goes on on the next line
                data, parts, quotes = b"".join(parts), [], 0
                row = _csv_row(data, delimiter, path, start, first)
                if row and any(c.strip() for c in row):
                    yield first, row, start, len(data)
            if parts:
                data = b"".join(parts)
                yield (
                    first,
                    _csv_row(data, delimiter, path, start, first),
                    start,
                    len(data),
                )
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None


def _csv_row(data: bytes, delimiter: str, path, offset: int, line) -> list[str]:
    """The cells of one record (its bytes)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DamagedFileError(
            f"{path}: this is not a text CSV file (byte {offset + e.start:,} is "
            f"0x{data[e.start]:02X}, which is not UTF-8 text)",
            "give the path of a CSV file saved as UTF-8 text",
        ) from None
    try:
        rows = list(csv.reader([text], delimiter=delimiter))
    except csv.Error as e:
        raise DamagedFileError(f"{path}:{line}: cannot read it as CSV ({e})") from None
    if len(rows) > 1:
        raise DamagedFileError(
            f"{path}:{line}: cannot read it as CSV (a quote inside an unquoted cell)",
            'quote the whole cell, doubling the quotes inside it: "a ""b"" c"',
        )
    return rows[0] if rows else []


def _csv_columns(
    path: Path, header_row: list[str], line: int, groups: Mapping[str, Any]
):
    """(header, {group: columns}, {group: column positions}); a group whose columns are
    None takes every column no other group names."""
    header = [h.strip() for h in header_row]
    first: dict[str, int] = {}
    for i, name in enumerate(header):
        if name in first:
            what = f"column {name!r}" if name else "a column without a name"
            raise DataError(
                f"{path}:{line}: {what} appears twice in the header (columns "
                f"{first[name] + 1} and {i + 1})",
                "give every column its own name: which one is meant would be a guess",
            )
        first[name] = i
    named = [c for cols in groups.values() if cols for c in cols]
    for col in named:
        if col not in header:
            raise DataError(
                f"{path}: no column {col!r}; columns are {', '.join(header)}"
            )
    rest = [h for h in header if h not in named]
    cols = {k: list(c) if c else rest for k, c in groups.items()}
    for k, c in cols.items():
        if not c:
            raise DataError(f"{path}: no columns left for {k} besides the others")
    return header, cols, {k: [header.index(c) for c in cs] for k, cs in cols.items()}


def _csv_cells(
    path, n, r: list[str], header, index: Mapping[str, list[int]], text: set
):
    """{group: its cells in row `r` (read at line `n`)}: floats, or stripped strings for
    the groups in `text` (class labels); every problem located as FILE:LINE, with the
    column."""
    if len(r) != len(header):
        raise DataError(f"{path}:{n}: {len(r)} fields, header has {len(header)}")
    out = {}
    for k, ii in index.items():
        if k in text:
            for i in ii:
                cell = r[i].strip()
                if not cell:
                    raise DataError(
                        f"{path}:{n}: the target in column {header[i]!r} is empty",
                        "fill in every label (an empty one would be read as one "
                        "more class), or remove the row",
                    )
                if _is_float(cell) and not math.isfinite(float(cell)):
                    _not_finite(path, n, header[i], cell)
            out[k] = [r[i].strip() for i in ii]
            continue
        try:
            vals = [float(r[i]) for i in ii]
        except ValueError:
            bad = next(i for i in ii if not _is_float(r[i]))
            if not r[bad].strip():
                raise DataError(
                    f"{path}:{n}: column {header[bad]!r} is empty",
                    "fill in every value, or remove the row",
                ) from None
            raise DataError(
                f"{path}:{n}: column {header[bad]!r} is not numeric"
            ) from None
        for i, v in zip(ii, vals):
            if not math.isfinite(v):
                _not_finite(path, n, header[i], r[i])
        out[k] = vals
    return out


class _CsvLabels:
    """What a streamed file's pass keeps of a label column: its names while there are
    few enough to be classes, whether every label is a number, and a whole one, and the
    smallest and largest."""

    LIMIT = 100_000  # distinct names kept

    def __init__(self):
        self.names: set[str] | None = set()
        self.numeric, self.whole, self.width = True, True, 0
        self.lo, self.hi = math.inf, -math.inf

    def add(self, cells: list[str]) -> None:
        self.width = len(cells)
        for v in cells:
            if self.names is not None:
                self.names.add(v)
                if len(self.names) > self.LIMIT:
                    self.names = None
            if not self.numeric:
                continue
            if not _is_float(v):
                self.numeric = False
                continue
            f = float(v)
            self.whole = self.whole and f.is_integer()
            self.lo, self.hi = min(self.lo, f), max(self.hi, f)

    def classes(self, where) -> list[str] | None:
        """The class names when some label is not a number (None when all are)."""
        if self.numeric:
            return None
        if self.names is None:
            raise DataError(
                f"{where}: more than {self.LIMIT:,} different labels, some of them not "
                "numbers: that is not a column of class labels"
            )
        return sorted(self.names)


def _read_csv(
    path: Path, groups: Mapping[str, Any], text: set, delimiter: str, keep: bool = True
):
    """({group: rows}, {group: columns}, spans) of a CSV file: each group's cells per row
    (see `_csv_cells`), every row checked, before anything trains (never a diverged loss).
    With keep=False (a streamed file) no row is kept: the groups in `text` give
    `_CsvLabels` instead, and `spans` is an int64 [rows, 2] tensor of byte offsets and
    lengths, to read each row again."""
    records = _csv_records(path, delimiter)
    head = next(records, None)
    if head is None:
        raise DataError(f"{path}: expected a header row and at least one data row")
    header, cols, index = _csv_columns(path, head[1], head[0], groups)
    out: dict[str, Any] = {k: [] for k in cols}
    if not keep:
        out = {k: _CsvLabels() for k in cols if k in text}
    spans = array.array("q")  # offset, length per row: 16 bytes, not a Python tuple
    for n, r, at, size in records:
        cells = _csv_cells(path, n, r, header, index, text)
        if keep:
            for k, v in cells.items():
                out[k].append(v)
        else:
            spans.extend((at, size))
            for k, labels in out.items():
                labels.add(cells[k])
    if not (spans if not keep else next(iter(out.values()), [])):
        raise DataError(f"{path}: expected a header row and at least one data row")
    flat = (
        torch.frombuffer(spans, dtype=torch.int64).clone() if spans else torch.zeros(0)
    )
    return out, cols, flat.long().view(-1, 2)


def _csv_field(rows: list, kind: str, classes, dtype, where: str) -> torch.Tensor:
    """One field of a CSV file from its rows of cells (both data paths read it so):
    class ids (by name in `classes` when the labels are names), values, or inputs."""
    if classes is not None:
        lut = {c: i for i, c in enumerate(classes)}
        return torch.tensor([lut[r[0]] for r in rows], dtype=torch.int64)
    if kind == "class":
        return _targets([float(r[0]) for r in rows], "classification", where)[0]
    if kind == "values":
        return torch.tensor([[float(v) for v in r] for r in rows], dtype=torch.float32)
    return _inputs(rows, _dtype(dtype or "float32"), where)


class _CsvRows:
    """Rows of a CSV file read one at a time, for `Lazy` fields: record i lies at
    `spans[i]` (offset, length); each field is read, checked and converted as the
    in-memory path does (`_csv_cells`, `_csv_field`). Picklable for DataLoader workers."""

    def __init__(self, path, delimiter, spans, header, fields: Mapping[str, dict]):
        """`fields`: {name: {"index": columns, "kind", "classes", "dtype", "range"}}."""
        self.path, self.delimiter, self.spans = Path(path), delimiter, spans
        self.header, self.fields = header, dict(fields)
        self.text = {k for k, f in self.fields.items() if f["kind"] == "class"}
        self._file, self._rows = None, None  # the open file, the last rows read

    def __getstate__(self):
        return {**self.__dict__, "_file": None, "_rows": None}

    def describe(self, i: int, key: str) -> str:
        return f"{self.path} (row {i + 1})"

    def read(self, i: int, key: str, steps) -> torch.Tensor:
        return self.read_many([i], key, steps)[0]

    def read_many(self, ids: Sequence[int], key: str, steps) -> torch.Tensor:
        """Rows `ids` of field `key`, as one tensor (the fields of a batch share the rows
        read for the first of them)."""
        if self._rows is None or self._rows[0] != tuple(ids):
            if self._file is None:
                self._file = open(self.path, "rb")  # noqa: SIM115 -- kept for the next rows
            rows = []
            for i, (at, size) in zip(ids, self.spans[list(ids)].tolist()):
                self._file.seek(at)
                data = self._file.read(size)
                rows.append(
                    _csv_row(data, self.delimiter, self.path, at, f"row {i + 1}")
                )
            self._rows = (tuple(ids), rows)
        f = self.fields[key]
        cells = [
            _csv_cells(
                self.path, f"row {i + 1}", r, self.header, {key: f["index"]}, self.text
            )[key]
            for i, r in zip(ids, self._rows[1])
        ]
        x = _csv_field(cells, f["kind"], f["classes"], f["dtype"], str(self.path))
        return _run_steps(x, steps) if steps else x

    def values(self, key: str) -> torch.Tensor | None:
        """The smallest and largest label of a class field (checked before training)."""
        r = self.fields[key].get("range")
        return None if r is None else torch.tensor(r, dtype=torch.int64)


def _not_finite(path, line: int, column: str, cell: str):
    raise DataError(
        f"{path}:{line}: column {column!r} holds {cell.strip()}, not a finite number",
        "fill in a finite value, or remove the row (netdsl fills in no missing values)",
    )


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _csv_targets(ys: list[list[str]], task: str | None, path) -> tuple[Any, str]:
    numeric = all(_is_float(v) for row in ys for v in row)
    if task is None:
        if len(ys[0]) == 1 and (
            not numeric or all(float(r[0]).is_integer() for r in ys)
        ):
            task = "classification"
        else:
            task = "regression"
    if task == "classification":
        if len(ys[0]) != 1:
            raise DataError(f"{path}: classification needs exactly one target column")
        vals = [r[0] for r in ys]
        return (vals if not numeric else [float(v) for v in vals]), task
    if not numeric:
        raise DataError(f"{path}: regression targets must be numeric")
    return [[float(v) for v in r] for r in ys], task


def _is_fraction(amount: Any, tag: str) -> bool:
    """Whether `val=`/`test=` is a fraction in (0, 1) (True) or a count (False)."""
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise DataError(
            f"{tag} must be a fraction in (0, 1) or a sample count, got {amount!r}"
        )
    if isinstance(amount, float) and not 0 < amount < 1:
        raise DataError(f"{tag} fraction must be in (0, 1), got {amount}")
    return isinstance(amount, float)


def _carve(
    split: Split, amount: float, seed: int, tag: str, contiguous: bool = False
) -> tuple[Split, Split]:
    n = split.n
    if _is_fraction(amount, tag):
        k = max(1, round(amount * n))
    else:
        k = int(amount)
    if not 0 < k < n:
        raise DataError(
            f"{tag} of {amount} leaves no training data (train has {n} samples)"
        )
    if contiguous:  # the last k samples: text held out after what trains
        return split.take(slice(0, n - k)), split.take(slice(n - k, n))
    perm = torch.randperm(n, generator=_generator(seed, tag))
    held, kept = perm[:k].sort().values, perm[k:].sort().values
    return split.take(kept), split.take(held)


SOURCES = (
    "MNIST",
    "FashionMNIST",
    "CIFAR10",
    "ImageFolder",
    "MaskFolder",
    "CSV",
    "tensors",
    "synthetic",
    "Text",
)
_SOURCE_ALIASES = {s.lower(): s for s in SOURCES} | {
    "inline": "tensors",
    "tensor": "tensors",
    "fashion_mnist": "FashionMNIST",
    "cifar-10": "CIFAR10",
    "cifar": "CIFAR10",
}


def load_data(
    source: str,
    *,
    root: str | os.PathLike | None = None,
    transforms: Sequence[Any] | None = (),
    val: int | float | None = None,  # noqa: PYI041 -- int: a count, float: a fraction
    test: int | float | None = None,  # noqa: PYI041
    seed: int = 0,
    download: bool = False,
    limit: int | None = None,
    task: str | None = None,
    label_check: Sequence[Mapping[str, Any]] | None = None,
    fields: Mapping[str, Mapping[str, Any]] | None = None,
    **kw: Any,
) -> Data:
    """Load `source` into memory; see the module docstring for every source's arguments,
    for `fields` and for `label_check`."""
    name = _SOURCE_ALIASES.get(str(source).lower())
    if name is None:
        raise DataError(
            f"unknown data source {source!r}; expected one of {', '.join(SOURCES)}"
        )
    image = name in ("MNIST", "FashionMNIST", "CIFAR10", "ImageFolder", "MaskFolder")
    static, augment = plan_transforms(transforms, image=image, sample_shape=None)
    uses = {k: dict(v) for k, v in (fields or {}).items()}
    classes: dict[str, list[str]] = {}
    testsplit: Split | None = None
    valsplit: Split | None = None
    counts: dict[str, int] = {}  # class counts a source fixes (synthetic)
    primary: str | None = "image" if image else None
    target: str | None = "label" if image else None
    kinds: dict[str, str] = {"image": "image", "label": "class"} if image else {}
    if name == "MaskFolder":
        target, kinds = "mask", {"image": "image", "mask": "class"}
    origin: dict[str, tuple[str, str]] = {}  # where each field's labels come from
    loading = ""  # in memory or streamed, and why (image folders)

    def unused(*allowed: str) -> None:
        extra = sorted(set(kw) - set(allowed))
        if extra:
            raise DataError(
                f"{name} does not take {', '.join(extra)}"
                + (f"; it takes {', '.join(allowed)}" if allowed else "")
            )

    pairs = bool(kw.pop("pairs", False)) if image and name != "MaskFolder" else False
    if name in _TV_FILES:
        unused("workers")
        if task not in (None, "classification"):
            raise DataError(f"{name} is a classification dataset")
        root = Path(root if root is not None else "data")
        train, testsplit, labels, where = _load_torchvision(name, root, download)
        classes["label"], origin["label"] = labels, where
    elif name == "ImageFolder":
        unused("path", "test_path", "convert", "stream", "workers")
        if "path" not in kw and root is None:
            raise DataError(
                "ImageFolder needs path=<folder with one subfolder per class>"
            )
        path = Path(kw.get("path") or root)
        test_path = kw.get("test_path")
        if test_path is None and path.is_dir():
            subs = sorted(p.name for p in path.iterdir() if p.is_dir())
            if len(subs) == 2 and "train" in subs and ({"test", "val"} & set(subs)):
                test_path = path / next(s for s in subs if s != "train")
                path = path / "train"
        pil_steps = _pil_prefix(static)
        static = static[len(pil_steps) :]
        convert = kw.get("convert", "RGB")
        found = _folder_files(path) if path.is_dir() else None
        files = found[0] if found else []
        streamed, loading = _choose_stream(
            kw.get("stream"),
            len(files),
            lambda: _sample_bytes(files[0], pil_steps, convert, static),
            "images",
        )
        train, classes["label"] = _image_folder(
            path, pil_steps, convert, streamed, found
        )
        origin["label"] = (
            f"the image folder {str(path)!r}",
            f"the image folder {str(test_path)!r}",
        )
        if test_path is not None:
            testsplit, test_classes = _image_folder(
                Path(test_path), pil_steps, convert, streamed
            )
            if test_classes != classes["label"]:
                raise DataError(
                    f"the test folder's classes {test_classes} differ from the "
                    f"training folder's {classes['label']}"
                )
    elif name == "MaskFolder":
        unused(
            "images",
            "masks",
            "test_images",
            "test_masks",
            "convert",
            "stream",
            "workers",
        )
        for k in ("images", "masks"):
            if k not in kw:
                raise DataError(f"MaskFolder needs {k}=<folder>")
        if ("test_images" in kw) != ("test_masks" in kw):
            raise DataError("MaskFolder: give test_images= and test_masks= together")
        pil_steps = _pil_prefix(static)
        static = static[len(pil_steps) :]
        late = [t.name for t in static if t.name in ("Resize", "CenterCrop")]
        if late:
            raise DataError(
                f"MaskFolder: {late[0]} after ToTensor would resize the images but not "
                "their masks",
                f"put {late[0]} before ToTensor: both get it (masks by nearest neighbour)",
            )
        convert = kw.get("convert", "RGB")
        found = _mask_pairs(Path(kw["images"]), Path(kw["masks"]))
        streamed, loading = _choose_stream(
            kw.get("stream"),
            len(found["image"]),
            lambda: (
                _sample_bytes(found["image"][0], pil_steps, convert, static)
                + 8
                * _decode(
                    found["mask"][0], _pil_pipeline(pil_steps, True), None, True
                ).numel()
            ),
            "images with masks",
        )
        train = _files_split(found, pil_steps, convert, streamed, kw["images"])
        origin["mask"] = (
            f"the mask folder {kw['masks']!r}",
            f"the mask folder {kw.get('test_masks')!r}",
        )
        if "test_images" in kw:
            found = _mask_pairs(Path(kw["test_images"]), Path(kw["test_masks"]))
            testsplit = _files_split(
                found, pil_steps, convert, streamed, kw["test_images"]
            )
    elif name == "CSV":
        if "path" not in kw:
            raise DataError("CSV needs path=<file.csv>")
        train, testsplit, kinds, classes, primary, target, loading = _csv_source(
            kw, task, uses
        )
        origin = {k: (str(kw["path"]), str(kw.get("test_path"))) for k in kinds}
    elif name == "tensors":
        train, testsplit, kinds, classes, primary, target = _tensor_source(
            kw, task, uses
        )
        origin = {k: (k, f"{k}_test") for k in kinds}
    elif name == "Text":
        lines = bool(kw.get("lines"))
        unused(
            "path",
            "block_size",
            "tokens",
            "lines",
            *(() if lines else ("stride", "stream", "workers")),
        )
        if "path" not in kw:
            raise DataError("Text needs path=<a text file>")
        path, tokens = Path(kw["path"]), kw.get("tokens", "char")
        block = int(kw.get("block_size", 64))
        parts: dict[str, Split] = {}
        if lines:
            train, vocab = _text_lines(path, tokens, block)
            for tag, amount in (
                ("test", test),
                ("val", val),
            ):  # the last lines, test last
                if amount is not None:
                    train, parts[tag] = _carve(
                        train, amount, seed, tag, contiguous=True
                    )
        else:
            stride = int(kw.get("stride") or block)
            size = _token_count(path, tokens, block)
            if kw.get("stream") and tokens == "char":
                raise DataError(
                    'Text(tokens="char") reads the whole file for its characters: stream '
                    'a file of bytes (tokens="byte") or of token ids (uint16, int32)'
                )
            streamed, loading = _choose_stream(
                kw.get("stream"),
                max(0, (size - 1 - block) // stride + 1),
                lambda: 16 * block,  # a window of int64 ids and its targets
                "windows",
                whole='tokens="char" reads it whole' if tokens == "char" else None,
            )
            ids, vocab = (
                (_TokenSpan(str(path), tokens, 0, size), None)
                if streamed
                else _text_ids(path, tokens, block)
            )
            # val and test are held out from the end of the file (test last), as spans of
            # tokens, so no window of theirs overlaps one that trains; they are scored in
            # disjoint windows, every token once
            for tag, amount in (("test", test), ("val", val)):
                if amount is None:
                    continue
                k = _text_held(amount, tag, ids.numel(), block)
                ids, held = ids[: ids.numel() - k + 1], ids[ids.numel() - k :]
                parts[tag] = _windows(held, block, block, f"{kw['path']} ({tag})")
            train = _windows(ids, block, stride, str(kw["path"]))
        testsplit, valsplit, val, test = parts.get("test"), parts.get("val"), None, None
        kinds = {
            "tokens": "input",
            "next": "class",
            **({"pad": "input"} if lines else {}),
        }
        primary, target = None, "next"
        if vocab is not None:
            classes["tokens"] = classes["next"] = vocab
        origin = {k: (str(kw["path"]), str(kw["path"])) for k in kinds}
    else:  # synthetic
        unused(
            "shape", "num_classes", "target_shape", "n", "n_test", "vocab", "x_dtype"
        )
        train, testsplit, kinds, primary, target, counts = _synthetic(
            seed=seed, task=task, uses=uses, **kw
        )
        origin = {k: ("synthetic", "synthetic") for k in kinds}

    for s, what in ((train, "train"), (testsplit, "test")):
        if s is not None and s.n == 0:
            raise DataError(f"{what}: no samples")
    if testsplit is not None:
        for k in train:
            if testsplit[k].shape[1:] != train[k].shape[1:]:
                raise DataError(
                    f"test {k} has shape {tuple(testsplit[k].shape[1:])}, train {k} "
                    f"{tuple(train[k].shape[1:])}"
                )
    if limit is not None:
        train = train.take(slice(0, limit))
        testsplit = None if testsplit is None else testsplit.take(slice(0, limit))
    for k, kind in kinds.items():
        if kind != "class":
            continue
        checks = (
            None
            if label_check is None
            else [c for c in label_check if c.get("field", target) == k]
        )
        if _checkable(train[k]) is None:  # checked sample by sample as it is read
            for s in (train, testsplit, valsplit):
                if s is not None:
                    s[k].reader.checks[k] = checks
            continue
        labelled = [(_checkable(train[k]), origin[k][0])]
        for s, where in ((testsplit, origin[k][1]), (valsplit, origin[k][0])):
            if s is not None:  # (a Text source holds val out before these checks)
                labelled.append((_checkable(s[k]), where))
        check_labels(labelled, checks, classes.get(k), name)

    for k, u in uses.items():  # ids beyond an Embedding would fail deep inside torch
        vocab = u.get("vocab")
        if vocab is None or u.get("kind") != "input" or k not in train:
            continue
        for s, where in (
            (train, origin.get(k, (k, k))[0]),
            (testsplit, origin.get(k, (k, k))[1]),
            (valsplit, origin.get(k, (k, k))[0]),
        ):
            if s is None:
                continue
            values = _checkable(s[k])
            if values is None or values.is_floating_point() or not values.numel():
                continue
            lo, hi = int(values.min()), int(values.max())
            if lo < 0 or hi >= int(vocab):
                raise LabelError(
                    f"{where}: {k} holds token ids {_span(lo, hi)}, but the Embedding it "
                    f"feeds takes ids 0..{int(vocab) - 1}",
                    f"give the Embedding {hi + 1} entries (Embedding({hi + 1}, ...))"
                    if lo >= 0
                    else "token ids count from 0: fix the data",
                )

    if static:
        if primary is None:
            raise DataError(
                f"{name} has {len(train.fields)} input fields; transforms apply to one "
                "(an image source's image, or a single input)"
            )
        train = train.replace(**{primary: _static(train[primary], static)})
        if testsplit is not None:
            testsplit = testsplit.replace(
                **{primary: _static(testsplit[primary], static)}
            )

    if test is not None:
        if testsplit is not None:
            raise DataError(
                f"{name} already has a test split; test= only carves one for "
                "sources without"
            )
        train, testsplit = _carve(train, test, seed, "test")
    if val is not None:
        train, valsplit = _carve(train, val, seed, "val")

    augmented = [primary] if primary else []  # the fields the random steps apply to
    if pairs:
        train, valsplit, testsplit = (
            None if s is None else _pairs(s, seed, tag)
            for s, tag in ((train, "train"), (valsplit, "val"), (testsplit, "test"))
        )
        kinds = {"left": "image", "right": "image", "same": "class"}
        primary, target = None, "same"
        classes = {"same": ["different", "same"]}
        augmented = ["left", "right"]  # each image of a pair augmented on its own

    # masks take their image's flips and crops; a crop's padding: the loss's ignore_index
    masks = {k: _mask_fill(label_check) for k in kinds if k == "mask"}
    eval_steps: list[Transform] = []
    probe: dict[str, torch.Tensor] = {}  # one augmented sample, for its shape and dtype
    if augment and not augmented:
        raise DataError(f"{name}: augmentations need a single input field")
    if isinstance(augment, PerSample):
        # the first training sample, augmented: the shape and dtype the model gets (and
        # any step that cannot run on this data fails here, before anything trains)
        first = {k: _first(train[k]) for k in (augmented[0], *masks)}
        x, moved = augment(
            first[augmented[0]], {m: (first[m], f) for m, f in masks.items()}
        )
        probe = {k: x for k in augmented} | moved
        eval_steps = augment.eval_steps()
        for s_name, s in (("val", valsplit), ("test", testsplit)):
            if s is None:
                continue
            s = s.replace(
                **{
                    k: _static(s[k], eval_steps, k in masks)
                    for k in (*augmented, *masks)
                }
            )
            if s_name == "val":
                valsplit = s
            else:
                testsplit = s
            got = tuple(s[augmented[0]].shape[1:])
            if got != tuple(x.shape):
                raise DataError(
                    f"{name}: the augmented training images are "
                    f"{'×'.join(map(str, x.shape))} but the {s_name} images come out "
                    f"{'×'.join(map(str, got))} after {', '.join(t.name for t in eval_steps)}",
                    "end the random steps with a RandomResizedCrop or RandomCrop to the "
                    "size the model takes",
                )
    elif augment:
        sample_shape = tuple(train[augmented[0]].shape[1:])
        if isinstance(augment, _PendingAugment):
            augment = augment.build(sample_shape)
        out_shape = augment.out_shape(sample_shape)
        if out_shape != sample_shape:
            # A RandomCrop that changes the size trains on smaller images; evaluation
            # splits get the usual counterpart, a CenterCrop to the same size.
            eval_steps = [Transform("CenterCrop", {"size": tuple(out_shape[-2:])})]
            if valsplit is not None:
                valsplit = valsplit.replace(
                    **{
                        k: _static(valsplit[k], eval_steps, k in masks)
                        for k in (*augmented, *masks)
                    }
                )
            if testsplit is not None:
                testsplit = testsplit.replace(
                    **{
                        k: _static(testsplit[k], eval_steps, k in masks)
                        for k in (*augmented, *masks)
                    }
                )
    splits = [s for s in (train, valsplit, testsplit) if s is not None]
    infos = {}
    for k, t in train.fields.items():
        shape, dtype = tuple(t.shape[1:]), t.dtype
        if k in probe:
            shape, dtype = tuple(probe[k].shape), probe[k].dtype
        elif k in augmented and augment:
            shape = augment.out_shape(shape)
        info = FieldInfo(shape, _dtype_name(dtype), kinds.get(k, "input"))
        info.classes = classes.get(k)  # class names, or a text's characters
        if info.kind == "class":
            values = [_checkable(s[k]) for s in splits]  # None: a streamed image's
            ignored = {
                int(c["ignore_index"])
                for c in label_check or ()
                if c.get("field", target) == k and c.get("ignore_index") is not None
            }
            info.num_classes = (
                counts[k]
                if k in counts
                else len(info.classes)
                if info.classes
                else None
                if any(v is None for v in values)
                else _largest(values, ignored) + 1
            )
        infos[k] = info
    sizes = {"train": train.n}
    if valsplit is not None:
        sizes["val"] = valsplit.n
    if testsplit is not None:
        sizes["test"] = testsplit.n
    info = DataInfo(
        source=name,
        fields=infos,
        sizes=sizes,
        primary=primary,
        target=target,
        transforms=static,
        augmentations=(
            augment.describe()
            if isinstance(augment, PerSample)
            else [repr(op) for op in augment.ops]
        ),
        per_sample=isinstance(augment, PerSample),
        eval_transforms=eval_steps,
        loading=loading,
        workers=kw.get("workers"),
        masks=masks,
        augmented=augmented if augment else [],
    )
    return Data(train=train, val=valsplit, test=testsplit, info=info, augment=augment)


def _first(x: torch.Tensor | Lazy) -> torch.Tensor:
    return x.read(0) if isinstance(x, Lazy) else x[0]


def _pairs(split: Split, seed: int, tag: str) -> Split:
    """Pairs of images for a siamese net: `left` is every image in turn, `right` another
    image of the same class (for half of them, drawn at random) or of another class, and
    `same` is 1 when their labels match. Seeded, so every run makes the same pairs."""
    g = _generator(seed, "pairs", tag)
    labels = split["label"]
    n = labels.shape[0]
    order = torch.argsort(labels, stable=True)  # the samples grouped by class
    counts = torch.bincount(labels, minlength=int(labels.max()) + 1 if n else 0)
    starts = torch.cumsum(counts, 0) - counts
    mine, start = counts[labels], starts[labels]
    others = n - mine
    want_same = ((torch.rand(n, generator=g) < 0.5) & (mine > 1)) | (others == 0)
    r = torch.rand(n, generator=g)
    # another sample of the class: one of the other mine - 1, skipping the sample itself
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n)
    k = torch.minimum((r * (mine - 1)).long(), (mine - 2).clamp(min=0))
    k = k + (k >= rank - start).long() * (mine > 1).long()
    same = order[(start + k).clamp(max=n - 1)]
    k = torch.minimum((r * others).long(), (others - 1).clamp(min=0))
    other = order[torch.where(k < start, k, k + mine).clamp(max=n - 1)]
    j = torch.where(want_same, same, other)
    image = split["image"]
    return Split(
        {"left": image, "right": image[j], "same": (labels == labels[j]).long()}
    )


def _text_ids(path: Path, tokens: str, block: int) -> tuple[torch.Tensor, list | None]:
    """A file's token ids and, for characters, its vocabulary. `tokens` says what a token
    is: "char" (the file's distinct characters, sorted, are the vocabulary), "byte"
    (0..255), or "uint16"/"int32" (a binary file of token ids, as nanoGPT's prepare.py
    writes them)."""
    _token_count(path, tokens, block)  # the file is there and whole
    raw = path.read_bytes()
    vocab = None
    if tokens == "char":
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DamagedFileError(
                f"{path}: byte {e.start:,} is 0x{raw[e.start]:02X}, which is not UTF-8 "
                "text",
                'read it as bytes: tokens="byte"',
            ) from None
        vocab = sorted(set(text))
        lut = {c: i for i, c in enumerate(vocab)}
        ids = torch.tensor([lut[c] for c in text], dtype=torch.int64)
    else:
        import numpy as np

        ids = torch.from_numpy(
            np.frombuffer(raw, dtype=_TOKEN_NUMPY[tokens]).astype(np.int64)
        )
    return ids, vocab


_TOKEN_WIDTH = {"byte": 1, "uint16": 2, "int32": 4}
_TOKEN_NUMPY = {"byte": "u1", "uint16": "<u2", "int32": "<i4"}


def _token_count(path: Path, tokens: str, block: int) -> int:
    """The tokens in a file, without reading it (characters: its size in bytes, at most),
    after checking that it is there and holds whole token ids."""
    if tokens not in ("char", *_TOKEN_WIDTH):
        raise DataError(
            f"Text: tokens must be char, byte, uint16 or int32, got {tokens!r}"
        )
    if block < 1:
        raise DataError(f"Text: block_size must be at least 1, got {block}")
    if not path.is_file():
        raise DataError(f"text file {str(path)!r} does not exist")
    size, width = path.stat().st_size, _TOKEN_WIDTH.get(tokens, 1)
    if size % width:
        raise DamagedFileError(
            f"{path}: {size:,} bytes is not a whole number of {tokens} token ids"
        )
    return size // width


class _TokenSpan:
    """Tokens `start:stop` of a file of bytes or token ids, read when asked (streaming)."""

    def __init__(self, path: str, tokens: str, start: int, stop: int):
        self.path, self.tokens, self.start, self.stop = path, tokens, start, stop

    def numel(self) -> int:
        return self.stop - self.start

    def __getitem__(self, part: slice) -> _TokenSpan:
        lo, hi, _ = part.indices(self.numel())
        return _TokenSpan(self.path, self.tokens, self.start + lo, self.start + hi)

    def read(self, lo: int, hi: int) -> torch.Tensor:
        """Tokens lo:hi of the span as int64."""
        import numpy as np

        width = _TOKEN_WIDTH[self.tokens]
        with open(self.path, "rb") as f:
            f.seek((self.start + lo) * width)
            raw = f.read((hi - lo) * width)
        a = np.frombuffer(raw, dtype=_TOKEN_NUMPY[self.tokens]).astype(np.int64)
        return torch.from_numpy(a)

    def span(self, chunk: int = 1 << 22) -> tuple[int, int]:
        """The smallest and largest id, read in chunks (memory stays flat)."""
        lo, hi = None, None
        for s in range(0, self.numel(), chunk):
            a = self.read(s, min(s + chunk, self.numel()))
            lo = int(a.min()) if lo is None else min(lo, int(a.min()))
            hi = int(a.max()) if hi is None else max(hi, int(a.max()))
        return (lo or 0), (hi or 0)


class _TokenWindows:
    """The windows of a `_TokenSpan` as `Lazy` fields `tokens` and `next` (read per
    sample: a window of `block` ids from `i * stride`, and the same shifted by one)."""

    def __init__(self, span: _TokenSpan, block: int, stride: int):
        self.span, self.block, self.stride = span, block, stride
        self.checks: dict[str, Any] = {}
        self._range: tuple[int, int] | None = None

    def read(self, i: int, key: str, steps) -> torch.Tensor:
        lo = i * self.stride + (key == "next")
        return self.span.read(lo, lo + self.block)

    def describe(self, i: int, key: str) -> str:
        return f"window {i} of {self.span.path}"

    def values(self, key: str) -> torch.Tensor:
        """The smallest and largest id any window holds, for the label and vocab checks."""
        if self._range is None:
            self._range = self.span.span()
        return torch.tensor(self._range)


def _text_lines(path: Path, tokens: str, block: int) -> tuple[Split, list | None]:
    """One sample per line (a sentence, a name, a record): `tokens` are its ids but the
    last, `next` its ids but the first, at most `block` of each, and `pad` marks padding;
    all three vary in length and are padded per batch (ids with 0, `next` with -100, the
    ignore_index of CrossEntropyLoss, `pad` with true). Lines of one token are skipped."""
    if tokens not in ("char", "byte"):
        raise DataError(
            f'Text(lines=true) reads lines of text: tokens="char" or "byte", not {tokens!r}'
        )
    ids, vocab = _text_ids(path, tokens, block)
    newline = (
        (vocab.index("\n") if "\n" in vocab else None) if vocab is not None else 10
    )
    cut = (
        (ids == newline).nonzero().flatten()
        if newline is not None
        else torch.empty(0, dtype=torch.int64)
    )
    starts = torch.cat([torch.zeros(1, dtype=torch.int64), cut + 1])
    ends = torch.cat([cut, torch.tensor([ids.numel()])])
    keep = ends - starts >= 2
    starts, ends = starts[keep], torch.minimum(ends[keep], starts[keep] + block + 1)
    if not len(starts):
        raise DataError(f"{path}: no line of two tokens or more")
    lengths = ends - starts - 1  # each line gives len - 1 (input, next) pairs
    offsets = torch.zeros(len(lengths) + 1, dtype=torch.int64)
    torch.cumsum(lengths, 0, out=offsets[1:])
    pos = torch.repeat_interleave(starts - offsets[:-1], lengths) + torch.arange(
        int(offsets[-1])
    )
    fields = {
        "tokens": Ragged(ids[pos], offsets, 0),
        "next": Ragged(ids[pos + 1], offsets, -100),
        "pad": Ragged(torch.zeros(pos.numel(), dtype=torch.bool), offsets, True),
    }
    return Split(fields), vocab


def _text_held(amount: Any, tag: str, n: int, block: int) -> int:
    """How many tokens (with the one after the last window) `val=`/`test=` holds out: a
    fraction of the file's tokens, or a number of windows."""
    if _is_fraction(amount, tag):
        k = round(amount * n)
    else:
        k = int(amount) * block + 1
    if k < block + 1 or n - k < block:
        raise DataError(
            f"{tag}={amount} of a text of {n:,} tokens leaves no window of {block} "
            f"tokens to {'hold out' if k < block + 1 else 'train on'}"
        )
    return k


def _windows(
    ids: torch.Tensor | _TokenSpan, block: int, stride: int, where: str
) -> Split:
    """Next-token samples: windows of `block` ids starting every `stride` ids (`tokens`)
    and the same windows shifted by one (`next`); `Lazy` windows of a token file's span."""
    n = (ids.numel() - 1 - block) // stride + 1 if ids.numel() > block else 0
    if n < 1:
        raise DataError(
            f"{where}: {ids.numel():,} tokens make no sample of block_size {block} (it "
            f"takes {block + 1})"
        )
    if isinstance(ids, _TokenSpan):
        reader = _TokenWindows(ids, block, stride)
        index = torch.arange(n)
        return Split({k: Lazy(reader, k, index) for k in ("tokens", "next")})
    x = ids[:-1].unfold(0, block, stride)[:n]
    y = ids[1:].unfold(0, block, stride)[:n]
    return Split({"tokens": x.contiguous(), "next": y.contiguous()})


def _kind(uses: Mapping[str, Mapping[str, Any]], name: str, default: str) -> str:
    return str(uses.get(name, {}).get("kind") or default)


def _field_values(v: Any, kind: str, dtype: str | None, where: str):
    """(tensor, classes or None) of one field read as `kind`."""
    if kind == "class":
        return _targets(v, "classification", where)
    if kind == "values":
        return _targets(v, "regression", where)
    return _inputs(v, _dtype(dtype or "float32"), where), None


def _tensor_source(kw: dict, task: str | None, uses: dict):
    """Inline arrays: every keyword but x_dtype is a field; NAME_test is its test split.
    Without the plan's `uses`, `y` is the target (task inferred) and the rest inputs."""
    given = {k: v for k, v in kw.items() if k != "x_dtype"}
    trains = {k: v for k, v in given.items() if not k.endswith("_test")}
    tests = {k[: -len("_test")]: v for k, v in given.items() if k.endswith("_test")}
    if not trains:
        raise DataError("tensors needs at least one field, such as X=[...] and y=[...]")
    for k in tests:
        if k not in trains:
            raise DataError(f"{k}_test is given without {k}")
    if tests and set(tests) != set(trains):
        missing = ", ".join(f"{k}_test" for k in trains if k not in tests)
        raise DataError(f"a test split needs every field: {missing} is missing")
    kinds: dict[str, str] = {}
    for k, v in trains.items():
        default = "input"
        if k == "y" and not uses:
            default = (
                "class" if (task or infer_task(v)) == "classification" else "values"
            )
        kinds[k] = _kind(uses, k, default)
    xdt = kw.get("x_dtype")
    classes: dict[str, list[str]] = {}
    splits = []
    for part, suffix in ((trains, ""), (tests, "_test")):
        if not part:
            splits.append(None)
            continue
        out = {}
        for k, v in part.items():
            dtype = uses.get(k, {}).get("dtype") or xdt
            out[k], c = _field_values(v, kinds[k], dtype, k + suffix)
            if c is not None:
                if k in classes and classes[k] != c:
                    raise DataError(f"{k}_test's labels differ from {k}'s")
                classes[k] = c
        splits.append(Split(out))
    inputs = [k for k, kind in kinds.items() if kind == "input"]
    targets = [k for k, kind in kinds.items() if kind != "input"]
    primary = inputs[0] if len(inputs) == 1 else None
    target = targets[0] if len(targets) == 1 else None
    return splits[0], splits[1], kinds, classes, primary, target


_CSV_OWN = (
    "path",
    "test_path",
    "features",
    "targets",
    "target",
    "delimiter",
    "x_dtype",
    "stream",
    "workers",
)


def _csv_source(kw: dict, task: str | None, uses: dict):
    """A CSV file: `features=`/`targets=` (fields `features` and `target`), or column
    groups, one keyword each: NAME="column" or NAME=["column", ...]. Streamed (`Lazy`
    fields read row by row) when the files are large (`_choose_stream`, by their size)
    or stream=true; either way every row is checked first, and both paths read a row's
    fields with the same functions."""
    groups = {k: v for k, v in kw.items() if k not in _CSV_OWN}
    delimiter = kw.get("delimiter", ",")
    xdt = kw.get("x_dtype")
    tcols = kw.get("targets", kw.get("target"))
    paths = [Path(kw["path"])] + (
        [Path(kw["test_path"])] if kw.get("test_path") else []
    )
    if groups:
        if tcols is not None or kw.get("features") is not None:
            raise DataError(
                "CSV takes features=/targets= or column groups (NAME=columns), not both"
            )
        cols = {k: [v] if isinstance(v, str) else list(v) for k, v in groups.items()}
        kinds = {k: _kind(uses, k, "input") for k in cols}
        for k, c in cols.items():
            if kinds[k] == "class" and len(c) != 1:
                raise DataError(f"{k}: class labels come from one column, not {len(c)}")
        dtypes = {k: uses.get(k, {}).get("dtype") or xdt for k in cols}
    else:
        if not tcols:
            raise DataError(
                f"{paths[0]}: say which column(s) hold the targets (targets=...)"
            )
        cols = {
            "features": kw.get("features"),
            "target": [tcols] if isinstance(tcols, str) else list(tcols),
        }
        kinds = {"features": "input", "target": ""}  # the target's kind: from the data
        dtypes = {"features": uses.get("features", {}).get("dtype") or xdt}
    text = {k for k, kind in kinds.items() if kind in ("class", "")}
    for k in text:
        if kinds[k] == "":  # features/targets: the loss on it says, or its values do
            want = _kind(uses, k, "")
            kinds[k] = (
                want
                if want
                else {"classification": "class", "regression": "values"}.get(
                    task or "", ""
                )
            )

    size = sum(p.stat().st_size for p in paths if p.is_file())
    streamed, loading = _choose_stream(
        kw.get("stream"),
        size,
        lambda: 1,
        "bytes",
        about=f"{_size(size)} of CSV text",
    )
    parts = []
    for p in paths:  # the test file reads the training file's columns
        part, got, spans = _read_csv(p, cols, text, delimiter, keep=not streamed)
        cols = {k: cols[k] or got[k] for k in cols}
        parts.append((part, spans))
    classes: dict[str, list[str]] = {}
    ranges: dict[str, list[tuple[int, int]]] = {}  # a streamed class field's, per file
    for k in text:
        if streamed:
            labels = [part[k] for part, _ in parts]
            numeric = all(lb.numeric for lb in labels)
            whole = all(lb.whole for lb in labels)
            width = labels[0].width
        else:
            vals = [v for part, _ in parts for r in part[k] for v in r]
            numeric = all(_is_float(v) for v in vals)
            whole = numeric and all(float(v).is_integer() for v in vals)
            width = len(parts[0][0][k][0])
        if kinds[k] == "":  # classification for one column of names or whole numbers
            kinds[k] = "class" if width == 1 and (not numeric or whole) else "values"
        if kinds[k] == "values" and not numeric:
            raise DataError(f"{paths[0]}: regression targets must be numeric")
        if kinds[k] == "class" and width != 1:
            raise DataError(
                f"{paths[0]}: classification needs exactly one target column"
            )
        if kinds[k] == "class" and not numeric:  # names: classes across both files
            if streamed:
                classes[k] = sorted({c for lb in labels for c in lb.classes(paths[0])})
                ranges[k] = [(0, len(classes[k]) - 1)] * len(paths)
            else:
                classes[k] = sorted(set(vals))
        elif kinds[k] == "class" and streamed:
            if not whole:
                raise DataError(
                    f"{paths[0]}: classification targets must be whole numbers; "
                    "use task=regression for real-valued targets"
                )
            ranges[k] = [(int(lb.lo), int(lb.hi)) for lb in labels]
    splits = []
    for f, ((part, spans), p) in enumerate(zip(parts, paths)):
        if streamed:
            header, _, index = _csv_columns(
                p, next(_csv_records(p, delimiter))[1], 1, cols
            )
            spec = {
                k: {
                    "index": index[k],
                    "kind": kinds[k],
                    "classes": classes.get(k),
                    "dtype": dtypes.get(k),
                    "range": ranges[k][f] if k in ranges else None,
                }
                for k in cols
            }
            reader = _CsvRows(p, delimiter, spans, header, spec)
            rows = torch.arange(spans.shape[0])
            splits.append(Split({k: Lazy(reader, k, rows) for k in cols}))
        else:
            splits.append(
                Split(
                    {
                        k: _csv_field(
                            rows, kinds[k], classes.get(k), dtypes.get(k), str(p)
                        )
                        for k, rows in part.items()
                    }
                )
            )
    inputs = [k for k, kind in kinds.items() if kind == "input"]
    targets = [k for k, kind in kinds.items() if kind != "input"]
    return (
        splits[0],
        (splits[1] if len(splits) > 1 else None),
        kinds,
        classes,
        inputs[0] if len(inputs) == 1 else None,
        targets[0] if len(targets) == 1 else None,
        loading,
    )


def _aligned(values: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor | None:
    """An input's sample values as (N, features, positions) over a dense target of
    `size`: an image [C, H, W] under a mask [H, W] (channels first), a sequence [T, D]
    or one-hot tokens [T, V] under labels [T] (features last); None when they do not
    line up position by position (or the target is one value per sample)."""
    n, shape = values.shape[0], tuple(values.shape[1:])
    if not size:
        return None
    p = math.prod(size)
    if shape == size:
        return values.reshape(n, 1, p)
    if shape[1:] == size:
        return values.reshape(n, shape[0], p)
    if shape[:-1] == size:
        return values.reshape(n, p, shape[-1]).transpose(1, 2)
    return None


def _synthetic(
    *,
    seed: int,
    task: str | None,
    uses: Mapping[str, Mapping[str, Any]],
    shape=None,
    num_classes=None,
    target_shape=None,
    n: int = 512,
    n_test: int = 128,
    vocab: int | None = None,
    x_dtype: str | None = None,
):
    """Seeded samples a model can learn: inputs are noise (or tokens), targets come from a
    random linear "teacher" of the inputs. With `shape=`, one input `x` and one target
    `y`; without, one field per entry of `uses` (what the plan's model and losses read)."""
    if shape is not None:
        shape = (
            (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)
        )
        if num_classes is not None and target_shape is not None:
            raise DataError(
                "synthetic: give num_classes (classification) or target_shape "
                "(regression), not both"
            )
        if task is None:
            task = "regression" if target_shape is not None else "classification"
        if task == "classification" and num_classes is None:
            raise DataError("synthetic classification needs num_classes=")
        if target_shape is None:
            target_shape = () if task == "classification" else (1,)
        elif isinstance(target_shape, int):
            target_shape = (int(target_shape),)
        y_kind = "class" if task == "classification" else "values"
        uses = {
            "x": {"kind": "input", "shape": shape, "dtype": x_dtype, "vocab": vocab},
            "y": {"kind": y_kind, "shape": target_shape, "classes": num_classes},
        }
    elif not uses:
        raise DataError("synthetic needs shape=(...) per sample")
    g = _generator(seed, "synthetic")
    total = int(n) + int(n_test)
    made: dict[str, torch.Tensor] = {}
    feats: list[torch.Tensor] = []  # per input: its sample values, (N, *shape[, vocab])
    for k, u in uses.items():
        if u.get("kind") != "input":
            continue
        size = tuple(int(s) for s in u.get("shape") or ())
        dtype = _dtype(u.get("dtype") or ("int64" if u.get("vocab") else "float32"))
        if dtype.is_floating_point:
            x = torch.randn((total, *size), generator=g).to(dtype)
            feats.append(x.float())
        else:
            top = u.get("vocab")
            if top is None and dtype != torch.bool:
                raise DataError(
                    f"synthetic {_dtype_name(dtype)} field {k!r} needs vocab= (tokens "
                    "are drawn from 0..vocab-1)"
                )
            top = 2 if dtype == torch.bool else int(top)
            x = torch.randint(0, top, (total, *size), generator=g).to(dtype)
            feats.append(nnf.one_hot(x.long(), top).float())
        made[k] = x
    for k, u in uses.items():
        kind = u.get("kind")
        if kind == "input":
            continue
        size = tuple(int(s) for s in u.get("shape") or ())
        positions = math.prod(size)
        # a per-position teacher when an input has these positions (dense labels,
        # tokens), else one over everything
        local = [f for f in (_aligned(t, size) for t in feats) if f is not None]
        if local:
            f = torch.cat(local, 1)
        elif feats:  # each input weighs the same, however many values it has
            flat = [t.reshape(total, -1, 1) for t in feats]
            d = sum(t.shape[1] for t in flat)
            f = torch.cat(
                [t * math.sqrt(d / (len(flat) * t.shape[1])) for t in flat], 1
            )
        else:
            f = torch.randn((total, 8, 1), generator=g)
        d = f.shape[1]
        if kind == "class":
            c = u.get("classes")
            if c is None:
                raise DataError(
                    f"synthetic class labels {k!r} need their number of classes"
                )
            out = int(c) * (1 if local else positions)
            w = torch.randn((d, out), generator=g) / math.sqrt(max(d, 1))
            logits = torch.einsum("ndp,dc->ncp", f, w).reshape(total, int(c), -1)
            made[k] = logits.argmax(1).reshape(total, *size)
        else:
            out = 1 if local else max(positions, 1)
            w = torch.randn((d, out), generator=g) / math.sqrt(max(d, 1))
            y = torch.einsum("ndp,dc->ncp", f, w).reshape(total, -1)
            y = y + 0.01 * torch.randn(y.shape, generator=g)
            made[k] = y.reshape(total, *size)
    kinds = {k: str(u.get("kind")) for k, u in uses.items()}
    train = Split({k: v[:n] for k, v in made.items()})
    test = Split({k: v[n:] for k, v in made.items()}) if n_test else None
    inputs = [k for k, kind in kinds.items() if kind == "input"]
    targets = [k for k, kind in kinds.items() if kind != "input"]
    primary = inputs[0] if len(inputs) == 1 else None
    target = targets[0] if len(targets) == 1 else None
    counts = {k: int(u["classes"]) for k, u in uses.items() if u.get("classes")}
    return train, test, kinds, primary, target, counts
