"""Architecture diagrams: the IR drawn through graphviz, with tensor shapes on the edges.

    >>> import netdsl
    >>> spec = netdsl.loads("model M {\\n input x: [4]\\n x -> Linear(2) -> y\\n output y\\n}")
    >>> dg = render(spec)                     # a graphviz.Digraph (shows inline in Jupyter)
    >>> print(next(line for line in dg.source.splitlines() if "->" in line).strip())
    x -> fc1 [label=<4>]

Every node of the IR is one drawn node; a block instance is either a cluster holding its own
body (expanded) or one node with its parameter count (collapsed). Consecutive identical
collapsed instances (`Basic(64) * 2`) are drawn once, marked `×2`. Everything that reaches the
DOT text is either a sanitised identifier or an escaped HTML-like label, so no string from a
spec can break the DOT syntax. The output is deterministic (the goldens depend on it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Iterable, Union

import graphviz

from ..diagnostics import Diagnostic, NetdslError, did_you_mean
from ..ir.graph import Graph, Node, Ref, parameter_counts
from ..ir.types import TensorType
from .diagram_style import (BLOCK_STYLE, EDGE_ATTRS, FAMILIES, GRAPH_ATTRS, INPUT_STYLE, NODE_ATTRS,
                            OUTPUT_STYLE, PORT_STYLE, cluster_style, esc, family_style, html,
                            legend_table, title_table)

Expand = Union[str, Iterable[str], None]


def render(spec_or_graph, model: str | None = None, *, expand: Expand = "all",
           direction: str = "TB", shapes: bool = True, legend: bool = True) -> graphviz.Digraph:
    """The diagram of one model as a `graphviz.Digraph`.

    spec_or_graph: a `Spec`, a `Graph` (shaped IR), or the path of a `.net` file.
    model: which model of the spec (default: the first).
    expand: "all" (every block a cluster), "none" or None (every block one node), or names: block
        definitions (`Basic`: all its instances) and/or instances (`basic3`, `enc.basic1`).
    direction: "TB" (top to bottom) or "LR" (left to right).
    shapes: label every edge with the shape of the tensor it carries.
    legend: show which colour stands for which layer family, beside the title.
    """
    graph = _graph(spec_or_graph, model)
    if direction not in ("TB", "LR"):
        raise ValueError(f"direction must be 'TB' or 'LR', not {direction!r}")
    expanded = expanded_blocks(graph, expand)
    return _Drawer(graph, expanded, shapes, direction, legend).draw()


def _graph(obj, model: str | None) -> Graph:
    if isinstance(obj, Graph):
        if model is not None and model != obj.name:
            raise ValueError(f"the graph is model {obj.name!r}, not {model!r}")
        return obj
    if isinstance(obj, (str, os.PathLike)):
        from ..spec import load

        obj = load(obj)
    if hasattr(obj, "graph") and hasattr(obj, "model_names"):
        return obj.graph(model)
    raise TypeError(f"render() takes a Spec, a Graph or a spec file path, not {type(obj).__name__}")


# ---- which blocks to expand ---------------------------------------------------------------------

def block_instances(graph: Graph) -> list[tuple[str, Node]]:
    """(qualified name, node) of every block instance, depth first."""
    return [(q, n) for q, n, _ in graph.walk() if n.kind == "block"]


def expanded_blocks(graph: Graph, expand: Expand) -> set[str]:
    """Qualified names of the block instances to draw as clusters. Naming an instance also
    expands the instances around it, so that it is visible."""
    instances = block_instances(graph)
    names = [expand] if isinstance(expand, str) or expand is None else list(expand)
    names = [n for part in names if part is not None for n in str(part).split(",") if n.strip()]
    names = [n.strip() for n in names]
    if names in ([], ["none"]):
        return set()
    if names == ["all"]:
        return {q for q, _ in instances}
    if "all" in names or "none" in names:
        raise _error("E504", "--expand takes 'all', 'none' or block names, not a mix: "
                     + ", ".join(names))
    blocks = sorted({n.block for _, n in instances})
    chosen: set[str] = set()
    for name in names:
        hits = [q for q, n in instances if n.block == name or q == name]
        if not hits:
            candidates = blocks + [q for q, _ in instances]
            has = (f"its blocks are {', '.join(blocks)}; instances "
                   f"{_few([q for q, _ in instances])}" if instances else "it has no blocks")
            raise _error("E504", f"model {graph.name} has no block or block instance '{name}' "
                         f"({has})", did_you_mean(name, candidates))
        for q in hits:  # the instance and every instance it sits in
            parts = q.split(".")
            chosen.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return chosen & {q for q, _ in instances}


def _few(items: list[str], n: int = 6) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")


def _error(code: str, message: str, hint: str | None = None) -> NetdslError:
    return NetdslError([Diagnostic(code, message, hint=hint)])




# ---- counting -----------------------------------------------------------------------------------

params = parameter_counts  # (total, trainable), through blocks


def repeat_runs(graph: Graph, collapsed) -> list[list[int]]:
    """Runs of node indices drawn as one node: consecutive instances of the same block with the
    same arguments and types, each feeding only the next (`Basic(64) * 2`). Only instances for
    which `collapsed(index)` holds are merged; every other node is a run of one."""
    users = graph.consumers()
    outputs = {o.ref for o in graph.outputs}
    runs: list[list[int]] = []
    for i, n in enumerate(graph.nodes):
        if runs and _continues(graph, runs[-1][-1], i, users, outputs, collapsed):
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _continues(graph: Graph, i: int, j: int, users, outputs, collapsed) -> bool:
    a, b = graph.nodes[i], graph.nodes[j]
    if a.kind != "block" or b.kind != "block" or not (collapsed(i) and collapsed(j)):
        return False
    if (a.block, a.block_args, a.n_outputs, b.n_outputs) != (b.block, b.block_args, 1, 1):
        return False
    if a.types != b.types or [graph.type_of(r) for r in a.inputs] != [graph.type_of(r) for r in b.inputs]:  # noqa: E501
        return False
    return b.inputs == [a.out(0)] and users.get(a.out(0)) == [j] and a.out(0) not in outputs


# ---- drawing ------------------------------------------------------------------------------------

_SAFE_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_./]*")


@dataclass
class _Drawer:
    graph: Graph
    expanded: set[str]
    shapes: bool
    direction: str
    legend: bool
    families: set[str] = field(default_factory=set)
    ids: dict[str, str] = field(default_factory=dict)  # kind + qualified name -> DOT id
    drawn: dict[str, str] = field(default_factory=dict)  # IR node (qualified) -> DOT id

    def draw(self) -> graphviz.Digraph:
        g = self.graph
        dg = graphviz.Digraph(name=self._id(g.name, "graph"), graph_attr=dict(GRAPH_ATTRS),
                              node_attr=dict(NODE_ATTRS), edge_attr=dict(EDGE_ATTRS))
        dg.attr(rankdir=self.direction)
        end = self._body(dg, g, "", 0)
        for o in g.outputs:
            oid = self._id(f"output/{o.name}", "output")
            t = g.type_of(o.ref)
            dg.node(oid, html(_label(_b(o.name) + " " + esc(_shape(t)))), **OUTPUT_STYLE)
            self._edge(dg, end(o.ref), oid, t, _out_name(g, o.ref))
        total, trainable = params(g)
        families = sorted(self.families, key=_family_order)
        dg.attr(label=title_table(g.name, _totals(total, trainable),
                                  legend_table(families) if self.legend and families else None),
                labelloc="t", labeljust="c")
        # which DOT node stands for each IR node drawn (a collapsed block's body is not drawn)
        dg.netdsl_nodes = dict(self.drawn)
        return dg

    def _id(self, qualified: str, kind: str = "node") -> str:
        """A DOT identifier for a qualified name: the name itself when it is plain, else a
        sanitised one; unique within the diagram. (The graphviz package quotes identifiers but
        leaves backslashes alone and reads `:` as a port, so only plain ones go through.)"""
        key = f"{kind}\0{qualified}"
        if key not in self.ids:
            base = qualified if _SAFE_ID.fullmatch(qualified) else \
                "n_" + re.sub(r"[^A-Za-z0-9_.]", "_", qualified)
            ident, k, taken = base, 1, set(self.ids.values())
            while ident in taken:
                k += 1
                ident = f"{base}~{k}"
            self.ids[key] = ident
        return self.ids[key]

    def _body(self, dg, g: Graph, prefix: str, depth: int):
        """Draw graph `g`'s nodes into `dg` (the diagram or a block's cluster). Returns the
        function that maps a Ref of `g` to the DOT node the value comes out of."""
        ends: dict[str, object] = {}  # node name -> DOT id, or a resolver into its cluster

        def end(r: Ref) -> str:
            e = ends[r.node]
            return e(r.index) if callable(e) else e

        for run in repeat_runs(g, lambda i: f"{prefix}{g.nodes[i].name}" not in self.expanded):
            n = g.nodes[run[0]]
            q = prefix + n.name
            if n.kind == "input":
                ends[n.name] = self._input(dg, n, q, depth)
                continue
            if n.kind == "op":
                ends[n.name] = nid = self._op(dg, n, q)
                targets = [nid] * len(n.inputs)
            elif q in self.expanded and n.shares is None:
                ends[n.name], targets = self._cluster(dg, n, q, depth)
            else:
                nid = self._block_node(dg, [g.nodes[i] for i in run], prefix)
                ends.update({g.nodes[i].name: nid for i in run})
                targets = [nid] * len(n.inputs)
            for slot, r in enumerate(n.inputs):
                self._edge(dg, end(r), targets[slot], g.type_of(r), _out_name(g, r))
            owner = ends.get(n.shares) if n.shares else None
            owner = owner(0) if callable(owner) else owner  # an expanded owner: its output
            if isinstance(owner, str):  # the same weights: a dashed line between the two uses
                dg.edge(owner, targets[0], style="dashed", dir="none", constraint="false",
                        color="#8a8a8a", tooltip="same module, same weights")
            tied = n.op.weight if n.kind == "op" and "weight" in type(n.op).extra_fields() else None
            if tied and isinstance(ends.get(tied.split(".")[0]), str):  # `weight=wte.weight`
                dg.edge(ends[tied.split(".")[0]], targets[0], style="dashed", dir="none",
                        constraint="false", color="#8a8a8a", label="tied", fontsize="8",
                        tooltip="one weight tensor, shared by the two layers")
        return end

    def _node(self, dg, q: str, label: str, style: dict) -> str:
        nid = self.drawn[q] = self._id(q)
        dg.node(nid, html(label), **style)
        return nid

    def _input(self, dg, n: Node, q: str, depth: int) -> str:
        if depth == 0:  # a model input: its name and declared type
            label = _label(_b(n.name) + " " + esc(_shape(n.types[0])))
            return self._node(dg, q, label, INPUT_STYLE)
        return self._node(dg, q, esc(n.name), PORT_STYLE)  # a block's input: a small port

    def _op(self, dg, n: Node, q: str) -> str:
        op = n.op
        self.families.add(op.family)
        p = op.param_count()
        sub = n.name + (" · " + _counts(p, p if getattr(op, "trainable", True) else 0) if p else "")
        if n.shares:
            sub = f"{n.name} · shares {n.shares}"
        args = op.label_args()
        return self._node(dg, q, _label(_b(op.kind) + (" " + esc(args) if args else ""), sub),
                          family_style(op.family))

    def _block_node(self, dg, run: list[Node], prefix: str) -> str:
        """A collapsed block instance, or a run of identical ones drawn once as `×N`."""
        first, last, k = run[0], run[-1], len(run)
        total = sum(params(n.graph)[0] for n in run)
        trainable = sum(params(n.graph)[1] for n in run)
        head = _b(first.block) + esc(_args(first.block_args)) + (" " + _b(f"×{k}") if k > 1 else "")
        names = (first.name if k == 1 else f"{first.name}, {last.name}" if k == 2
                 else f"{first.name} … {last.name}")
        sub = names + (" · " + _counts(total, trainable) if total else "")
        if first.shares:
            sub, total = f"{names} · shares {first.shares}", 0
        if k > 1 and total:
            sub += f" ({k} × {total // k:,})"
        nid = self._node(dg, prefix + first.name, _label(head, sub), BLOCK_STYLE)
        for n in run[1:]:
            self.drawn[prefix + n.name] = nid
        return nid

    def _cluster(self, dg, n: Node, q: str, depth: int):
        """An expanded block: a cluster labelled with the instance, the block and its arguments,
        holding the block's body. Returns (output resolver, the DOT nodes its inputs go to)."""
        total, trainable = params(n.graph)
        label = _label(esc(n.name + ": ") + _b(n.block) + esc(_args(n.block_args)),
                       _counts(total, trainable) if total else None, left=True)
        with dg.subgraph(name="cluster_" + self._id(q, "cluster")) as sub:
            sub.attr(label=html(label), **cluster_style(depth))
            inner = self._body(sub, n.graph, q + ".", depth + 1)
        targets = [self.drawn[f"{q}.{x.name}"] for x in n.graph.inputs]
        outs = n.graph.outputs
        return (lambda index: inner(outs[index].ref)), targets

    def _edge(self, dg, tail: str, head: str, t: TensorType | None, name: str | None) -> None:
        if self.shapes and t is not None:
            dg.edge(tail, head, label=html(esc((f"{name}: " if name else "") + _shape(t))))
        else:
            dg.edge(tail, head)


def _family_order(f: str):
    names = list(FAMILIES)
    return (names.index(f) if f in names else len(names), f)


def _out_name(g: Graph, r: Ref) -> str | None:
    """The name of output `r.index` when its node has several (`h` of a GRU), else None."""
    n = g.node(r.node)
    if n.n_outputs <= 1:
        return None
    if n.kind == "block" and n.graph is not None and r.index < len(n.graph.outputs):
        return n.graph.outputs[r.index].name
    if n.kind == "op" and r.index < len(n.op.outputs):
        return n.op.outputs[r.index]
    return f"#{r.index}"


def _shape(t: TensorType) -> str:
    """`16×4×4`, with the dtype when it is not float32."""
    return t.pretty() + ("" if t.dtype == "float32" else f" {t.dtype}")


def _totals(total: int, trainable: int) -> str:
    """The title's counts: `61,706 parameters (all trainable)`."""
    if total == 0:
        return "no parameters"
    if trainable == total:
        return f"{total:,} parameters (all trainable)"
    return f"{total:,} parameters ({trainable:,} trainable, {total - trainable:,} frozen)"


def _counts(total: int, trainable: int) -> str:
    """A node's or block's count: `9,408 params`, marked when not all of it trains."""
    text = f"{total:,} params"
    if trainable == 0:
        return text + " (frozen)"
    if trainable != total:
        return text + f" ({trainable:,} trainable)"
    return text


def _args(args: dict) -> str:
    """`(c=64, stride=1)`; nothing for a block without parameters."""
    if not args:
        return ""
    return "(" + ", ".join(f"{k}={_value(v)}" for k, v in args.items()) + ")"


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v + '"'
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(map(_value, v)) + "]"
    return "none" if v is None else str(v)


def _b(text: str) -> str:
    return f"<B>{esc(text)}</B>"


def _label(head: str, sub: str | None = None, left: bool = False) -> str:
    """A label: the first line (markup), then an optional smaller grey line (text); centred,
    or flush left (cluster labels)."""
    br = '<BR ALIGN="LEFT"/>' if left else "<BR/>"
    text = head + (f'{br}<FONT POINT-SIZE="8" COLOR="#4d4d4d">{esc(sub)}</FONT>' if sub else "")
    return text + br if left else text
