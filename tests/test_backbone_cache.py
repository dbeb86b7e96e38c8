"""A spec with a torchvision backbone is checked once with torch (a meta trace), and from then
on without it: the trace's findings are kept on disk per torchvision version (issue 18)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SPEC = Path(__file__).parent / "compile_corpus" / "backbone.net"
BLOCK_TORCH = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ImportError("torch was imported")
sys.meta_path.insert(0, Blocker())
from netdsl.cli import main
main(["check", sys.argv[1]])
"""


def check(cache: Path, blocked: bool) -> subprocess.CompletedProcess:
    args = ["-c", BLOCK_TORCH, str(SPEC)] if blocked else ["-m", "netdsl", "check", str(SPEC)]
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NETDSL_CACHE": str(cache)})


def test_a_checked_backbone_is_checked_again_without_torch(tmp_path):
    assert check(tmp_path, blocked=True).returncode != 0  # nothing cached yet: torch is needed
    first = check(tmp_path, blocked=False)
    assert first.returncode == 0, first.stderr
    (cached,) = tmp_path.glob("backbones-*.json")
    facts = json.loads(cached.read_text(encoding="utf-8"))
    assert facts["resnet18:16:parameters"] == 11_184_720
    again = check(tmp_path, blocked=True)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout and "11,184,890 parameters" in again.stdout


def test_a_damaged_cache_is_as_good_as_none(tmp_path):
    import torchvision

    (tmp_path / f"backbones-{torchvision.__version__.split('+')[0]}.json").write_text("{not json")
    r = check(tmp_path, blocked=False)
    assert r.returncode == 0, r.stderr
