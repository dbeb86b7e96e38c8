"""The layer vocabulary: one declaration per layer kind, looked up by name."""

from __future__ import annotations

from typing import Union

from pydantic import Field, TypeAdapter
from typing_extensions import Annotated

from .base import Op, ShapeError  # noqa: F401
from .registry import OPS, get_op, op_names, register  # noqa: F401
from . import activation, arith, conv, linear, merge, norm, pool, recurrent, shape_ops, spatial  # noqa: F401,E402
from . import tensors, transformer  # noqa: F401,E402
from . import backbone  # noqa: F401,E402  (torchvision models; torch only when used)

_ADAPTER = None


def op_adapter() -> TypeAdapter:
    """The discriminated union of every op (tag `op`), built once all ops are registered."""
    global _ADAPTER
    if _ADAPTER is None or _ADAPTER._netdsl_count != len(OPS):  # type: ignore[attr-defined]
        union = Annotated[Union[tuple(OPS.values())], Field(discriminator="op")]
        _ADAPTER = TypeAdapter(union)
        _ADAPTER._netdsl_count = len(OPS)  # type: ignore[attr-defined]
    return _ADAPTER
