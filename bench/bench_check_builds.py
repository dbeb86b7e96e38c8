"""The long run of issue 15's property: what `check` accepts builds and runs as its IR says.

    python bench/bench_check_builds.py            # 100,000 specs (about 40 minutes on one core)
    python bench/bench_check_builds.py -n 5000 --seed 3 --failures failures.txt

Draws specs from the op registry (tests/specgen.py, the same generator as
tests/test_check_builds.py), checks each, and holds every accepted one to its IR: build,
forward and backward in train mode, forward in eval mode, output shapes and dtypes. Reports
specs tried, accepted, refused drafts, tracebacks from `check` (E900 or any exception), hangs
(a spec over --timeout seconds, SIGALRM), rule mismatches and torch failures, the slowest
check, and the peak resident memory. Offline: needs nothing but netdsl and torch.
"""

from __future__ import annotations

import argparse
import collections
import random
import resource
import signal
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from specgen import Tally, held, spec_text


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=100_000, help="specs to draw")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=10, help="seconds before a spec counts as a hang")
    ap.add_argument("--failures", type=Path, help="write each failing spec and its finding here")
    ap.add_argument("--current", type=Path,
                    help="write each spec here before running it (to find one that kills the process)")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    signal.signal(signal.SIGALRM, _alarm)
    rng = random.Random(args.seed)
    tally, drafts, hangs, crashes = Tally(), [0], 0, []
    slowest, found = (0.0, ""), 0
    t0 = time.perf_counter()

    def refused(text, exc):
        drafts[0] += 1
        if any(d.code == "E900" for d in exc.diagnostics):
            crashes.append((text, "E900 from check"))

    for i in range(args.n):
        start = time.perf_counter()
        signal.alarm(args.timeout)
        text = "<not drawn yet>"
        try:
            text = spec_text(rng, tries=3, refused=refused)
            if args.current:
                args.current.write_text(text, encoding="utf-8")
            held(text, tally)
        except Hang:
            hangs += 1
            tally.failures.append((text, f"hang: over {args.timeout} s"))
        except Exception as exc:  # noqa: BLE001 - a traceback from check is the finding
            crashes.append((text, f"{type(exc).__name__}: {exc}"))
        finally:
            signal.alarm(0)
        for text_, why in (tally.failures + crashes)[found:]:  # as they come: a long run may stop
            print(f"finding {found + 1}: {why}\n{text_}", file=sys.stderr, flush=True)
            found += 1
        took = time.perf_counter() - start
        if took > slowest[0]:
            slowest = (took, text)
        if (i + 1) % 5000 == 0:
            print(f"  {i + 1:,} specs, {len(tally.failures) + len(crashes)} findings, "
                  f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kinds = collections.Counter(why.split(":")[0] for _, why in tally.failures + crashes)
    print(f"specs drawn        {args.n:,} (seed {args.seed}), {seconds:.0f} s, "
          f"{args.n / seconds:.0f} specs/s")
    print(f"accepted by check  {tally.valid:,}, each built, run forward and backward, compared")
    print(f"refused drafts     {drafts[0]:,} (each a located diagnostic)")
    print(f"tracebacks         {len(crashes)}")
    print(f"hangs (> {args.timeout} s)     {hangs}")
    print(f"failures in torch  {len(tally.failures) - hangs} (rule mismatches and exceptions)")
    print(f"slowest spec       {slowest[0]:.2f} s")
    print(f"peak memory        {peak:.0f} MB")
    for kind, n in kinds.most_common():
        print(f"  {n:6d}  {kind}")
    if args.failures:
        args.failures.write_text("".join(f"# {why}\n{text}\n" for text, why in
                                         tally.failures + crashes), encoding="utf-8")
    return 0 if not (tally.failures or crashes) else 1


if __name__ == "__main__":
    sys.exit(main())
