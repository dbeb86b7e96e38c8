"""The registry of op declarations, keyed by layer name (`Conv2d`)."""

from __future__ import annotations

from .base import Op

OPS: dict[str, type[Op]] = {}


def register(cls: type[Op]) -> type[Op]:
    """Class decorator: add an op declaration to the vocabulary."""
    kind = cls.model_fields["op"].default
    assert kind not in OPS, f"op {kind} declared twice"
    if cls.__name__ != kind:  # made by a factory: take the layer's name, in errors too
        cls.__name__ = cls.__qualname__ = kind
        cls.model_rebuild(force=True)
    OPS[kind] = cls
    cls.kind = kind
    return cls


def get_op(name: str) -> type[Op] | None:
    return OPS.get(name)


def op_names() -> list[str]:
    return sorted(OPS)
