"""A plan (blockclass.py) as a `ClassDef`: `__init__` statements, and `forward` statements with
variable names, shape comments and the `if`/`else` of a condition.

Variables are named after the spec's values (`y`, `s`, `logits`); a layer whose input is not
used again writes its result back to the same name (`x = self.conv1(x)`), as people write. A
value that one branch computes and the other takes from elsewhere is one variable assigned in
both branches; when the branch's last layer can write it directly, it does.
"""

from __future__ import annotations

import re

from .plans import Plan
from .lower import ClassDef, Namespace, Stmt
from .pysource import literal


# module names the generated code uses, as names of their own (not `mytorch.x`, `outF.size`)
_TORCH = re.compile(r"(?<![\w.])torch\.")
_F = re.compile(r"(?<![\w.])F\.")


def emit(plan: Plan, reserved: frozenset) -> ClassDef:
    imports = {"from torch import nn"}
    init: list[tuple[bool | None, Stmt]] = []
    for item in plan.items:
        if item.phi or item.first.ctor is None:
            continue
        m = item.first
        imports.update(m.imports)
        args, kwargs = plan.ctor[item.id]
        parts = [literal(a) for a in args] + [f"{k}={literal(v)}" for k, v in kwargs]
        call = f"{m.ctor}({', '.join(parts)})"
        init.append((item.guard, Stmt(m.node.op.init_statement(m.name, call) if m.node.kind == "op"
                                      else f"self.{m.name} = {call}")))
        init += [(item.guard, st) for st in m.setup]
    inputs, body, uses_torch = _forward(plan, reserved)
    if uses_torch or any(_TORCH.search(st.code) for _, st in init):
        imports.add("import torch")
    if any(_F.search(st.code) for _, st in body):
        imports.add("import torch.nn.functional as F")
    return ClassDef(
        name=plan.name,
        doc=plan.doc,
        params=[(p.py, p.default) for p in plan.params],
        init=_group(init, plan.cond_init, plan.cond_init_not),
        inputs=inputs,
        body=_group(body, *_tests(plan.witness)),
        imports=imports,
    )


def _forward(plan: Plan, reserved: frozenset):
    """(forward's parameters, its statements with their branches, whether they use torch.)"""
    items = plan.items
    graph = plan.programs[0].graph
    ns = Namespace(reserved)
    var: dict[tuple, str] = {}
    wanted: dict[str, str] = {}  # variable -> the spec name it was made for
    for n in graph.inputs:
        v = ns.create(n.name)
        var[(n.name, 0)] = v
        wanted[v] = n.name
    # every use of a value: (item index, the branch it runs in); a phi reads each side in its branch
    uses: dict[tuple, list[tuple[int, bool | None]]] = {}
    for i, item in enumerate(items):
        for k, r in enumerate(item.inputs):
            uses.setdefault(r, []).append((i, (k == 0) if item.phi else item.guard))
    outputs = set(plan.outputs)
    by_id = {item.id: item for item in items}

    def dies(ref: tuple, i: int, guard: bool | None) -> bool:
        """Whether nothing reads `ref` after item i, on any path through item i."""
        return ref not in outputs and not any(
            j > i and (guard is None or g is None or g == guard) for j, g in uses.get(ref, ()))

    def hint(ref: tuple) -> str | None:
        item = by_id.get(ref[0])
        if item is None:
            return ref[0]  # an input
        node = item.first.node
        return node.bound[ref[1]] if ref[1] < len(node.bound) else None

    # a phi's variable: named after a side's spec name; a side that only the phi reads, made in
    # the phi's own branch, is written straight to it
    coalesce: dict[tuple, str] = {}
    phi_hint: dict[str, str] = {}
    for i, item in enumerate(items):
        if not item.phi:
            continue
        named = [hint(r) for r in item.inputs]
        phi_hint[item.id] = next((h for h in named if h), None) or next(
            (by_id[r[0]].first.node.hint for r in item.inputs if r[0] in by_id and by_id[r[0]].first.node.hint),
            "x")
        for side, ref in zip((True, False), item.inputs):
            producer = by_id.get(ref[0])
            if producer is not None and producer.guard is side and uses.get(ref) == [(i, side)] \
                    and ref not in outputs:
                coalesce[ref] = item.id
    phi_var: dict[str, str] = {}

    def phi_variable(pid: str, reuse: str | None = None) -> str:
        if pid not in phi_var:
            if reuse is not None and wanted.get(reuse) == phi_hint[pid]:
                phi_var[pid] = reuse
            else:
                phi_var[pid] = ns.create(phi_hint[pid])
                wanted[phi_var[pid]] = phi_hint[pid]
        return phi_var[pid]

    lines: list[tuple[bool | None, Stmt]] = []
    uses_torch = False
    attrs: set[tuple] = set()  # values read straight from the module (`self.pos`): never reassigned
    for i, item in enumerate(items):
        if item.phi:
            # a side's own variable may become the phi's, when nothing reads it afterwards
            side_vars = [var[r] for r in item.inputs]
            reuse = next((var[r] for r in item.inputs if r in var and dies(r, i, None)
                          and r not in coalesce and r not in attrs), None)
            v = phi_variable(item.id, reuse)
            var[(item.id, 0)] = v
            for side, ref, sv in zip((True, False), item.inputs, side_vars):
                if coalesce.get(ref) != item.id and sv != v:
                    lines.append((side, Stmt(f"{v} = {sv}")))
            continue
        node = item.first.node
        if node.kind == "op" and node.op.arity == (0, 0):  # a Parameter: read where it is used
            var[(item.id, 0)] = f"self.{node.shares or node.name}"
            attrs.add((item.id, 0))
            continue
        ins = [var[r] for r in item.inputs]
        first_in = item.inputs[0] if item.inputs else None
        outs: list[str | None] = []
        for j in range(node.n_outputs):
            ref = (item.id, j)
            if ref not in uses and ref not in outputs:
                outs.append(None)
                continue
            dying = j == 0 and first_in is not None and item.inputs.count(first_in) == 1 \
                and dies(first_in, i, item.guard) and first_in not in attrs \
                and (node.kind != "op" or node.op.renames)
            if ref in coalesce:
                v = phi_variable(coalesce[ref], var[first_in] if dying else None)
            else:
                bound = hint(ref)
                # in a branch, a chain the spec names (`s = x -> ...`) writes that name
                name = bound or (node.hint if item.guard is not None else None)
                if dying and (not name or wanted.get(var[first_in]) == name):
                    v = var[first_in]  # the input dies here: reuse its name, as people do
                else:
                    want = bound or node.hint or "x"
                    v = ns.create(want)
                    wanted[v] = want
            var[ref] = v
            outs.append(v)
        comment = plan.comments.get((item.id, 0), "")
        if node.kind == "block":
            lhs = ", ".join(o or "_" for o in outs)
            code = [f"{lhs} = self.{node.shares or node.name}({', '.join(ins)})"]
        else:
            module = f"self.{node.shares or node.name}" if node.op.torch is not None else None
            code = node.op.forward_lines(module, ins, outs)
        uses_torch = uses_torch or any(_TORCH.search(c) for c in code)
        for k, c in enumerate(code):
            lines.append((item.guard, Stmt(c, comment if k == 0 else "")))
    lines.append((None, Stmt("return " + ", ".join(var[r] for r in plan.outputs))))
    return [var[(n.name, 0)] for n in graph.inputs], lines, uses_torch


def _tests(witness: tuple[str, bool] | None) -> tuple[str, str]:
    """forward's tests for the condition and its negation: whether the witness layer exists.
    (TorchScript decides `hasattr(self, ...)` when it compiles, so it compiles only the branch
    an instance has.)"""
    if witness is None:
        return "", ""
    there = f"hasattr(self, {literal(witness[0])})"
    return (there, f"not {there}") if witness[1] else (f"not {there}", there)


def _group(lines: list[tuple[bool | None, Stmt]], cond: str, cond_not: str) -> list[Stmt]:
    """Runs of guarded statements become `if cond:` / `else:` blocks (a run's order within each
    branch is kept; the two branches never both run)."""
    out: list[Stmt] = []
    k = 0
    while k < len(lines):
        guard, st = lines[k]
        if guard is None:
            out.append(st)
            k += 1
            continue
        then: list[Stmt] = []
        other: list[Stmt] = []
        while k < len(lines) and lines[k][0] is not None:
            (then if lines[k][0] else other).append(lines[k][1])
            k += 1
        if then:
            out.append(Stmt(f"if {cond}:", body=then))
            if other:
                out.append(Stmt("else:", body=other))
        else:
            out.append(Stmt(f"if {cond_not}:", body=other))
    return out
