"""`netdsl summary`: a table (or JSON) of layers, shapes, parameters and multiply-adds."""

from __future__ import annotations

import json
import sys

import click


@click.command("summary")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-m", "--model", help="Only this model (default: every model in the file).")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON: one object per model, or a list when there are several.")
@click.option("--at", "at", metavar="H=224,W=224",
              help="Sizes of the declared dimensions to count multiply-adds at (default: each one's "
                   "largest, or its smallest where it has no largest).")
def summary_command(spec, model, as_json, at):
    """Print each model's layers: node, layer, output shape, parameters, multiply-adds.

    Totals follow the table: total and trainable parameters, multiply-adds per sample and
    parameter memory. Shapes leave out the batch dimension. Warns (W311) on stderr when a
    model, or training it under its plan, needs more memory than this machine has.

    \b
    Examples:
      netdsl summary specs/lenet.net
      netdsl summary specs/resnet18.net --model ResNet18
      netdsl summary specs/seeds.net --json | jq '.[].total_params'
    """
    from ..diagnostics import use_color
    from ..memory import memory_warnings
    from ..spec import load

    s = load(spec)
    names = [model] if model else s.model_names
    for w in memory_warnings(s, names):
        click.echo(w.format(use_color(sys.stderr)), err=True)
    sizes = _sizes(at)
    try:
        summaries = [s.summary(n, sizes) for n in names]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--at") from None
    if as_json:
        data = [x.to_dict() for x in summaries]
        click.echo(json.dumps(data[0] if len(data) == 1 else data, indent=2))
        return
    click.echo("\n\n".join(x.table() for x in summaries))


def _sizes(text: str | None) -> dict[str, int] | None:
    """`H=224,W=224` -> {"H": 224, "W": 224}."""
    if not text:
        return None
    out = {}
    for part in text.split(","):
        name, eq, value = part.partition("=")
        if not eq or not name.strip().isidentifier() or not value.strip().isdigit():
            raise click.BadParameter(f"{part!r}: write NAME=SIZE, such as H=224", param_hint="--at")
        out[name.strip()] = int(value)
    return out
