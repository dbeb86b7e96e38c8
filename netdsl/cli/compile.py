"""`netdsl compile`: a spec as one standalone PyTorch file."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("compile")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-o", "--output", metavar="FILE",
              help="Write the source here (whole or not at all) instead of to standard output.")
@click.option("-m", "--model", help="Only this model (default: every model in the spec).")
@click.option("--no-train", is_flag=True,
              help="Only the model classes: leave out the training script.")
def compile_command(spec, output, model, no_train):
    """Write SPEC as plain PyTorch: one Python file that needs only torch and torchvision (and
    the module of a custom layer the spec uses), never netdsl.

    The file holds an `nn.Module` class per model and per block, written as a person would
    write them (named layers in `__init__`, one spec line per line in `forward`, shapes in
    comments; one class for all uses of a block, its differing numbers as `__init__`
    parameters), with the same parameter names and outputs as the module netdsl builds. For
    the models that have a `train` section, unless --no-train, it also holds the training
    plan as code: `python FILE.py` trains and prints the same metrics as `netdsl run` with the
    same seed (its --help lists --epochs, --device, --data-root, --seed, --out, --resume and
    --json). Importing the file only defines classes and functions.

    The output is laid out as `ruff format` writes it, and the same spec always gives the same
    bytes. Compiling a spec without torchvision backbones does not import torch.

    \b
    Examples:
      netdsl compile specs/mnist.net -o mnist.py
      python mnist.py --epochs 1 --data-root ../shared/data
      netdsl compile specs/resnet18.net --no-train -o resnet18.py
      netdsl compile specs/multitask.net --model MultiTask --no-train | less
    """
    from ..spec import load
    from ..targets.compile import compile_spec

    s = load(spec)
    for w in s.warnings:
        from ..diagnostics import use_color

        click.echo(w.format(use_color(sys.stderr)), err=True)
    source = compile_spec(s, model, train=False if no_train else None)
    others = _other_imports(source)
    if others:
        click.echo(f"note: the file imports {', '.join(others)}, the module of a custom layer; "
                   "it must be importable where the file runs", err=True)
    if output is None or output == "-":
        click.echo(source, nl=False)
        return
    path = Path(output)
    _write_atomically(path, source)
    names = [model] if model else s.model_names
    params = ", ".join(f"{s.graph(n).name} {s.summary(n).total_params:,} parameters" for n in names)
    script = "def main(argv=None):" in source
    click.echo(f"wrote {path} ({params}{', with its training script' if script else ''})", err=True)


def _other_imports(source: str) -> list[str]:
    """Top-level modules the file imports beyond the standard library, torch and torchvision."""
    import ast

    names = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    keep = set(sys.stdlib_module_names) | {"torch", "torchvision"}
    return sorted({n for n in names if n.split(".")[0] not in keep})


def _write_atomically(path: Path, text: str) -> None:
    """Write the source whole or not at all (E501 when it cannot be written)."""
    from ..diagnostics import Diagnostic, NetdslError
    from ..fileio import WriteError, write_whole

    try:
        write_whole(path, text.encode("utf-8"))
    except WriteError as exc:
        raise NetdslError([Diagnostic("E501", f"cannot write {path}: {exc}")]) from None
