"""`--allow-layer module:Class`: the command-line allow-list of custom layers (ops/custom.py).

The option sits on the `netdsl` group and, through LazyGroup, on every command, so both
`netdsl --allow-layer m:C check x.net` and `netdsl check x.net --allow-layer m:C` work, as does
NETDSL_ALLOW_LAYERS (several classes separated by commas or spaces).
"""

from __future__ import annotations

import click

HELP = (
    "Allow an nn.Module class as a layer in specs (module:Class; repeatable). Specs never "
    "import code otherwise. Also NETDSL_ALLOW_LAYERS."
)


def _allow(ctx, param, values):
    if values:
        import os
        import sys

        from ..ops.custom import allow_layers

        if os.getcwd() not in sys.path and "" not in sys.path:  # as `python -m` would: modules here
            sys.path.insert(0, os.getcwd())
        allow_layers(values)
    return values


def allow_layer_option(envvar: str | None = None) -> click.Option:
    return click.Option(
        ["--allow-layer", "allow_layers"],
        multiple=True,
        metavar="MODULE:CLASS",
        envvar=envvar,
        expose_value=False,
        is_eager=True,
        callback=_allow,
        help=HELP,
    )


def with_allow_layer(command: click.Command | None) -> click.Command | None:
    """Give a command the --allow-layer option (once)."""
    if command is not None and not any(p.name == "allow_layers" for p in command.params):
        command.params.append(allow_layer_option())
    return command
