"""`netdsl lsp`: the language server over stdio (netdsl/lsp.py)."""

from __future__ import annotations

import click


@click.command("lsp")
def lsp_command():
    """Start the language server on standard input and output, for any editor that speaks the
    Language Server Protocol: diagnostics as you type (everything `netdsl check` reports),
    shapes and arguments on hover, completion, go to definition, document symbols and
    formatting. Needs the `lsp` extra: pip install 'netdsl[lsp]'.

    \b
    Examples:
      netdsl lsp                  # started by the editor, not by hand
    """
    from ..lsp import main

    main()
