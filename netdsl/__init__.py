"""netdsl: a declarative language for PyTorch models.

    spec = netdsl.load("specs/lenet.net")   # parse + validate (no torch needed)
    model = spec.build()                     # a plain torch.nn.Module
"""

from ._version import __version__
from .diagnostics import Diagnostic, NetdslError
from .spec import Spec, load, loads

__all__ = ["__version__", "Diagnostic", "NetdslError", "Spec", "load", "loads"]
