"""Front-end cost on large generated specs: parse, analyse (names, elaboration, shapes) and build
(lowering, code generation, exec, module construction), for a long chain, a block-heavy spec,
one statement per layer and a symbolic conv net (issue 9: H and W any even size), of 250 to
2,000 layers (more with --sizes). Prints one row per size with the cost per layer, so linear
growth shows as a flat last column.

    python bench/bench_parse.py              # the table
    python bench/bench_parse.py --sizes 500 4000 --repeat 5
    python bench/bench_parse.py --sizes 2000 20000 --repeat 1   # issue 18's 20,000 statements
    python bench/bench_parse.py --profile 2000 blocks   # cProfile of one case, top functions
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import netdsl
from netdsl.passes import analyze
from netdsl.syntax import parse
from netdsl.targets.module import build_module

WIDTH = 16  # small layers: the front end's cost, not torch's weight initialisation


def chain_spec(layers: int) -> str:
    """One model, one chain: Linear and ReLU alternating, one step per line."""
    steps = ["Linear(16)" if i % 2 == 0 else "ReLU" for i in range(layers)]
    body = "\n    -> ".join(steps)
    return f"model Chain {{\n  input x: [{WIDTH}]\n  x -> {body}\n    -> y\n  output y\n}}\n"


BLOCK = """block Res(c, scale = 1) {
  input x
  y = x -> Linear(c * scale) -> ReLU -> Linear(c)
  output ReLU(y + x)
}
"""


def block_spec(layers: int) -> str:
    """Residual blocks of 5 layers each (Linear, ReLU, Linear, Add, ReLU), one call per line,
    with arguments that vary so that the instances differ."""
    calls = [f"Res({WIDTH}, scale={1 + i % 3})" for i in range(layers // 5)]
    body = "\n    -> ".join(calls)
    return BLOCK + f"\nmodel Blocks {{\n  input x: [{WIDTH}]\n  x -> {body}\n    -> y\n  output y\n}}\n"


def statements_spec(layers: int) -> str:
    """One statement per layer, each naming its value (`v7 = v6 -> ReLU`): what issue 18 found
    quadratic (20,000 of them took 49.5 s), unlike one long chain."""
    lines = [f"  v0 = x -> Linear({WIDTH})"]
    lines += [f"  v{i} = v{i - 1} -> {'ReLU' if i % 2 else f'Linear({WIDTH})'}" for i in range(1, layers)]
    return f"model Statements {{\n  input x: [{WIDTH}]\n" + "\n".join(lines) + f"\n  output v{layers - 1}\n}}\n"


STAGE = """block Stage(c) {
  input x
  y = x -> Conv2d(c, 3, padding=1) -> ReLU -> Conv2d(c, 3, padding=1)
  d = x -> MaxPool2d(2) -> Conv2d(c, 3, padding=1) -> Upsample(scale_factor=2)
  output (y + x, d) -> Concat(dim=1) -> Conv2d(c, 1)
}
"""


def symbolic_spec(layers: int) -> str:
    """Issue 9's symbolic spec: stages of 9 layers over [C, H, W] for every even H and W, each
    with a residual add and a pool-and-upsample skip whose operands are proven equal."""
    calls = [f"Stage({WIDTH})" for _ in range(layers // 9)]
    body = "\n    -> ".join(calls)
    return STAGE + (f"\nmodel Symbolic {{\n  input x: [{WIDTH}, H, W] where H % 2 == 0, W % 2 == 0\n"
                    f"  x -> {body}\n    -> y\n  output y\n}}\n")


KINDS = {"chain": chain_spec, "blocks": block_spec, "statements": statements_spec, "symbolic": symbolic_spec}


def measure(text: str, repeat: int) -> tuple[float, float, float, int]:
    """Best-of-`repeat` seconds for parse, analyse and build, and the number of layers."""
    best = [float("inf")] * 3
    for _ in range(repeat):
        t0 = time.perf_counter()
        file = parse(text, "bench.net")
        t1 = time.perf_counter()
        _, graphs, _ = analyze(file)
        t2 = time.perf_counter()
        (graph,) = graphs.values()
        build_module(graph, "bench.net")
        t3 = time.perf_counter()
        for k, dt in enumerate((t1 - t0, t2 - t1, t3 - t2)):
            best[k] = min(best[k], dt)
    layers = sum(1 for _, n, _ in graph.walk() if n.kind == "op")
    return (*best, layers)


def table(sizes, repeat: int) -> None:
    head = f"{'spec':<10} {'layers':>6} {'lines':>6} {'parse ms':>9} {'analyse ms':>10} {'build ms':>9} " \
           f"{'total ms':>9} {'µs/layer':>9}"
    print(head)
    print("-" * len(head))
    for kind, make in KINDS.items():
        for n in sizes:
            text = make(n)
            p, a, b, layers = measure(text, repeat)
            total = p + a + b
            print(f"{kind:<10} {layers:>6} {text.count(chr(10)):>6} {p * 1e3:>9.1f} {a * 1e3:>10.1f} "
                  f"{b * 1e3:>9.1f} {total * 1e3:>9.1f} {total / layers * 1e6:>9.1f}")


def profile(n: int, kind: str) -> None:
    text = KINDS[kind](n)
    measure(text, 1)  # warm caches (parser tables, imports)
    prof = cProfile.Profile()
    prof.enable()
    measure(text, 1)
    prof.disable()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000, 2000])
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs (default 3)")
    ap.add_argument("--profile", nargs=2, metavar=("LAYERS", "KIND"), help="profile one case instead")
    args = ap.parse_args()
    netdsl.loads(chain_spec(10)).build()  # import torch, build the parser: outside the timings
    if args.profile:
        profile(int(args.profile[0]), args.profile[1])
    else:
        table(args.sizes, args.repeat)


if __name__ == "__main__":
    main()
