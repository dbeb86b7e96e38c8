"""`netdsl.fit` and `netdsl.evaluate`: the Python face of `netdsl run` and `netdsl eval`.

    result = netdsl.fit("specs/mnist.net", epochs=2, optimizer__lr=3e-4, data_root="../shared/data")
    result["test_accuracy"], result["run_dir"], result.model   # the trained nn.Module

Keyword settings override the spec's `train` section like `--set` does: `epochs=2`,
`optimizer__lr=3e-4` (or `**{"optimizer.lr": 3e-4}`), `optimizer="SGD(lr=0.1)"` (a string for
a whole declaration is read as spec text). Mistakes raise `netdsl.NetdslError`.
"""

from __future__ import annotations

import os
from typing import Any

from ..spec import Spec, load
from .overrides import literal_setting
from .runner import RunResult
from .runner import evaluate as _evaluate
from .runner import run as _run


def _spec(spec_or_path) -> Spec:
    return spec_or_path if isinstance(spec_or_path, Spec) else load(spec_or_path)


def _root(data_root) -> list:
    return [] if data_root is None else [literal_setting("data.root", str(data_root),
                                                         "--data-root")]


def fit(spec_or_path: Spec | str | os.PathLike, model: str | None = None, *,
        data_root: str | os.PathLike | None = None, out: str | os.PathLike = "runs",
        resume: str | os.PathLike | None = None, progress: bool = True,
        allow_changes: bool = False, **overrides: Any) -> RunResult:
    """Train `model` (default: the spec's model with a `train` section) and return the result
    dict that `netdsl run --json` prints; `.model` is the trained module. `data_root` replaces
    the data's root, `out` is where run folders go, `resume` a checkpoint or run folder.
    Resuming under another network or plan than the checkpoint's raises E409, unless
    `allow_changes=True` (then a note says what changed).
    Ctrl-C raises `netdsl.runtime.loop.TrainingInterrupted` after saving a checkpoint."""
    return _run(_spec(spec_or_path), model, _root(data_root), out=out, resume=resume,
                progress=progress, settings_kw=overrides, allow_changes=allow_changes,
                allow_flag="allow_changes=True")


def evaluate(spec_or_path: Spec | str | os.PathLike, weights: str | os.PathLike,
             model: str | None = None, *, data_root: str | os.PathLike | None = None,
             **overrides: Any) -> dict:
    """Metrics of saved weights (`weights.pt` or a checkpoint) on the test split (the
    validation split when there is no test split): the dict `netdsl eval --json` prints."""
    return _evaluate(_spec(spec_or_path), weights, model, _root(data_root),
                     settings_kw=overrides)
