"""Passes over a parsed spec, in order (each a function of what the one before produced)."""

from __future__ import annotations

from .._gc import paused
from ..diagnostics import Reporter
from ..ir.graph import Graph
from ..ir.verify import verify
from ..syntax import ast
from .elaborate import Elaborator
from .inplace import check_inplace
from .names import Definitions, collect
from .shapes import check_model_size, check_outputs, infer_graph
from .symbolic import check_annotations, suggest


def analyze(file: ast.File) -> tuple[Definitions, dict[str, Graph], Reporter]:
    """Names -> elaboration -> shapes. Raises NetdslError with every error of the failing pass."""
    with paused():  # see _gc.py: linear time on large specs
        return _analyze(file)


def _analyze(file: ast.File) -> tuple[Definitions, dict[str, Graph], Reporter]:
    rep = Reporter()
    defs = collect(file, rep)
    rep.check()
    elab = Elaborator(defs, rep)
    graphs, declared = {}, {}
    for name, m in defs.models.items():
        before = len(rep.diagnostics)
        graphs[name] = elab.model(m)
        declared[name] = dict(elab.dims)
        _whole_model_fix(defs, m, declared[name], rep.diagnostics[before:])
    rep.check()
    for name, g in graphs.items():
        verify(g)
        before = len(rep.diagnostics)
        _shapes(g, rep)
        _whole_model_fix(defs, defs.models[name], declared[name], rep.diagnostics[before:])
    rep.check()
    for name, g in graphs.items():
        check_model_size(g, defs.models[name].name_span, rep)
        check_inplace(g, rep)
    rep.check()
    for g in graphs.values():
        verify(g, shaped=True)
    return defs, graphs, rep


def _shapes(g: Graph, rep: Reporter) -> None:
    """Shape inference, then what is checked on the shapes: outputs and annotations."""
    infer_graph(g, None, rep)
    check_outputs(g, rep)
    for body in [g, *(n.graph for _, n, _ in g.walk() if n.kind == "block" and n.graph is not None)]:
        check_annotations(body, rep)


def _whole_model_fix(defs: Definitions, mdef: ast.ModelDef, declared: dict, found: list) -> None:
    """A layer's error on symbolic sizes says what that layer needs; the hint of the first one
    gives the whole where clause under which the model checks, which may ask for more
    (`H % 16 == 0` for the skip further on, not only `H >= 16` for this pool)."""
    first = next((d for d in found if getattr(d, "fix", None)), None)
    if first is None:
        return

    def errors(dims: dict) -> list:
        rep = Reporter()
        g = Elaborator(defs, rep).model(mdef, dims)
        if g is not None and not rep.has_errors:
            _shapes(g, rep)
        return [d for d in rep.diagnostics if d.severity == "error"]
    dims = suggest(first.fix, declared, errors)
    if dims is None:
        return
    clause = ", ".join(c for d in dims.values() for c in d.constraints()) or \
        ", ".join(f"{name} >= 1" for name in dims)
    alone = [c for d in first.fix.values() for c in d.constraints() if c not in declared[d.name].constraints()]
    more = [c for name, d in dims.items() for c in d.constraints() if c not in declared[name].constraints()]
    first.hint = f"declare it on the input: where {clause}" + (
        "" if sorted(alone) == sorted(more) else
        f" (this layer alone needs {' and '.join(alone)}; the layers after it need the rest)")
