"""The graph IR: a model (or a block instance) as an ordered list of nodes.

Node kinds, the whole vocabulary:
  input  -- a value the caller passes in (`input x: [1, 28, 28]`); no `op`.
  op     -- one layer or merge from `netdsl.ops`; `op` holds its validated arguments.
  block  -- an instance of a user block; `graph` holds the block's own body, elaborated.
Nodes are stored in a topological order that follows the spec's own order. A value is a
`Ref` to one output of one node. networkx is only a derived view (`to_networkx`).

For the LeNet spec

    model LeNet {
      input x: [1, 28, 28]
      x -> Conv2d(6, 5) -> ReLU -> MaxPool2d(2) -> Flatten -> Linear(10) -> logits
      output logits
    }

the graph reads: x(input) -> conv1(op Conv2d) -> relu1 -> pool1 -> flatten1 -> fc1, outputs
{logits: fc1:0}; after shape inference each node carries its output types ([6, 24, 24] ...).
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import networkx as nx
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny

from ..ops.base import Op
from ..source import Span
from .dims import Dim
from .types import TensorType


class Ref(BaseModel):
    """Output `index` of node `node`."""

    model_config = ConfigDict(frozen=True)
    node: str
    index: int = 0

    def __str__(self) -> str:
        return self.node if self.index == 0 else f"{self.node}:{self.index}"


class Node(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str  # unique in its graph; the attribute name of a layer's submodule
    kind: Literal["input", "op", "block"]
    op: Optional[SerializeAsAny[Op]] = None
    graph: Optional["Graph"] = None  # block instances: the block's body
    block: Optional[str] = None  # block instances: the block's name
    block_args: dict[str, Any] = Field(default_factory=dict)
    inputs: list[Ref] = Field(default_factory=list)
    types: list[TensorType] = Field(default_factory=list)  # one per output, after shapes
    n_outputs: int = 1
    bound: list[Optional[str]] = Field(default_factory=list)  # user names of the outputs
    hint: Optional[str] = None  # the name the spec binds this node's chain to
    shares: str | None = None  # a second use of a declared layer: the node that owns it
    span: Optional[Span] = Field(default=None, exclude=True, repr=False)
    arg_spans: dict[str, Span] = Field(default_factory=dict, exclude=True, repr=False)
    call_span: Optional[Span] = Field(default=None, exclude=True, repr=False)  # a block's call site

    @property
    def label(self) -> str:
        if self.kind == "op":
            return self.op.kind
        if self.kind == "block":
            return self.block
        return "input"

    def out(self, i: int = 0) -> Ref:
        return Ref(node=self.name, index=i)


class Output(BaseModel):
    name: str
    ref: Ref
    span: Optional[Span] = Field(default=None, exclude=True, repr=False)
    model_config = ConfigDict(arbitrary_types_allowed=True)


class Graph(BaseModel):
    """A model, or the body of one block instance."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    kind: Literal["model", "block"] = "model"
    nodes: list[Node] = Field(default_factory=list)
    outputs: list[Output] = Field(default_factory=list)
    span: Optional[Span] = Field(default=None, exclude=True, repr=False)
    dims: list[Dim] = Field(default_factory=list)  # a model's declared dimensions (`H`, `T`)
    # `h: [T, 256] = ...`, `output mask: [2, H, W]`: (name, ref, declared shape, span), checked
    # once shapes are known
    annotations: list[tuple] = Field(default_factory=list, exclude=True, repr=False)

    def node(self, name: str) -> Node:
        return self._index()[name]

    def _index(self) -> dict[str, Node]:
        # extended as nodes are appended (elaboration asks after every node: rebuilding it
        # each time was quadratic), rebuilt when the list shrank
        seen, idx = self.__dict__.get("_idx", (0, None))
        n = len(self.nodes)
        if idx is None or seen > n:
            seen, idx = 0, {}
        for node in self.nodes[seen:]:
            idx[node.name] = node
        self.__dict__["_idx"] = (n, idx)
        return idx

    @property
    def inputs(self) -> list[Node]:
        return [n for n in self.nodes if n.kind == "input"]

    def type_of(self, ref: Ref) -> TensorType | None:
        n = self.node(ref.node)
        return n.types[ref.index] if ref.index < len(n.types) else None

    def consumers(self) -> dict[Ref, list[int]]:
        """For each value, the indices of the nodes that read it."""
        users: dict[Ref, list[int]] = {}
        for i, n in enumerate(self.nodes):
            for r in n.inputs:
                users.setdefault(r, []).append(i)
        return users

    def to_networkx(self) -> nx.MultiDiGraph:
        g = nx.MultiDiGraph(name=self.name)
        for n in self.nodes:
            g.add_node(n.name, kind=n.kind, label=n.label)
        for n in self.nodes:
            for slot, r in enumerate(n.inputs):
                g.add_edge(r.node, n.name, index=r.index, slot=slot)
        return g

    def walk(self, prefix: str = ""):
        """Every node, depth first through block instances: (qualified name, node, graph)."""
        for n in self.nodes:
            q = f"{prefix}{n.name}"
            yield q, n, self
            if n.kind == "block" and n.graph is not None:
                yield from n.graph.walk(q + ".")


def parameter_counts(graph: Graph) -> tuple[int, int]:
    """(total, trainable) parameters of a graph, through its blocks."""
    total = trainable = 0
    for n in graph.nodes:
        if n.shares is not None:  # the owner's parameters, counted once
            continue
        if n.kind == "block":
            t, tr = parameter_counts(n.graph)
            total, trainable = total + t, trainable + tr
        elif n.kind == "op":
            p = n.op.param_count()
            total += p
            trainable += p if getattr(n.op, "trainable", True) else 0
    return total, trainable


Node.model_rebuild()
