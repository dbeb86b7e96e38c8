"""In-place layers: `inplace=true` only where torch can overwrite the value and still train.

An in-place layer overwrites its input. Torch fails in the backward pass ("one of the variables
needed for gradient computation has been modified by an inplace operation") when that value is
one a layer's backward reads (a ReLU's, Sigmoid's or Softmax's output), and silently changes
what another reader sees when the value has one. Both are refused here, at the argument, E301.
"""

from __future__ import annotations

from ..diagnostics import Reporter
from ..ir.graph import Graph, Node, Ref

VIEWS = {"Identity", "Flatten", "Reshape", "Unflatten", "Select", "Permute", "Transpose"}  # share
# their input's memory
PIECES = {"Chunk", "Split"}  # several views of one tensor: torch refuses to overwrite any of them
SAVES_RESULT = {"ReLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "exp", "sqrt"}  # backward reads the output
INPLACE_SAVES_RESULT = {"ReLU", "ELU", "LeakyReLU"}  # ... when they run in place
# Layers that return their input itself in eval mode (StochasticDepth also at p=0): in place
# after one, a layer overwrites that input, as after a view.
ALIASES_IN_EVAL = {"Dropout", "Dropout2d", "StochasticDepth"}
HINT = "leave inplace out: it only saves memory, and here torch needs the value it would overwrite"


def check_inplace(graph: Graph, rep: Reporter, unsafe_inputs: dict[int, str] | None = None) -> None:
    """Report every in-place layer of `graph` (through its blocks) that would overwrite a value
    still needed. `unsafe_inputs`: for a block instance, why each of its inputs is unsafe."""
    users = graph.consumers()
    outputs = {o.ref for o in graph.outputs}
    inputs = {n.name: i for i, n in enumerate(graph.inputs)}
    for node in graph.nodes:
        if node.kind == "block" and node.graph is not None:
            why = {i: w for i, r in enumerate(node.inputs)
                   if (w := _unsafe(graph, r, node, users, outputs, inputs, unsafe_inputs or {}))}
            check_inplace(node.graph, rep, why)
        elif node.kind == "op" and getattr(node.op, "inplace", False) and node.inputs:
            why = _unsafe(graph, node.inputs[0], node, users, outputs, inputs, unsafe_inputs or {})
            if why:
                rep.error("E301", f"{node.op.kind}(inplace=true) would overwrite {why}",
                          node.arg_spans.get("inplace", node.span), HINT)


def _unsafe(graph: Graph, ref: Ref, reader: Node, users, outputs, inputs, outer) -> str | None:
    """Why overwriting `ref` (read by `reader`) breaks the model, or None when it is safe.
    Follows views back to the tensor whose memory they share."""
    while True:
        others = [graph.nodes[i] for i in users.get(ref, []) if graph.nodes[i] is not reader]
        if others:
            return f"a value that {_where(others[0])} also reads"
        if ref in outputs:
            return f"a value {'the block' if graph.kind == 'block' else 'the model'} also returns"
        src = graph.node(ref.node)
        if src.kind == "input":
            why = outer.get(inputs.get(src.name, -1))
            return f"the block's input '{src.name}', {why}" if why else None
        if src.kind != "op":
            return None
        if src.op.kind in PIECES:
            return f"a piece made by {_where(src)}: torch does not let a layer overwrite one of several views"
        inplace = getattr(src.op, "inplace", False)
        if src.op.kind in (INPLACE_SAVES_RESULT if inplace else SAVES_RESULT):
            return f"the output of {_where(src)}, which its backward pass needs"
        if src.op.kind not in VIEWS and src.op.kind not in ALIASES_IN_EVAL and not inplace:
            return None
        reader, ref = src, src.inputs[0]  # a view or an in-place layer: the same memory


def _where(node: Node) -> str:
    line = f" (line {node.span.line})" if node.span is not None else ""
    return f"{node.label}{line}"
