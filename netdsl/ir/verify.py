"""IR invariants, checked after every pass: a violation is a bug in netdsl, never the user's."""

from __future__ import annotations

from .graph import Graph


class InvariantError(AssertionError):
    """The IR broke an invariant: an internal error."""


def verify(graph: Graph, shaped: bool = False) -> None:
    """Names unique; every ref points to an earlier node's existing output; outputs resolve;
    layer nodes hold an op, block nodes a graph; after shapes, every node has one type per
    output and no inferred argument is left unset."""
    seen: dict[str, int] = {}
    for i, n in enumerate(graph.nodes):
        where = f"{graph.name}.{n.name}"
        if n.name in seen:
            raise InvariantError(f"{where}: duplicate node name")
        if not n.name.isidentifier():
            raise InvariantError(f"{where}: node name is not an identifier")
        for r in n.inputs:
            if r.node not in seen:
                raise InvariantError(f"{where}: input {r} is not an earlier node")
            if r.index >= graph.nodes[seen[r.node]].n_outputs:
                raise InvariantError(f"{where}: input {r} has no such output")
        if n.shares is not None:  # a second use of a declared layer: an earlier one, the same kind
            owner = graph.nodes[seen[n.shares]] if n.shares in seen else None
            if owner is None or owner.kind != n.kind or owner.shares is not None \
                    or (n.kind == "op" and owner.op.kind != n.op.kind) or (n.kind == "block" and owner.block != n.block):
                raise InvariantError(f"{where}: shares {n.shares}, which is not an earlier layer of its kind")
        if n.kind == "input" and n.inputs:
            raise InvariantError(f"{where}: an input node has inputs")
        if n.kind == "op" and n.op is None:
            raise InvariantError(f"{where}: op node without op")
        if n.kind == "block":
            if n.graph is None:
                raise InvariantError(f"{where}: block node without graph")
            if len(n.graph.inputs) != len(n.inputs) or len(n.graph.outputs) != n.n_outputs:
                raise InvariantError(f"{where}: block arity disagrees with its graph")
            verify(n.graph, shaped)
        if shaped:
            want = 1 if n.kind == "input" else n.n_outputs
            if len(n.types) != want:
                raise InvariantError(f"{where}: {len(n.types)} types for {want} outputs")
            if n.kind == "op":
                unset = [f for f in type(n.op).inferred_fields() if getattr(n.op, f) is None]
                if unset:
                    raise InvariantError(f"{where}: inferred arguments left unset: {unset}")
        seen[n.name] = i
    names = set()
    for o in graph.outputs:
        if o.name in names or o.ref.node not in seen:
            raise InvariantError(f"{graph.name}: bad output {o.name}")
        names.add(o.name)
