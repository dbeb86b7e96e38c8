"""netdsl: a declarative language for PyTorch models.

    spec = netdsl.load("specs/lenet.net")   # parse + validate (no torch needed)
    model = spec.build()                     # a plain torch.nn.Module
"""

from __future__ import annotations

import importlib

from ._version import __version__

# Everything loads on first use, so that `import netdsl` stays light (torch and graphviz only
# where needed) and the command line is in charge of Ctrl-C from its first line (netdsl.cli).
# name -> "module:attribute"
_LAZY = {
    "Diagnostic": "netdsl.diagnostics:Diagnostic",
    "NetdslError": "netdsl.diagnostics:NetdslError",
    "Spec": "netdsl.spec:Spec",
    "load": "netdsl.spec:load",
    "loads": "netdsl.spec:loads",
    "fit": "netdsl.runtime.api:fit",
    "evaluate": "netdsl.runtime.api:evaluate",
    "compile": "netdsl.targets.compile:compile_spec",
    "render": "netdsl.targets.diagram:render",
    "export": "netdsl.targets.export:export_spec",
    "import_module": "netdsl.importer:import_module",
    "register_layer": "netdsl.ops.custom:register_layer",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name].split(":")
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'netdsl' has no attribute {name!r}")
