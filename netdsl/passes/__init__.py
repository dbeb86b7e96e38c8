"""Passes over a parsed spec, in order (each a function of what the one before produced)."""

from __future__ import annotations

from .._gc import paused
from ..diagnostics import Reporter
from ..ir.graph import Graph
from ..ir.verify import verify
from ..syntax import ast
from .elaborate import Elaborator
from .names import Definitions, collect
from .inplace import check_inplace
from .shapes import check_model_size, check_outputs, infer_graph


def analyze(file: ast.File) -> tuple[Definitions, dict[str, Graph], Reporter]:
    """Names -> elaboration -> shapes. Raises NetdslError with every error of the failing pass."""
    with paused():  # see _gc.py: linear time on large specs
        return _analyze(file)


def _analyze(file: ast.File) -> tuple[Definitions, dict[str, Graph], Reporter]:
    rep = Reporter()
    defs = collect(file, rep)
    rep.check()
    elab = Elaborator(defs, rep)
    graphs = {name: elab.model(m) for name, m in defs.models.items()}
    rep.check()
    for g in graphs.values():
        verify(g)
        infer_graph(g, None, rep)
        check_outputs(g, rep)
    rep.check()
    for name, g in graphs.items():
        check_model_size(g, defs.models[name].name_span, rep)
        check_inplace(g, rep)
    rep.check()
    for g in graphs.values():
        verify(g, shaped=True)
    return defs, graphs, rep
