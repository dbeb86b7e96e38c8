"""Name passes on the AST: duplicate definitions, recursive blocks, statement order and cycles."""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from ..diagnostics import Reporter
from ..ops.custom import lookup
from ..syntax import ast


def walk(expr):
    """Every AST expression node below `expr` (inclusive)."""
    stack = [expr]
    while stack:
        e = stack.pop()
        if e is None:
            continue
        yield e
        if isinstance(e, ast.BinOp | ast.Compare | ast.BoolOp):
            stack += [e.right, e.left]
        elif isinstance(e, ast.Neg | ast.Not):
            stack.append(e.operand)
        elif isinstance(e, ast.TupleExpr | ast.ListExpr):
            stack += reversed(e.items)
        elif isinstance(e, ast.Call):
            stack += [k.value for k in reversed(e.kwargs)] + list(reversed(e.args)) + [e.func]
        elif isinstance(e, ast.Attribute):
            stack.append(e.value)
        elif isinstance(e, ast.Index):
            stack += [e.index, e.value]
        elif isinstance(e, ast.Step):
            stack.append(e.expr)
        elif isinstance(e, ast.Chain):
            stack += list(reversed(e.steps)) + [e.head]
        elif isinstance(e, ast.Conditional):
            stack += [e.other, e.test, e.then]


def statement_exprs(stmt) -> list:
    if isinstance(stmt, ast.Input):
        return [stmt.shape] if stmt.shape is not None else []
    if isinstance(stmt, ast.Output):
        return list(stmt.values)
    if isinstance(stmt, ast.Assign):
        return [stmt.value]
    return [stmt.expr]


@dataclass
class Definitions:
    models: dict[str, ast.ModelDef] = field(default_factory=dict)
    blocks: dict[str, ast.BlockDef] = field(default_factory=dict)
    trains: dict[str, ast.TrainDef] = field(default_factory=dict)


def collect(file: ast.File, rep: Reporter) -> Definitions:
    """Definitions by name; duplicates, blocks named like layers and recursive blocks reported."""
    defs = Definitions()
    seen: dict[str, ast.Node] = {}
    for d in file.definitions:
        if isinstance(d, ast.TrainDef):
            if d.name in defs.trains:
                rep.error("E202", f"a training plan for '{d.name}' is already defined", d.name_span,
                          notes=[("first defined here", defs.trains[d.name].name_span)])
            else:
                defs.trains[d.name] = d
            continue
        if d.name in seen:
            rep.error("E202", f"'{d.name}' is already defined", d.name_span,
                      notes=[("first defined here", seen[d.name].name_span)])
            continue
        if isinstance(d, ast.BlockDef) and lookup(d.name) is not None:
            rep.error("E202", f"block '{d.name}' has the name of a built-in layer", d.name_span,
                      "give the block another name")
            continue
        seen[d.name] = d
        (defs.models if isinstance(d, ast.ModelDef) else defs.blocks)[d.name] = d
    _check_recursion(defs, rep)
    return defs


def _check_recursion(defs: Definitions, rep: Reporter) -> None:
    g = nx.DiGraph()
    for name, b in defs.blocks.items():
        g.add_node(name)
        for stmt in b.body:
            for e in statement_exprs(stmt):
                for sub in walk(e):
                    if isinstance(sub, ast.Name) and sub.id in defs.blocks:
                        g.add_edge(name, sub.id, span=sub.span)
    for cycle in nx.simple_cycles(g):
        first = cycle[0]
        nxt = cycle[1 % len(cycle)]
        path = f" ({' -> '.join(cycle + [first])})" if len(cycle) > 1 else ""
        rep.error("E207", f"block '{first}' uses itself{path}; blocks cannot be recursive",
                  g.edges[first, nxt]["span"], f"to repeat a block write '-> {first}(...) * 3'")
        defs.blocks.pop(first, None)


def bound_names(stmt, is_layer) -> list[tuple[str, object]]:
    """The names a statement binds, with their spans."""
    if isinstance(stmt, ast.Input):
        return [(stmt.name, stmt.name_span)]
    if isinstance(stmt, ast.Assign):
        return [(t.name, t.span) for t in stmt.targets if t.name != "_"]
    if isinstance(stmt, ast.ExprStmt):
        target = chain_target(stmt.expr, is_layer)
        if target is not None:
            return [(target.id, target.span)]
    return []


def chain_target(expr, is_layer) -> ast.Name | None:
    """`x -> ... -> logits`: the trailing bare name that the chain binds, if any."""
    if isinstance(expr, ast.Chain) and expr.steps:
        last = expr.steps[-1]
        if isinstance(last.expr, ast.Name) and last.alias is None and not is_layer(last.expr.id):
            return last.expr
    return None


def order(body: list, bindings: dict[str, int], rep: Reporter, params: set[str],
          is_layer) -> list[int] | None:
    """Statement indices in dependency order (spec order where free); None after a cycle."""
    g = nx.DiGraph()
    g.add_nodes_from(range(len(body)))
    for i, stmt in enumerate(body):
        target = chain_target(stmt.expr, is_layer) if isinstance(stmt, ast.ExprStmt) else None
        for e in statement_exprs(stmt):
            for sub in walk(e):
                if isinstance(sub, ast.Name) and sub.id in bindings and sub.id not in params \
                        and sub is not target:
                    g.add_edge(bindings[sub.id], i, name=sub.id, span=sub.span)
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return list(nx.lexicographical_topological_sort(g))
    k = min(range(len(cycle)), key=lambda i: (g.edges[cycle[i]]["span"].line, g.edges[cycle[i]]["span"].col))
    cycle = cycle[k:] + cycle[:k]  # start at the first use in the file: that is where we point
    names = [g.edges[e]["name"] for e in cycle]
    path = " -> ".join(names + [names[0]])
    first = g.edges[cycle[0]]
    rep.error("E203", f"'{first['name']}' depends on itself: {path}", first["span"],
              "a network must not loop; each value must be computed from earlier ones",
              [(f"'{g.edges[e]['name']}' is used here", g.edges[e]["span"]) for e in cycle[1:]])
    return None
