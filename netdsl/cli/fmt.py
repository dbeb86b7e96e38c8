"""`netdsl fmt`: rewrite specs in the canonical layout (netdsl/syntax/fmt.py)."""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

import click


@click.command("fmt")
@click.argument("specs", nargs=-1, required=True, metavar="SPEC...")
@click.option("--check", is_flag=True,
              help="Change nothing; list the files that would change and exit 1 if any would.")
@click.option("--diff", "show_diff", is_flag=True,
              help="Change nothing; print what would change as a unified diff.")
def fmt_command(specs, check, show_diff):
    """Rewrite SPEC files in netdsl's one layout, keeping every comment.

    The layout is the README's: two spaces of indentation, one blank line between
    definitions, spaces around operators, long chains broken before `->` under the first
    arrow (where the author broke a chain, it stays broken there), long calls and lists
    broken between their items. Numbers and strings stay as written. Formatting reads the
    spec's syntax tree only: the formatted spec builds the identical model, and formatting it
    again changes nothing. A file is rewritten whole or not at all; `-` reads standard input
    and writes standard output.

    \b
    Examples:
      netdsl fmt specs/*.net
      netdsl fmt --check specs/           # in CI: exit 1 if a spec is not formatted
      netdsl fmt --diff specs/mnist.net
      cat model.net | netdsl fmt -
    """
    from ..diagnostics import Diagnostic, NetdslError
    from ..spec import MAX_SPEC_BYTES
    from ..syntax.fmt import format_text

    files = _expand(specs)
    changed, errors = [], []
    for path in files:
        if path == "-":
            text = sys.stdin.read()
            try:
                formatted = format_text(text, "<stdin>")
            except NetdslError as exc:
                errors.append(exc)
                continue
            if check or show_diff:
                _report(text, formatted, "<stdin>", check, show_diff, changed)
            else:
                click.echo(formatted, nl=False)
            continue
        p = Path(path)
        try:
            data = p.read_bytes()[: MAX_SPEC_BYTES + 1]
            if len(data) > MAX_SPEC_BYTES:
                raise NetdslError([Diagnostic("E501", f"{p}: too large to be a spec")])
            text = data.decode("utf-8")
        except FileNotFoundError:
            errors.append(NetdslError([Diagnostic("E501", f"{p}: no such file")]))
            continue
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(NetdslError([Diagnostic("E501", f"{p}: cannot read: {exc}")]))
            continue
        except NetdslError as exc:
            errors.append(exc)
            continue
        try:
            formatted = format_text(text, str(p))
        except NetdslError as exc:
            errors.append(exc)
            continue
        if formatted == text:
            continue
        if check or show_diff:
            _report(text, formatted, str(p), check, show_diff, changed)
            continue
        from ..fileio import WriteError, write_whole

        try:
            write_whole(p, formatted.encode("utf-8"))
        except WriteError as exc:
            errors.append(NetdslError([Diagnostic("E501", f"cannot write {p}: {exc}")]))
            continue
        changed.append(str(p))
        click.echo(f"formatted {p}", err=True)
    for exc in errors:
        from ..diagnostics import use_color

        click.echo(exc.format(use_color(sys.stderr)), err=True)
    if check and changed:
        click.echo(f"{len(changed)} of {len(files)} spec{'s' if len(files) != 1 else ''} "
                   "would be reformatted", err=True)
    if errors or (check and changed):
        sys.exit(1)


def _report(text, formatted, name, check, show_diff, changed) -> None:
    if formatted == text:
        return
    changed.append(name)
    if check and not show_diff:
        click.echo(f"would reformat {name}")
    if show_diff:
        click.echo("".join(difflib.unified_diff(text.splitlines(True), formatted.splitlines(True),
                                                name, f"{name} (formatted)")), nl=False)


def _expand(specs) -> list[str]:
    """Files as given; a folder stands for the `.net` files in it, sorted."""
    out = []
    for s in specs:
        p = Path(s)
        if s != "-" and p.is_dir():
            out += sorted(str(f) for f in p.rglob("*.net"))
        else:
            out.append(s)
    return out
