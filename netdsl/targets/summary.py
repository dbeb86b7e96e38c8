"""Summaries: per-layer output shapes, parameter counts and multiply-adds, from the IR alone
(no torch), as a table or as JSON. Parameter counts come from the op declarations, which the
tests check against torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.graph import Graph, Node

DTYPE_BYTES = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2}


@dataclass
class Row:
    name: str  # qualified: basic1.conv1
    layer: str  # Conv2d(1→6, k=5)
    kind: str
    depth: int
    shape: str
    params: int
    trainable: int
    macs: int
    line: int | None

    def to_dict(self) -> dict:
        return {"name": self.name, "layer": self.kind, "args": self.layer, "depth": self.depth,
                "output_shape": self.shape, "params": self.params, "trainable_params": self.trainable,
                "macs": self.macs, "line": self.line}


@dataclass
class Summary:
    model: str
    inputs: list[dict]
    outputs: list[dict]
    rows: list[Row] = field(default_factory=list)

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows if r.kind != "block")

    @property
    def trainable_params(self) -> int:
        return sum(r.trainable for r in self.rows if r.kind != "block")

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.rows if r.kind != "block")

    @property
    def param_bytes(self) -> int:
        return self.total_params * 4

    def to_dict(self) -> dict:
        return {
            "model": self.model, "inputs": self.inputs, "outputs": self.outputs,
            "total_params": self.total_params, "trainable_params": self.trainable_params,
            "non_trainable_params": self.total_params - self.trainable_params,
            "macs_per_sample": self.macs, "param_bytes": self.param_bytes,
            "layers": [r.to_dict() for r in self.rows],
        }

    def table(self) -> str:
        head = ("Node", "Layer", "Output shape", "Params", "MACs")
        body = [(("  " * r.depth) + r.name.rsplit(".", 1)[-1], r.layer, r.shape,
                 f"{r.params:,}" if r.params else "-", _si(r.macs) if r.macs else "-") for r in self.rows]
        ins = [(f"{i['name']} (input)", "", _shape(i["shape"]), "-", "-") for i in self.inputs]
        rows = ins + body
        widths = [max(len(h), *(len(r[k]) for r in rows)) for k, h in enumerate(head)]
        right = {3, 4}

        def fmt(r):
            return "  ".join(c.rjust(w) if k in right else c.ljust(w) for k, (c, w) in enumerate(zip(r, widths)))

        rule = "─" * (sum(widths) + 2 * (len(widths) - 1))
        outs = ", ".join(f"{o['name']} {_shape(o['shape'])}" for o in self.outputs)
        lines = [f"Model: {self.model}", rule, fmt(head), rule, *map(fmt, rows), rule,
                 f"Outputs:              {outs}",
                 f"Total params:         {self.total_params:,}",
                 f"Trainable params:     {self.trainable_params:,}",
                 f"Non-trainable params: {self.total_params - self.trainable_params:,}",
                 f"Multiply-adds:        {_si(self.macs)} per sample",
                 f"Parameter memory:     {_bytes(self.param_bytes)}"]
        return "\n".join(lines)


def _shape(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _si(n: int) -> str:
    for unit, k in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= k:
            return f"{n / k:.2f}{unit}"
    return str(n)


def _bytes(n: int) -> str:
    for unit, k in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= k:
            return f"{n / k:.2f} {unit}"
    return f"{n} B"


def summarize(graph: Graph) -> Summary:
    """The summary of a shaped model graph."""
    inputs = [{"name": n.name, "shape": list(n.types[0].shape), "dtype": n.types[0].dtype}
              for n in graph.inputs]
    outputs = []
    for o in graph.outputs:
        t = graph.type_of(o.ref)
        outputs.append({"name": o.name, "shape": list(t.shape), "dtype": t.dtype})
    s = Summary(graph.name, inputs, outputs)
    _rows(graph, "", 0, s.rows)
    return s


def _rows(graph: Graph, prefix: str, depth: int, out: list[Row]) -> tuple[int, int, int]:
    total = trainable = macs = 0
    for n in graph.nodes:
        if n.kind == "input":
            continue
        shape = ", ".join(_shape(t.shape) for t in n.types[:1])
        line = n.span.line if n.span else None
        if n.kind == "block" and n.shares:  # the owner's rows say what it holds
            _, _, m = _rows(n.graph, "", 0, [])
            p = t = 0
            out.append(Row(prefix + n.name, f"{_block_label(n)} · shares {n.shares}", "block", depth,
                           shape, 0, 0, m, line))
        elif n.kind == "block":
            row = Row(prefix + n.name, _block_label(n), "block", depth, shape, 0, 0, 0, line)
            out.append(row)
            p, t, m = _rows(n.graph, f"{prefix}{n.name}.", depth + 1, out)
            row.params, row.trainable, row.macs = p, t, m
        else:
            op = n.op
            p = op.param_count() if n.shares is None else 0
            t = p if getattr(op, "trainable", True) else 0
            m = op.macs([graph.type_of(r) for r in n.inputs], n.types)
            label = op.kind + (f"({op.label_args()})" if op.label_args() else "")
            if n.shares:
                label += f" · shares {n.shares}"
            out.append(Row(prefix + n.name, label, op.kind, depth, shape, p, t, m, line))
        total, trainable, macs = total + p, trainable + t, macs + m
    return total, trainable, macs


def _block_label(n: Node) -> str:
    args = ", ".join(f"{k}={v}" for k, v in n.block_args.items())
    return f"{n.block}({args})"
