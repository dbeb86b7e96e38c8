"""Where the real MNIST images for tests are: ../shared/data beside the project (a
torchvision root with MNIST/raw/), or NETDSL_DATA_ROOT. Tests that need them skip without."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(os.environ.get("NETDSL_DATA_ROOT")
            or Path(__file__).resolve().parents[1].parent / "shared" / "data")
HAVE_MNIST = (DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason=f"no MNIST under {DATA}")
