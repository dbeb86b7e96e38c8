"""Data sources and transforms as the plan sees them: declared once, torch-free.

These mirror `load_data` and `TRANSFORMS` in netdsl/runtime/data.py (which must stay
standalone, so it cannot import them); tests/test_plan.py checks that both agree. Each
source also says what it can know before loading anything (`Source.signature`), so
`netdsl check` can tell that a loss or the model's input does not fit the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Optional, Union

from pydantic import Field, StrictFloat, StrictStr

from ..ops.base import Bool, Float, NonNegInt, Pair, PosInt, Prob
from .decl import Components, Decl, Family

TRANSFORMS = Family("transform", "transforms")
SOURCES = Family("data source", "data sources")

Floats = Union[Float, tuple[Float, ...]]
Fraction = Annotated[StrictFloat, Field(gt=0, lt=1)]
Amount = Union[Fraction, PosInt]  # a fraction of the training set, or a sample count
Task = Optional[Literal["classification", "regression"]]
XDtype = Literal["float32", "float64", "float16", "bfloat16", "int64", "int32", "uint8", "bool"]


# ---- transforms (torchvision's names and arguments) ---------------------------------------
class Transform(Decl):
    random: ClassVar[bool] = False

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


# ---- what a source knows before loading ------------------------------------------------------
@dataclass
class DataSig:
    """The data as the plan sees it; None where it is not known until the data is loaded."""

    name: str
    task: str | None = None  # "classification" | "regression"
    input_shape: tuple | None = None
    input_dtype: str | None = None
    target_shape: tuple | None = None  # per sample; () for class labels
    num_classes: int | None = None
    has_val: bool = False
    has_test: bool | None = None
    target_note: str = ""  # how netdsl read targets it had to interpret, for notes
    labels: tuple[tuple[str, tuple[int, ...]], ...] | None = None  # (where, labels) per split


# ---- sources ------------------------------------------------------------------------------
class Source(Decl):
    """A data source. `transform` is torchvision's name for the pipeline (load_data's
    `transforms`); `val` carves a validation split out of the training data."""

    task_fixed: ClassVar[str | None] = None
    image: ClassVar[bool] = False
    positional = ()
    descriptions: ClassVar[dict[str, str]] = {
        "val": "a fraction in (0, 1) or a number of samples",
        "test": "a fraction in (0, 1) or a number of samples"}

    def implied_task(self) -> str | None:
        """The task the data itself fixes (None: the loss decides)."""
        return self.task_fixed or getattr(self, "task", None)

    def signature(self, task: str | None) -> DataSig:
        return DataSig(self.kind, task=self.task_fixed or getattr(self, "task", None) or task,
                       has_val=getattr(self, "val", None) is not None,
                       has_test=self._has_test())

    def _has_test(self) -> bool | None:
        return None

    def load_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `load_data` (without `seed`, which the plan adds)."""
        kw = self.kwargs()
        if "transform" in kw:
            kw["transforms"] = [[t["name"], t["kwargs"]] for t in kw.pop("transform")]
        return {"source": self.kind, **kw}


class TorchvisionSource(Source):
    root: StrictStr = "data"
    download: Bool = False
    transform: Annotated[tuple[Transform, ...], Components(TRANSFORMS)] = ()
    val: Optional[Amount] = None
    limit: Optional[PosInt] = None
    task_fixed = "classification"
    image = True
    shown = ("root",)  # where the data is matters even when it is the default
    raw_shape: ClassVar[tuple[int, int, int]] = (1, 28, 28)
    classes: ClassVar[int] = 10

    def signature(self, task):
        sig = super().signature(task)
        shape: tuple | None = self.raw_shape
        for t in self.transform:
            shape = t.shape(shape) if shape is not None else None
        sig.input_shape, sig.input_dtype = shape, "float32"
        sig.target_shape, sig.num_classes = (), self.classes
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
    task_fixed = "classification"
    image = True


@SOURCES.register
class CSV(Source):
    path: StrictStr
    test_path: Optional[StrictStr] = None
    targets: Union[StrictStr, tuple[StrictStr, ...]]
    features: Optional[tuple[StrictStr, ...]] = None
    delimiter: StrictStr = ","
    x_dtype: XDtype = "float32"
    task: Task = None
    transform: Annotated[tuple[Transform, ...], Components(TRANSFORMS)] = ()
    val: Optional[Amount] = None
    test: Optional[Amount] = None
    limit: Optional[PosInt] = None

    def signature(self, task):
        sig = super().signature(task)
        sig.input_dtype = self.x_dtype
        if isinstance(self.targets, tuple) and len(self.targets) > 1:
            sig.target_shape = (len(self.targets),)
        return sig


Nested = Union[Float, Bool, StrictStr, tuple[Any, ...]]


@SOURCES.register
class tensors(Source):
    X: Nested
    y: Nested
    X_test: Optional[Nested] = None
    y_test: Optional[Nested] = None
    x_dtype: XDtype = "float32"
    task: Task = None
    val: Optional[Amount] = None
    test: Optional[Amount] = None
    limit: Optional[PosInt] = None

    def check(self):
        out = []
        for name in ("X", "y", "X_test", "y_test"):
            v = getattr(self, name)
            if v is not None and array_shape(v) is None:
                out.append((name, f"{name} must be a rectangular array of numbers"))
        x, y = array_shape(self.X), array_shape(self.y)
        if not out and x and y and x[0] != y[0]:
            out.append(("y", f"X has {x[0]} samples but y has {y[0]}"))
        if (self.X_test is None) != (self.y_test is None):
            out.append(("X_test" if self.X_test is not None else "y_test",
                        "give X_test and y_test together"))
        return out

    def signature(self, task):
        sig = super().signature(task)
        x, y = array_shape(self.X), array_shape(self.y)
        sig.input_shape, sig.input_dtype = tuple(x[1:]), self.x_dtype
        if sig.task is None:
            sig.task = "classification" if len(y) == 1 and _all_ints(self.y) else "regression"
        if sig.task == "classification":
            if _all_ints(self.y) and len(y) in (1, 2) and (len(y) == 1 or y[1] == 1):
                labels = [int(v) for v in _flat(self.y)]
                sig.labels = (("y", tuple(labels)),)
                if self.y_test is not None and _all_ints(self.y_test):
                    test = tuple(int(v) for v in _flat(self.y_test))
                    sig.labels += (("y_test", test),)
                    labels += test
                sig.num_classes = max(labels) + 1 if labels and min(labels) >= 0 else None
            sig.target_shape = ()
        else:
            sig.target_shape = tuple(y[1:]) or (1,)
            if len(y) == 1:
                sig.target_note = (f"y = {_brief(self.y)} holds one value per sample; netdsl "
                                   "reads it as targets of shape [1]")
        sig.has_test = self.X_test is not None or self.test is not None
        return sig


@SOURCES.register
class synthetic(Source):
    shape: Union[PosInt, tuple[PosInt, ...]]
    num_classes: Optional[Annotated[int, Field(ge=2)]] = None
    target_shape: Optional[Union[PosInt, tuple[PosInt, ...]]] = None
    n: PosInt = 512
    n_test: NonNegInt = 128
    vocab: Optional[PosInt] = None
    x_dtype: Optional[XDtype] = None
    task: Task = None
    val: Optional[Amount] = None
    limit: Optional[PosInt] = None

    def implied_task(self):
        if self.task is not None:
            return self.task
        return "regression" if self.target_shape is not None else "classification"

    def check(self):
        if self.num_classes is not None and self.target_shape is not None:
            return [("target_shape",
                     "give num_classes (classification) or target_shape (regression), not both")]
        return []

    def signature(self, task):
        sig = super().signature(task)
        sig.input_shape = self.shape if isinstance(self.shape, tuple) else (self.shape,)
        sig.input_dtype = self.x_dtype or ("int64" if self.vocab is not None else "float32")
        if sig.task is None:
            sig.task = "regression" if self.target_shape is not None else "classification"
        if sig.task == "classification":
            sig.target_shape, sig.num_classes = (), self.num_classes
        else:
            ts = self.target_shape or 1
            sig.target_shape = ts if isinstance(ts, tuple) else (ts,)
        sig.has_test = self.n_test > 0
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
