"""Issue 15's property: a spec that `check` accepts builds and runs, exactly as its IR says.

Specs are drawn from the op registry by tests/specgen.py (every op, arguments sampled from the
declared field types, inputs of every dtype, now and then a number far out of range). Each one
`check` accepts is built and run forward and backward in train mode, then forward in eval mode,
at batch 2, and its outputs must have exactly the shapes and dtypes the IR states. Every draw
`check` refuses must place its diagnostics inside the text. A hang trips SIGALRM.
bench/bench_check_builds.py runs the same property over 100,000 specs.
"""

from __future__ import annotations

import random
import signal
import warnings

import pytest
from specgen import OPS_USED, Tally, held, spec_text
from test_fuzz import check_diagnostics

SEEDS = range(5)
PER_SEED = 1000  # 5,000 valid specs in all, about a minute on one core


def _hang(signum, frame):
    raise TimeoutError("a spec took more than 20 s")


@pytest.mark.parametrize("seed", SEEDS)
def test_what_check_accepts_builds_and_runs(seed):
    rng = random.Random(seed)
    tally = Tally()
    refused = Tally()

    def on_refused(text, exc):
        refused.tried += 1
        check_diagnostics(exc.diagnostics, text)

    old = signal.signal(signal.SIGALRM, _hang)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's own notes (nested tensors, ...) are not findings
            for _ in range(PER_SEED):
                signal.alarm(20)
                held(spec_text(rng, tries=3, refused=on_refused), tally, check_diagnostics)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert tally.valid >= PER_SEED * 0.95, tally.line()  # the generator makes valid specs
    assert refused.tried > PER_SEED // 2  # and plenty of refused drafts, each well placed
    shown = "\n\n".join(f"{why}\n{text}" for text, why in tally.failures[:3])
    assert not tally.failures, f"{tally.line()}\n\n{shown}"


def test_the_generator_reaches_every_op():
    rng = random.Random(0)
    text = "\n".join(spec_text(rng, tries=3) for _ in range(1500))  # ~80 ops: a few draws each
    missing = [k for k in OPS_USED if f"{k}(" not in text and f"-> {k}\n" not in text
               and f"-> {k} " not in text]
    assert not missing, missing
