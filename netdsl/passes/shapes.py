"""Shape inference: fills in every node's output types and inferred arguments, checking each
layer's shape rule. A value whose type is unknown (after an error) silences what follows it."""

from __future__ import annotations

from types import SimpleNamespace

from ..diagnostics import Reporter
from ..ir.dims import SymbolicError, lowest
from ..ir.graph import Graph, Node, parameter_counts
from ..ir.types import TensorType
from ..ops.base import ShapeError
from .symbolic import explain, static_error, symbolic_error

# Far past any module one process can hold (2**40 float32 values are 4.4 TB): a size beyond
# these is a mistake in the spec, refused (E305) before anything downstream multiplies it.
MAX_ELEMENTS = 2**40  # per sample, in one tensor
MAX_PARAMETERS = 2**40  # in one layer, and in one model


def infer_graph(graph: Graph, input_types: list[TensorType] | None, rep: Reporter,
                context: list | None = None) -> list[TensorType | None]:
    """Infer types in `graph` (in place); returns the output types (None where unknown).
    `input_types` are given for block instances; models carry theirs on the input nodes."""
    ins = graph.inputs
    if input_types is not None:
        for node, t in zip(ins, input_types):
            node.types = [t] if t is not None else []
    for node in graph.nodes:
        if node.kind == "input":
            continue
        types = [graph.type_of(r) for r in node.inputs]
        if any(t is None for t in types):
            node.types = []
            continue
        if node.kind == "block":
            outs = infer_graph(node.graph, types, rep, (context or []) + [_within(node, graph)])
            node.types = outs if all(t is not None for t in outs) else []
        else:
            _infer_op(graph, node, types, rep, context or [])
        if node.shares and node.types:
            _same_module(graph, node, rep)
    return [graph.type_of(o.ref) if _known(graph, o.ref) else None for o in graph.outputs]


def infer_until(graph: Graph, ref, input_type, rep: Reporter, context: list) -> TensorType | None:
    """The type of `ref` while the graph is still being elaborated (`x.size(1)` in a block):
    infers the nodes before it that have no type yet; `input_type(k)` gives input k's."""
    target = graph.node(ref.node)
    k = 0
    for node in graph.nodes:
        if node.kind == "input":
            if not node.types:
                t = input_type(k)
                node.types = [t] if t is not None else []
            k += 1
        elif not node.types:
            types = [graph.type_of(r) for r in node.inputs]
            if all(t is not None for t in types):
                if node.kind == "block":
                    outs = infer_graph(node.graph, types, rep, context + [_within(node, graph)])
                    node.types = outs if all(t is not None for t in outs) else []
                else:
                    _infer_op(graph, node, types, rep, context)
        if node is target:
            break
    return graph.type_of(ref) if _known(graph, ref) else None


def _within(node: Node, graph: Graph) -> SimpleNamespace:
    """A block instance as its body's shape errors see it: where it is called, with what, and
    the graph it is called in (a derivation chain goes on there)."""
    return SimpleNamespace(block=node.block, block_args=node.block_args, call_span=node.call_span,
                           ins=node.inputs, graph=graph)


def _known(graph: Graph, ref) -> bool:
    return ref.index < len(graph.node(ref.node).types)


# Families whose layers hold float weights: torch refuses integer input to them.
FLOAT_FAMILIES = ("linear", "conv", "norm", "recurrent", "attention", "backbone")
# Families that compute on numbers: integer and bool tensors only pass through the shape and
# merge families (and index an Embedding).
NUMERIC_FAMILIES = (*FLOAT_FAMILIES, "activation", "pooling", "dropout")
FLOAT_DTYPES = ("float32", "float64", "float16", "bfloat16")
INT_DTYPES = ("int64", "int32", "uint8")
MIXED_PRECISION = ('netdsl builds layers in float32: declare the input float32 (the default); for '
                   'mixed precision write precision = "bf16" in the train section')


def _dtype_error(op, ins: list[TensorType]) -> ShapeError | None:
    """Dtype rules that hold for whole families (E303): float weights need float32 input,
    numeric layers need floats, an Embedding needs integer ids, merged values share a dtype."""
    if op.kind == "Embedding":
        bad = [t for t in ins if t.dtype not in INT_DTYPES]
        if bad:
            return ShapeError(f"Embedding needs integer indices, but gets {_typed(bad[0])}",
                              hint="declare the input with an integer dtype: input tokens: [32] int64",
                              code="E303")
        return None
    if op.family in NUMERIC_FAMILIES:
        takes = FLOAT_DTYPES + (INT_DTYPES if getattr(op, "ints", False) else ())  # ReLU on ints
        bad = [t for t in ins if t.dtype not in takes]
        if bad:
            return ShapeError(f"{op.kind} needs floating-point input, but gets {_typed(bad[0])}",
                              hint="integer ids become vectors through an Embedding: "
                                   "x -> Embedding(vocabulary, dim) -> ..." if op.family in FLOAT_FAMILIES
                              else "declare the input with a float dtype, or make it one with a "
                                   "layer that holds weights", code="E303")
    if op.family == "merge" and len({t.dtype for t in ins}) > 1:
        return ShapeError(f"cannot combine values of different dtypes: {', '.join(map(_typed, ins))}",
                          code="E303")
    return None


def _state_dtype_error(op, ins: list[TensorType]) -> ShapeError | None:
    """E303 once the inferred sizes are known: a layer holding float32 weights or running
    statistics (BatchNorm with affine=false still keeps float32 means) takes float32 only."""
    if op.family not in FLOAT_FAMILIES:
        return None
    if op.param_count() == 0 and not getattr(op, "track_running_stats", False):
        return None
    bad = [t for t in ins if t.dtype != "float32"]
    if not bad:
        return None
    return ShapeError(f"{op.kind} holds float32 weights, but gets {_typed(bad[0])}: torch needs "
                      "the input in the weights' dtype", hint=MIXED_PRECISION, code="E303")


def _typed(t: TensorType) -> str:
    return f"{list(t.shape)} {t.dtype}"


def _size_error(op, outs: list[TensorType]) -> ShapeError | None:
    """E305: an output or a parameter count beyond what any machine holds."""
    for t in outs:
        if lowest(t.numel) > MAX_ELEMENTS:
            return ShapeError(f"{op.kind} makes a value of {lowest(t.numel):.3g} elements per sample "
                              f"{list(t.shape)}, more than netdsl's limit of 2**40",
                              hint="check the sizes: one sample's activations this large "
                                   "cannot be held in memory", code="E305")
    params = op.param_count()
    if params > MAX_PARAMETERS:
        return ShapeError(f"{op.kind} holds {_count(params)}, more than netdsl's limit of 2**40",
                          hint=BUILT_IN_ONE_PROCESS, code="E305")
    return None


def check_model_size(graph: Graph, span, rep: Reporter) -> None:
    """E305 at the model's name: every layer is within bounds but together they are not."""
    total, _ = parameter_counts(graph)
    if total > MAX_PARAMETERS:
        rep.error("E305", f"model {graph.name} holds {_count(total)}, more than netdsl's "
                  "limit of 2**40", span, BUILT_IN_ONE_PROCESS)


BUILT_IN_ONE_PROCESS = "check the sizes: netdsl builds a model in the memory of one process"


def _count(params: int) -> str:
    return f"{params:.3g} parameters ({params * 4 / 1e12:,.0f} TB in float32)"


def _apply(graph: Graph, op, ins: list[TensorType]):
    """(the op with its inferred arguments, its output types); raises ShapeError."""
    data = _data_inputs(op, ins)  # masks (bool, checked by the layer's own rule) left out
    bad = _dtype_error(op, data)
    if bad is not None:
        raise bad
    try:
        views, lead = _batch_views(op, ins)
        inferred = op.infer(views)
        bad = static_error(op, inferred, views)
        if bad is not None:
            raise bad
        updates = {k: v for k, v in inferred.items() if getattr(op, k) != v}
        if updates:
            op = op.model_copy(update=updates)
        bad = _state_dtype_error(op, data)
        if bad is not None:
            raise bad
        outs = op.shape(views)
    except SymbolicError as exc:
        raise symbolic_error(exc, op) from None
    bad = _tie_error(graph, op)
    if bad is not None:
        raise bad
    if lead is not None:  # the first dimension stood where a batch would: put it back
        outs = [TensorType(shape=(lead, *t.shape), dtype=t.dtype, why=t.why, has_batch=False)
                for t in outs]
    big = _size_error(op, outs)
    if big is not None:
        raise big
    return op, outs


def _infer_op(graph: Graph, node: Node, ins: list[TensorType], rep: Reporter, context) -> None:
    op = node.op
    try:
        op, outs = _apply(graph, op, ins)
    except ShapeError as exc:
        code = exc.code or ("E302" if exc.arg in type(op).inferred_fields() else "E301")
        span = node.arg_spans.get(exc.arg, node.span) if exc.arg else node.span
        msg = exc.message
        hint = exc.hint
        fixed = {}
        if code not in ("E303", "E307") and any(t.symbolic for t in ins):
            more, fix_hint, fixed = explain(lambda ts: _apply(graph, node.op, ts), ins, graph, node, context)
            msg += more
            hint = fix_hint or hint
        if msg.startswith(("expects ", "needs ")):  # a message that leaves the layer's name out
            msg = f"{op.kind} {msg}"
        elif op.kind in _VERBS and code != "E303" and not msg.startswith("cannot "):  # `a + b`
            msg = f"cannot {_VERBS[op.kind]} these values: {msg}"
        notes = []
        origin = _provenance(graph, node, span.line if span else None)
        if code == "E302" and origin:
            msg += f" from {origin}"
        elif origin:
            notes.append((f"the input comes from {origin}", None))
        for inst in reversed(context):
            args = ", ".join(f"{k}={v!r}" for k, v in inst.block_args.items())
            notes.append((f"in block {inst.block}({args}) used here", inst.call_span))
        if hint is None and code == "E302":
            hint = _inferred_hint(type(op), exc.arg)
        d = rep.error(code, msg, span, hint, notes)
        d.related = _provenance_places(graph, node)
        if fixed:
            d.fix = fixed  # for symbolic.suggest: what made this layer's rule hold
        node.types = []
        return
    node.op = op
    node.types = list(outs)


def _data_inputs(op, ins: list) -> list:
    """A node's inputs but the masks given by name (`src_key_padding_mask=pad`), which come last."""
    return ins[:len(ins) - len(getattr(op, "masks", ()))]


def _tie_error(graph: Graph, op) -> ShapeError | None:
    """`weight=wte.weight`: the owner must hold one weight of exactly this layer's shape."""
    tied = getattr(op, "weight", None) if "weight" in type(op).extra_fields() else None
    if not tied:
        return None
    owner = graph.node(tied.split(".")[0])
    if owner.kind != "op" or not hasattr(owner.op, "weight_shape") or owner.op.weight:
        what = owner.op.kind if owner.kind == "op" else f"block {owner.block}"
        why = "borrows its weight itself" if owner.kind == "op" and getattr(owner.op, "weight", None) \
            else "has no single weight to share"
        return ShapeError(f"{tied.split('.')[0]} ({what}) {why}", arg="weight",
                          hint="tie to a Linear's or an Embedding's own weight")
    if not owner.types:
        return None
    mine, theirs = op.weight_shape(), owner.op.weight_shape()
    if mine != theirs:
        return ShapeError(f"{op.kind}'s weight is {list(mine)}, but {tied} is {list(theirs)}: a tied "
                          "weight is one tensor, of one shape", arg="weight",
                          hint="an LM head tied to Embedding(V, D) is Linear(V) on D features")
    return None


def _batch_views(op, ins: list[TensorType]) -> tuple[list[TensorType], int | None]:
    """What a layer's shape rule sees, and the leading size to give back to its outputs.

    Values without a batch (learned tensors, `arange`) reach a layer as torch's layers take
    them: the first dimension is read where the batch would be (`arange(T) -> Embedding(V, D)`
    is [T, D]). An op that mixes batched and unbatched values by itself (`x + pos`,
    `class_token.expand(...)`) takes the types as they are; any other op needs them all alike."""
    data = _data_inputs(op, ins)
    ins, masks = data, ins[len(data):]  # masks are checked by the layer's own rule
    if all(t.has_batch for t in ins) or getattr(op, "mixes_batch", False):
        return ins + masks, None
    if masks:
        raise ShapeError(f"{op.kind} with masks takes values with a batch")
    if any(t.has_batch for t in ins):
        loose = next(t for t in ins if not t.has_batch)
        raise ShapeError(f"{op.kind} takes values of one batch, but {loose} is a tensor without a "
                         "batch dimension (a Parameter, a Buffer or an arange)",
                         hint="expand it over the batch first: t.expand(x.size(0), -1, ...), as in torch")
    if any(t.rank == 0 for t in ins):
        raise ShapeError(f"{op.kind} reads its input's first dimension as the batch, but a scalar "
                         "tensor has none")
    leads = {t.shape[0] for t in ins}
    if len(leads) > 1:
        raise ShapeError(f"{op.kind} reads its inputs' first dimension as the batch, but they differ: "
                         f"{', '.join(map(str, ins))}")
    views = [TensorType(shape=t.shape[1:], dtype=t.dtype, why=t.why, top=t.top) for t in ins]
    return views, leads.pop()


def check_outputs(graph: Graph, rep: Reporter) -> None:
    """A model's outputs carry the batch: a learned tensor or an arange returned as it is
    would come back without one."""
    for o in graph.outputs:
        t = graph.type_of(o.ref) if _known(graph, o.ref) else None
        if t is not None and not t.has_batch:
            rep.error("E306", f"output '{o.name}' is {t}: a model's outputs carry the batch",
                      o.span, "combine it with a batched value (x + pos), or expand it: "
                      "t.expand(x.size(0), -1, ...)")


def _same_module(graph: Graph, node: Node, rep: Reporter) -> None:
    """A declared layer applied twice is one module: the second input must fit what the first
    built (a Linear(16) first applied to 64 features has in_features=64 for good)."""
    owner = graph.node(node.shares)
    if not owner.types:
        return

    def ops(n):
        return [m.op for _, m, _ in n.graph.walk() if m.kind == "op"] if n.kind == "block" else [n.op]
    mine, theirs = ops(node), ops(owner)
    if mine == theirs:
        return
    diff = next((a, b) for a, b in zip(mine, theirs) if a != b)
    ins = ", ".join(str(graph.type_of(r)) for r in node.inputs)
    first = ", ".join(str(graph.type_of(r)) for r in owner.inputs)
    rep.error("E301", f"'{node.shares}' is one layer with one set of weights: it was built for "
              f"{first} ({diff[1].kind}({diff[1].label_args()})), but is applied here to {ins}, "
              f"which would need {diff[0].kind}({diff[0].label_args()})", node.span,
              "apply a shared layer to values of the same shape, or declare a second layer",
              [("built by its first use here", owner.span)])
    node.types = []


_VERBS = {"Add": "add", "Mul": "multiply", "Sub": "subtract", "Div": "divide"}


def _inferred_hint(cls, arg: str) -> str:
    """For an inferred argument that disagrees with the input: where the value came from."""
    short = ", ".join(cls.required_fields())
    full = cls.torch_fields()[:len(cls.required_fields()) + len(cls.inferred_fields())]
    return (f"leave {arg} out to take it from the input: {cls.kind}({short}, ...); more positional "
            f"arguments than that are read in torch's order: {cls.kind}({', '.join(full)}, ...)")


def _made_by(graph: Graph, node: Node) -> list[Node]:
    """The chain of nodes that made a node's first input, back to the one that last changed
    its shape (or to an input), at most six."""
    chain, cur = [], node
    while cur.inputs and len(chain) < 6:
        src = graph.node(cur.inputs[0].node)
        chain.append(src)
        if src.kind == "input":
            break
        before = graph.type_of(src.inputs[0]) if src.inputs else None
        after = src.types[0] if src.types else None
        if chain[1:] and before is not None and after is not None and before.shape != after.shape:
            break  # this layer made the shape the chain carries on
        cur = src
    return chain


def _provenance_places(graph: Graph, node: Node) -> list:
    """The places of `_provenance`'s chain, for editors: (what, span) per layer or input."""
    return [(f"{src.label} ({src.name})" if src.kind != "input" else f"input '{src.name}'",
             src.span) for src in _made_by(graph, node) if src.span is not None]


def _provenance(graph: Graph, node: Node, line: int | None = None) -> str:
    """`Flatten <- MaxPool2d (line 4)`: the chain of layers that made a node's first input, back
    to the one that last changed its shape (lines shown where they differ from `line`)."""
    parts = []
    for src in _made_by(graph, node):
        if src.kind == "input":
            parts.append(f"{'block ' if graph.kind == 'block' else ''}input '{src.name}'")
        else:
            where = f" (line {src.span.line})" if src.span and src.span.line != line else ""
            parts.append(f"{src.label}{where}")
    return " <- ".join(parts)
