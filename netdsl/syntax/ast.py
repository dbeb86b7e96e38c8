"""The AST: one dataclass per grammar rule, each with the span it came from.

The parser builds these and nothing else; meaning (names, layers, shapes) is decided by the passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from ..source import SourceFile, Span


@dataclass
class Node:
    span: Span


# ---- expressions ------------------------------------------------------------------------
@dataclass
class Name(Node):
    id: str


@dataclass
class Num(Node):
    value: int | float


@dataclass
class Str(Node):
    value: str


@dataclass
class Const(Node):
    """`true`, `false` or `none`."""

    value: bool | None


@dataclass
class TupleExpr(Node):
    items: list["Expr"]


@dataclass
class ListExpr(Node):
    items: list["Expr"]


@dataclass
class BinOp(Node):
    op: str  # + - * / // % **
    left: "Expr"
    right: "Expr"


@dataclass
class Neg(Node):
    operand: "Expr"


@dataclass
class Compare(Node):
    op: str
    left: "Expr"
    right: "Expr"


@dataclass
class BoolOp(Node):
    op: str  # and / or
    left: "Expr"
    right: "Expr"


@dataclass
class Not(Node):
    operand: "Expr"


@dataclass
class Kwarg(Node):
    name: str
    name_span: Span
    value: "Expr"


@dataclass
class Call(Node):
    func: "Expr"
    args: list["Expr"]
    kwargs: list[Kwarg]


@dataclass
class Attribute(Node):
    value: "Expr"
    name: str


@dataclass
class Index(Node):
    value: "Expr"
    index: "Expr"


@dataclass
class Step(Node):
    """One element after `->` in a chain, optionally named with `as NAME`."""

    expr: "Expr"
    alias: str | None = None
    alias_span: Span | None = None


@dataclass
class Chain(Node):
    head: "Expr"
    steps: list[Step]


@dataclass
class Conditional(Node):
    then: "Expr"
    test: "Expr"
    other: "Expr"


Expr = Union[Name, Num, Str, Const, TupleExpr, ListExpr, BinOp, Neg, Compare, BoolOp, Not, Call,
             Attribute, Index, Chain, Conditional]


# ---- statements -------------------------------------------------------------------------
@dataclass
class Input(Node):
    name: str
    name_span: Span
    shape: Expr | None
    dtype: Name | None
    where: list[Expr] = field(default_factory=list)  # `where H % 32 == 0, T <= 1024`


@dataclass
class Output(Node):
    values: list[Expr]
    annotations: list[Expr | None] = field(default_factory=list)  # `output mask: [2, H, W]`


@dataclass
class Target(Node):
    """A name being bound (`out, h, c = x -> LSTM(64)` binds three)."""

    name: str
    annotation: Expr | None = None  # `h: [T, 256] = ...`


@dataclass
class Assign(Node):
    targets: list[Target]
    value: Expr


@dataclass
class ExprStmt(Node):
    expr: Expr


Statement = Union[Input, Output, Assign, ExprStmt]


# ---- definitions ------------------------------------------------------------------------
@dataclass
class Param(Node):
    name: str
    default: Expr | None


@dataclass
class ModelDef(Node):
    name: str
    name_span: Span
    body: list[Statement]


@dataclass
class BlockDef(Node):
    name: str
    name_span: Span
    params: list[Param]
    body: list[Statement]


@dataclass
class Setting(Node):
    key: list[str]
    key_span: Span
    value: Expr


@dataclass
class TrainDef(Node):
    """`train MODEL { key = value ... }`: a training plan, interpreted by runtime/plan.py."""

    name: str
    name_span: Span
    settings: list[Setting]


Definition = Union[ModelDef, BlockDef, TrainDef]


@dataclass
class File:
    source: SourceFile
    definitions: list[Definition]
