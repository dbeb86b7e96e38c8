"""Shape errors on symbolic sizes: the smallest size that fails, the constraint that is missing
(`H % 16 == 0`, `H >= 7`) and the layers that make it needed; and `h: [T, 256]` annotations."""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

from ..diagnostics import Reporter
from ..ir.dims import Dim, SymbolicError, dims_of, is_symbolic, rebased, samples, substitute
from ..ir.graph import Graph, Node
from ..ir.types import TensorType
from ..ops.base import ShapeError

Apply = Callable[[list[TensorType]], object]  # a layer's shape rule; raises ShapeError
MAX_TRIES = 4096


def static_error(op, inferred: dict, ins: list[TensorType]) -> ShapeError | None:
    """E307: an argument that fixes the layer's weights (`in_features`) cannot vary with H."""
    for name, value in inferred.items():
        if is_symbolic(value):
            why = next((t.why for t in ins if t.why and is_symbolic(t.shape)), None)
            dims = dims_of(value)
            return ShapeError(
                f"{op.kind} needs a static {name} (its weights are made once, for one size), but its "
                f"input gives {why or value}, which varies with {', '.join(d.name for d in dims)}", code="E307",
                hint="make the size static before this layer: AdaptiveAvgPool2d(1) before Flatten, as "
                     "torchvision's classifiers do; or declare one size: where "
                     + ", ".join(f"{d.name} == {d.first}" for d in dims))
    return None


def symbolic_error(exc: SymbolicError, op) -> ShapeError:
    return ShapeError(f"{op.kind} cannot work with a symbolic size here: {exc}", code="E307",
                      hint="declare the dimension's size as a number, or put a layer before this one "
                           "that makes the size static (AdaptiveAvgPool2d)")


def _dims(ins: list[TensorType]) -> set[Dim]:
    return set().union(*(t.dims() for t in ins)) if ins else set()


def _fails(apply: Apply, ins: list[TensorType]) -> bool:
    """Whether the rule fails on these types; a size past netdsl's memory limit (E305, at the
    huge sizes a search tries) is not the failure being explained."""
    try:
        apply(ins)
    except ShapeError as exc:
        return exc.code != "E305"
    except SymbolicError:
        return True
    return False


def _retyped(ins: list[TensorType], new: dict[Dim, Dim]) -> list[TensorType]:
    mapping = {d: rebased(d, n) for d, n in new.items()}
    return [t.at(mapping) for t in ins]


def witness(apply: Apply, ins: list[TensorType]) -> dict[Dim, int] | None:
    """The smallest admissible point (internal values) at which the rule fails."""
    for point in samples(_dims(ins), MAX_TRIES):
        if _fails(apply, [t.at(point) for t in ins]):
            return point
    return None


def fix(apply: Apply, ins: list[TensorType]) -> dict[Dim, Dim] | None:
    """Tightened dimensions under which the rule holds for every size: a larger smallest
    size (`H >= 7`) if that is enough, else a larger step (`H % 16 == 0`)."""
    dims = sorted(_dims(ins), key=lambda d: d.name)
    if not dims:
        return None

    def holds(new: dict[Dim, Dim | None]) -> bool:
        return None not in new.values() and not _fails(apply, _retyped(ins, new))

    found = []
    for tighten in (_by_first, _by_step):
        for level in tighten.levels:
            new = {d: tighten(d, level) for d in dims}
            if holds(new):
                break
        else:
            continue
        for d in dims:  # as little as each dimension needs
            for level in tighten.levels:
                trial = {**new, d: tighten(d, level)}
                if holds(trial):
                    new = trial
                    break
            if tighten is _by_first:  # the ladder's rung may be more than needed: bisect below it
                lo, hi = d.first, new[d].first
                while lo < hi:
                    mid = (lo + hi) // 2
                    trial = {**new, d: d.tightened(first=mid)}
                    lo, hi = (lo, mid) if holds(trial) else (mid + 1, hi)
                new = {**new, d: d.tightened(first=lo)}
        found.append({d: n for d, n in new.items() if n != d})
    for d in dims:  # a largest size (`T <= 1024`): the largest that holds, by bisection
        lo, hi = d.first, d.last if d.last is not None else 2**40
        if not holds({d: d.tightened(last=lo)}):
            continue
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if holds({d: d.tightened(last=mid)}) else (lo, mid - 1)
        if d.last is None or lo < d.last:
            found.append({d: d.tightened(last=lo)})
    # the fix that keeps the most sizes: H >= 7 over H % 7 == 0, T <= 512 over T % 2 == 0
    return max(found, key=lambda new: sum(_kept(new.get(d, d)) for d in dims), default=None)


def _kept(d: Dim) -> int:
    """How many admissible sizes d has up to 2**20 (a measure for choosing between fixes)."""
    last = min(d.last, 2**20) if d.last is not None else 2**20
    return max(0, last // d.step - d.lo + 1)


def _by_first(d: Dim, size: int) -> Dim | None:
    return d.tightened(first=max(d.first, size))


_by_first.levels = sorted({*range(1, 65), *(2**k for k in range(7, 17)), *(3 * 2**k for k in range(5, 15))})


def _by_step(d: Dim, k: int) -> Dim | None:
    return d.tightened(step=d.step * k)


_by_step.levels = list(range(1, 65))


def explain(apply: Apply, ins: list[TensorType], graph: Graph, node: Node,
            context: list = ()) -> tuple[str, str | None, dict]:
    """What to add to a shape error raised on symbolic inputs: (message suffix, hint, the
    tightened dimensions that make this layer's rule hold)."""
    point = witness(apply, ins)
    if point is None:
        where = ("; netdsl cannot prove it for every admissible size, though every size it tried "
                 "works")
    else:
        where = " (at " + ", ".join(f"{d.name} = {v * d.step}" for d, v in sorted(
            point.items(), key=lambda dv: dv[0].name)) + ")"
    new = fix(apply, ins)
    if not new:
        return where, None, {}
    needs = [c for d, n in new.items() for c in n.constraints() if c not in d.constraints()]
    groups: dict[tuple, list[str]] = {}
    for d in sorted(new, key=lambda d: d.name):
        for label, ratio, lines in _scalers(graph, node, d.name, list(context)):
            groups.setdefault((label, ratio, tuple(lines)), []).append(d.name)
    text = f"{where}: needs {' and '.join(needs)}"
    if groups:
        text += ": " + ", ".join(
            f"{label} {_scales(ratio, ' and '.join(names))}{_times(len(lines))} ({_lines(sorted(set(lines)))})"
            for (label, ratio, lines), names in groups.items())
        text += f" before this {node.label}"
    everything = [c for n in new.values() for c in n.constraints()]
    return text, f"declare it on the input: where {', '.join(everything)}", new


def suggest(first: dict[Dim, Dim], declared: dict[str, Dim], errors) -> dict[str, Dim] | None:
    """Constraints under which the whole model checks, found by applying one layer's fix at a
    time (`H >= 16`, then `H % 16 == 0` for the skip it reaches next); None if none is found.
    `errors(dims)` analyses the model again under other dimensions and returns its errors."""
    dims = dict(declared)
    step = first
    for _ in range(16):
        for old, new in step.items():
            dims[old.name] = _merged(dims[old.name], new)
        found = errors(dims)
        if not found:
            return dims
        step = getattr(found[0], "fix", None)
        if not step:
            return None
    return None


def _merged(a: Dim, b: Dim) -> Dim:
    """Both dimensions' constraints (b tightens a, or a copy of it tightened)."""
    out = a.tightened(step=math.lcm(a.step, b.step), first=max(a.first, b.first),
                      last=b.last if a.last is None else (a.last if b.last is None else min(a.last, b.last)))
    return out or b


def _slope(x, name: str) -> Fraction:
    """How fast size x grows with the dimension `name` (1 for H, 1/4 for H/4, 0 without H)."""
    dims = x.dims() if hasattr(x, "dims") else set()
    mine = [d for d in dims if d.name == name]
    if not mine:
        return Fraction(0)
    d = mine[0]
    big = 1 << 20
    rest = {o: o.lo for o in dims if o is not d}
    a, b = x.at({**rest, d: big}), x.at({**rest, d: 2 * big})
    return (Fraction(b) - Fraction(a)) / (big * d.step)


def _scalers(graph: Graph, node: Node, name: str, context: list) -> list[tuple[str, Fraction, list[int]]]:
    """The layers before `node` that scale dimension `name`, outermost first and grouped by
    kind and factor: [("MaxPool2d", 1/2, [17, 17, 17, 17]), ...]. The walk goes up through the
    block instances `node` sits in, and into the blocks it passes."""
    levels = []
    starts, level = [r.node for r in node.inputs], len(context)
    while True:
        scaled, reached = _ancestors(graph, starts, name)
        levels.insert(0, scaled)
        if graph.kind != "block" or level == 0 or not reached:
            break
        inst = context[level - 1]
        if inst.graph is None or inst.ins is None:
            break
        inputs = [n.name for n in graph.inputs]
        starts = [inst.ins[inputs.index(k)].node for k in reached if inputs.index(k) < len(inst.ins)]
        graph, level = inst.graph, level - 1
    groups: list[tuple[str, Fraction, list[int]]] = []
    for label, ratio, line in (x for scaled in levels for x in scaled):
        for g in groups:
            if g[0] == label and g[1] == ratio:
                g[2].append(line)
                break
        else:
            groups.append((label, ratio, [line]))
    return groups


def _ancestors(graph: Graph, starts: list[str], name: str) -> tuple[list, list[str]]:
    """The layers among `starts` and what they come from that scale `name` (through blocks,
    into the layers inside), in graph order; and the graph's inputs the walk reached."""
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    seen, stack = set(), list(starts)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        stack.extend(r.node for r in graph.node(n).inputs)
    nodes = [graph.node(n) for n in sorted(seen, key=order.get)]
    return _scaling(graph, nodes, name), [n.name for n in nodes if n.kind == "input"]


def _scaling(graph: Graph, nodes: list[Node], name: str) -> list:
    """Of `nodes`, the layers that scale `name`, with those inside the block instances among
    them: (label, factor, line)."""
    out = []
    for src in nodes:
        ratio = _ratio(graph, src, name) if src.kind != "input" else None
        if ratio is None:
            continue
        if src.kind == "block" and src.graph is not None:
            out.extend(_scaling(src.graph, src.graph.nodes, name))
        else:
            out.append((src.label, ratio, src.span.line if src.span else 0))
    return out


def _ratio(graph: Graph, src: Node, name: str) -> Fraction | None:
    """The factor a node scales `name` by (1/2 for a 2x2 pool), None if it leaves it be."""
    if not src.inputs or not src.types:
        return None
    tin, tout = graph.type_of(src.inputs[0]), src.types[0]
    if tin is None or tin.rank != tout.rank:
        return None
    for a, b in zip(tin.shape, tout.shape):
        sa, sb = _slope(a, name), _slope(b, name)
        if sa and sb and sa != sb:
            return (sb / sa).limit_denominator(1024)
    return None


def _lines(lines: list[int]) -> str:
    if len(lines) == 1:
        return f"line {lines[0]}"
    return "lines " + ", ".join(map(str, lines[:-1])) + f" and {lines[-1]}"


def _scales(r: Fraction, names: str) -> str:
    """`halves H and W`, `divides H by 16`."""
    if r == Fraction(1, 2):
        return f"halves {names}"
    if r == 2:
        return f"doubles {names}"
    if r < 1:
        return f"divides {names} by {1 / r}"
    return f"multiplies {names} by {r}"


def _times(n: int) -> str:
    return "" if n == 1 else " twice" if n == 2 else f" {n} times"


def check_annotations(graph: Graph, rep: Reporter) -> None:
    """E308: `h: [T, 256] = ...` must be h's shape for every admissible size."""
    for name, ref, shape, span in graph.annotations:
        node = graph.node(ref.node)
        if ref.index >= len(node.types):
            continue  # its layers had errors, already reported
        t = node.types[ref.index]
        if tuple(t.shape) == tuple(shape):
            continue
        at = ""
        if len(shape) == t.rank:
            dims = t.dims() | {d for x in shape if is_symbolic(x) for d in x.dims()}
            for point in samples(dims, MAX_TRIES):
                mine, theirs = [substitute(x, point) for x in t.shape], [substitute(x, point) for x in shape]
                if mine != theirs:
                    at = " (at " + ", ".join(f"{d.name} = {v * d.step}" for d, v in sorted(
                        point.items(), key=lambda dv: dv[0].name)) + f": {_listed(mine)} vs {_listed(theirs)})"
                    break
        new = None
        if at and all(isinstance(x, int) or is_symbolic(x) for x in shape):
            new = fix(_same_shapes, [t, TensorType(shape=shape)])
        hint = "an annotation states a value's shape without the batch; correct it, or the layers " \
            "that make the value"
        if new:
            hint = f"it holds where {', '.join(c for n in new.values() for c in n.constraints())}; or {hint}"
        d = rep.error("E308", f"'{name}' is {_listed(t.shape)}, not {_listed(shape)} as annotated{at}", span,
                      hint, [("the value comes from here", node.span)] if node.span else None)
        if new:
            d.fix = new  # for suggest(): the whole model's where clause


def _same_shapes(ins: list[TensorType]) -> None:
    if tuple(ins[0].shape) != tuple(ins[1].shape):
        raise ShapeError("the shapes differ")


def _listed(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"
