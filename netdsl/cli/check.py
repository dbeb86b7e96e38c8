"""`netdsl check`: validate specs; one line per model."""

from __future__ import annotations

import sys

import click

from ..diagnostics import NetdslError, use_color


@click.command("check")
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-q", "--quiet", is_flag=True, help="Print errors only.")
def check_command(specs, quiet):
    """Validate SPECS: syntax, names, arguments and shapes.

    Prints one line per model (inputs, outputs, parameter count); reports every mistake as
    FILE:LINE:COL diagnostics; warns (W311) when a model, or training it under its plan, needs
    more memory than this machine has. Exit status 0 when all specs are valid, 1 otherwise.
    Does not import torch.

    \b
    Examples:
      netdsl check specs/lenet.net
      netdsl check specs/*.net
    """
    from ..memory import memory_warnings
    from ..spec import load
    from ..targets.summary import summarize

    failed = 0
    color = use_color(sys.stderr)
    for path in specs:
        try:
            spec = load(path)
        except NetdslError as exc:
            failed += 1
            click.echo(exc.format(color), err=True)
            continue
        for w in spec.warnings + memory_warnings(spec):
            click.echo(w.format(color), err=True)
        if quiet:
            continue
        if not spec.model_names:
            blocks = len(spec.definitions.blocks)
            click.echo(f"{path}: ok, but it defines no model ({blocks} block{'s' if blocks != 1 else ''}"
                       " that only a model's use would check)")
        for name in spec.model_names:
            s = summarize(spec.graph(name))
            ins = ", ".join(f"{t['name']}[{', '.join(map(str, t['shape']))}]" for t in s.inputs)
            outs = ", ".join(f"{t['name']}[{', '.join(map(str, t['shape']))}]" for t in s.outputs)
            every = f" for every {', '.join(d.describe() for d in s.dims)}" if s.dims else ""
            click.echo(f"{path}: {name}: ok{every} ({ins} -> {outs}; {s.total_params:,} parameters)")
    if failed:
        click.echo(f"{failed} of {len(specs)} spec{'s' if len(specs) != 1 else ''} failed", err=True)
        sys.exit(1)
