"""Shape inference: fills in every node's output types and inferred arguments, checking each
layer's shape rule. A value whose type is unknown (after an error) silences what follows it."""

from __future__ import annotations

from ..diagnostics import Reporter
from ..ir.graph import Graph, Node
from ..ir.types import TensorType
from ..ops.base import ShapeError


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
            outs = infer_graph(node.graph, types, rep, (context or []) + [node])
            node.types = outs if all(t is not None for t in outs) else []
            continue
        _infer_op(graph, node, types, rep, context or [])
    return [graph.type_of(o.ref) if _known(graph, o.ref) else None for o in graph.outputs]


def _known(graph: Graph, ref) -> bool:
    return ref.index < len(graph.node(ref.node).types)


def _infer_op(graph: Graph, node: Node, ins: list[TensorType], rep: Reporter, context) -> None:
    op = node.op
    try:
        inferred = op.infer(ins)
        updates = {k: v for k, v in inferred.items() if getattr(op, k) != v}
        if updates:
            op = op.model_copy(update=updates)
        outs = op.shape(ins)
    except ShapeError as exc:
        code = "E302" if exc.arg in type(op).inferred_fields() else "E301"
        span = node.arg_spans.get(exc.arg, node.span) if exc.arg else node.span
        msg = exc.message
        notes = []
        origin = _provenance(graph, node)
        if code == "E302" and origin:
            msg += f" from {origin}"
        elif origin:
            notes.append((f"the input comes from {origin}", None))
        for inst in reversed(context):
            args = ", ".join(f"{k}={v!r}" for k, v in inst.block_args.items())
            notes.append((f"in block {inst.block}({args}) used here", inst.call_span))
        rep.error(code, msg, span, exc.hint, notes)
        node.types = []
        return
    node.op = op
    node.types = list(outs)


def _provenance(graph: Graph, node: Node, depth: int = 3) -> str:
    """`Flatten (line 5) <- MaxPool2d (line 4)`: where a node's first input came from."""
    parts = []
    cur = node
    while cur.inputs and len(parts) < depth:
        src = graph.node(cur.inputs[0].node)
        if src.kind == "input":
            parts.append(f"input '{src.name}'")
            break
        line = f" (line {src.span.line})" if src.span else ""
        parts.append(f"{src.label}{line}")
        cur = src
    return " <- ".join(parts)
