"""netdsl: a declarative language for PyTorch models.

    spec = netdsl.load("specs/lenet.net")   # parse + validate (no torch needed)
    model = spec.build()                     # a plain torch.nn.Module
"""

from __future__ import annotations

import importlib

from ._version import __version__
from .diagnostics import Diagnostic, NetdslError
from .spec import Spec, load, loads

# Entry points that need torch or graphviz load on first use, so `import netdsl` stays light.
# name -> "module:attribute"
_LAZY = {
    "fit": "netdsl.runtime.api:fit",
    "evaluate": "netdsl.runtime.api:evaluate",
    "compile": "netdsl.targets.compile:compile_spec",
    "render": "netdsl.targets.diagram:render",
    "register_layer": "netdsl.ops.custom:register_layer",
}

__all__ = ["__version__", "Diagnostic", "NetdslError", "Spec", "load", "loads", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name].split(":")
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'netdsl' has no attribute {name!r}")
