"""Syntax: the grammar, the parser and the AST it produces."""

from .parser import parse

__all__ = ["parse"]
