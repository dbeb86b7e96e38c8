"""Data sources and transforms as the plan sees them: declared once, torch-free.

These mirror `load_data` and `TRANSFORMS` in netdsl/runtime/data.py (which must stay
standalone, so it cannot import them); tests/test_plan.py checks that both agree. Each
source also says what it can know before loading anything (`Source.signature`), so
`netdsl check` can tell that a loss or the model's input does not fit the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Optional, Union

from pydantic import Field, StrictFloat, StrictInt, StrictStr

from ..ops.base import Bool, Extra, Float, NonNegInt, Pair, PosInt, Prob
from .decl import Components, Decl, Family, _jsonable, show

TRANSFORMS = Family("transform", "transforms")
SOURCES = Family("data source", "data sources")

Floats = Union[Float, tuple[Float, ...]]
Fraction = Annotated[StrictFloat, Field(gt=0, lt=1)]
Amount = Union[Fraction, PosInt]  # a fraction of the training set, or a sample count
Task = Optional[Literal["classification", "regression"]]
XDtype = Literal["float32", "float64", "float16", "bfloat16", "int64", "int32", "uint8", "bool"]


# ---- transforms (torchvision's names and arguments) ---------------------------------------
class Transform(Decl):
    random: ClassVar[bool | str] = False  # True: per batch; "sample": per sample

    def shape(self, shape: tuple) -> tuple | None:
        """The sample shape after this step ((C, H, W) in, None when it cannot be known)."""
        return shape


@TRANSFORMS.register
class ToTensor(Transform):
    pass


@TRANSFORMS.register
class Normalize(Transform):
    mean: Floats
    std: Floats
    inplace: Bool = False

    def check(self):
        std = self.std if isinstance(self.std, tuple) else (self.std,)
        mean = self.mean if isinstance(self.mean, tuple) else (self.mean,)
        if any(s == 0 for s in std):
            return [("std", "std must not contain 0")]
        if len(mean) != len(std) and 1 not in (len(mean), len(std)):
            return [("std", f"mean has {len(mean)} values but std has {len(std)}")]
        return []


@TRANSFORMS.register
class Resize(Transform):
    size: Union[PosInt, tuple[PosInt], tuple[PosInt, PosInt]]
    interpolation: Literal["nearest", "bilinear", "bicubic"] = "bilinear"
    max_size: Optional[PosInt] = None
    antialias: Bool = True

    def shape(self, shape):
        size = self.size[0] if isinstance(self.size, tuple) and len(self.size) == 1 else self.size
        if isinstance(size, tuple):
            return (shape[0], *size)
        c, h, w = shape
        if h is None or w is None:
            return (c, None, None)
        short, long = min(h, w), max(h, w)  # the smaller edge becomes `size`
        other = int(size * long / short)
        if self.max_size is not None and other > self.max_size:
            size, other = int(self.max_size * size / other), self.max_size
        return (c, size, other) if h <= w else (c, other, size)


@TRANSFORMS.register
class CenterCrop(Transform):
    size: Pair

    def shape(self, shape):
        s = self.size if isinstance(self.size, tuple) else (self.size, self.size)
        return (shape[0], *s)


@TRANSFORMS.register
class Grayscale(Transform):
    num_output_channels: Literal[1, 3] = 1

    def shape(self, shape):
        return (self.num_output_channels, *shape[1:])


@TRANSFORMS.register
class RandomCrop(Transform):
    size: Pair
    padding: Optional[Union[NonNegInt, tuple[NonNegInt, ...]]] = None
    pad_if_needed: Bool = False
    fill: Floats = 0
    padding_mode: Literal["constant", "edge", "reflect"] = "constant"
    random = True

    def check(self):
        if isinstance(self.padding, tuple) and len(self.padding) not in (1, 2, 4):
            return [("padding",
                     "padding is an int, (left/right, top/bottom) or (left, top, right, bottom)")]
        return []

    def shape(self, shape):
        s = self.size if isinstance(self.size, tuple) else (self.size, self.size)
        return (shape[0], *s)


@TRANSFORMS.register
class RandomHorizontalFlip(Transform):
    p: Prob = 0.5
    random = True


@TRANSFORMS.register
class RandomVerticalFlip(Transform):
    p: Prob = 0.5
    random = True


# ---- per-sample augmentations (torchvision.transforms.v2, run sample by sample) -------------
# Each sample draws its own geometry or colours, so these run on the CPU as the samples are
# read (in the DataLoader's workers), not on whole batches like the three above.
Interpolation = Literal["nearest", "bilinear", "bicubic"]
Fill = Optional[Floats]  # in the units of the data at that point of the pipeline
NonNegFloat = Annotated[Float, Field(ge=0)]
PosFloat = Annotated[Float, Field(gt=0)]
Range = tuple[Float, Float]  # (min, max)
Jitter = Optional[Union[NonNegFloat, tuple[NonNegFloat, NonNegFloat]]]
Degrees = Union[NonNegFloat, Range]


def _ordered(**ranges) -> list[tuple[str, str]]:
    """(field, message) for every (min, max) pair written the wrong way round."""
    return [(k, f"{k} is (min, max): {v[0]} is more than {v[1]}")
            for k, v in ranges.items() if isinstance(v, tuple) and v[0] > v[1]]


class PerSample(Transform):
    random = "sample"


AUTO_AUGMENT = ("RandAugment", "TrivialAugmentWide", "AutoAugment", "AugMix")


@TRANSFORMS.register
class RandomResizedCrop(PerSample):
    size: Pair
    scale: tuple[PosFloat, PosFloat] = (0.08, 1.0)
    ratio: tuple[PosFloat, PosFloat] = (0.75, 4 / 3)
    interpolation: Interpolation = "bilinear"
    antialias: Bool = True

    def check(self):
        return _ordered(scale=self.scale, ratio=self.ratio)

    def shape(self, shape):
        s = self.size if isinstance(self.size, tuple) else (self.size, self.size)
        return (shape[0], *s)


@TRANSFORMS.register
class ColorJitter(PerSample):
    brightness: Jitter = None
    contrast: Jitter = None
    saturation: Jitter = None
    hue: Optional[Union[Annotated[Float, Field(ge=0, le=0.5)],
                        tuple[Annotated[Float, Field(ge=-0.5, le=0.5)],
                              Annotated[Float, Field(ge=-0.5, le=0.5)]]]] = None

    def check(self):
        return _ordered(brightness=self.brightness, contrast=self.contrast,
                        saturation=self.saturation, hue=self.hue)


@TRANSFORMS.register
class RandAugment(PerSample):
    num_ops: NonNegInt = 2
    magnitude: NonNegInt = 9
    num_magnitude_bins: Annotated[StrictInt, Field(ge=2)] = 31
    interpolation: Interpolation = "nearest"
    fill: Fill = None

    def check(self):
        if self.magnitude >= self.num_magnitude_bins:
            return [("magnitude", f"magnitude counts bins from 0: it must be below "
                                  f"num_magnitude_bins ({self.num_magnitude_bins})")]
        return []


@TRANSFORMS.register
class TrivialAugmentWide(PerSample):
    num_magnitude_bins: Annotated[StrictInt, Field(ge=2)] = 31
    interpolation: Interpolation = "nearest"
    fill: Fill = None


@TRANSFORMS.register
class AutoAugment(PerSample):
    policy: Literal["imagenet", "cifar10", "svhn"] = "imagenet"
    interpolation: Interpolation = "nearest"
    fill: Fill = None


@TRANSFORMS.register
class AugMix(PerSample):
    severity: Annotated[StrictInt, Field(ge=1, le=10)] = 3
    mixture_width: PosInt = 3
    chain_depth: Annotated[StrictInt, Field(ge=-1)] = -1
    alpha: PosFloat = 1.0
    all_ops: Bool = True
    interpolation: Interpolation = "bilinear"
    fill: Fill = None

    def check(self):
        if self.chain_depth == 0:
            return [("chain_depth", "chain_depth is a number of operations (1 or more), or -1 "
                                    "for a random depth from 1 to 3")]
        return []


@TRANSFORMS.register
class RandomRotation(PerSample):
    degrees: Degrees
    interpolation: Interpolation = "nearest"
    expand: Bool = False
    center: Optional[tuple[Float, Float]] = None
    fill: Fill = 0

    def check(self):
        if self.expand:
            return [("expand", "expand=true gives every rotated image a size of its own, and "
                               "a batch needs one size: leave expand out (the corners are "
                               "filled with `fill`)")]
        return _ordered(degrees=self.degrees)


@TRANSFORMS.register
class RandomAffine(PerSample):
    degrees: Degrees
    translate: Optional[tuple[Prob, Prob]] = None
    scale: Optional[tuple[PosFloat, PosFloat]] = None
    shear: Optional[Union[NonNegFloat, Range, tuple[Float, Float, Float, Float]]] = None
    interpolation: Interpolation = "nearest"
    fill: Fill = 0
    center: Optional[tuple[Float, Float]] = None

    def check(self):
        return _ordered(degrees=self.degrees, scale=self.scale,
                        shear=self.shear if isinstance(self.shear, tuple)
                        and len(self.shear) == 2 else None)


@TRANSFORMS.register
class RandomPerspective(PerSample):
    distortion_scale: Prob = 0.5
    p: Prob = 0.5
    interpolation: Interpolation = "bilinear"
    fill: Fill = 0


@TRANSFORMS.register
class GaussianBlur(PerSample):
    kernel_size: Pair
    sigma: Union[PosFloat, tuple[PosFloat, PosFloat]] = (0.1, 2.0)

    def check(self):
        sizes = self.kernel_size if isinstance(self.kernel_size, tuple) else (self.kernel_size,)
        if any(k % 2 == 0 for k in sizes):
            return [("kernel_size", "kernel_size must be odd: the kernel is centred on a pixel")]
        return _ordered(sigma=self.sigma)


@TRANSFORMS.register
class RandomGrayscale(PerSample):
    p: Prob = 0.1


@TRANSFORMS.register
class RandomErasing(PerSample):
    p: Prob = 0.5
    scale: tuple[Prob, Prob] = (0.02, 0.33)
    ratio: tuple[PosFloat, PosFloat] = (0.3, 3.3)
    value: Union[Float, tuple[Float, ...], Literal["random"]] = 0.0
    inplace: Bool = False

    def check(self):
        return _ordered(scale=self.scale, ratio=self.ratio)


@TRANSFORMS.register
class RandomInvert(PerSample):
    p: Prob = 0.5


@TRANSFORMS.register
class RandomPosterize(PerSample):
    bits: Annotated[StrictInt, Field(ge=0, le=8)]
    p: Prob = 0.5


@TRANSFORMS.register
class RandomSolarize(PerSample):
    threshold: NonNegFloat
    p: Prob = 0.5


@TRANSFORMS.register
class RandomAdjustSharpness(PerSample):
    sharpness_factor: NonNegFloat
    p: Prob = 0.5


@TRANSFORMS.register
class RandomAutocontrast(PerSample):
    p: Prob = 0.5


@TRANSFORMS.register
class RandomEqualize(PerSample):
    p: Prob = 0.5


@TRANSFORMS.register
class ElasticTransform(PerSample):
    alpha: Union[NonNegFloat, tuple[NonNegFloat, NonNegFloat]] = 50.0
    sigma: Union[PosFloat, tuple[PosFloat, PosFloat]] = 5.0
    interpolation: Interpolation = "bilinear"
    fill: Fill = 0


# ---- what a source knows before loading ------------------------------------------------------
KINDS = ("image", "input", "class", "values")  # what a field holds; see runtime/data.py FieldInfo


@dataclass
class FieldSig:
    """One field of every sample as the plan sees it; None where it is not known yet."""

    shape: tuple | None = None  # per sample; () for one class label
    dtype: str | None = None
    kind: str | None = None  # one of KINDS; None: read as the plan uses it
    num_classes: int | None = None
    labels: tuple[tuple[str, tuple[int, ...]], ...] | None = None  # (where, labels) per split
    note: str = ""  # how netdsl read values it had to interpret, for notes


@dataclass
class DataSig:
    """The data as the plan sees it: its named fields (None: whatever the plan asks for,
    as `synthetic` makes them), and `target`, the one target field `label` and `target`
    name (None when the source has several or none)."""

    name: str
    fields: dict[str, FieldSig] | None
    target: str | None = None
    task: str | None = None  # of the target field: "classification" | "regression"
    has_val: bool = False
    has_test: bool | None = None

    def inputs(self) -> list[str]:
        """The fields that are model inputs by nature (an image, X, features)."""
        return [k for k, f in (self.fields or {}).items() if f.kind in ("image", "input")]


# ---- sources ------------------------------------------------------------------------------
STREAM = ("true: read the files batch by batch through torch's DataLoader; false: decode "
          "them all into memory first; left out: stream when the decoded data (of a CSV file, "
          "its text) would take more than a quarter of the machine's memory "
          "(NETDSL_IN_MEMORY_LIMIT)")
WORKERS = ("DataLoader worker processes that read streamed files and run per-sample "
           "augmentations (0: in the training process; default: one per core but one, at "
           "most 4)")
PAIRS = ("pairs of images for a siamese net: fields left, right (images) and same (1 when "
         "their classes match, else 0) instead of image and label")


def _pipeline_problems(steps: tuple[Transform, ...], masks: bool = False) -> list:
    """A transform pipeline's order: the sizes are fixed before anything random."""
    names = [t.kind for t in steps]
    random = [n for n, t in zip(names, steps) if t.random]
    if random:
        late = [n for n in names[names.index(random[0]):] if n in ("Resize", "CenterCrop")]
        if late:
            return [("transform", f"{late[0]} is written after {random[0]}: put Resize and "
                     "CenterCrop before the random augmentations (they run once, as the "
                     "data is loaded)")]
    if masks:
        moving = [n for n in names if n in AUTO_AUGMENT]
        if moving:
            return [("transform", f"{moving[0]} moves pixels (rotations, shears) that a mask "
                     "would have to follow, and torchvision does not move masks in it: use "
                     "RandomAffine for the geometry and ColorJitter for the colours")]
    return []


def _pair_fields(sig: DataSig, shape: tuple | None) -> DataSig:
    sig.fields = {"left": FieldSig(shape, "float32", "image"),
                  "right": FieldSig(shape, "float32", "image"),
                  "same": FieldSig((), "int64", "class", 2)}
    sig.target = "same"
    return sig


class Source(Decl):
    """A data source. `transform` is torchvision's name for the pipeline (load_data's
    `transforms`); `val` carves a validation split out of the training data.

    Its samples are named fields (`signature`). Sources whose fields the spec names
    (`tensors`, CSV column groups) take them as extra keyword arguments (`open_fields`);
    how such a field is read (inputs, class labels, values) follows from its use."""

    task_fixed: ClassVar[str | None] = None
    image: ClassVar[bool] = False
    by_use: ClassVar[bool] = False  # whether load_data needs the plan's `fields` (uses)
    positional = ()
    descriptions: ClassVar[dict[str, str]] = {
        "val": "a fraction in (0, 1) or a number of samples",
        "test": "a fraction in (0, 1) or a number of samples"}

    def check(self):
        return _pipeline_problems(getattr(self, "transform", ()))

    def implied_task(self) -> str | None:
        """The task the data itself fixes (None: the loss decides)."""
        return self.task_fixed or getattr(self, "task", None)

    def signature(self, task: str | None, uses: dict[str, str] | None = None) -> DataSig:
        """What is known of the fields before loading. `task` is what the losses on the
        source's one target imply; `uses` maps fields to the kind the plan reads them as."""
        return DataSig(self.kind, {}, task=self.task_fixed or getattr(self, "task", None) or task,
                       has_val=getattr(self, "val", None) is not None,
                       has_test=self._has_test())

    def _has_test(self) -> bool | None:
        return None

    def load_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `load_data` (without `seed`, which the plan adds)."""
        kw = self.kwargs()
        if "transform" in kw:
            kw["transforms"] = [[t["name"], t["kwargs"]] for t in kw.pop("transform")]
        return {"source": self.kind, **kw, **{k: _jsonable(v) for k, v in self.open_fields_()}}

    def open_fields_(self) -> tuple:
        return getattr(self, "open_fields", ())


class TorchvisionSource(Source):
    root: StrictStr = "data"
    download: Bool = False
    transform: Annotated[tuple[Transform, ...], Components(TRANSFORMS)] = ()
    val: Optional[Amount] = None
    limit: Optional[PosInt] = None
    pairs: Bool = False
    workers: Optional[NonNegInt] = None
    task_fixed = "classification"
    image = True
    shown = ("root",)  # where the data is matters even when it is the default
    raw_shape: ClassVar[tuple[int, int, int]] = (1, 28, 28)
    classes: ClassVar[int] = 10
    descriptions = {**Source.descriptions, "pairs": PAIRS, "workers": WORKERS}

    def signature(self, task, uses=None):
        sig = super().signature(task)
        shape: tuple | None = self.raw_shape
        for t in self.transform:
            shape = t.shape(shape) if shape is not None else None
        if self.pairs:
            return _pair_fields(sig, shape)
        sig.fields = {"image": FieldSig(shape, "float32", "image"),
                      "label": FieldSig((), "int64", "class", self.classes)}
        sig.target = "label"
        return sig

    def _has_test(self):
        return True


@SOURCES.register
class MNIST(TorchvisionSource):
    pass


@SOURCES.register
class FashionMNIST(TorchvisionSource):
    pass


@SOURCES.register
class CIFAR10(TorchvisionSource):
    raw_shape = (3, 32, 32)


@SOURCES.register
class ImageFolder(Source):
    path: StrictStr
    test_path: Optional[StrictStr] = None
    convert: Optional[StrictStr] = "RGB"
    transform: Annotated[tuple[Transform, ...], Components(TRANSFORMS)] = ()
    val: Optional[Amount] = None
    test: Optional[Amount] = None
    limit: Optional[PosInt] = None
    pairs: Bool = False
    stream: Optional[Bool] = None
    workers: Optional[NonNegInt] = None
    task_fixed = "classification"
    image = True
    descriptions = {**Source.descriptions, "pairs": PAIRS, "stream": STREAM, "workers": WORKERS}

    def signature(self, task, uses=None):
        sig = super().signature(task)
        if self.pairs:
            return _pair_fields(sig, None)
        sig.fields = {"image": FieldSig(None, "float32", "image"),
                      "label": FieldSig((), "int64", "class")}
        sig.target = "label"
        return sig


@SOURCES.register
class MaskFolder(Source):
    """Images and their segmentation masks: `images` and `masks` are parallel folders, a
    mask holding one class id per pixel (a grayscale or palette PNG) under the image's name."""

    images: StrictStr
    masks: StrictStr
    test_images: Optional[StrictStr] = None
    test_masks: Optional[StrictStr] = None
    convert: Optional[StrictStr] = "RGB"
    transform: Annotated[tuple[Transform, ...], Components(TRANSFORMS)] = ()
    val: Optional[Amount] = None
    test: Optional[Amount] = None
    limit: Optional[PosInt] = None
    stream: Optional[Bool] = None
    workers: Optional[NonNegInt] = None
    task_fixed = "classification"
    image = True
    descriptions = {**Source.descriptions, "stream": STREAM, "workers": WORKERS,
                    "masks": "a folder with one mask per image, under the image's name "
                             "(any image suffix): class ids per pixel"}

    def check(self):
        if (self.test_images is None) != (self.test_masks is None):
            return [("test_images" if self.test_images is None else "test_masks",
                     "give test_images= and test_masks= together")]
        problems = _pipeline_problems(self.transform, masks=True)
        if problems:
            return problems
        names = [t.kind for t in self.transform]
        after = names[names.index("ToTensor") + 1:] if "ToTensor" in names else []
        late = [n for n in after if n in ("Resize", "CenterCrop")]
        if late:
            return [("transform", f"{late[0]} after ToTensor would resize the images but "
                     f"not their masks: put it before ToTensor (masks get it by nearest "
                     "neighbour)")]
        return []

    def signature(self, task, uses=None):
        sig = super().signature(task)
        sig.fields = {"image": FieldSig(None, "float32", "image"),
                      "mask": FieldSig(None, "int64", "class")}
        sig.target = "mask"
        sig.has_test = self.test_images is not None or self.test is not None
        return sig


Columns = Union[StrictStr, tuple[StrictStr, ...]]


@SOURCES.register
class CSV(Source):
    path: StrictStr
    test_path: Optional[StrictStr] = None
    targets: Optional[Columns] = None
    features: Optional[tuple[StrictStr, ...]] = None
    delimiter: StrictStr = ","
    x_dtype: XDtype = "float32"
    task: Task = None
    transform: Annotated[tuple[Transform, ...], Components(TRANSFORMS)] = ()
    val: Optional[Amount] = None
    test: Optional[Amount] = None
    limit: Optional[PosInt] = None
    stream: Optional[Bool] = None
    workers: Optional[NonNegInt] = None
    open_fields: Annotated[tuple[tuple[str, Columns], ...], Extra()] = ()
    open_type = Columns
    by_use = True
    descriptions = {**Source.descriptions, "stream": STREAM, "workers": WORKERS,
                    "open_fields": "a column name, or a list of column names"}

    def check(self):
        problems = super().check()
        if problems:
            return problems
        if self.open_fields and (self.targets is not None or self.features is not None):
            return [("targets", "write features=/targets=, or column groups (NAME=columns), "
                     "not both")]
        if not self.open_fields and self.targets is None:
            return [(None, "say which column(s) hold the targets: targets=\"column\", or "
                     "name column groups: image=[...], label=\"column\"")]
        return []

    def signature(self, task, uses=None):
        sig = super().signature(task)
        uses = uses or {}
        if self.open_fields:
            sig.task = None
            for k, cols in self.open_fields:
                kind = uses.get(k, "input")
                n = 1 if isinstance(cols, str) else len(cols)
                shape = () if kind == "class" else (n,)
                dtype = "int64" if kind == "class" else "float32" if kind == "values" else None
                sig.fields[k] = FieldSig(shape, dtype, kind if kind != "input" else None)
            return sig
        targets = self.targets if isinstance(self.targets, tuple) else (self.targets,)
        kind = "class" if sig.task == "classification" else "values" if sig.task else None
        sig.fields = {"features": FieldSig(None, self.x_dtype, "input"),
                      "target": FieldSig(() if kind == "class" else
                                         (len(targets),) if len(targets) > 1 or kind else None,
                                         None, kind)}
        sig.target = "target"
        return sig


Nested = Union[Float, Bool, StrictStr, tuple[Any, ...]]


@SOURCES.register
class tensors(Source):
    x_dtype: Optional[XDtype] = None
    task: Task = None
    val: Optional[Amount] = None
    test: Optional[Amount] = None
    limit: Optional[PosInt] = None
    open_fields: Annotated[tuple[tuple[str, Nested], ...], Extra()] = ()
    open_type = Nested
    by_use = True
    descriptions = {**Source.descriptions,
                    "open_fields": "a rectangular array of numbers (nested lists)"}

    def trains(self) -> dict[str, Any]:
        return {k: v for k, v in self.open_fields if not k.endswith("_test")}

    def tests(self) -> dict[str, Any]:
        return {k[:-5]: v for k, v in self.open_fields if k.endswith("_test")}

    def check(self):
        out = []
        if not self.open_fields:
            return [(None, "give the data as fields: tensors(X=[...], y=[...]), or one "
                     "keyword per field (image=[...], label=[...])")]
        for name, v in self.open_fields:
            if array_shape(v) is None:
                out.append((name, f"{name} must be a rectangular array of numbers"))
        if out:
            return out
        for part, suffix in ((self.trains(), ""), (self.tests(), "_test")):
            sizes = {k: array_shape(v)[0] if array_shape(v) else 1 for k, v in part.items()}
            if len(set(sizes.values())) > 1:
                first, *rest = sizes.items()
                k, n = next((k, n) for k, n in rest if n != first[1])
                out.append((k + suffix, f"{first[0]}{suffix} has {first[1]} samples but "
                            f"{k}{suffix} has {n}"))
        trains, tests = self.trains(), self.tests()
        for k in tests:
            if k not in trains:
                out.append((f"{k}_test", f"{k}_test is given without {k}"))
        if tests:
            for k in trains:
                if k not in tests:
                    out.append((k, f"a test split needs every field: give {k}_test too"))
        return out

    def signature(self, task, uses=None):
        sig = super().signature(task)
        trains, tests = self.trains(), self.tests()
        classic = uses is None or not uses
        sig.target = "y" if "y" in trains and classic or (
            "y" in trains and uses and uses.get("y", "input") != "input") else None
        for k, v in trains.items():
            shape = array_shape(v)
            if uses:
                kind = uses.get(k, "input")
            elif k == "y":
                t = sig.task or ("classification" if len(shape) == 1 and _all_ints(v)
                                 else "regression")
                kind = "class" if t == "classification" else "values"
            else:
                kind = "input"
            if k == sig.target and sig.task is None:
                sig.task = "classification" if kind == "class" else "regression"
            f = FieldSig(tuple(shape[1:]), self.x_dtype, kind)
            if kind == "class":
                f.shape, f.dtype = (), "int64"
                if _all_ints(v) and len(shape) in (1, 2) and (len(shape) == 1 or shape[1] == 1):
                    labels = [int(x) for x in _flat(v)]
                    f.labels = ((k, tuple(labels)),)
                    if k in tests and _all_ints(tests[k]):
                        more = tuple(int(x) for x in _flat(tests[k]))
                        f.labels += ((f"{k}_test", more),)
                        labels += more
                    f.num_classes = max(labels) + 1 if labels and min(labels) >= 0 else None
            elif kind == "values":
                f.shape, f.dtype = tuple(shape[1:]) or (1,), "float32"
                if len(shape) == 1:
                    f.note = (f"{k} = {_brief(v)} holds one value per sample; netdsl reads it "
                              "as targets of shape [1]")
            elif kind == "input" and uses:
                f.kind = None  # the model input it feeds decides its dtype
            sig.fields[k] = f
        sig.has_test = bool(tests) or self.test is not None
        return sig


@SOURCES.register
class synthetic(Source):
    shape: Optional[Union[PosInt, tuple[PosInt, ...]]] = None
    num_classes: Optional[Annotated[int, Field(ge=2)]] = None
    target_shape: Optional[Union[PosInt, tuple[PosInt, ...]]] = None
    n: PosInt = 512
    n_test: NonNegInt = 128
    vocab: Optional[PosInt] = None
    x_dtype: Optional[XDtype] = None
    task: Task = None
    val: Optional[Amount] = None
    limit: Optional[PosInt] = None
    by_use = True

    def implied_task(self):
        if self.task is not None:
            return self.task
        if self.shape is None:
            return None
        return "regression" if self.target_shape is not None else "classification"

    def check(self):
        if self.num_classes is not None and self.target_shape is not None:
            return [("target_shape",
                     "give num_classes (classification) or target_shape (regression), not both")]
        if self.shape is None and (self.num_classes is not None or self.target_shape is not None):
            return [("shape", "give shape= with num_classes= or target_shape= (or none of "
                     "them: then the fields follow the model's inputs and the losses)")]
        dtype = self.x_dtype or ("int64" if self.vocab is not None else "float32")
        if dtype not in ("float32", "float64", "float16", "bfloat16", "bool") and self.vocab is None:
            return [("x_dtype", f"{dtype} inputs are token ids: say how many with vocab=N "
                     "(they are drawn from 0..N-1)")]
        return []

    def signature(self, task, uses=None):
        sig = super().signature(task)
        sig.has_test = self.n_test > 0
        if self.shape is None:
            sig.fields = None  # whatever the model and the losses ask for
            return sig
        shape = self.shape if isinstance(self.shape, tuple) else (self.shape,)
        dtype = self.x_dtype or ("int64" if self.vocab is not None else "float32")
        sig.fields = {"x": FieldSig(shape, dtype, "input")}
        if sig.task is None:
            sig.task = "regression" if self.target_shape is not None else "classification"
        if sig.task == "classification":
            sig.fields["y"] = FieldSig((), "int64", "class", self.num_classes)
        else:
            ts = self.target_shape or 1
            sig.fields["y"] = FieldSig(ts if isinstance(ts, tuple) else (ts,), "float32", "values")
        sig.target = "y"
        return sig


@SOURCES.register
class Text(Source):
    """Next-token prediction from one file: `tokens` [block] and `next` [block] (the same
    window shifted by one token); val/test are held out from the end of the file."""

    path: StrictStr
    block_size: PosInt = 64
    stride: Optional[PosInt] = None
    tokens: Literal["char", "byte", "uint16", "int32"] = "char"
    lines: Bool = False
    stream: Optional[Bool] = None
    workers: Optional[NonNegInt] = None
    val: Optional[Amount] = None
    test: Optional[Amount] = None
    limit: Optional[PosInt] = None
    by_use = True
    shown = ("block_size",)
    descriptions = {**Source.descriptions,
                    "stride": "tokens between the starts of training windows (default: "
                              "block_size, windows side by side)",
                    "tokens": "char (the file's characters), byte (0..255), or uint16/int32 "
                              "(a binary file of token ids)",
                    "stream": "true: read the windows from the file as batches need them "
                              "(bytes and token ids); left out: when they would take more "
                              "than a quarter of the machine's memory",
                    "workers": WORKERS,
                    "lines": "true: one sample per line, of its own length (at most "
                             "block_size), padded per batch; a field pad marks the padding"}

    def check(self):
        if self.lines:
            for arg, bad in (("tokens", self.tokens not in ("char", "byte")),
                             ("stride", self.stride is not None),
                             ("stream", bool(self.stream)), ("workers", self.workers is not None)):
                if bad:
                    return [(arg, f"lines=true reads lines of text into memory, one sample "
                             f"per line: {arg}={show(getattr(self, arg))} does not apply")]
            return []
        if self.stream and self.tokens == "char":
            return [("stream", 'tokens="char" reads the whole file for its characters: '
                     'stream a file of bytes (tokens="byte") or of token ids')]
        return []

    def signature(self, task, uses=None):
        sig = super().signature(task)
        length = None if self.lines else self.block_size  # lines: each its own length
        sig.fields = {"tokens": FieldSig((length,), "int64", "input",
                                         256 if self.tokens == "byte" else None),
                      "next": FieldSig((length,), "int64", "class",
                                       256 if self.tokens == "byte" else None)}
        if self.lines:
            sig.fields["pad"] = FieldSig((None,), "bool", "input")
        sig.target, sig.task, sig.has_test = "next", "classification", self.test is not None
        return sig


# ---- nested literals -------------------------------------------------------------------------
def array_shape(v) -> tuple | None:
    """The shape of a rectangular nested tuple of numbers (None when ragged or not numeric)."""
    if isinstance(v, (bool, int, float, str)):
        return ()
    if not isinstance(v, tuple) or not v:
        return None
    inner = [array_shape(x) for x in v]
    if any(s is None for s in inner) or len(set(inner)) != 1:
        return None
    return (len(v), *inner[0])


def _flat(v):
    if isinstance(v, tuple):
        for x in v:
            yield from _flat(x)
    else:
        yield v


def _all_ints(v) -> bool:
    return all(isinstance(x, int) and not isinstance(x, bool) for x in _flat(v))


def _brief(v) -> str:
    items = list(_flat(v))
    text = ", ".join(map(str, items[:6])) + (", ..." if len(items) > 6 else "")
    return f"[{text}]"
