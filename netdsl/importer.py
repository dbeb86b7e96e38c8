"""An existing `nn.Module` as a `.net` spec a person would write, proven equal to the original.

    text = netdsl.import_module(torchvision.models.resnet18())     # spec text
    netdsl import torchvision.models:resnet18 -o resnet18.net      # the same, from the shell

How. The module is traced with torch.fx; every submodule whose exact class is a layer netdsl
declares (ops/*.py: `nn.Conv2d`, `nn.BatchNorm2d`, ...) is a leaf, read back into that op's
arguments from its attributes (only those that differ from torch's defaults are written, and
sizes the spec infers are left out); functions and tensor methods map to netdsl's words (`+`,
`Concat`, `Flatten`, `Permute`, ...); learned tensors held by a module become `Parameter`s.
Submodules keep their names (`conv1`, `layer1_0`). Every submodule that is not a layer is a
scope: scopes with the same structure (the same layers wired the same way, whatever their
numbers) become one `block`, whose differing numbers are its parameters, used wherever they
occur; a scope of one structure used once is written inline, and a module called twice is one
block declared once (shared weights). Three or more identical block calls in a row are written
`Block(...) * N` (netdsl names those instances itself; the key map pairs them). Sizes read off
a value's shape become `x.size(d)`, and reshapes `Flatten` or `Reshape` from one traced run.

What cannot be imported (a function or layer outside netdsl's vocabulary, control flow that
depends on values, a module fx cannot trace) is E508 naming the module path and the op.

The proof. The spec is parsed and checked like any spec, built, and given the original's
weights through the names each layer came from (the state_dict keys differ only where a name
had to change: `layer1.0.conv1` is `layer1_0.conv1`; `key_map` holds them); then the parameter
counts must be equal and the outputs identical, in eval mode, on random inputs.
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from .diagnostics import Diagnostic, NetdslError

# ---- the vocabulary -----------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _leaf_ops() -> dict[type, type]:
    """torch module class -> netdsl op class, from the ops' own declarations."""
    import torch.nn as nn

    from .ops.registry import get_op, op_names

    out = {}
    for name in op_names():
        cls = get_op(name)
        target = getattr(cls, "torch", None) or ""
        if target.startswith("nn.") and hasattr(nn, target[3:]) and target != "nn.Parameter":
            out[getattr(nn, target[3:])] = cls
        elif target == "torchvision.ops.StochasticDepth":
            from torchvision.ops import StochasticDepth

            out[StochasticDepth] = cls
    return out


SKIPPED_FIELDS = {"op", "init", "bias_init", "trainable", "weight", "masks"}


def _op_arguments(op_cls, module) -> tuple[list, dict]:
    """The arguments of `op_cls` that `module` was built with, as the spec writes them:
    inferred sizes left out, torch's defaults left out, the required ones positional."""
    from .ops.base import Extra, Inferred

    positional, keywords = [], {}
    for name, info in op_cls.model_fields.items():
        if name in SKIPPED_FIELDS or any(isinstance(m, (Extra, Inferred)) for m in info.metadata):
            continue
        value = _attribute(module, name)
        if value is _MISSING:
            if info.is_required():
                raise ValueError(f"{type(module).__name__} has no attribute '{name}'")
            continue
        value = _plain(value)
        if name in ("kdim", "vdim") and value == getattr(module, "embed_dim", None):
            continue  # torch stores embed_dim for None
        if info.is_required():
            positional.append(value)
        elif value != _plain(info.default):
            keywords[name] = value
    return positional, keywords


_MISSING = object()


def _attribute(module, name):
    import torch

    if name == "bias":
        b = getattr(module, "in_proj_bias", _MISSING)
        if b is _MISSING:
            b = getattr(module, "bias", _MISSING)
        return b if b is _MISSING or isinstance(b, bool) else b is not None
    if name == "normalized_shape" and hasattr(module, "normalized_shape"):
        return tuple(module.normalized_shape)
    value = getattr(module, name, _MISSING)
    if isinstance(value, torch.Tensor):
        return _MISSING
    return value


def _plain(v):
    """Tuples of one repeated number as that number (`(3, 3)` -> 3), as a person writes them."""
    if isinstance(v, (tuple, list)):
        v = tuple(_plain(x) for x in v)
        if v and all(x == v[0] for x in v) and isinstance(v[0], int) and not isinstance(v[0], bool):
            return v[0]
        return v
    return v


def literal(v) -> str:
    """A Python value in spec syntax."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isinf(v) or math.isnan(v):
            raise ValueError(f"{v} has no spec literal")
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (tuple, list)):
        inner = ", ".join(literal(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    raise ValueError(f"{type(v).__name__} {v!r} has no spec literal")


# ---- the traced program, as steps ---------------------------------------------------------

@dataclass
class Step:
    """One value of the traced program."""

    id: str  # the fx node's name: unique
    kind: str  # an op kind ("Conv2d", "Concat"), "+", "-", "*", "/", "input", "param"
    args: list = field(default_factory=list)  # positional arguments (Python values)
    kwargs: dict = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)  # ids of the values it reads
    path: str | None = None  # the original module path of a layer or parameter
    scope: tuple[str, ...] = ()  # the enclosing submodules that are not layers, outermost first
    shared: bool = False  # a layer with weights used more than once
    reverse: bool = False  # `2 * x` rather than `x * 2`


@dataclass(frozen=True)
class SizeRef:
    """A size the forward computes from a value's shape: `{0}.size(0)` over the values `refs`."""

    template: str
    refs: tuple[str, ...] = ()

    def __repr__(self) -> str:  # blocks compare numbers by repr: the same formula is the same
        return f"SizeRef({self.template})"

    def text(self, names: dict[str, str]) -> str:
        return self.template.format(*(names[r] for r in self.refs))


def _fail(message: str, hint: str | None = None):
    raise NetdslError([Diagnostic("E508", message, hint=hint)])


INFIX = {operator.add: "+", operator.sub: "-", operator.mul: "*", operator.truediv: "/",
         operator.matmul: "@", "add": "+", "sub": "-", "mul": "*", "div": "/", "matmul": "@"}
# forward keyword arguments a layer call may carry that change nothing the spec says
HARMLESS_KWARGS = {"need_weights": False}


def trace(module):
    """(steps in execution order, the ids of the outputs, the traced GraphModule)."""
    import torch
    import torch.fx as fx
    import torch.nn.functional as F

    leaves = _leaf_ops()

    class Tracer(fx.Tracer):
        def is_leaf_module(self, m, qualname):
            return type(m) in leaves or type(m) is torch.nn.Identity

    tracer = Tracer()
    try:
        graph = tracer.trace(module)
    except Exception as exc:  # noqa: BLE001 -- fx's own words: control flow on values, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _fail(f"torch.fx cannot trace {type(module).__name__}: {first}",
              "netdsl imports modules whose forward does not branch on tensor values")
    gm = fx.GraphModule(module, graph)
    gm.graph.eliminate_dead_code()  # `x, _ = attention(x, x, x)`: the unused half goes
    graph = gm.graph
    modules = dict(module.named_modules())
    steps: list[Step] = []
    alias: dict[str, str] = {}  # a value that is another (Identity, contiguous, dropout(p=0))
    per_call: Counter = Counter()  # (layer, the module call around it) -> calls
    outputs: list[str] = []
    absorbed: set[str] = set()  # get_attr nodes a functional layer took as its own weights
    sizes: dict[str, object] = {}  # nodes that are sizes (SizeRef), shapes or checks

    def src(a) -> str:
        name = a.name
        return alias.get(name, name)

    def scope_of(node) -> tuple[str, ...]:
        """The enclosing module calls: `enc`, and `enc@1` for a second call of it."""
        stack = node.meta.get("nn_module_stack") or {}
        keys = [k for k, v in stack.items() if v[0]]
        if node.op == "call_module" and keys and base(keys[-1]) == node.target:
            keys = keys[:-1]
        return tuple(keys)

    for node in graph.nodes:
        where = scope_of(node)
        if node.op == "placeholder":
            steps.append(Step(node.name, "input", scope=()))
        elif node.op == "output":
            out = node.args[0]
            outs = out if isinstance(out, (tuple, list)) else [out]
            outputs = [src(o) for o in outs]
        elif node.op == "get_attr":
            t = _resolve(module, node.target)
            if not isinstance(t, torch.nn.Parameter):
                _fail(f"{node.target}: a tensor held by the module that is not a parameter",
                      "buffers outside layers are not imported yet")
            steps.append(Step(node.name, "param", list(t.shape), path=node.target, scope=where))
        elif node.op == "call_module":
            m = modules[node.target]
            ins = [a for a in node.args if isinstance(a, fx.Node)]
            if type(m) is torch.nn.Identity:
                alias[node.name] = src(ins[0])
                continue
            op = leaves[type(m)]
            if isinstance(m, torch.nn.MultiheadAttention) and not m.batch_first:
                _fail(f"{node.target}: nn.MultiheadAttention(batch_first=False)",
                      "netdsl's attention takes [B, L, E] values")
            extra = {k: v for k, v in node.kwargs.items()
                     if not (k in HARMLESS_KWARGS and v == HARMLESS_KWARGS[k]) and v is not None}
            if extra or any(not isinstance(a, fx.Node) for a in node.args):
                what = ", ".join(f"{k}=" for k in extra) or "a constant argument"
                _fail(f"{node.target}: a call of {type(m).__name__} with {what}",
                      "netdsl imports layers called on values alone (masks are not imported yet)")
            inputs = [src(a) for a in ins]
            if isinstance(m, torch.nn.MultiheadAttention):
                inputs = _dedupe(inputs)
            try:
                args, kwargs = _op_arguments(op, m)
            except ValueError as exc:
                _fail(f"{node.target}: {exc}")
            has_weights = any(True for _ in m.parameters(recurse=True))
            per_call[(node.target, where[-1] if where else "")] += 1
            steps.append(Step(node.name, op.model_fields["op"].default, args, kwargs, inputs,
                              node.target, where, shared=has_weights))
        elif node.op in ("call_function", "call_method"):
            if _size_node(node, src, sizes):
                continue
            step = _function(node, src, where, F, torch, absorbed, sizes)
            if step is None:
                continue
            if isinstance(step, str):  # an alias
                alias[node.name] = step
                continue
            steps.append(step)
    steps = [s for s in steps if s.id not in absorbed]
    for s in steps:  # shared: called twice inside one call of its module (a shared module's
        #             layers are shared by the module's own calls)
        s.shared = s.shared and per_call[(s.path, s.scope[-1] if s.scope else "")] > 1
    _hoist_concats(steps)
    return steps, outputs, gm


def _hoist_concats(steps: list[Step]) -> None:
    """A Concat whose inputs all come from outside its submodule moves out of it (DenseNet's
    layers concatenate what they are given): the submodule then reads one value, and layers
    that differ only in how many values they were given are one block."""
    where = {s.id: s.scope for s in steps}
    for s in steps:
        if s.kind == "Concat" and s.scope:
            inner = s.scope[-1]
            if all(inner not in where.get(i, ()) for i in s.inputs):
                s.scope = s.scope[:-1]


def base(key: str) -> str:
    """A module call's module: `enc@1` -> `enc`."""
    return re.sub(r"@\d+$", "", key)


def _dedupe(ids: list[str]) -> list[str]:
    """(x, x, x) -> self-attention reads one value."""
    return ids[:1] if ids and all(i == ids[0] for i in ids) else ids


def _resolve(module, target: str):
    obj = module
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


SHAPE, DROPPED = "shape", "dropped"  # markers in `sizes`: a value's shape; a check's result
SIZE_OPS = {operator.floordiv: "//", operator.mul: "*", operator.add: "+", operator.sub: "-"}


def _size_node(node, src, sizes) -> bool:
    """Record a node that computes a size, a shape or a size check (for `torch._assert`);
    False for a node that computes a tensor."""
    import torch.fx as fx

    fn, args = node.target, node.args
    name = fn if isinstance(fn, str) else getattr(fn, "__name__", "")

    def size_of(a):
        return sizes.get(a.name) if isinstance(a, fx.Node) else a

    if fn is getattr and args[1] == "shape" or name == "size" and len(args) == 1:
        sizes[node.name] = (SHAPE, src(args[0]))
        return True
    if name == "size" and len(args) == 2:
        sizes[node.name] = SizeRef(f"{{0}}.size({args[1]})", (src(args[0]),))
        return True
    if name == "dim":
        sizes[node.name] = DROPPED
        return True
    if fn is operator.getitem and isinstance(args[0], fx.Node) and \
            isinstance(sizes.get(args[0].name), tuple) and isinstance(args[1], int):
        _, of = sizes[args[0].name]
        sizes[node.name] = SizeRef(f"{{0}}.size({args[1]})", (of,))
        return True
    if fn in SIZE_OPS and any(isinstance(a, fx.Node) and a.name in sizes for a in args):
        parts = [size_of(a) for a in args[:2]]
        if any(p is DROPPED or isinstance(p, tuple) for p in parts):
            sizes[node.name] = DROPPED
            return True
        refs, texts = [], []
        for p in parts:
            if isinstance(p, SizeRef):
                texts.append(_shifted(p.template, len(refs)))
                refs += p.refs
            else:
                texts.append(repr(p))
        sizes[node.name] = SizeRef(f"({texts[0]} {SIZE_OPS[fn]} {texts[1]})", tuple(refs))
        return True
    if fn in (operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge) \
            and any(isinstance(a, fx.Node) and a.name in sizes for a in args):
        sizes[node.name] = DROPPED
        return True
    return False


def _shifted(template: str, by: int) -> str:
    """`{0}.size(1)` with its value numbers moved up by `by` (to join another formula)."""
    return re.sub(r"\{(\d+)\}", lambda m: f"{{{int(m.group(1)) + by}}}", template)


def _function(node, src, where, F, torch, absorbed: set, sizes: dict):
    """A function or method call as a Step, an alias (a value id), or None (dropped)."""
    import torch.fx as fx

    fn, args, kwargs = node.target, node.args, dict(node.kwargs)
    name = fn if isinstance(fn, str) else getattr(fn, "__name__", str(fn))
    tensors = [a for a in args if isinstance(a, fx.Node)]
    if fn is torch._assert or any(isinstance(a, fx.Node) and sizes.get(a.name) is DROPPED
                                  for a in args):
        return None

    def step(kind, pos=(), kw=None, ins=None):
        return Step(node.name, kind, list(pos), kw or {},
                    [src(a) for a in (tensors if ins is None else ins)], None, where)

    infix = {**INFIX, torch.add: "+", torch.mul: "*"}
    if fn in infix:
        op = infix[fn]
        if len(tensors) == 2:
            return step(op)
        if len(tensors) == 1 and isinstance(args[1] if args[0] is tensors[0] else args[0],
                                            (int, float)):
            k = args[1] if args[0] is tensors[0] else args[0]
            return Step(node.name, op, [k], {}, [src(tensors[0])], None, where,
                        reverse=args[0] is not tensors[0])
    if fn in (torch.cat, torch.concat) or name == "cat":
        items = args[0]
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        if len(items) == 1:  # DenseNet's first layer concatenates one tensor: itself
            return src(items[0])
        return Step(node.name, "Concat", [dim], {}, [src(a) for a in items], None, where)
    if fn is torch.flatten or name == "flatten":
        start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
        end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
        return step("Flatten", [start] + ([end] if end != -1 else []))
    if name in ("contiguous", "clone") or fn in (F.dropout,) and (args[1:2] or [0.5])[0] == 0:
        return src(tensors[0])
    simple = {F.relu: "ReLU", torch.relu: "ReLU", F.gelu: "GELU", F.silu: "SiLU",
              torch.sigmoid: "Sigmoid", F.sigmoid: "Sigmoid", torch.tanh: "Tanh",
              F.hardsigmoid: "Hardsigmoid", F.hardswish: "Hardswish", F.relu6: "ReLU6"}
    unary = {torch.abs: "abs", torch.exp: "exp", torch.log: "log", torch.sqrt: "sqrt",
             torch.neg: "Neg", operator.neg: "Neg"}
    if fn in unary or name in ("abs", "exp", "log", "sqrt", "neg") and len(tensors) == 1:
        return step(unary.get(fn) or {"neg": "Neg"}.get(name, name))
    if fn in simple or name in ("relu", "sigmoid", "tanh"):
        return step(simple.get(fn) or {"relu": "ReLU", "sigmoid": "Sigmoid",
                                       "tanh": "Tanh"}[name])
    if fn is F.layer_norm:  # a LayerNorm subclass (torchvision's LayerNorm2d) calls it
        shape, weight, bias = (list(args[1:4]) + [None, None, None])[:3]
        weight, bias = kwargs.get("weight", weight), kwargs.get("bias", bias)
        eps = args[4] if len(args) > 4 else kwargs.get("eps", 1e-5)
        owner = weight.target.rsplit(".", 1)[0] if isinstance(weight, fx.Node) and \
            weight.op == "get_attr" else None
        if owner is None or not (isinstance(bias, fx.Node) or bias is None):
            _fail(f"layer_norm in {where[-1] if where else 'the model'} with weights that are "
                  "not a module's own")
        absorbed.update(a.name for a in (weight, bias) if isinstance(a, fx.Node))
        kw = {} if eps == 1e-5 else {"eps": eps}
        if bias is None:
            kw["bias"] = False
        return Step(node.name, "LayerNorm", [], kw, [src(tensors[0])], owner, where)
    if fn is F.adaptive_avg_pool2d:
        size = args[1] if len(args) > 1 else kwargs["output_size"]
        return step("AdaptiveAvgPool2d", [_plain(size)])
    if fn is F.dropout:
        p = args[1] if len(args) > 1 else kwargs.get("p", 0.5)
        return step("Dropout", [p])
    if fn is torch.permute or name == "permute":
        dims = args[1] if len(args) == 2 and isinstance(args[1], (tuple, list)) else args[1:]
        dims = kwargs.get("dims", dims)
        return step("Permute", list(dims))
    if fn is torch.transpose or name == "transpose":
        return step("Transpose", list(args[1:3]))
    if name == "mean" or fn is torch.mean:
        dim = args[1] if len(args) > 1 else kwargs.get("dim")
        keep = kwargs.get("keepdim", args[2] if len(args) > 2 else False)
        return step("Mean", [list(dim) if isinstance(dim, (tuple, list)) else dim],
                    {"keepdim": True} if keep else {})
    if fn is operator.getitem and tensors:
        return _getitem(node, args, src, where, torch)
    tensors = [a for a in tensors if a.name not in sizes]

    def value(a):
        return sizes[a.name] if isinstance(a, fx.Node) and a.name in sizes else a

    if name == "expand":
        dims = args[1:] if not isinstance(args[1], (tuple, list)) else args[1]
        return step("expand", [value(d) for d in dims], ins=tensors[:1])
    if name in ("reshape", "view") or fn is torch.reshape:
        return step("reshape", [], ins=tensors[:1])  # resolved from the traced shapes
    module_name = "" if isinstance(fn, str) else getattr(fn, "__module__", "") or ""
    what = f"{module_name}.{name}".lstrip(".")
    at = f" in {where[-1]}" if where else " in the model's forward"
    _fail(f"{what}{at} has no netdsl counterpart (node {node.name})",
          "netdsl imports layers and functions of its vocabulary (netdsl summary lists them)")


def _getitem(node, args, src, where, torch):
    base, index = args
    producer = base
    if producer.op == "call_module" and isinstance(index, int):  # (output, weights) of
        #                                                         attention, an RNN's output
        if index == 0:
            return src(base)
        _fail(f"{producer.target}: output {index} of a layer is not imported")
    if isinstance(index, tuple) and all(isinstance(i, slice) and i == slice(None) for i in
                                        index[:-1]) and isinstance(index[-1], int):
        return Step(node.name, "Select", [len(index) - 1, index[-1]], {}, [src(base)], None, where)
    _fail(f"indexing {index!r} in {where[-1] if where else 'the model'} has no netdsl "
          "counterpart")


# ---- scopes into blocks -------------------------------------------------------------------

@dataclass
class Scope:
    path: str
    cls: str  # the module's class name
    steps: list[Step]
    inputs: list[str]
    output: str | None  # the one value it gives its parent (None: not a block candidate)


def _ident(text: str, prefix: str = "m") -> str:
    """A spec name for a module path: dots become underscores; a name that would start with a
    digit or '_' (Sequential's `0`, torchvision's `_0`) gets the layer's kind in front."""
    import keyword

    from .passes.elaborate import MODULE_ATTRS

    out = re.sub(r"\W", "_", text).lstrip("_")
    out = out if out and not out[:1].isdigit() else prefix + out
    taken = out in RESERVED or keyword.iskeyword(out) or out in MODULE_ATTRS
    return out + "_" if taken else out


def _structure(scopes: dict[str, Scope], path: str, steps_by_scope) -> tuple:
    """What a scope does, numbers left out: the sequence of (kind, argument names, wiring)."""
    sc = scopes[path]
    local = {v: i for i, v in enumerate(sc.inputs)}
    body = []
    for item in steps_by_scope[path]:
        if isinstance(item, str):  # a child scope
            child = scopes[item]
            key = ("block", _structure(scopes, item, steps_by_scope),
                   tuple(local.get(v, v) for v in child.inputs))
            local[child.output] = f"v{len(local)}"
            body.append(key)
        else:
            ins = tuple(local.get(v, "?") for v in item.inputs)
            body.append((item.kind, len(item.args), ins, item.shared,
                         item.path.rsplit(".", 1)[-1] if item.path else None))
            local[item.id] = f"v{len(local)}"
    return tuple(body)


def _relative(path: str, body: str) -> str:
    """A module's path within the body of a module call (`layer1.0.conv1` in `layer1.0`)."""
    path, body = base(path), base(body)
    if body and path == body:
        return ""
    return path[len(body) + 1:] if body and path.startswith(body + ".") else path


_OPTIONAL: dict[str, list] = {}


def _optional(kind: str) -> list[tuple[str, object]]:
    """(argument, torch's default) of every optional argument a spec may write for an op, in
    torch's order. A block's structure counts all of them, so that `stride=2` in one instance
    and the default in another is a number that varies, not another structure."""
    if kind not in _OPTIONAL:
        from .ops.base import Extra, Inferred

        op = _op_class(kind)
        _OPTIONAL[kind] = [] if op is None else [
            (n, _plain(f.default)) for n, f in op.model_fields.items()
            if not f.is_required() and n not in SKIPPED_FIELDS
            and not any(isinstance(m, (Extra, Inferred)) for m in f.metadata)]
    return _OPTIONAL[kind]


def _step_numbers(item) -> list:
    extra = set(item.kwargs) - {n for n, _ in _optional(item.kind)}
    if extra:
        raise ValueError(f"{item.kind} has no argument {sorted(extra)[0]}")
    return [*item.args, *(item.kwargs.get(n, d) for n, d in _optional(item.kind))]


def _numbers(scopes, path, steps_by_scope) -> list:
    """The numbers a scope's structure leaves out, in order (its children's included)."""
    out = []
    for item in steps_by_scope[path]:
        if isinstance(item, str):
            out += _numbers(scopes, item, steps_by_scope)
        else:
            out += _step_numbers(item)
    return out


# ---- writing the spec ---------------------------------------------------------------------

class Writer:
    def __init__(self, steps, outputs, input_shapes, model_name, module):
        self.steps = steps
        self.by_id = {s.id: s for s in steps}
        self.outputs = outputs
        self.input_shapes = input_shapes
        self.model_name = model_name
        self.module = module
        self.blocks: dict[tuple, dict] = {}  # structure -> {name, params, text}
        self.block_names: Counter = Counter()
        self.named: set[tuple[str, str]] = set()  # (layer path, body) already given its name
        # body ("" for the model, else the block's name) -> [(spec name, original path
        # relative to the body's module, the block it calls or None)]
        self.record: dict[str, list] = defaultdict(list)
        self.body_name = ""

    # scopes -----------------------------------------------------------------------------
    def scopes(self):
        consumers = defaultdict(list)
        for s in self.steps:
            for i in s.inputs:
                consumers[i].append(s)
        paths = list(dict.fromkeys(p for s in self.steps for p in s.scope))
        modules = dict(self.module.named_modules())
        scopes: dict[str, Scope] = {}
        for p in paths:
            inside = [s for s in self.steps if p in s.scope]
            ids = {s.id for s in inside}
            ins = []
            for s in inside:
                for i in s.inputs:
                    if i not in ids and i not in ins:
                        ins.append(i)
            outs = [s.id for s in inside if any(c.id not in ids for c in consumers[s.id])
                    or s.id in self.outputs]
            params_outside = any(s.kind == "param" and s.path and
                                 not s.path.startswith(base(p) + ".") for s in inside)
            ok = len(outs) == 1 and ins and not params_outside and \
                not any(s.shared for s in inside)
            scopes[p] = Scope(p, type(modules[base(p)]).__name__, inside, ins,
                              outs[0] if ok else None)
        return scopes

    def plan(self):
        """Which scopes become blocks: those whose structure occurs more than once (and that
        can be one: one output), outermost first."""
        scopes = self.scopes()
        # the items of each scope: its own steps, and its direct child scopes (by first step)
        steps_by_scope: dict[str, list] = {}

        def fill(path: str, pool: list[Step], depth: int) -> None:
            its, inner = [], {}  # child scope -> its steps, in order of first use
            for s in pool:
                if len(s.scope) > depth:
                    if s.scope[depth] not in inner:
                        inner[s.scope[depth]] = []
                        its.append(s.scope[depth])
                    inner[s.scope[depth]].append(s)
                else:
                    its.append(s)
            steps_by_scope[path] = its
            for child, steps in inner.items():
                fill(child, steps, depth + 1)

        fill("", self.steps, 0)
        scopes[""] = Scope("", self.model_name, self.steps, [], None)
        counts = Counter()
        shape_of = {}
        for p, sc in scopes.items():
            if p and sc.output is not None:
                key = _structure(scopes, p, steps_by_scope)
                shape_of[p] = key
                counts[key] += 1
        block_scopes = {p for p, k in shape_of.items() if counts[k] > 1
                        and len(scopes[p].steps) > 1}
        for p in list(block_scopes):  # a block that only calls one block: one is enough
            only = steps_by_scope[p]
            if len(only) == 1 and isinstance(only[0], str) and only[0] in block_scopes:
                block_scopes.discard(only[0])
        calls = Counter(base(p) for p in scopes if p)
        self.shared_scopes = {b for b, n in calls.items() if n > 1}
        missing = {b for b in self.shared_scopes if not any(base(p) == b for p in block_scopes)}
        if missing:
            _fail(f"{sorted(missing)[0]} is called more than once, but its calls cannot be one "
                  "block (they give several values, or differ)")
        return scopes, steps_by_scope, shape_of, block_scopes

    # text -------------------------------------------------------------------------------
    def write(self) -> str:
        scopes, items, shape_of, block_scopes = self.plan()
        self.scopes_, self.items_, self.shape_of, self.block_scopes = (scopes, items, shape_of,
                                                                       block_scopes)
        groups = defaultdict(list)
        for p in block_scopes:
            groups[shape_of[p]].append(p)
        for members in groups.values():
            members.sort(key=self._order)
        self.groups = groups
        model = self.body("", model=True)
        defs = [b["text"] for b in sorted(self.blocks.values(), key=lambda b: b["order"])]
        return "\n".join(defs + [model])

    def _repeats(self, pending: list) -> list[str]:
        """A chain's pieces as text: a run of REPEAT or more identical block calls is written
        `Block(...) * N` (netdsl names them block1, block2, ...); every call is recorded."""
        out, i = [], 0
        while i < len(pending):
            p = pending[i]
            if not isinstance(p, _Call):
                out.append(p)
                i += 1
                continue
            j = i
            while j < len(pending) and isinstance(pending[j], _Call) and \
                    pending[j].call == p.call:
                j += 1
            run = pending[i:j]
            if len(run) >= REPEAT:
                out.append(f"{p.call} * {len(run)}")
                self.record[self.body_name].append((None, [c.local for c in run], p.block))
            else:
                for c in run:
                    out.append(f"{c.call} as {c.ident}")
                    self.record[self.body_name].append((c.ident, c.local, c.block))
            i = j
        return out

    def pairs(self, graph) -> dict[str, str]:
        """Spec module path -> original module path, for every named layer and parameter,
        walking the spec's IR (`graph`) beside what was recorded while writing it: the
        instances of a `Block * N` are the block's unnamed instances in its body, in order."""
        out = {}

        def walk(g, body, ours, theirs):
            named = {e[0] for e in self.record[body] if e[0] is not None}
            unnamed = defaultdict(list)
            for n in g.nodes:
                if n.kind == "block" and n.name not in named:
                    unnamed[n.block].append(n)
            for ident, local, child in self.record[body]:
                if ident is None:  # a run: its instances, in order
                    for node, one in zip(unnamed[child], local, strict=False):
                        walk(node.graph, child, f"{ours}{node.name}.",
                             ".".join(p for p in (theirs, one) if p))
                    unnamed[child] = unnamed[child][len(local):]
                    continue
                there = ".".join(p for p in (theirs, local) if p)
                if child is not None:
                    walk(g.node(ident).graph, child, f"{ours}{ident}.", there)
                else:
                    out[ours + ident] = there

        walk(graph, "", "", "")
        return out

    def emit_items(self, path) -> list:
        """A body's items as written: child scopes that are blocks stay calls, the others
        are spliced in (their numbers come in the same order as `_numbers` counts them)."""
        out = []
        for it in self.items_[path]:
            if isinstance(it, str) and it not in self.block_scopes:
                out += self.emit_items(it)
            else:
                out.append(it)
        return out

    def _order(self, path):
        for i, s in enumerate(self.steps):
            if path in s.scope:
                return i
        return 0

    def block_for(self, path) -> tuple[str, list, dict]:
        """The block a scope is an instance of (defined on first use), the scope's numbers,
        and the block (its `params`: number index -> parameter name)."""
        key = self.shape_of[path]
        members = self.groups[key]
        numbers = [_numbers(self.scopes_, m, self.items_) for m in members]
        varying = [i for i in range(len(numbers[0])) if len({repr(n[i]) for n in numbers}) > 1]
        if key not in self.blocks:
            cls = self.scopes_[path].cls.lstrip("_")
            if cls == "Sequential":
                cls = re.sub(r"\d+$", "", path.rsplit(".", 1)[-1]).capitalize() or "Stage"
            if _op_class(cls) is not None or cls.lower() in RESERVED:
                cls += "Block"
            self.block_names[cls] += 1
            name = cls if self.block_names[cls] == 1 else f"{cls}{self.block_names[cls]}"
            # numbers that vary together (equal in every instance) are one parameter
            first_of: dict[tuple, int] = {}
            same: dict[int, int] = {}
            for i in varying:
                column = tuple(repr(n[i]) for n in numbers)
                same[i] = first_of.setdefault(column, i)
            owners = dict(self._number_owners(members[0]))
            params: dict[int, str] = {}
            taken: set[str] = set()
            for i in varying:
                if same[i] != i:
                    params[i] = params[same[i]]
                    continue
                base = SHORT.get(owners.get(i, "n"), owners.get(i, "n"))
                pname, k = base, 2
                while pname in taken:
                    pname, k = f"{base}{k}", k + 1
                taken.add(pname)
                params[i] = pname
            block = {"name": name, "params": params, "varying": varying}
            self.blocks[key] = block
            outer, self.body_name = self.body_name, name
            block["text"] = self.body(path, block=block)
            self.body_name = outer
            block["order"] = len([b for b in self.blocks.values() if "order" in b])
        b = self.blocks[key]
        return b["name"], _numbers(self.scopes_, path, self.items_), b

    def _number_owners(self, path, start=0):
        """(index, argument name) of each number `_numbers` counts in a scope."""
        i = start
        for item in self.items_[path]:
            if isinstance(item, str):
                for j, arg in self._number_owners(item, i):
                    yield j, arg
                    i = j + 1
            else:
                op = _op_class(item.kind)
                required = [n for n, f in op.model_fields.items() if f.is_required()
                            and n not in SKIPPED_FIELDS] if op else []
                from .ops.base import Inferred

                required = [n for n in required if not any(isinstance(m, Inferred) for m in
                                                            op.model_fields[n].metadata)]
                if item.kind == "param":
                    required = ["size"] * len(item.args)
                for k in range(len(item.args)):
                    yield i, (required[k] if k < len(required) else f"arg{k}")
                    i += 1
                for k, _ in _optional(item.kind):
                    yield i, k
                    i += 1

    def body(self, path: str, model: bool = False, block: dict | None = None) -> str:
        """The text of the model (path "") or of the block a scope is an instance of."""
        sc = self.scopes_[path]
        lines = []
        names: dict[str, str] = {}
        used: set[str] = set()

        for it in self.emit_items(path):  # the layers' names: values take others
            p = it if isinstance(it, str) else it.path
            if p and not (isinstance(it, Step) and it.kind == "param"):
                local = _relative(p, path)
                used.add(_ident(local, "m"))
                used.add(_ident(local, _prefix(it.kind) if isinstance(it, Step) else "m"))

        def fresh(base: str) -> str:
            base = _ident(base) or "v"
            n, out = 1, base
            if out in used or _op_class(out) is not None:  # a layer's name, or an op's
                out = base = f"{base}_out"
            while out in used or out in RESERVED:
                n += 1
                out = f"{base}{n}"
            used.add(out)
            return out

        if model:
            for s in self.steps:
                if s.kind == "input":
                    nm = fresh(s.id)
                    names[s.id] = nm
                    lines.append(f"  input {nm}: {self.input_shapes[s.id]}")
        else:
            for i, v in enumerate(sc.inputs):
                nm = fresh("x" if len(sc.inputs) == 1 else f"x{i + 1}")
                names[v] = nm
                lines.append(f"  input {nm}")
        arg = _Numbers(block["params"] if block else {}, names)
        # what each value is read by, inside this body
        its = self.emit_items(path)
        produced = {}
        order = []
        for it in its:
            if isinstance(it, str):
                out = self.scopes_[it].output
                produced[out] = it
                order.append(out)
            elif it.kind != "input":
                produced[it.id] = it
                order.append(it.id)
        readers = Counter()
        for it in its:
            ins = self.scopes_[it].inputs if isinstance(it, str) else it.inputs
            for v in ins:
                readers[v] += 1
            for a in [] if isinstance(it, str) else it.args:
                for v in getattr(a, "refs", ()):  # a size read off a value: it needs a name
                    readers[v] += 2
        outputs = [self.outputs] if model else [[sc.output]]
        for v in outputs[0]:
            readers[v] += 1

        # a value read only by the output is written in the output statement
        direct_out = {v for v in outputs[0] if readers[v] == 1 and len(outputs[0]) == 1}
        declared: dict[str, str] = {}  # shared layers: original path -> their spec name
        pending: list[str] = []  # the open chain's text pieces
        chain_value: str | None = None

        def flush(value_id: str | None):
            nonlocal chain_value
            if not pending:
                return
            head, *rest = self._repeats(pending)
            one_line = head + "".join(" -> " + p for p in rest)
            sep = "\n        -> " if len(rest) > 2 or len(one_line) > 90 else " -> "
            text = head + "".join(sep + p for p in rest)
            if value_id is not None and value_id in direct_out:
                names[value_id] = text
            elif value_id is not None:
                nm = fresh(self._value_name(value_id, produced))
                names[value_id] = nm
                lines.append(f"  {nm} = {text}")
            pending.clear()
            chain_value = None

        for vid in order:
            it = produced[vid]
            if isinstance(it, str):
                ins = self.scopes_[it].inputs
                local = _relative(it, path)
                bname, child_numbers, child = self.block_for(it)
                firsts = {}
                for j in child["varying"]:
                    firsts.setdefault(child["params"][j], j)
                bargs = [arg(child_numbers[j], j) for j in firsts.values()]
                arg.skip(len(child_numbers))
                call = f"{bname}({', '.join(bargs)})" if bargs else bname
                ident = _ident(local, bname.lower())
                if base(it) in self.shared_scopes:  # one module called twice: declared once
                    if base(it) not in declared:
                        flush(chain_value)
                        lines.append(f"  {ident} = {call}")
                        declared[base(it)] = ident
                        self.record[self.body_name].append((ident, local, bname))
                    piece = declared[base(it)]
                else:  # recorded when its chain is written: runs become `Block * N`
                    piece = _Call(call, ident, local, bname)
                infix = False
            else:
                ins = it.inputs
                infix = it.kind in ("+", "-", "*", "/", "@")
                piece = None if infix else self._piece(it, arg, path)
            if isinstance(it, Step) and it.shared:  # one layer called twice: declared once
                if it.path not in declared:
                    flush(chain_value)
                    local = _relative(it.path, path)
                    nm = _ident(local, _prefix(it.kind))  # its layer name, kept for it
                    declared[it.path] = nm
                    call = self._piece(it, arg, path).split(" as ", 1)[0]
                    lines.append(f"  {nm} = {call}")
                    self.record[self.body_name].append((nm, local, None))
                    chain_value = None
                piece = declared[it.path]
            if isinstance(it, Step) and it.kind == "param":  # `name = Parameter(...)`
                flush(chain_value)
                local = _relative(it.path, path)
                nm = fresh(_ident(local, "param"))
                names[vid] = nm
                self.record[self.body_name].append((nm, local, None))
                lines.append(f"  {nm} = {piece}")
                chain_value = None
                continue
            if isinstance(it, Step) and it.kind == "expand":  # `token.expand(x.size(0), -1)`
                flush(chain_value)
                sizes_text = ", ".join(arg(a) for a in it.args)
                pending.append(f"{names[ins[0]]}.expand({sizes_text})")
                chain_value = vid
                if readers[vid] != 1 or vid in outputs[0]:
                    flush(vid)
                continue
            if not infix and len(ins) == 1 and ins[0] == chain_value:
                pending.append(piece)
            else:
                flush(chain_value)
                if infix and len(ins) == 2:
                    pending.append(f"{names[ins[0]]} {it.kind} {names[ins[1]]}")
                elif infix:
                    k = arg(it.args[0])
                    x = names[ins[0]]
                    pending.append(f"{k} {it.kind} {x}" if it.reverse else f"{x} {it.kind} {k}")
                elif not ins:
                    pending.append(piece)
                elif len(ins) == 1:
                    pending += [names[ins[0]], piece]
                else:
                    pending += [_tuple_text([names[i] for i in ins]), piece]
            chain_value = vid
            if readers[vid] != 1 or vid in outputs[0]:
                flush(vid)
        flush(chain_value)
        out_names = [names[v] for v in outputs[0]]
        lines.append(f"  output {', '.join(out_names)}")
        if model:
            return f"model {self.model_name} {{\n" + "\n".join(lines) + "\n}\n"
        names_in_order = list(dict.fromkeys(block["params"][i] for i in block["varying"]))
        sig = f"({', '.join(names_in_order)})" if names_in_order else ""
        return f"block {block['name']}{sig} {{\n" + "\n".join(lines) + "\n}\n"

    def _value_name(self, vid, produced) -> str:
        it = produced.get(vid)
        if isinstance(it, str):
            return it.rsplit(".", 1)[-1]
        if isinstance(it, Step) and it.path:  # `body.2` -> body: a number names nothing
            words = [w for w in it.path.split(".") if not w.isdigit()]
            return words[-1] if words else _prefix(it.kind)
        return {"+": "sum", "-": "diff", "*": "prod", "/": "ratio", "@": "mm"}.get(
            getattr(it, "kind", ""), getattr(it, "kind", "v").lower())

    def _piece(self, it: Step, arg, path) -> str:
        # "" for the block's module itself (LayerNorm2d: a LayerNorm with permutes around it)
        local = _relative(it.path, path) if it.path is not None else None
        if it.kind == "param":
            return f"Parameter({', '.join(arg(d) for d in it.args)})"
        parts = [arg(a) for a in it.args]
        for k, default in _optional(it.kind):
            value = it.kwargs.get(k, default)
            varies = arg.next_is_parameter()
            text = arg(value)
            if varies or value != default:
                parts.append(f"{k}={text}")
        call = f"{it.kind}({', '.join(parts)})" if parts else it.kind
        if it.path is not None and (it.path, path) not in self.named:
            self.named.add((it.path, path))  # a weightless layer called again is a new one
            call += f" as {_ident(local, _prefix(it.kind))}"
            self.record[self.body_name].append((_ident(local, _prefix(it.kind)), local, None))
        return call


# short parameter names for a block's varying numbers, as a person names them
SHORT = {"out_channels": "c", "out_features": "features", "kernel_size": "k", "stride": "stride",
         "num_features": "c", "p": "p", "size": "n", "padding": "padding", "groups": "groups",
         "embed_dim": "dim", "num_heads": "heads", "hidden_size": "hidden"}


REPEAT = 3  # identical block calls in a row written `Block * N` (two are written out)


@dataclass
class _Call:
    """A block call in a chain, before it is known whether it is part of a run."""

    call: str
    ident: str
    local: str
    block: str


class _Numbers:
    """Hands out a body's numbers in `_numbers` order: a block parameter's name where the
    number varies between the block's instances, else the number itself."""

    def __init__(self, params: dict[int, str], names: dict[str, str]):
        self.params, self.i, self.names = params, 0, names

    def __call__(self, value, offset: int | None = None) -> str:
        if offset is not None:  # a nested block's number, `offset` into its own
            i = self.i + offset
        else:
            i, self.i = self.i, self.i + 1
        if i in self.params:
            return self.params[i]
        return value.text(self.names) if isinstance(value, SizeRef) else literal(value)

    def skip(self, n: int) -> None:
        self.i += n

    def next_is_parameter(self) -> bool:
        return self.i in self.params


RESERVED = {"model", "block", "train", "input", "output", "if", "else", "as", "and", "or", "not",
            "true", "false", "none", "True", "False", "None", "where"}


def _tuple_text(items: list[str], width: int = 88) -> str:
    """`(a, b, c)`, broken over lines inside its brackets when it is long (DenseNet's layers
    read every earlier one)."""
    one = f"({', '.join(items)})"
    if len(one) <= width:
        return one
    lines, line = [], ""
    for item in items:
        piece = f"{item}, "
        if line and len(line) + len(piece) > width:
            lines.append(line.rstrip())
            line = ""
        line += piece
    lines.append(line.rstrip(", "))
    return "(" + "\n         ".join(lines) + ")"


def _prefix(kind: str) -> str:
    op = _op_class(kind)
    return getattr(op, "prefix", "m") if op is not None else "m"


def _op_class(kind: str):
    from .ops.registry import get_op

    return get_op(kind)


# ---- the whole import, proven -------------------------------------------------------------

@dataclass
class ImportResult:
    text: str  # the spec
    model: str
    key_map: dict[str, str]  # the spec's state_dict key -> the original's, where they differ
    params: int
    max_diff: float
    all_keys: dict[str, str] = field(default_factory=dict, repr=False)  # key_map with the same


def _input_shapes(steps: list[Step], module, given) -> dict[str, str]:
    """Each input's declared shape: `given` ("3,224,224" or {name: ...}), else read off the
    first layer that reads it: `[C, H, W]` for a 2-d convolution (any size), `[C, L]` for 1-d,
    `[F]` for a Linear, `[T] int64` for an Embedding."""
    out = {}
    inputs = [s for s in steps if s.kind == "input"]
    for n, s in enumerate(inputs):
        g = given.get(s.id) if isinstance(given, dict) else given if n == 0 else None
        if g is not None:
            dims = [d.strip() for d in (g.split(",") if isinstance(g, str) else map(str, g))]
            out[s.id] = f"[{', '.join(dims)}]"
            continue
        reader = next((t for t in steps if s.id in t.inputs and t.path), None)
        m = _resolve(module, reader.path) if reader is not None else None
        kind = reader.kind if reader is not None else None
        if kind in ("Conv2d", "ConvTranspose2d"):
            out[s.id] = f"[{m.in_channels}, H, W]"
        elif kind in ("Conv1d", "ConvTranspose1d"):
            out[s.id] = f"[{m.in_channels}, L]"
        elif kind == "Conv3d":
            out[s.id] = f"[{m.in_channels}, D, H, W]"
        elif kind == "Linear":
            out[s.id] = f"[{m.in_features}]"
        elif kind == "Embedding":
            out[s.id] = "[T] int64"
        else:
            _fail(f"cannot tell the shape of input '{s.id}' (its first reader is "
                  f"{kind or 'no layer'})", "give it: --input 3,224,224")
    return out


EXAMPLE_SIZES = {"H": 224, "W": 224, "D": 16, "L": 128, "T": 16}


def _example_shape(declared: str) -> tuple[list[int], str]:
    """A concrete shape for a declared one (`[3, H, W]` -> [3, 224, 224]) and its dtype."""
    inside, _, rest = declared.strip("[").partition("]")
    dims = [int(d) if d.strip().isdigit() else EXAMPLE_SIZES.get(d.strip(), 32)
            for d in inside.split(",")]
    return dims, ("int64" if "int64" in rest else "float32")


def _resolve_reshapes(steps: list[Step], gm, example: dict) -> None:
    """`x.reshape(n, c, h * w)` as the spec says it: `Flatten(2)` where it flattens trailing
    dimensions, else `Reshape(...)` of the sample's shape, read off one traced run."""
    import torch
    from torch.fx.passes.shape_prop import ShapeProp

    args = []
    for s in steps:
        if s.kind == "input":
            dims, dtype = example[s.id]
            args.append(torch.zeros([2, *dims], dtype=getattr(torch, dtype)))
    try:
        ShapeProp(gm).propagate(*args)
    except Exception as exc:  # noqa: BLE001
        _fail(f"cannot run {type(gm).__name__} at the example shape to read its reshapes "
              f"({str(exc).splitlines()[0][:200]})", "give the input's shape: --input 3,224,224")
    meta = {n.name: n.meta.get("tensor_meta") for n in gm.graph.nodes}
    for s in steps:
        if s.kind != "reshape":
            continue
        source = next(n for n in gm.graph.nodes if n.name == s.id).args[0]
        before, after = list(meta[source.name].shape), list(meta[s.id].shape)
        if after[0] != before[0]:
            _fail(f"a reshape that changes the batch ({before} -> {after}) in "
                  f"{s.scope[-1] if s.scope else 'the model'}")
        k = len(after) - 1
        if after[:k] == before[:k] and math.prod(before[k:]) == after[k] and k >= 1:
            s.kind, s.args = "Flatten", [k]
        else:
            s.kind, s.args = "Reshape", after[1:]


def _where_clause(text: str, name: str) -> str:
    """The named input sizes the layers take, as check proves them: the first check's hint
    (`declare it on the input: where H >= 32, W >= 32`) joins the input declaration. Layers
    that take one size only (ViT's position embedding) get the example's sizes written out."""
    from .spec import loads

    for _ in range(4):
        try:
            loads(text, f"{name}.net")
            return text
        except NetdslError as exc:
            hints = [d.hint or "" for d in exc.diagnostics]
            clause = next((h.split(": where ", 1)[1] for h in hints
                           if h.startswith("declare it on the input: where ")), None)
            if clause is None:
                fixed = INPUT_LINE.sub(_concrete, text)
                return text if fixed == text else _checked_or(fixed, text, name)
            where = " where " + clause.split(" (this layer alone", 1)[0]
            text = INPUT_LINE.sub(
                lambda m, w=where: f"{m.group(1)}[{m.group(2)}]{m.group(3) or ''}{w}", text,
                count=1)
    return text


INPUT_LINE = re.compile(r"^(  input \w+: )\[([^\]]*)\]( \w+)?( where [^\n]*)?$", re.M)


def _concrete(m: re.Match) -> str:
    dims = [d if d.strip().isdigit() else str(EXAMPLE_SIZES.get(d.strip(), 32))
            for d in m.group(2).split(", ")]
    return f"{m.group(1)}[{', '.join(dims)}]{m.group(3) or ''}"


def _checked_or(text: str, fallback: str, name: str) -> str:
    from .spec import loads

    try:
        loads(text, f"{name}.net")
        return text
    except NetdslError:
        return fallback


def _holding(name: str, layer):
    """A module whose one layer, `name`, is `layer` (fx never takes the root as a layer)."""
    import torch

    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            setattr(self, name, layer)

        def forward(self, x):
            return getattr(self, name)(x)

    return Holder().eval()


def import_module(module, name: str | None = None, input_shape=None, *,
                  check: bool = True) -> ImportResult:
    """A `.net` spec for `module` (see the module docstring). `name`: the model's name (default:
    the module's class). `input_shape`: the first input's shape without the batch, as
    "3,224,224" or a tuple, or {input name: shape}; by default read off the first layer, with
    named sizes where the layers take any. Raises NetdslError (E508) for what cannot be
    imported, and when the spec does not reproduce the module."""
    module = module.eval()
    name = _ident(name or type(module).__name__)
    original = module
    if type(module) in _leaf_ops():  # a bare layer: fx traces into the root, so hold it
        holder = _prefix(_leaf_ops()[type(module)].model_fields["op"].default)
        module = _holding(holder, original)
    steps, outputs, gm = trace(module)
    shapes = _input_shapes(steps, module, input_shape)
    example = {k: _example_shape(v) for k, v in shapes.items()}
    if any(s.kind == "reshape" for s in steps):
        _resolve_reshapes(steps, gm, example)
    writer = Writer(steps, outputs, shapes, name, module)
    text = writer.write()
    header = (f"# {name}, imported from {type(original).__module__}.{type(original).__name__}"
              " by netdsl import.\n\n")
    text = _where_clause(header + text, name)
    if not check:
        return ImportResult(text, name, {}, 0, 0.0)
    result = prove(module, text, name, writer)
    if module is not original:  # the held layer's keys are the layer's own
        strip = len(holder) + 1
        result.key_map = {k: v[strip:] for k, v in result.all_keys.items()}
    return result


def key_map(pairs: dict[str, str], keys) -> dict[str, str]:
    """The spec module's state_dict keys -> the original's, through the layer each spec name
    came from (`pairs`: spec path -> original path)."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for i in range(len(parts), 0, -1):
            head = ".".join(parts[:i])
            if head in pairs:
                out[key] = ".".join([pairs[head], *parts[i:]])
                break
    return out


def _randomised(module):
    """A copy of `module` with every float tensor of its state random (variances positive)."""
    import copy

    import torch

    twin = copy.deepcopy(module)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, t in twin.state_dict(keep_vars=True).items():
            if t.is_floating_point():
                r = torch.randn(t.shape, generator=g, dtype=t.dtype) * 0.1
                t.copy_(r.abs() + 0.5 if key.endswith("running_var") else r)
    return twin


def prove(original, text: str, name: str, writer: Writer) -> ImportResult:
    """Check the spec, build it, load the original's weights through the key map, and compare
    parameter counts and outputs."""
    import torch

    from .spec import loads

    try:
        spec = loads(text, f"{name}.net")
    except NetdslError as exc:
        raise NetdslError([Diagnostic("E508", f"the spec written for {name} does not check: "
                                      + exc.diagnostics[0].message)]) from None
    built = spec.build().eval()
    original = _randomised(original)  # a copy: default inits (BatchNorm's 1 and 0) hide mix-ups
    mapping = key_map(writer.pairs(spec.graph()), built.state_dict())
    ours, theirs = built.state_dict(), original.state_dict()
    if set(mapping) != set(ours) or set(mapping.values()) != set(theirs):
        missing = sorted(set(theirs) - set(mapping.values()))[:3]
        _fail(f"the spec's layers do not pair with {name}'s (unpaired: {', '.join(missing)})")
    built.load_state_dict({k: theirs[mapping[k]] for k in ours})
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    if count(built) != count(original):
        _fail(f"the spec has {count(built):,} parameters, {name} {count(original):,}")
    from .targets.export import example_inputs

    graph = spec.graph()
    sizes = {"batch": 2, **{d.name: max(d.first, min(64 if d.last is None else d.last, 64))
                            for d in graph.dims}}
    args = example_inputs(graph, sizes, seed=0)
    with torch.no_grad():
        a, b = built(*args), original(*args)
    a = a if isinstance(a, tuple) else (a,)
    b = b if isinstance(b, tuple) else (b,)
    diff = max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))
    if diff > 1e-5 * max(1.0, max(float(y.abs().max()) for y in b)):
        _fail(f"the spec's outputs differ from {name}'s by {diff:.3g}")
    return ImportResult(text, name, {k: v for k, v in mapping.items() if k != v},
                        count(built), diff, mapping)
