"""Summaries: per-layer output shapes, parameter counts and multiply-adds, from the IR alone
(no torch), as a table or as JSON. Parameter counts come from the op declarations, which the
tests check against torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.dims import Dim, Sym, is_symbolic
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
    macs: int  # at the nominal sizes, where shapes are symbolic
    line: int | None
    formula: Sym | None = None  # the multiply-adds for every size, where they vary

    def to_dict(self) -> dict:
        return {"name": self.name, "layer": self.kind, "args": self.layer, "depth": self.depth,
                "output_shape": self.shape, "params": self.params, "trainable_params": self.trainable,
                "macs": self.macs, "line": self.line,
                **({"macs_formula": str(self.formula)} if self.formula is not None else {})}


@dataclass
class Summary:
    model: str
    inputs: list[dict]
    outputs: list[dict]
    rows: list[Row] = field(default_factory=list)
    dims: list[Dim] = field(default_factory=list)  # declared dimensions (symbolic shapes)
    at: dict[str, int] = field(default_factory=dict)  # the sizes MACs are counted at

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
            **({"dims": {d.name: d.describe() for d in self.dims}, "macs_at": self.at} if self.dims else {}),
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
                 f"Multiply-adds:        {_si(self.macs)} per sample{self._at()}",
                 f"Parameter memory:     {_bytes(self.param_bytes)}"]
        if self.dims:
            lines.insert(1, "Sizes:  " + "; ".join(d.describe() for d in self.dims))
        return "\n".join(lines)

    def _at(self) -> str:
        if not self.at:
            return ""
        return " at " + ", ".join(f"{k} = {v}" for k, v in self.at.items()) + " (--at for others)"


def _shape(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _json_shape(shape) -> list:
    return [str(d) if isinstance(d, Sym) else d for d in shape]


def nominal(dims: list[Dim], at: dict[str, int] | None = None) -> dict[str, int]:
    """The sizes a symbolic model's multiply-adds are counted at: those given (each must be
    admissible; ValueError otherwise), else each dimension's largest, or its smallest when it
    has no largest."""
    at = dict(at or {})
    unknown = set(at) - {d.name for d in dims}
    if unknown:
        raise ValueError(f"no dimension named {', '.join(sorted(unknown))} "
                         f"(the model declares {', '.join(d.name for d in dims) or 'none'})")
    out = {}
    for d in dims:
        v = at.get(d.name, d.last if d.last is not None else d.first)
        d.check(v)
        out[d.name] = v
    return out


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


def summarize(graph: Graph, at: dict[str, int] | None = None) -> Summary:
    """The summary of a shaped model graph; symbolic multiply-adds are counted at `at`
    (see `nominal`)."""
    inputs = [{"name": n.name, "shape": _json_shape(n.types[0].shape), "dtype": n.types[0].dtype}
              for n in graph.inputs]
    outputs = []
    for o in graph.outputs:
        t = graph.type_of(o.ref)
        outputs.append({"name": o.name, "shape": _json_shape(t.shape), "dtype": t.dtype})
    sizes = nominal(graph.dims, at)
    s = Summary(graph.name, inputs, outputs, dims=list(graph.dims), at=sizes)
    values = {d: sizes[d.name] // d.step for d in graph.dims}
    _rows(graph, "", 0, s.rows, values)
    return s


def _rows(graph: Graph, prefix: str, depth: int, out: list[Row], at: dict) -> tuple[int, int, int]:
    total = trainable = macs = 0
    for n in graph.nodes:
        if n.kind == "input":
            continue
        shape = ", ".join(_shape(t.shape) for t in n.types[:1])
        line = n.span.line if n.span else None
        if n.kind == "block" and n.shares:  # the owner's rows say what it holds
            _, _, m = _rows(n.graph, "", 0, [], at)
            p = t = 0
            out.append(Row(prefix + n.name, f"{_block_label(n)} · shares {n.shares}", "block", depth,
                           shape, 0, 0, m, line))
        elif n.kind == "block":
            row = Row(prefix + n.name, _block_label(n), "block", depth, shape, 0, 0, 0, line)
            out.append(row)
            p, t, m = _rows(n.graph, f"{prefix}{n.name}.", depth + 1, out, at)
            row.params, row.trainable, row.macs = p, t, m
        else:
            op = n.op
            p = op.param_count() if n.shares is None else 0
            t = p if getattr(op, "trainable", True) else 0
            m = op.macs([graph.type_of(r) for r in n.inputs], n.types)
            formula = m if is_symbolic(m) else None
            if formula is not None:
                m = formula.at(at)
            label = op.kind + (f"({op.label_args()})" if op.label_args() else "")
            if n.shares:
                label += f" · shares {n.shares}"
            out.append(Row(prefix + n.name, label, op.kind, depth, shape, p, t, m, line, formula))
        total, trainable, macs = total + p, trainable + t, macs + m
    return total, trainable, macs


def _block_label(n: Node) -> str:
    args = ", ".join(f"{k}={v}" for k, v in n.block_args.items())
    return f"{n.block}({args})"
