"""The live module: the generated source, loaded as a real Python module.

Like torch.fx's GraphModule, the code is registered with `linecache`, so tracebacks,
`inspect.getsource` and TorchScript see real lines. The source comes only from
targets/pysource.py, whose output contains no text from the spec but literals and validated names.
"""

from __future__ import annotations

import hashlib
import linecache
import sys
import types

from .._gc import paused
from ..ir.graph import Graph
from .lower import lower_model
from .pysource import module_source

_LOADED: dict[str, types.ModuleType] = {}


def load_source(source: str, label: str) -> types.ModuleType:
    """Execute generated source as a module named `netdsl.generated.<label>_<hash>` (cached)."""
    digest = hashlib.sha1(source.encode()).hexdigest()[:12]
    if digest in _LOADED:
        return _LOADED[digest]
    name = f"netdsl.generated.{label}_{digest}"
    filename = f"<netdsl:{label}:{digest}>"
    module = types.ModuleType(name)
    module.__file__ = filename
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    sys.modules[name] = module
    exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - our own codegen
    _LOADED[digest] = module
    return module


def build_module(graph: Graph, source_name: str = ""):
    """A fresh `torch.nn.Module` for a shaped model graph."""
    with paused():  # see _gc.py: linear time on large specs
        classes = lower_model(graph, source_name)
        src = module_source(classes, f"# netdsl live module for {graph.name}")
        mod = load_source(src, graph.name)
        return getattr(mod, classes[-1].name)()
