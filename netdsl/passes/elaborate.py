"""Elaboration: AST -> graph IR. Resolves names, applies layers and blocks, expands repetition
and conditionals, validates every layer's arguments against its declaration.

Shapes are not known here (see passes/shapes.py); inferred arguments stay None.
"""

from __future__ import annotations

import keyword
import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, get_args

from pydantic import ValidationError

from ..diagnostics import Reporter, did_you_mean
from ..ir.graph import Graph, Node, Output, Ref
from ..ir.dims import Sym, dims_of, is_symbolic
from ..ir.types import DTYPES, TensorType
from ..ops import get_op
from ..ops.base import Op
from ..ops.custom import layer_names, lookup, not_allowed_hint
from ..syntax import ast
from . import names as N
from .describe import describe_field, literal_values
from .dimensions import declare
from .scalars import FAILED, SHAPES, EvalError, Symbol, evaluate, plain, report, size_parts
from .shapes import MAX_ELEMENTS, infer_until

# Attribute names an nn.Module already has: a layer named like one would break the module.
MODULE_ATTRS = frozenset("""
forward training parameters modules children state_dict load_state_dict to cuda cpu train
eval apply zero_grad named_parameters buffers register_buffer add_module half float double
type extra_repr requires_grad_ share_memory register_module get_submodule get_parameter
get_buffer dump_patches call_super_init compile bfloat16 to_empty named_modules named_children
named_buffers register_parameter ipu xpu mtia set_extra_state get_extra_state
""".split())


@dataclass
class Value:
    """What an expression evaluates to: one or more refs. `packed` marks an explicit tuple
    `(a, b)`, all of which feed the next layer; otherwise only the first output flows on."""

    refs: list[Ref]
    packed: bool = False
    producer: str | None = None  # for messages: "LSTM produces out, h, c"
    names: tuple[str, ...] = ()


# torch's other names for dtypes (torch.float is float32, torch.long int64, ...)
DTYPE_ALIASES = {"float": "float32", "double": "float64", "half": "float16", "long": "int64",
                 "int": "int32", "short": "int16", "byte": "uint8", "f32": "float32", "i64": "int64"}
MAX_LAYERS = 20_000  # per spec, through blocks and repeats: 10x the deepest reference network;
# elaboration and shape inference of that many take about a second
TENSOR_OPS = {"+": "Add", "-": "Sub", "*": "Mul", "/": "Div", "@": "MatMul"}  # `a - b` is Sub
SIZE_METHODS = ("size", "dim")  # `x.size(1)` is a number (passes/scalars.py)
TORCH_PATHS = ("torch", "nn", "F", "torchvision")  # `nn.Parameter(...)` as a PyTorch user writes it
JOINS = ("cat", "concat", "stack")  # torch.cat(...) and its kin
JOIN_HINT = "tensors join with a layer: (a, b) -> Concat(dim=1)"
# torch's tensor methods and the layers that do the same here, for the error's hint
METHOD_LAYERS = {"transpose": "Transpose(1, 2)", "permute": "Permute(...)", "view": "Reshape(...)",
                 "reshape": "Reshape(...)", "flatten": "Flatten", "softmax": "Softmax(dim=-1)",
                 "mean": "Mean(dim=...)", "chunk": "Chunk(n, dim=...)", "split": "Split(sizes, dim=...)",
                 "unflatten": "Unflatten(dim, sizes)", "relu": "ReLU", "sigmoid": "Sigmoid",
                 "tanh": "Tanh"}
MAX_BLOCK_DEPTH = 64  # blocks inside blocks; the later passes recurse once per level


@dataclass
class Elaborator:
    defs: N.Definitions
    rep: Reporter
    nodes_made: int = 0
    layouts: dict = field(default_factory=dict)  # per body: bindings, spans, order, names used
    dims: dict = field(default_factory=dict)  # the model's declared dimensions, by name
    sizes: dict = field(default_factory=dict)  # what their names stand for: H, or 224 (H == 224)

    def model(self, mdef: ast.ModelDef, dims: dict | None = None) -> Graph | None:
        """The model's graph (None after errors); `dims` replaces its declared dimensions (to
        try other constraints)."""
        self.dims = dims if dims is not None else declare(
            mdef, set(self.defs.blocks) | {n for n in _dim_names(mdef) if lookup(n)}, self.rep)
        # a dimension with one admissible size (`where H == 224`) is that number
        self.sizes = {n: d.first if d.first == d.last else d.size() for n, d in self.dims.items()}
        graph = Graph(name=mdef.name, kind="model", span=mdef.span,
                      dims=[d for d in self.dims.values() if d.first != d.last])
        ok = _Body(self, graph, dict(self.sizes), None, mdef).run()
        return graph if ok else None

    def is_layer(self, name: str) -> bool:
        return name in self.defs.blocks or lookup(name) is not None


@dataclass
class _Body:
    """Elaborates one model body or one block instance into `graph`."""

    elab: Elaborator
    graph: Graph
    params: dict[str, Any]
    ins: list[Ref] | None  # block instances: the caller's values for the block's inputs
    definition: ast.ModelDef | ast.BlockDef
    values: dict[str, Value] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    taken: set[str] = field(default_factory=set)
    counters: dict[str, int] = field(default_factory=dict)
    hint: str | None = None
    failed: set[str] = field(default_factory=set)  # names whose statement failed (already reported)
    mentioned: set[str] = field(default_factory=set)  # names the body's expressions refer to
    depth: int = 0  # how many block instances this body sits in
    instances: dict[str, Any] = field(default_factory=dict)  # `enc = Encoder(64)`: declared
    owners: dict[str, str] = field(default_factory=dict)  # instance -> the node built first
    parent: "_Body | None" = None  # the body that applies this block instance
    call_span: Any = None  # where the parent applies it

    def __post_init__(self) -> None:
        # what scalar expressions see: the block's parameters, and the shapes of its values
        self.env = {**self.params, SHAPES: self._shape_of}

    def context(self) -> list:
        """The block instances this body sits in, outermost first (for shape errors' notes)."""
        if self.parent is None:
            return []
        here = SimpleNamespace(block=self.definition.name, block_args=self.params, call_span=self.call_span,
                               ins=self.ins, graph=self.parent.graph)
        return self.parent.context() + [here]

    def _shape_of(self, name: str, span) -> TensorType | None:
        """The type of value `name`, for `x.size(1)`: shapes are inferred here, as far as the
        value needs (the shape pass later goes over the whole graph again)."""
        v = self.values.get(name)
        if v is None:
            return None
        t = self.type_of(v.refs[0])
        if t is None:
            raise EvalError("", f"the shape of '{name}' is not known here", span)  # said already
        return t

    def type_of(self, ref: Ref) -> TensorType | None:
        def input_type(k: int) -> TensorType | None:
            if self.parent is None or self.ins is None or k >= len(self.ins):
                return None
            return self.parent.type_of(self.ins[k])
        return infer_until(self.graph, ref, input_type, self.rep, self.context())

    @property
    def rep(self) -> Reporter:
        return self.elab.rep

    # ---- the body ----------------------------------------------------------------------------
    def run(self) -> bool:
        rep, body = self.rep, self.definition.body
        errors_before = rep.error_count  # not len(diagnostics): a repeated error is kept once
        # What names a body binds and in which order it runs depends on the body alone: worked
        # out once per block, not once per instance (a third of the time on block-heavy specs).
        key = (id(self.definition), frozenset(self.params))
        cached = self.elab.layouts.get(key)
        if cached is not None:
            bindings, spans, order, self.mentioned = cached
            self._inputs([s for s in body if isinstance(s, ast.Input)])
            return self._statements(order, bindings, spans, errors_before)
        bindings: dict[str, int] = {}
        spans: dict[str, Any] = {}
        for i, stmt in enumerate(body):
            for name, span in N.bound_names(stmt, self.elab.is_layer):
                if name in bindings or name in self.params:
                    first = spans.get(name)
                    what = ("a dimension of the model's input" if name in self.elab.dims and self.parent is None
                            else "a parameter of this block") if name in self.params else "already defined"
                    rep.error("E202", f"'{name}' is {what}", span,
                              "a name is bound once; give this value another name",
                              notes=[("first defined here", first)] if first else None)
                    continue
                if name in self.elab.defs.blocks or lookup(name) is not None:
                    rep.error("E202", f"'{name}' is the name of a layer; choose another name", span)
                    continue
                bindings[name], spans[name] = i, span
        inputs = [s for s in body if isinstance(s, ast.Input)]
        self._inputs(inputs)
        self.mentioned = {e.id for stmt in body for x in N.statement_exprs(stmt) for e in N.walk(x)
                          if isinstance(e, ast.Name)}
        order = N.order(body, bindings, rep, set(self.params), self.elab.is_layer)
        if order is None:
            return False
        if rep.error_count == errors_before:
            self.elab.layouts[key] = (bindings, spans, order, self.mentioned)
        return self._statements(order, bindings, spans, errors_before)

    def _statements(self, order: list[int], bindings, spans, errors_before: int) -> bool:
        rep, body = self.rep, self.definition.body
        inputs = [s for s in body if isinstance(s, ast.Input)]
        outputs_seen = False
        for i in order:
            stmt = body[i]
            if isinstance(stmt, ast.Input):
                continue
            if isinstance(stmt, ast.Output):
                outputs_seen = True
                self._output(stmt)
            elif isinstance(stmt, ast.Assign):
                self._assign(stmt)
            else:
                self._expr_stmt(stmt)
        if not outputs_seen:
            what = "model" if isinstance(self.definition, ast.ModelDef) else "block"
            rep.error("E208", f"{what} '{self.definition.name}' has no output", self.definition.name_span,
                      "add a line such as: output logits")
        self._unused(inputs, bindings, spans)
        return rep.error_count == errors_before

    def _inputs(self, inputs: list[ast.Input]) -> None:
        is_block = isinstance(self.definition, ast.BlockDef)
        for k, stmt in enumerate(inputs):
            ty = None
            if is_block:
                if stmt.shape is not None or stmt.where:
                    self.rep.error("E304", "block inputs take their shape from the caller; leave it out",
                                   stmt.shape.span if stmt.shape is not None else stmt.where[0].span)
            else:
                ty = self._input_type(stmt)
            node = Node(name=stmt.name, kind="input", span=stmt.name_span, bound=[stmt.name],
                        types=[ty] if ty else [])
            self.taken.add(stmt.name)
            self.graph.nodes.append(node)
            self.values[stmt.name] = Value([node.out()])
        if not inputs:
            self.rep.error("E304", f"'{self.definition.name}' declares no input",
                           self.definition.name_span, "add a line such as: input x: [1, 28, 28]")

    def _input_type(self, stmt: ast.Input) -> TensorType | None:
        if stmt.shape is None:
            self.rep.error("E304", f"model input '{stmt.name}' needs a shape", stmt.name_span,
                           f"for example: input {stmt.name}: [1, 28, 28]  (the batch dimension is implicit)")
            return None
        try:
            shape = evaluate(stmt.shape, self.env)
        except EvalError as exc:
            report(self.rep, exc)
            return None
        if isinstance(shape, int | Sym) and not isinstance(shape, bool):
            shape = (shape,)
        if not isinstance(shape, tuple) or not all(
                (type(d) is int and d > 0) or (isinstance(d, Sym) and len(d.dims()) == 1 and d == _bare(d))
                for d in shape):
            if isinstance(shape, tuple) and any(isinstance(d, Symbol) for d in shape):
                return None  # a name that is not a dimension: reported by declare()
            self.rep.error("E304", "an input shape is a list of positive sizes, such as [1, 28, 28]",
                           stmt.shape.span)
            return None
        if math.prod(map(_lowest_dim, shape)) > MAX_ELEMENTS:
            self.rep.error("E305", f"input '{stmt.name}' holds {math.prod(shape):.3g} elements per "
                           "sample, more than netdsl's limit of 2**40", stmt.shape.span,
                           "check the sizes: a shape leaves out the batch dimension")
            return None
        dtype = "float32"
        if stmt.dtype is not None:
            dtype = stmt.dtype.id
            if dtype not in DTYPES:
                alias = DTYPE_ALIASES.get(dtype)
                self.rep.error("E304", f"unknown dtype '{dtype}'", stmt.dtype.span,
                               (f"did you mean '{alias}'?" if alias else did_you_mean(dtype, DTYPES))
                               or f"one of: {', '.join(DTYPES)}")
                return None
        return TensorType(shape=shape, dtype=dtype)

    def _unused(self, inputs, bindings, spans) -> None:
        # A name used in a statement that failed counts as used: its error is already reported.
        outs = {o.ref for o in self.graph.outputs}
        for stmt in inputs:
            if stmt.name not in self.used and stmt.name not in self.mentioned:
                what = "block" if isinstance(self.definition, ast.BlockDef) else "model"
                self.rep.error("E204", f"input '{stmt.name}' is never used", stmt.name_span,
                               f"use it, or remove it from the {what}'s inputs")
        for name, i in bindings.items():
            if isinstance(self.definition.body[i], ast.Input) or name in self.used or name in self.mentioned:
                continue
            if name in self.instances:
                self.rep.warn("W210", f"layer '{name}' is declared but never applied", spans[name],
                              f"apply it (x -> {name}), or remove the line")
                continue
            v = self.values.get(name)
            if v is not None and not any(r in outs for r in v.refs):
                self.rep.warn("W210", f"'{name}' is computed but never used", spans[name],
                              "use it (e.g. list it after 'output'), or remove the line")

    # ---- statements --------------------------------------------------------------------------
    def _assign(self, stmt: ast.Assign) -> None:
        if len(stmt.targets) == 1 and self._declaration(stmt.value):
            # `enc = Encoder(64)`: one layer, applied wherever the spec writes `-> enc`
            self.instances[stmt.targets[0].name] = stmt.value
            return
        if len(stmt.targets) == 1 and self._number(stmt.value):
            # `c = x.size(1)`, `d = c // heads`: a number, for the arguments that follow
            val = self._scalar(stmt.value)
            if val is _ERR:
                self.failed.add(stmt.targets[0].name)
                self.env[stmt.targets[0].name] = FAILED  # a number: its uses fail quietly
            elif _first_symbol(val) is not None:
                sym = _first_symbol(val)
                self.rep.error("E201", f"undefined name '{sym.name}'", sym.span or stmt.value.span,
                               did_you_mean(sym.name, list(self.values) + list(self.params)))
                self.failed.add(stmt.targets[0].name)
            else:
                self.env[stmt.targets[0].name] = val
            return
        self.hint = stmt.targets[0].name
        v = self.value(stmt.value)
        self.hint = None
        if v is None:
            self.failed.update(t.name for t in stmt.targets)
            return
        if len(stmt.targets) == 1:
            self._bind(stmt.targets[0].name, Value([v.refs[0]]) if not v.packed else v)
            self._annotate(stmt.targets[0], v.refs[0])
            return
        if len(v.refs) != len(stmt.targets):
            what = f"{v.producer} produces {len(v.refs)} values ({', '.join(v.names)})" if v.producer \
                else f"the right-hand side has {len(v.refs)} values"
            names = ", ".join(v.names) if len(v.names) == len(v.refs) else ", ".join(
                f"v{i + 1}" for i in range(len(v.refs)))
            self.rep.error("E205", f"{what}, but {len(stmt.targets)} names are given",
                           stmt.targets[0].span.to(stmt.targets[-1].span),
                           f"name each of them, using _ for those you do not need: {names} = ...")
            self.failed.update(t.name for t in stmt.targets)
            return
        for t, r in zip(stmt.targets, v.refs):
            if t.name != "_":  # `out, _, _ = x -> LSTM(8)` discards
                self._bind(t.name, Value([r]))
                self._annotate(t, r)

    def _annotate(self, target: ast.Target, ref: Ref, expr=None, name: str | None = None) -> None:
        """`h: [T, 256] = ...`: the shape the author states, checked once shapes are known."""
        expr = expr if expr is not None else target.annotation
        if expr is None:
            return
        try:
            shape = evaluate(expr, {**self.elab.sizes, **self.env})
        except EvalError as exc:
            report(self.rep, exc)
            return
        shape = shape if isinstance(shape, tuple) else (shape,)
        bad = [d for d in shape if not ((type(d) is int and d >= 0) or isinstance(d, Sym))]
        if bad:
            bad = bad[0]
            hint = did_you_mean(bad.name, list(self.elab.dims)) if isinstance(bad, Symbol) else None
            self.rep.error("E308", f"an annotation is a list of sizes and declared dimensions, such as "
                           f"[T, 256]; {bad} is neither", expr.span,
                           hint or f"the model declares {', '.join(self.elab.dims) or 'no dimensions'}")
            return
        self.graph.annotations.append((name or target.name, ref, shape, expr.span))

    def _number(self, e) -> bool:
        """Whether an assignment's right-hand side is a constant (`c = x.size(1)`,
        `d = c // heads`): no tensor, chain or layer in it; a value only for its size."""
        if self.is_tensor(e) or isinstance(e, ast.Chain):
            return False
        return not any(self.elab.is_layer(n.id) or n.id in self.instances
                       for n in N.walk(e) if isinstance(n, ast.Name))

    def _declaration(self, e) -> bool:
        """A layer or block written without an input: declared here, applied later."""
        fn = _func_name(e) if isinstance(e, ast.Name | ast.Call | ast.Attribute) else None
        if fn is None or fn in self.values or not self.elab.is_layer(fn) or _held(fn) or fn == "arange":
            return False
        return not (isinstance(e, ast.Call) and e.args and self.is_tensor(e.args[0]))

    def _apply_instance(self, name: str, call: ast.Call | None, ins: list[Ref], span, alias,
                        alias_span) -> Value | None:
        """`-> enc`: the declared layer `enc`; the first use builds it (named `enc`), every
        later one applies the same module, with the same weights."""
        if call is not None and (call.args or call.kwargs):
            self.rep.error("E105", f"'{name}' is a declared layer: its arguments were given where it "
                           "was declared", call.span, f"apply it without arguments: x -> {name}")
            return None
        if alias is not None:
            self.rep.error("E107", f"'{name}' already names this layer", alias_span,
                           f"write: x -> {name}")
            return None
        decl = self.instances[name]
        self.used.add(name)
        owner = self.owners.get(name)
        before = len(self.graph.nodes)
        if owner is None:
            v = self._apply_named(_func_node(decl), decl if isinstance(decl, ast.Call) else None, ins,
                                  span, name, decl.span)
        else:
            k = 2
            while f"{name}_{k}" in self.taken:
                k += 1
            v = self._apply_named(_func_node(decl), decl if isinstance(decl, ast.Call) else None, ins,
                                  span, f"{name}_{k}", span)
        if v is None or len(self.graph.nodes) == before:
            return v
        node = self.graph.nodes[-1]
        if owner is None:
            self.owners[name] = node.name
        else:
            node.shares = owner
        return v

    def _expr_stmt(self, stmt: ast.ExprStmt) -> None:
        target = N.chain_target(stmt.expr, self.elab.is_layer)
        if target is None:
            if isinstance(stmt.expr, ast.Chain):
                self.rep.error("E206", "the result of this chain is never named", stmt.expr.steps[-1].span,
                               "end the chain with '-> name', or write: name = ...")
            else:
                self.rep.error("E206", "this line computes nothing that is used", stmt.span,
                               "statements are: input ..., name = ..., x -> ... -> name, output ...")
            return
        self.hint = target.id
        chain = stmt.expr
        head = ast.Chain(chain.span, chain.head, chain.steps[:-1]) if len(chain.steps) > 1 else chain.head
        v = self.value(head)
        self.hint = None
        if v is not None:
            self._bind(target.id, Value([v.refs[0]]) if not v.packed else v)
        else:
            self.failed.add(target.id)

    def _bind(self, name: str, v: Value) -> None:
        self.values[name] = v
        if len(v.refs) == 1:
            node = self.graph.node(v.refs[0].node)
            if node.kind != "input":
                while len(node.bound) < node.n_outputs:
                    node.bound.append(None)
                if node.bound[v.refs[0].index] is None:
                    node.bound[v.refs[0].index] = name

    def _output(self, stmt: ast.Output) -> None:
        existing = {o.name for o in self.graph.outputs}
        for k, e in enumerate(stmt.values):
            v = self.value(e)
            if v is None:
                continue
            if len(v.refs) != 1:
                self.rep.error("E205", "an output is one value; list several as: output a, b", e.span)
                continue
            if isinstance(e, ast.Name):
                name = e.id
            else:
                name = "out" if len(stmt.values) == 1 and not self.graph.outputs else f"out{len(existing) + 1}"
            if name in existing:
                self.rep.error("E202", f"output '{name}' is listed twice", e.span)
                continue
            existing.add(name)
            self.graph.outputs.append(Output(name=name, ref=v.refs[0], span=e.span))
            if k < len(stmt.annotations) and stmt.annotations[k] is not None:
                self._annotate(None, v.refs[0], stmt.annotations[k], name)

    # ---- tensor expressions ----------------------------------------------------------------------
    def is_tensor(self, e) -> bool:
        if isinstance(e, ast.Name):  # a value whose statement failed is still one (said once)
            return e.id in self.values or (e.id in self.failed and e.id not in self.env)
        if isinstance(e, ast.BinOp):
            return self.is_tensor(e.left) or self.is_tensor(e.right)
        if isinstance(e, ast.Neg):
            return self.is_tensor(e.operand)
        if isinstance(e, ast.Chain):
            return True
        if isinstance(e, ast.Conditional):
            return self.is_tensor(e.then) or self.is_tensor(e.other)
        if isinstance(e, ast.Call):
            if (_func_name(e) or "").split(".")[0] in TORCH_PATHS:
                return True  # `nn.Parameter(...)`, `F.relu(x)`: said in value(), with a hint
            if isinstance(e.func, ast.Attribute) and e.func.name not in SIZE_METHODS:
                return self.is_tensor(e.func.value)  # `t.expand(...)`
            if isinstance(e.func, ast.Name) and (e.func.id == "arange" or _held(e.func.id)):
                return True
            return bool(e.args) and self.is_tensor(e.args[0])
        if isinstance(e, ast.TupleExpr):
            return any(self.is_tensor(i) for i in e.items)
        return False

    def value(self, e) -> Value | None:
        """Evaluate a tensor expression, adding nodes; None after an error (reported)."""
        if isinstance(e, ast.Name):
            v = self.values.get(e.id)
            if v is None:
                if e.id in self.failed:  # its own statement failed and said why
                    return None
                if self.elab.is_layer(e.id) or e.id in self.instances:
                    self.used.add(e.id)
                    what = (f": '{e.id} = Layer(...)' without an input declares a layer to apply later"
                            if e.id in self.instances else "")
                    self.rep.error("E209", f"'{e.id}' is a layer, not a value{what}", e.span,
                                   f"apply it to an input: x -> {e.id}",
                                   [("declared here", self.instances[e.id].span)]
                                   if e.id in self.instances else None)
                elif e.id in self.env:
                    self.rep.error("E209", f"'{e.id}' is a number, not a tensor", e.span)
                else:
                    hint = did_you_mean(e.id, list(self.values) + list(self.failed))
                    if hint:  # the misspelt value is used after all
                        self.used.add(hint.split("'")[1])
                    self.rep.error("E201", f"undefined name '{e.id}'", e.span, hint)
                return None
            self.used.add(e.id)
            return v
        if isinstance(e, ast.TupleExpr):
            parts = [self.value(i) for i in e.items]
            if any(p is None for p in parts):
                return None
            return Value([p.refs[0] if not p.packed else r for p in parts for r in (p.refs[:1] if not p.packed else p.refs)], packed=True)
        if isinstance(e, ast.Neg) and self.is_tensor(e.operand):
            v = self.value(e.operand)
            return None if v is None else self._apply_op("Neg", None, v.refs[:1], e.span)
        if isinstance(e, ast.BinOp) and self.is_tensor(e):
            return self._arithmetic(e)
        if isinstance(e, ast.Call) and (_func_name(e) or "").split(".")[0] in TORCH_PATHS:
            self._unknown_layer(_func_node(e))  # torch's path to what is built in: E108, with a hint
            return None
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Attribute) and e.func.name not in SIZE_METHODS \
                and self.is_tensor(e.func.value):
            return self._method(e)
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id == "arange":
            return self._arange(e)
        if isinstance(e, ast.Call) and _func_node(e) is not None and e.args and self.is_tensor(e.args[0]):
            n = 0
            while n < len(e.args) and self.is_tensor(e.args[n]):
                n += 1
            ins = [self.value(a) for a in e.args[:n]]
            if any(v is None for v in ins):
                return None
            refs = [r for v in ins for r in (v.refs if v.packed else v.refs[:1])]
            call = ast.Call(e.span, e.func, e.args[n:], e.kwargs)
            return self._apply_named(_func_node(e), call, refs, e.span)
        if isinstance(e, ast.Chain):
            v = self.value(e.head)
            for step in e.steps:
                if v is None:  # still check the rest of the chain, so all its mistakes show at once
                    self._check_step(step)
                    continue
                v = self._step(step, v)
            return v
        if isinstance(e, ast.Conditional):
            try:
                test = evaluate(e.test, self.env)
                if not isinstance(test, bool):
                    raise EvalError("E104", f"a condition must be true or false, got {test!r}", e.test.span)
            except EvalError as exc:
                report(self.rep, exc, list(self.params))
                return None
            return self.value(e.then if test else e.other)
        if isinstance(e, ast.Name | ast.Call) and _held(_func_name(e) or ""):
            # `pos = Parameter(1, 197, 768)`: a tensor of the module's own, named as the spec binds it
            alias = self.hint if self.hint and self.hint not in self.taken else None
            return self._apply_op(_func_name(e), e if isinstance(e, ast.Call) else None, [], e.span,
                                  alias, e.span if alias else None)
        if isinstance(e, ast.Name | ast.Call | ast.Attribute) and self.elab.is_layer(_func_name(e) or ""):
            self.rep.error("E209", "a layer needs an input", e.span,
                           f"write: x -> {_func_name(e)}(...), or {_func_name(e)}(x, ...)")
            return None
        self.rep.error("E209", "expected a tensor (an input, a named value or a chain) here", e.span)
        return None

    def _size_of(self, e) -> tuple[ast.Name, Any] | None:
        """`x.size(d)`, `x.shape[d]` on a value: (x, d's expression); else None."""
        parts = size_parts(e)
        if parts is None or not isinstance(parts[1], ast.Node) or parts[0].id not in self.values:
            return None
        return parts

    def _method(self, e: ast.Call) -> Value | None:
        """`t.expand(x.size(0), -1, -1)`: torch's Tensor.expand over a batch. Other tensor
        methods are layers here, and the error says which."""
        name = e.func.name
        if name != "expand":
            layer = METHOD_LAYERS.get(name)
            self.rep.error("E209", f"'.{name}(...)' is not a tensor method netdsl knows", e.func.span,
                           f"write it as a layer: x -> {layer}" if layer else
                           "tensors take .expand(...) and .size(d) here; other operations are layers")
            return None
        first = self._size_of(e.args[0]) if e.args else None
        if first is None or e.kwargs:
            self.rep.error("E209", "expand repeats a tensor over the batch of a value: its first size "
                           "is that value's batch", e.span, "write: t.expand(x.size(0), -1, -1)")
            return None
        try:
            dim = evaluate(first[1], self.env)
        except EvalError as exc:
            report(self.rep, exc, list(self.params))
            return None
        if dim != 0:
            self.rep.error("E209", "expand's first size is the batch: x.size(0)", e.args[0].span,
                           "a learned tensor is expanded over the batch and keeps its other sizes: "
                           "t.expand(x.size(0), -1, -1)")
            return None
        t, x = self.value(e.func.value), self.value(first[0])
        if t is None or x is None:
            return None
        call = ast.Call(e.span, ast.Name(e.func.span, "expand"), e.args[1:], [])
        return self._apply_op("expand", call, [t.refs[0], x.refs[0]], e.span)

    def _arange(self, e: ast.Call) -> Value | None:
        """`arange(x.size(1))`: positions along a dimension of a value, on its device."""
        size = self._size_of(e.args[0]) if len(e.args) == 1 and not e.kwargs else None
        if size is None:
            self.rep.error("E209", "arange counts along a dimension of a value: arange(x.size(1))",
                           e.span, "the value gives its length and its device, as "
                           "torch.arange(x.size(1), device=x.device)")
            return None
        x = self.value(size[0])
        if x is None:
            return None
        call = ast.Call(e.span, ast.Name(e.func.span, "arange"), [], [ast.Kwarg(size[1].span, "dim", size[1].span, size[1])])
        return self._apply_op("arange", call, x.refs[:1], e.span)

    def _arithmetic(self, e: ast.BinOp) -> Value | None:
        """`a - b`, `a @ b` (two tensors), `x * 0.5`, `1 - x` (a tensor and a number)."""
        left, right = self.is_tensor(e.left), self.is_tensor(e.right)
        if left and right:
            kind = TENSOR_OPS.get(e.op)
            if kind is None:
                self.rep.error("E209", f"tensors combine with + - * / and @, not with '{e.op}'", e.span,
                               "for other merges use a layer, e.g. (a, b) -> Concat(dim=1)")
                return None
            a, b = self.value(e.left), self.value(e.right)
            if a is None or b is None:
                return None
            return self._apply_op(kind, None, [a.refs[0], b.refs[0]], e.span)
        tensor, number = (e.left, e.right) if left else (e.right, e.left)
        if e.op not in ("+", "-", "*", "/", "**"):
            self.rep.error("E209", f"a tensor cannot be combined with a number by '{e.op}'", e.span,
                           "numbers combine with tensors by + - * / and **")
            return None
        value = self._scalar(number)
        if value is _ERR:
            return None
        if isinstance(value, Symbol):
            self.rep.error("E201", f"undefined name '{value.name}'", value.span or number.span,
                           did_you_mean(value.name, list(self.values) + list(self.params)))
            return None
        if type(value) not in (int, float):
            self.rep.error("E104", f"a tensor combines with a number here, not {_show(value)}", number.span)
            return None
        v = self.value(tensor)
        if v is None:
            return None
        op = lookup("Scalar")(symbol=e.op, value=value, reverse=right)
        return self._apply_op("Scalar", None, v.refs[:1], e.span, made=(op, {"value": number.span}))

    def _step(self, step: ast.Step, v: Value) -> Value | None:
        ins = v.refs if v.packed else v.refs[:1]
        e = step.expr
        if isinstance(e, ast.BinOp) and e.op == "*" and not self.is_tensor(e.right) \
                and _func_name(e.left) and _func_name(e.left) not in self.values:
            try:
                count = evaluate(e.right, self.env)
            except EvalError as exc:
                report(self.rep, exc, list(self.params))
                return None
            if type(count) is not int or count < 0:
                self.rep.error("E104", f"a repeat count must be a whole number, 0 or more, got {_show(count)}",
                               e.right.span, "Layer(...) * 0 leaves the value as it is")
                return None
            if count == 0:  # `-> Basic(64) * depth` with depth 0: the identity
                self._check_step(ast.Step(step.span, e.left))  # its arguments still must be right
                return v
            if step.alias:
                self.rep.error("E107", "a repeated layer cannot be named with 'as'", step.alias_span)
            per = 1  # layers one repetition makes: known after the first (a block makes many)
            for i in range(count):
                if v is None:
                    return None
                if self.elab.nodes_made + (count - i) * per > MAX_LAYERS:  # before memory runs out
                    self.rep.error("E104", f"repeating {_func_name(e.left)} {count:,} times makes the model "
                                   f"larger than {MAX_LAYERS:,} layers", e.right.span)
                    return None
                before = self.elab.nodes_made
                v = self._apply_named(_func_node(e.left), e.left if isinstance(e.left, ast.Call) else None,
                                      v.refs if v.packed else v.refs[:1], e.left.span)
                per = max(per, self.elab.nodes_made - before)
            return v
        fn = _func_name(e)
        if fn is None:
            self.rep.error("E209", "expected a layer or a block after '->'", e.span)
            return None
        if not self.elab.is_layer(fn) and fn not in self.instances:
            if fn in self.values:
                self.rep.error("E209", f"'{fn}' is a value, not a layer", e.span,
                               "to combine values use +, * or (a, b) -> Concat(dim=1)")
            else:
                self._unknown_layer(_func_node(e))
            return None
        if isinstance(e, ast.Call) and e.args and self.is_tensor(e.args[0]) and fn not in self.instances:
            self.rep.error("E209", "after '->' a layer's input comes from the arrow", e.args[0].span,
                           "for several inputs write: (a, b) -> Layer(...)")
            return None
        return self._apply_named(_func_node(e), e if isinstance(e, ast.Call) else None, ins, e.span,
                                 step.alias, step.alias_span)

    def _check_step(self, step: ast.Step) -> None:
        """Report what is wrong with a chain step whose input already failed: its layer name,
        its arguments, and (for a block) the block's body. Adds nothing to the graph."""
        e = step.expr
        if isinstance(e, ast.BinOp) and e.op == "*" and _func_name(e.left):
            e = e.left
        fname = _func_node(e)
        if fname is None or fname.id in self.values or fname.id in self.failed:
            return
        call = e if isinstance(e, ast.Call) else None
        if call is not None and call.args and self.is_tensor(call.args[0]):
            return
        if fname.id in self.elab.defs.blocks:
            bdef = self.elab.defs.blocks[fname.id]
            env = self._bind_block_args(bdef, call, e.span)
            if env is not None:
                if self.depth < MAX_BLOCK_DEPTH:
                    _Body(self.elab, Graph(name=bdef.name, kind="block"), env, [], bdef,
                          depth=self.depth + 1).run()
        elif lookup(fname.id) is not None:
            self._bind_op_args(lookup(fname.id), call, e.span)
        else:
            self._unknown_layer(fname)

    def _unknown_layer(self, fname: ast.Name) -> None:
        if "." in fname.id:  # a class path: never imported unless allowed (see ops/custom.py)
            last = fname.id.rsplit(".", 1)[1]
            hint = not_allowed_hint(fname.id)
            if get_op(last) is not None:
                hint = f"'{last}' is built in: write {last}(...) without the path"
                if last in ("Parameter", "Buffer"):  # nn.Parameter(torch.zeros(1, 1, 768))
                    hint = (f"'{last}' is built in and takes the tensor's shape itself: "
                            f"{last}(1, 1, 768) (zeros; init= fills it otherwise)")
            elif last in JOINS:
                hint = JOIN_HINT
            self.rep.error("E108", f"custom layer '{fname.id}' is not allowed", fname.span, hint)
            return
        if fname.id in self.elab.defs.models:
            self.rep.error("E101", f"'{fname.id}' is a model, and a model cannot be used as a layer",
                           fname.span, f"write it as a block (block {fname.id} {{ ... }}) and use the block"
                           " in a model")
            return
        hint = (JOIN_HINT if fname.id in JOINS else None) or did_you_mean(fname.id, layer_names() + list(self.elab.defs.blocks)) or (
            "not a built-in layer nor a block of this file; a layer of your own (an nn.Module) "
            "must be allowed explicitly: netdsl --allow-layer module:Class ...")
        self.rep.error("E101", f"unknown layer '{fname.id}'", fname.span, hint)

    # ---- applying layers and blocks ------------------------------------------------------------
    def _apply_named(self, fname: ast.Name, call: ast.Call | None, ins: list[Ref], span,
                     alias: str | None = None, alias_span=None) -> Value | None:
        if fname.id in self.instances:
            return self._apply_instance(fname.id, call, ins, span, alias, alias_span)
        if fname.id in self.elab.defs.blocks:
            return self._apply_block(self.elab.defs.blocks[fname.id], call, ins, span, alias, alias_span)
        if lookup(fname.id) is None:
            self._unknown_layer(fname)
            return None
        return self._apply_op(fname.id, call, ins, span, alias, alias_span)

    def _apply_op(self, kind: str, call: ast.Call | None, ins: list[Ref], span,
                  alias: str | None = None, alias_span=None, made: tuple | None = None) -> Value | None:
        """Apply layer `kind`, its arguments bound from `call`, or `made` = (op, arg spans)
        where the syntax itself says what it is (`x * 0.5`)."""
        cls = lookup(kind)
        bound = (*made, []) if made else self._bind_op_args(cls, call, span)
        if bound is None:
            return None
        op, arg_spans, masks = bound
        lo, hi = cls.arity
        if len(ins) < lo or (hi is not None and len(ins) > hi):
            want = f"{lo}" if lo == hi else f"{lo} or more" if hi is None else f"{lo} to {hi}"
            self.rep.error("E205", f"{kind} takes {want} input{'s' if want != '1' else ''}, but gets {len(ins)}",
                           span, f"give it several inputs: (a, b) -> {kind}(...)" if len(ins) < lo else None)
            return None
        name = self._node_name(alias, alias_span, cls.prefix)
        if name is None:
            return None
        self.elab.nodes_made += 1
        outputs = op.outputs  # Chunk(3) makes three
        node = Node(name=name, kind="op", op=op, inputs=[*ins, *masks], n_outputs=len(outputs), span=span,
                    arg_spans=arg_spans, hint=self.hint, bound=[None] * len(outputs))
        self.graph.nodes.append(node)
        return Value([node.out(i) for i in range(node.n_outputs)], producer=kind, names=outputs)

    def _bind_op_args(self, cls: type[Op], call: ast.Call | None, span) -> tuple[Op, dict, list] | None:
        """The op `call` makes, the spans of its arguments, and the values its masks name."""
        values: dict[str, Any] = {}
        spans: dict[str, Any] = {}
        masks: list[tuple[str, Ref]] = []  # `src_key_padding_mask=pad`: inputs given by name
        ok = True
        args = call.args if call else []
        kwargs = call.kwargs if call else []
        positional, torch_form = cls.positional_for(len(args))
        varargs = getattr(cls, "varargs", None)
        for i, a in enumerate(args):
            if varargs:
                field_name = varargs
            elif i >= len(positional):
                sig = ", ".join(positional[:4]) + (", ..." if len(positional) > 4 else "")
                extra = cls.extra_fields()
                named = [f for f in cls.spec_fields() if f not in positional[:len(args)] and f not in extra]
                named += extra
                form = " in torch's order" if torch_form else ""
                self.rep.error("E105", f"{cls.kind} takes at most {len(positional)} positional argument"
                               f"{'s' if len(positional) != 1 else ''}{form} ({sig}), but gets {len(args)}",
                               a.span, f"give the others by name: {', '.join(n + '=' for n in named[:6])}"
                               f"{', ...' if len(named) > 6 else ''}" if named else None)
                ok = False
                break
            else:
                field_name = positional[i]
            val = self._argument(cls, field_name, a)
            if val is _ERR:
                ok = False
                continue
            if not varargs and field_name in cls.fixed:
                if val != cls.fixed[field_name]:
                    self.rep.error("E105", f"{cls.kind}: {_show(val)} would be {field_name} by position, "
                                   f"and netdsl always builds {cls.kind} with {field_name}="
                                   f"{_show(cls.fixed[field_name])}", a.span,
                                   "values carry the batch first: [batch, time, features]"
                                   if field_name == "batch_first" else None)
                    ok = False
                continue
            if not varargs and type(val) is int and field_name in cls.float_fields():
                self.rep.error("E105", f"{cls.kind}: the integer {val} would be {field_name} by position, "
                               f"and {field_name} is a float-valued argument", a.span,
                               _positional_hint(cls, len(args), torch_form, field_name, val))
                ok = False
                continue
            if varargs:
                values.setdefault(field_name, ())
                values[field_name] += (val,)
                spans[field_name] = spans[field_name].to(a.span) if field_name in spans else a.span
            else:
                values[field_name], spans[field_name] = val, a.span
        allowed = cls.spec_fields()
        named: dict[str, Any] = {}  # keyword arguments seen, for "given twice"
        for kw in kwargs:
            if kw.name in cls.tensor_kwargs:
                if kw.name in named:
                    self.rep.error("E106", f"argument '{kw.name}' is given twice", kw.name_span,
                                   "remove one of the two", [("first given here", named[kw.name])])
                    ok = False
                    continue
                named[kw.name] = kw.name_span
                v = self.value(kw.value) if self.is_tensor(kw.value) else None
                if v is None:
                    if not self.is_tensor(kw.value):
                        self.rep.error("E104", f"{cls.kind}: {kw.name} is a value (a tensor), not a "
                                       "constant", kw.value.span, f"give a value: {kw.name}=pad, where "
                                       "pad is an input or a value of the model")
                    ok = False
                    continue
                masks.append((kw.name, v.refs[0]))
                spans[kw.name] = kw.value.span
                continue
            if kw.name in cls.fixed and self._scalar(kw.value) == cls.fixed[kw.name]:
                continue  # torch's spelling of what netdsl always does
            if kw.name not in allowed or kw.name == varargs:
                hint = did_you_mean(kw.name, allowed + list(cls.tensor_kwargs))
                if hint is None and kw.name.endswith("mask") and cls.tensor_kwargs:
                    hint = (f"masks here are key padding masks ({cls.tensor_kwargs[0]}=pad) and "
                            f"{getattr(cls, 'causal_flag', 'is_causal')}=true")
                fixed = cls.fixed.get(kw.name)
                if fixed is not None:
                    hint = f"netdsl always sets {kw.name}={_show(fixed)}"
                self.rep.error("E102", f"{cls.kind} has no argument '{kw.name}'", kw.name_span,
                               hint or f"its arguments are: {', '.join(allowed)}")
                ok = False
                continue
            by_position = kw.name in positional[:len(args)] and not varargs
            if kw.name in values or by_position or kw.name in named:
                first = spans.get(kw.name) or named.get(kw.name)
                if by_position:
                    msg = f"argument '{kw.name}' is given twice: by position and by name"
                    hint = "remove one of the two" + (
                        f"; the first positional argument is {positional[0]}" if len(args) == 1
                        else f"; positional arguments fill {', '.join(positional[:len(args)])}")
                else:
                    msg, hint = f"argument '{kw.name}' is given twice", "remove one of the two"
                note = "given by position here" if by_position else "first given here"
                self.rep.error("E106", msg, kw.name_span, hint, [(note, first)] if first else None)
                ok = False
                continue
            named[kw.name] = kw.name_span
            val = self._argument(cls, kw.name, kw.value)
            if val is _ERR:
                ok = False
                continue
            values[kw.name], spans[kw.name] = val, kw.value.span
        if not ok:
            return None
        if masks:
            values["masks"] = tuple(n for n, _ in masks)
        missing = [f for f in cls.required_fields() if f not in values]
        if missing:
            sig = ", ".join(positional[: max(len(cls.required_fields()), 1)])
            self.rep.error("E103", f"{cls.kind} needs a value for {' and '.join(repr(m) for m in missing)}",
                           call.span if call else span, f"write {cls.kind}({sig})")
            return None
        try:
            op = cls.model_validate({"op": cls.kind, **{k: plain(v) for k, v in values.items()}})
        except ValidationError as exc:
            by_position = set(positional[:len(args)]) if torch_form and not varargs else set()
            self._validation_errors(cls, exc, values, spans, span, by_position)
            return None
        return op, spans, [r for _, r in masks]

    def _validation_errors(self, cls, exc: ValidationError, values, spans, span,
                           torch_order: set[str] = frozenset()) -> None:
        seen = set()
        for err in exc.errors():
            loc = [p for p in err["loc"] if isinstance(p, str)]
            fname = next((p for p in loc if p in values), None)
            if fname is None or fname in seen:
                continue
            seen.add(fname)
            val = values[fname]
            words = literal_values(cls, fname)
            sym = _first_symbol(val)
            if sym is not None and not (isinstance(val, Symbol) and words):
                # a bare name where a number belongs: a misspelt block parameter, most likely
                self.rep.error("E201", f"undefined name '{sym.name}'", sym.span or spans[fname],
                               did_you_mean(sym.name, list(self.params)) or
                               (f"{cls.kind}'s {fname} must be {describe_field(cls, fname)}"))
                continue
            if is_symbolic(val):  # `Linear(T)`: a layer is built once, for every size
                names = [d.name for d in dims_of(val)]
                self.rep.error("E307", f"{cls.kind}'s {fname.rstrip('_')} is fixed when the layer is built, "
                               f"but {_show(val)} varies with the input's size ({', '.join(names)})",
                               spans.get(fname, span), "give a number, or declare the dimension as one "
                               f"(where {names[0]} == ...)")
                continue
            if err["type"] == "value_error":  # the declaration's own reason (ops' field validators)
                self.rep.error("E104", f"{cls.kind}: {fname}={_show(val)}: "
                               f"{str(err['msg']).removeprefix('Value error, ')}", spans.get(fname, span))
                continue
            hint = did_you_mean(str(val), words) if isinstance(val, Symbol | str) else None
            if hint is None and fname in torch_order:
                order = [f for f in cls.torch_fields() if f in torch_order]
                hint = (f"{len(order)} positional arguments are read in torch's order ({', '.join(order)}); "
                        f"leave out {', '.join(cls.inferred_fields())} to use the short form: "
                        f"{cls.kind}({', '.join(cls.required_fields())}, ...)")
            self.rep.error("E104", f"{cls.kind}: {fname} must be {describe_field(cls, fname)}, "
                           f"not {_show(val)}", spans.get(fname, span), hint)
        if not seen:
            msg = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            self.rep.error("E104", f"{cls.kind}: {msg}", span)

    def _argument(self, cls: type[Op], name: str, e):
        """An argument's value: a number or constant, a layer where the field is one
        (`TransformerEncoder(TransformerEncoderLayer(512, 8), 6)`), a tied weight."""
        layer = _layer_field(cls, name)
        if layer is not None:
            fn = _func_name(e) if isinstance(e, ast.Name | ast.Call) else None
            if fn != layer.kind:
                self.rep.error("E104", f"{cls.kind}: {name} is a layer, {layer.kind}(...)", e.span,
                               f"as in torch: {cls.kind}({layer.kind}(...), ...)")
                return _ERR
            bound = self._bind_op_args(layer, e if isinstance(e, ast.Call) else None, e.span)
            if bound is None:
                return _ERR
            if bound[2]:
                self.rep.error("E209", f"masks go to the {cls.kind}, not to its {layer.kind}", e.span,
                               f"give them to {cls.kind}(..., {bound[0].masks[0]}=...)")
                return _ERR
            return bound[0]
        if name == "weight" and "weight" in cls.extra_fields():
            return self._tied(e)
        return self._scalar(e)

    def _tied(self, e):
        """`weight=wte.weight`: the layer named `wte` in this body, built before this one."""
        if isinstance(e, ast.Attribute) and e.name == "weight" and isinstance(e.value, ast.Name):
            owner = self.owners.get(e.value.id, e.value.id)
            node = self.graph._index().get(owner)
            if node is not None and node.kind != "input":
                return f"{node.name}.weight"
            layers = [n.name for n in self.graph.nodes if n.kind != "input"]
            self.rep.error("E201", f"no layer named '{e.value.id}' before this one", e.value.span,
                           did_you_mean(e.value.id, layers) or
                           "name the layer that owns the weight with 'as' (-> Embedding(V, D) as wte), "
                           "on a line before this one")
            return _ERR
        self.rep.error("E104", "weight= ties this layer's weight to another layer's: weight=wte.weight",
                       e.span, "the other layer is named with 'as': -> Embedding(V, D) as wte")
        return _ERR

    def _scalar(self, e):
        if self.is_tensor(e):
            self.rep.error("E209", "a tensor cannot be a layer argument", e.span,
                           "inputs go first: Layer(x, ...), or use x -> Layer(...)")
            return _ERR
        try:
            return evaluate(e, self.env)
        except EvalError as exc:
            report(self.rep, exc, list(self.params))
            return _ERR

    def _node_name(self, alias, alias_span, prefix: str) -> str | None:
        if alias is not None:
            if alias in self.taken:
                self.rep.error("E202", f"a layer named '{alias}' already exists here", alias_span)
                return None
            why = ("it is a Python keyword" if keyword.iskeyword(alias) else
                   "torch.nn.Module already has an attribute of that name" if alias in MODULE_ATTRS else
                   "names starting with '_' are reserved" if alias.startswith("_") else None)
            if why:
                self.rep.error("E107", f"'{alias}' cannot name a layer: {why}", alias_span,
                               f"choose another name, e.g. {alias.strip('_') or 'layer'}_layer")
                return None
            self.taken.add(alias)
            return alias
        n = self.counters.get(prefix, 0)
        while True:
            n += 1
            name = f"{prefix}{n}"
            if name not in self.taken:
                break
        self.counters[prefix] = n
        self.taken.add(name)
        return name

    def _apply_block(self, bdef: ast.BlockDef, call: ast.Call | None, ins: list[Ref], span,
                     alias=None, alias_span=None) -> Value | None:
        env = self._bind_block_args(bdef, call, span)
        if env is None:
            return None
        n_in = sum(isinstance(s, ast.Input) for s in bdef.body)
        if len(ins) != n_in:
            self.rep.error("E205", f"block {bdef.name} takes {n_in} input{'s' if n_in != 1 else ''}, "
                           f"but gets {len(ins)}", span,
                           f"give it several inputs: (a, b) -> {bdef.name}(...)" if len(ins) < n_in else None)
            return None
        if self.depth >= MAX_BLOCK_DEPTH:
            self.rep.error("E107", f"blocks nest more than {MAX_BLOCK_DEPTH} levels deep here", span,
                           "flatten some of the blocks into their callers")
            return None
        sub = Graph(name=bdef.name, kind="block", span=bdef.span)
        if not _Body(self.elab, sub, env, list(ins), bdef, depth=self.depth + 1, parent=self,
                     call_span=span).run():
            return None
        prefix = bdef.name.lower()
        if prefix.startswith("__"):  # `self.__x1` would be name-mangled by Python
            prefix = prefix.lstrip("_") or "block"
        name = self._node_name(alias, alias_span, prefix)
        if name is None:
            return None
        node = Node(name=name, kind="block", block=bdef.name, block_args=env, graph=sub, inputs=list(ins),
                    n_outputs=len(sub.outputs), span=span, call_span=span, hint=self.hint,
                    bound=[None] * len(sub.outputs))
        self.graph.nodes.append(node)
        return Value([node.out(i) for i in range(node.n_outputs)], producer=bdef.name,
                     names=tuple(o.name for o in sub.outputs))

    def _bind_block_args(self, bdef: ast.BlockDef, call: ast.Call | None, span) -> dict | None:
        params = [p.name for p in bdef.params]
        env: dict[str, Any] = {}
        ok = True
        args = call.args if call else []
        if len(args) > len(params):
            self.rep.error("E105", f"block {bdef.name} takes {len(params)} argument"
                           f"{'s' if len(params) != 1 else ''} ({', '.join(params)}), but gets {len(args)}",
                           args[len(params)].span)
            return None
        for p, a in zip(params, args):
            val = self._scalar(a)
            ok = ok and val is not _ERR
            env[p] = val
        for kw in call.kwargs if call else []:
            if kw.name not in params:
                self.rep.error("E102", f"block {bdef.name} has no parameter '{kw.name}'", kw.name_span,
                               did_you_mean(kw.name, params) or f"its parameters are: {', '.join(params)}")
                ok = False
                continue
            if kw.name in env:
                self.rep.error("E106", f"argument '{kw.name}' is given twice", kw.name_span,
                               "remove one of the two")
                ok = False
                continue
            val = self._scalar(kw.value)
            ok = ok and val is not _ERR
            env[kw.name] = val
        if not ok:
            return None
        for p in bdef.params:
            if p.name in env:
                continue
            if p.default is None:
                self.rep.error("E103", f"block {bdef.name} needs a value for '{p.name}'", call.span if call else span,
                               f"write {bdef.name}({', '.join(params)})")
                return None
            try:
                env[p.name] = evaluate(p.default, env)
            except EvalError as exc:
                report(self.rep, exc, params)
                return None
        for k, v in env.items():
            if isinstance(v, Symbol):
                self.rep.error("E201", f"undefined name '{v.name}'", v.span,
                               did_you_mean(v.name, list(self.params) + list(self.values)))
                return None
        return env


_ERR = object()


def _positional_hint(cls: type[Op], n: int, torch_form: bool, field_name: str, val: int) -> str:
    """What an integer on a float argument most likely meant, and how to say it."""
    if torch_form:
        order = ", ".join(cls.torch_fields()[:n])
        return (f"{n} positional arguments are read in torch's order ({order}); if {val} is "
                f"{field_name}, write it by name: {field_name}={val}.0")
    return f"write it by name: {field_name}={val}.0"


def _func_node(e) -> ast.Name | None:
    """The layer a step or call names: `Linear`, or a dotted path `mypkg.layers.MyBlock` (as one
    Name spanning the whole path)."""
    if isinstance(e, ast.Call):
        e = e.func
    if isinstance(e, ast.Name):
        return e
    parts = []
    cur = e
    while isinstance(cur, ast.Attribute):
        parts.append(cur.name)
        cur = cur.value
    if parts and isinstance(cur, ast.Name):
        return ast.Name(e.span, ".".join([cur.id, *reversed(parts)]))
    return None


def _layer_field(cls: type[Op], name: str) -> type[Op] | None:
    """The op class a field holds, where a layer's argument is a layer (else None)."""
    f = cls.model_fields.get(name)
    if f is None:
        return None
    for tp in (f.annotation, *get_args(f.annotation)):
        if isinstance(tp, type) and issubclass(tp, Op):
            return tp
    return None


def _held(name: str) -> bool:
    """A Parameter or Buffer: applied where it is written, with no input."""
    cls = get_op(name)
    return cls is not None and cls.arity == (0, 0)


def _func_name(e) -> str | None:
    n = _func_node(e)
    return n.id if n is not None else None


def _first_symbol(v) -> Symbol | None:
    if isinstance(v, Symbol):
        return v
    if isinstance(v, tuple):
        return next((s for s in map(_first_symbol, v) if s is not None), None)
    return None


def _show(v) -> str:
    if isinstance(v, Symbol):
        return v.name
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, tuple):
        return "(" + ", ".join(_show(x) for x in v) + ")"
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    return repr(v)


def _dim_names(mdef: ast.ModelDef) -> set[str]:
    """Names in the model's input shapes (`[3, H, W]`)."""
    out = set()
    for stmt in mdef.body:
        if isinstance(stmt, ast.Input) and isinstance(stmt.shape, ast.ListExpr | ast.TupleExpr):
            out |= {e.id for e in stmt.shape.items if isinstance(e, ast.Name)}
    return out


def _bare(d: Sym) -> Sym:
    """The dimension itself (`H`), for a size that mentions one."""
    return next(iter(d.dims())).size()


def _lowest_dim(d):
    return next(iter(d.dims())).first if isinstance(d, Sym) else d
