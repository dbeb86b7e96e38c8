"""Layers of your own: an `nn.Module` class used in specs, only after an explicit opt-in.

A spec alone never imports or runs anything. A class becomes a layer when the user allows it:

* in Python: `netdsl.register_layer("mypkg.layers:MyBlock")` (or pass the class itself);
* on the command line: `netdsl --allow-layer mypkg.layers:MyBlock check spec.net` (the option is
  accepted after any command too), or `NETDSL_ALLOW_LAYERS=mypkg.layers:MyBlock`;
* by an installed package, through an entry point in the group `netdsl.layers`
  (`MyBlock = "mypkg.layers:MyBlock"`), loaded the first time a spec names it.

A spec then uses it by its name (`x -> MyBlock(64)`) or by its dotted path
(`x -> mypkg.layers.MyBlock(64)`). A dotted path that was not allowed is error E108, and nothing
is imported.

The class's constructor signature gives the layer's arguments (annotated `int`, `float`, `bool`,
`str` or tuples are checked; others accept any constant). Output shapes come from a shape
function when one is given (`shape=` or a `netdsl_shape` attribute on the class:
`shape(input_shapes, **args) -> shape or list of shapes`, shapes without the batch dimension);
otherwise the module is built on PyTorch's meta device and run on a meta tensor, which costs no
memory and also yields the parameter count and multiply-adds. `infer=` (or `netdsl_infer`) maps
constructor arguments to functions of the input shapes, so `MyBlock(in_channels, out)` can
leave `in_channels` out as `Conv2d` does. A constructor with `**kwargs` takes the spec's other
keyword arguments, forwarded as given. `register_layer` documents both with an example.
"""

from __future__ import annotations

import importlib
import inspect
import keyword
import os
import typing
from typing import Any, Callable, ClassVar, Literal, Optional, Union

from pydantic import ConfigDict, StrictBool, StrictFloat, StrictInt, StrictStr
from typing_extensions import Annotated

from ..diagnostics import Diagnostic, NetdslError
from ..ir.types import DTYPES, TensorType
from .base import Inferred, Op, ShapeError
from .registry import OPS, get_op

ENTRY_POINT_GROUP = "netdsl.layers"
ENV_VAR = "NETDSL_ALLOW_LAYERS"

# Layers beyond torch.nn's vocabulary (registry.OPS): torchvision backbones and allowed custom
# classes. Kept apart so that OPS stays the set verified layer by layer against torch.nn.
LAYERS: dict[str, type[Op]] = {}
# dotted path ("mypkg.layers.MyBlock") -> registered layer name ("MyBlock")
PATHS: dict[str, str] = {}
_ENTRY_POINTS: dict[str, Any] | None = None


def register_extra(cls: type[Op]) -> type[Op]:
    """Add a backbone or custom layer declaration (see registry.register for built-ins)."""
    kind = cls.model_fields["op"].default
    assert kind not in OPS and kind not in LAYERS, f"layer {kind} declared twice"
    LAYERS[kind] = cls
    cls.kind = kind
    return cls


def layer_names() -> list[str]:
    """Every layer a spec may name: built-ins, backbones and the custom layers allowed so far."""
    return sorted({*OPS, *LAYERS})


# ---- meta-device tracing (shared with the torchvision backbones) ---------------------------------
def meta_trace(
    build: Callable[[], Any], ins: list[TensorType], what: str
) -> tuple[list[TensorType], int]:
    """Build a module on the meta device and run it on meta inputs (batch 2): the output types
    and multiply-adds per sample. Raises ShapeError saying what failed."""
    if any(t.symbolic for t in ins):  # tracing runs one concrete size; a proof needs a rule
        raise ShapeError(
            f"{what} is traced on the meta device, at one concrete size, so it cannot be checked "
            f"for every size of {', '.join(str(t) for t in ins)}", code="E307",
            hint="declare the input's sizes as numbers; a layer of your own can instead be given a "
            "shape rule (register_layer(..., shape=...), or netdsl_shape on the class)")
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    module = meta_module(build, what)
    try:
        xs = [torch.empty((2, *t.shape), dtype=getattr(torch, t.dtype), device="meta") for t in ins]
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            out = module(*xs)
    except Exception as exc:  # noqa: BLE001 - the user's module (or an input it cannot take)
        shapes = ", ".join(str(t) for t in ins)
        raise ShapeError(
            f"{what} cannot run on an input of shape {shapes}: {_first_line(exc)}"
        ) from None
    outs = list(out) if isinstance(out, tuple | list) else [out]
    types = []
    for o in outs:
        if not isinstance(o, torch.Tensor) or o.dim() < 1:
            raise ShapeError(f"{what} returns {type(o).__name__}, not a batch of tensors")
        dtype = str(o.dtype).removeprefix("torch.")
        types.append(
            TensorType(shape=tuple(o.shape[1:]), dtype=dtype if dtype in DTYPES else "float32")
        )
    return types, counter.get_total_flops() // 2 // 2


_MODULES: dict[Any, Any] = {}


def meta_module(build: Callable[[], Any], what: str, key: Any = None):
    """The module `build()` makes, on the meta device (cached by `key`)."""
    import torch

    if key is not None and key in _MODULES:
        return _MODULES[key]
    try:
        with torch.device("meta"):
            module = build()
    except Exception as exc:  # noqa: BLE001 - the user's constructor refused its arguments
        raise ShapeError(f"{what} cannot be built: {_first_line(exc)}") from None
    if key is not None:
        _MODULES[key] = module
    return module


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# ---- the op a registered class becomes -----------------------------------------------------------
class AnyName(list):
    """The argument names of a constructor with `**kwargs`: its named parameters when listed,
    and every name when asked about one (`"width" in names`), since `**kwargs` takes any. The
    names Python cannot pass by keyword are refused in `CustomOp.infer`, saying why."""

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name != "op"


class CustomOp(Op):
    """Base of the ops made by `register_layer`; subclasses are made per class."""

    family = "custom"
    target: ClassVar[Any] = None  # the nn.Module class
    path: ClassVar[str] = ""  # "mypkg.layers:MyBlock"
    shape_fn: ClassVar[Optional[Callable]] = None
    infer_fns: ClassVar[dict[str, Callable]] = {}
    keyword_only: ClassVar[frozenset] = frozenset()
    var_keyword: ClassVar[str | None] = None  # "kwargs" for `__init__(self, ..., **kwargs)`

    @classmethod
    def spec_fields(cls) -> list[str]:
        names = [n for n in cls.model_fields if n != "op"]
        return AnyName(names) if cls.var_keyword else names

    def extra_kwargs(self) -> dict[str, Any]:
        """The spec's keyword arguments beyond the named parameters, for `**kwargs`."""
        return dict(self.model_extra or {})

    def _args(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in self.spec_fields()}, **self.extra_kwargs()}

    def _check_extra_names(self) -> None:
        for name in self.extra_kwargs():
            why = ("it is a Python keyword" if keyword.iskeyword(name) else
                   "names starting with '_' are private" if name.startswith("_") else None)
            if why is not None:
                raise ShapeError(f"'{name}' cannot go to {self.target.__qualname__}'s "
                                 f"**{self.var_keyword}: {why}, and the generated code passes "
                                 "keyword arguments by name", arg=name, code="E102",
                                 hint="give __init__ a parameter of another name for it")

    def _build(self):
        args, kwargs = self.ctor_args()
        return self.target(*args, **kwargs)

    def infer(self, ins):
        self._check_extra_names()
        shapes = [t.shape for t in ins]
        out = {}
        for name, fn in self.infer_fns.items():
            try:
                value = fn(shapes)
            except Exception as exc:  # noqa: BLE001 - the user's function
                raise ShapeError(
                    f"{self.kind}: inferring {name} from {shapes} failed: {_first_line(exc)}"
                )
            given = getattr(self, name)
            if given is not None and given != value:
                raise ShapeError(
                    f"{self.kind} expects {name}={given} but the input gives {value}", arg=name
                )
            out[name] = value
        return out

    def shape(self, ins):
        if self.shape_fn is None:
            return self._trace(ins)[0]
        try:
            result = self.shape_fn([t.shape for t in ins], **self._args())
        except Exception as exc:  # noqa: BLE001 - the user's shape function said no
            raise ShapeError(
                f"{self.kind} does not accept input {', '.join(map(str, ins))}: {_first_line(exc)}"
            ) from None
        results = result if isinstance(result, list) else [result]
        if len(results) != len(self.outputs) or not all(
            isinstance(r, tuple) and all(type(d) is int and d > 0 for d in r) for r in results
        ):
            raise ShapeError(
                f"the shape function of {self.kind} returned {result!r}; it must return "
                f"{'a list of ' + str(len(self.outputs)) + ' tuples' if len(self.outputs) > 1 else 'a tuple'}"
                " of positive sizes (batch excluded)"
            )
        return [ins[0].with_shape(r) for r in results]

    def _trace(self, ins) -> tuple[list[TensorType], int]:
        key = ("trace", type(self), self, tuple(ins))
        if key not in _MODULES:
            outs, macs = meta_trace(self._build, ins, f"{self.kind}({_show_args(self)})")
            if len(outs) != len(self.outputs):
                raise ShapeError(
                    f"{self.kind} returns {len(outs)} tensors but was registered with "
                    f"{len(self.outputs)} output(s); register it with outputs=(...) naming each"
                )
            _MODULES[key] = (outs, macs)
        return _MODULES[key]

    def param_count(self):
        module = meta_module(self._build, self.kind, ("module", type(self), self))
        return sum(p.numel() for p in module.parameters())

    def macs(self, ins, outs):
        try:
            return self._trace(ins)[1]
        except ShapeError:  # a shape function covers what the meta device cannot run
            return 0

    def ctor_args(self):
        sig = [n for n in self.spec_fields() if n not in self.extra_fields()]
        fields = type(self).model_fields
        args, kwargs, positional = [], {}, True
        for name in sig:
            value = getattr(self, name)
            required = fields[name].is_required() or name in self.infer_fns
            positional = positional and required and name not in self.keyword_only
            if positional:
                args.append(value)
            elif required or value != fields[name].default:
                kwargs[name] = value
        kwargs.update(self.extra_kwargs())  # forwarded to **kwargs, in the spec's order
        return args, kwargs


def _show_args(op: Op) -> str:
    args, kwargs = op.ctor_args()
    return ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])


# ---- registration --------------------------------------------------------------------------------
_SIMPLE = {int: StrictInt, float: Union[StrictInt, StrictFloat], bool: StrictBool, str: StrictStr}


def _field_type(tp) -> Any:
    """A constructor annotation as a checked field type (Any when we cannot say)."""
    if tp in _SIMPLE:
        return _SIMPLE[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Union:
        mapped = [type(None) if a is type(None) else _field_type(a) for a in args]
        return Any if Any in mapped else Union[tuple(mapped)]
    if origin is tuple and args:
        mapped = [_field_type(a) for a in args if a is not Ellipsis]
        if Any in mapped:
            return Any
        return tuple[mapped[0], ...] if args[-1] is Ellipsis else tuple[tuple(mapped)]
    if origin is Literal:
        return tp
    return Any


def _load(path: str):
    """`module:Class` or `module.Class` -> the class (this imports `module`)."""
    module_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    if not module_name or not attr:
        raise _error(f"'{path}' is not a class path; write module:Class, e.g. mypkg.layers:MyBlock")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise _error(
            f"cannot import module '{module_name}' for custom layer '{path}': {exc}"
        ) from None
    try:
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise _error(
            f"module '{module_name}' has no class '{attr}' (custom layer '{path}')"
        ) from None
    return obj


def _error(message: str, hint: str | None = None) -> NetdslError:
    return NetdslError([Diagnostic("E109", message, hint=hint)])


def register_layer(
    target: str | type,
    name: str | None = None,
    *,
    shape: Callable | None = None,
    infer: dict[str, Callable] | None = None,
    outputs: tuple[str, ...] | None = None,
    inputs: int | tuple[int, int | None] | None = None,
) -> type[Op]:
    """Allow an `nn.Module` class as a layer in specs. Returns its op declaration.

    `target`: the class, or its path (`"mypkg.layers:MyBlock"`; this imports the module).
    `name`: the name specs use (default: the class name). `shape`, `infer`, `outputs` (names of
    the tensors `forward` returns, default one) and `inputs` (how many it takes, default 1) may
    also be class attributes `netdsl_shape`, `netdsl_infer`, `netdsl_outputs`, `netdsl_inputs`.
    Registering the same class again is a no-op; a different class under a taken name is an error.

    The constructor's parameters are the layer's arguments. With `**kwargs`, the spec's other
    keyword arguments are passed on to it as written, by the live module and the generated
    code alike (`Wrapped(8, kernel_size=3)` for `__init__(self, in_channels, out_channels,
    **conv)`); a name Python cannot pass by keyword (`lambda=`, `_private=`) is E102.

    `shape(input_shapes, **arguments)` says what the layer returns without running it (for a
    forward the meta device cannot run, or to check its input with a message of your own).
    `input_shapes` is a list with one tuple per input, the batch left out; `arguments` are
    every constructor argument by name, defaults and inferred ones filled in, and any forwarded
    to `**kwargs`. It returns a tuple (one output) or a list of tuples (one per `outputs` name),
    each with the first input's dtype; an exception it raises becomes error E301 at the layer,
    quoting its message. Without `shape`, the module is built and run on the meta device.

    `infer` maps a constructor argument to a function of `input_shapes` giving its value: a spec
    may then leave the argument out (as `in_channels` of `Conv2d`), and a value it gives is
    checked against the input (E302).

    A worked example, a ViT's patch embedding::

        class Patches(nn.Module):          # [C, H, W] -> [H/p * W/p, dim]
            def __init__(self, in_channels: int, dim: int, patch: int = 4):
                super().__init__()
                self.proj = nn.Conv2d(in_channels, dim, patch, stride=patch)

            def forward(self, x):
                return self.proj(x).flatten(2).transpose(1, 2)

        def patches_shape(shapes, in_channels, dim, patch):
            ((_, h, w),) = shapes
            if h % patch or w % patch:
                raise ValueError(f"{h}x{w} is not a whole number of {patch}x{patch} patches")
            return (h // patch * (w // patch), dim)

        register_layer(Patches, shape=patches_shape,
                       infer={"in_channels": lambda shapes: shapes[0][0]})

    `image -> Patches(64, patch=8)` on `[3, 32, 32]` is `[16, 64]` with in_channels=3; on
    `[3, 30, 30]` it is E301 "Patches does not accept input [3, 30, 30]: ValueError: 30x30 is
    not a whole number of 8x8 patches"; `Patches(1, 64, patch=8)` there is E302.
    """
    import torch

    cls = _load(target) if isinstance(target, str) else target
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise _error(f"custom layer '{target}' is not an nn.Module class")
    qualname = cls.__qualname__
    if "<locals>" in qualname:
        raise _error(
            f"{qualname} is defined inside a function; define it at module level so that "
            "the generated code can import it"
        )
    path = f"{cls.__module__}:{qualname}"
    name = name or cls.__name__
    if not name.isidentifier() or keyword.iskeyword(name):
        raise _error(f"'{name}' cannot name a layer: it is not a valid identifier")
    existing = get_op(name) or LAYERS.get(name)
    if existing is not None:
        if getattr(existing, "target", None) is cls:
            return existing
        what = (
            f"custom layer {existing.path}"
            if issubclass(existing, CustomOp)
            else "a built-in layer"
        )
        raise _error(
            f"'{name}' is already {what}",
            f'register {path} under another name: register_layer(..., name="My{name}")',
        )
    shape = shape or getattr(cls, "netdsl_shape", None)
    infer = dict(infer or getattr(cls, "netdsl_infer", None) or {})
    outputs = tuple(outputs or getattr(cls, "netdsl_outputs", None) or ("out",))
    n_in = inputs or getattr(cls, "netdsl_inputs", None) or 1
    arity = (n_in, n_in) if isinstance(n_in, int) else tuple(n_in)

    annotations: dict[str, Any] = {"op": Literal[name]}
    namespace: dict[str, Any] = {"op": name, "__module__": __name__}
    try:
        params = list(inspect.signature(cls).parameters.values())
        hints = typing.get_type_hints(cls.__init__)
    except (TypeError, ValueError, NameError):
        params, hints = [], {}
    keyword_only = set()
    var_keyword = next((p.name for p in params if p.kind == p.VAR_KEYWORD), None)
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if (
            p.kind == p.POSITIONAL_ONLY
            or p.name in ("op", "model_config")
            or p.name.startswith("_")
        ):
            raise _error(f"{qualname}'s argument '{p.name}' cannot be given from a spec")
        if p.kind == p.KEYWORD_ONLY:
            keyword_only.add(p.name)
        tp = _field_type(hints.get(p.name, Any))
        if p.name in infer:
            annotations[p.name] = Annotated[Optional[tp], Inferred()]
            namespace[p.name] = None
        else:
            annotations[p.name] = tp
            if p.default is not p.empty:
                namespace[p.name] = p.default
    unknown = set(infer) - set(annotations)
    if unknown:
        raise _error(f"infer= names {', '.join(sorted(unknown))}, which {qualname}() does not take")
    module, _, _ = path.partition(":")
    if var_keyword is not None:  # the spec's other keyword arguments go to **kwargs as given
        namespace["model_config"] = ConfigDict(frozen=True, extra="allow")
    namespace.update(
        __annotations__=annotations,
        family="custom",
        prefix=name.lower(),
        torch=f"{module}.{qualname}",
        imports=(f"import {module}",),
        outputs=outputs,
        arity=arity,
        target=cls,
        path=path,
        shape_fn=staticmethod(shape) if shape else None,
        infer_fns=infer,
        keyword_only=frozenset(keyword_only),
        var_keyword=var_keyword,
        key_args=(),
        __doc__=f"Custom layer {path} (registered).",
    )
    op_cls = type(name, (CustomOp,), namespace)
    register_extra(op_cls)
    PATHS[f"{module}.{qualname}"] = name
    return op_cls


def unregister_layer(name: str) -> None:
    """Forget a registered custom layer (for tests and notebooks)."""
    cls = LAYERS.get(name)
    if cls is None or not issubclass(cls, CustomOp):
        raise KeyError(f"no custom layer named {name!r}")
    del LAYERS[name]
    for path, n in list(PATHS.items()):
        if n == name:
            del PATHS[path]


def allow_layers(paths) -> list[type[Op]]:
    """Register every `module:Class` in `paths` (strings may hold several, comma-separated)."""
    out = []
    for item in paths:
        for path in str(item).replace(",", " ").split():
            out.append(register_layer(path))
    return out


def allow_from_environment() -> None:
    """Register the classes listed in NETDSL_ALLOW_LAYERS."""
    value = os.environ.get(ENV_VAR, "")
    if value.strip():
        allow_layers([value])


# ---- lookup --------------------------------------------------------------------------------------
def lookup(name: str) -> type[Op] | None:
    """The op a spec's layer name means: a built-in or registered layer, an allowed dotted path,
    or a layer that an installed package declares in the `netdsl.layers` entry point group."""
    op = get_op(name) or LAYERS.get(name)
    if op is not None:
        return op
    if name in PATHS:
        return LAYERS.get(PATHS[name])
    ep = _entry_points().get(name)
    if ep is None and "." in name:
        module, _, attr = name.rpartition(".")
        ep = next(
            (e for e in _entry_points().values() if e.value in (f"{module}:{attr}", name)), None
        )
    if ep is None:
        return None
    cls = ep.load()
    return register_layer(cls, name=None if "." in name else ep.name)


def _entry_points() -> dict[str, Any]:
    global _ENTRY_POINTS
    if _ENTRY_POINTS is None:
        from importlib.metadata import entry_points

        _ENTRY_POINTS = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return _ENTRY_POINTS


def not_allowed_hint(dotted: str) -> str:
    module, _, attr = dotted.rpartition(".")
    spec = f"{module}:{attr}"
    return (
        f"a spec never imports code by itself; allow the class explicitly: "
        f"`netdsl --allow-layer {spec} ...`, NETDSL_ALLOW_LAYERS={spec}, "
        f"netdsl.register_layer(\"{spec}\") in Python, or a '{ENTRY_POINT_GROUP}' entry point"
    )
