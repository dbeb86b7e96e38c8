"""The live module: the generated source, loaded as a real Python module.

Like torch.fx's GraphModule, the code is registered with `linecache` (and the module with
`sys.modules`), so tracebacks, `inspect.getsource`, pickling and TorchScript see real lines.
The registration lasts while a module built from that source is alive, or while the source is
among the last `RECENT` built (for what outlives its model: `spec.build().layer1`, a deep
copy): a process that builds thousands of specs keeps only what it still uses. The source comes only from
targets/pysource.py, whose output contains no text from the spec but literals and validated names.
"""

from __future__ import annotations

import collections
import hashlib
import linecache
import sys
import types
import weakref

from .._gc import paused
from ..ir.graph import Graph
from .lower import lower_model
from .pysource import module_source

_LOADED: dict[str, types.ModuleType] = {}  # digest -> module, while something built from it lives
_USERS: dict[str, int] = {}  # digest -> how many built modules use it
RECENT = 64
_RECENT: collections.OrderedDict[str, None] = collections.OrderedDict()  # the last sources built


def load_source(source: str, label: str) -> types.ModuleType:
    """Execute generated source as a module named `netdsl.generated.<label>_<hash>` (cached
    while in use: see `hold`)."""
    digest = hashlib.sha1(source.encode()).hexdigest()[:12]
    _RECENT[digest] = None
    _RECENT.move_to_end(digest)
    while len(_RECENT) > RECENT:
        old, _ = _RECENT.popitem(last=False)
        if not _USERS.get(old):
            _forget(old)
    if digest in _LOADED:
        return _LOADED[digest]
    name = f"netdsl.generated.{label}_{digest}"
    filename = f"<netdsl:{label}:{digest}>"
    module = types.ModuleType(name)
    module.__file__ = filename
    module.__netdsl_digest__ = digest
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    sys.modules[name] = module
    exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - our own codegen
    _LOADED[digest] = module
    return module


def hold(module: types.ModuleType, user: object) -> None:
    """Keep `module` registered while `user` (a built nn.Module) is alive."""
    digest = module.__netdsl_digest__
    _USERS[digest] = _USERS.get(digest, 0) + 1
    weakref.finalize(user, _release, digest)


def _release(digest: str) -> None:
    _USERS[digest] -= 1
    if _USERS[digest]:
        return
    del _USERS[digest]
    if digest not in _RECENT:
        _forget(digest)


def _forget(digest: str) -> None:
    module = _LOADED.pop(digest, None)
    if module is not None:
        sys.modules.pop(module.__name__, None)
        linecache.cache.pop(module.__file__, None)


def build_module(graph: Graph, source_name: str = ""):
    """A fresh `torch.nn.Module` for a shaped model graph."""
    with paused():  # see _gc.py: linear time on large specs
        classes = lower_model(graph, source_name)
        src = module_source(classes, f"# netdsl live module for {graph.name}")
        mod = load_source(src, graph.name)
        model = getattr(mod, classes[-1].name)()
        hold(mod, model)
        return model
