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
def summary_command(spec, model, as_json):
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
    summaries = [s.summary(n) for n in names]
    if as_json:
        data = [x.to_dict() for x in summaries]
        click.echo(json.dumps(data[0] if len(data) == 1 else data, indent=2))
        return
    click.echo("\n\n".join(x.table() for x in summaries))
