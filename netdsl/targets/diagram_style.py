"""The look of diagrams: colours per layer family, node shapes, fonts; HTML-like label helpers.

Fills are light and text is dark, so every node reads in print and on screen; the border
carries a darker shade of the fill, so families stay apart in greyscale too.
"""

from __future__ import annotations

import re

FONT = "DejaVu Sans,Helvetica,Arial,sans-serif"  # DejaVu first: its → is legible at 10pt

# family -> (fill, border). The order is the legend's.
FAMILIES: dict[str, tuple[str, str]] = {
    "conv": ("#d6e6f7", "#3f6fa8"),
    "norm": ("#fcefc4", "#a88a22"),
    "activation": ("#d8efd3", "#4f8f44"),
    "pooling": ("#e6dcf4", "#76599f"),
    "linear": ("#fbdcc4", "#b8652d"),
    "recurrent": ("#f6d3d9", "#a8485a"),
    "attention": ("#cfecea", "#2f807b"),
    "embedding": ("#f2daee", "#8d4f81"),
    "merge": ("#e4e4e4", "#666666"),
    "shape": ("#f5f5f5", "#9a9a9a"),
    "dropout": ("#f5f5f5", "#9a9a9a"),
    "backbone": ("#dde3c8", "#6b7a35"),
    "custom": ("#f7f2d0", "#8a7d2a"),
    "parameter": ("#fff4e0", "#c08a2a"),
    "other": ("#ffffff", "#808080"),
}

GRAPH_ATTRS = {
    "fontname": FONT, "nodesep": "0.25", "ranksep": "0.2", "newrank": "true",
    "bgcolor": "white", "pad": "0.1", "fontcolor": "#1a1a1a",
}
NODE_ATTRS = {
    "fontname": FONT, "fontsize": "10", "shape": "box", "style": "rounded,filled",
    "fontcolor": "#1a1a1a", "margin": "0.1,0.02", "height": "0.1", "penwidth": "1.2",
}
EDGE_ATTRS = {
    "fontname": FONT, "fontsize": "8", "fontcolor": "#4d4d4d", "color": "#5a5a5a",
    "arrowsize": "0.6", "penwidth": "1.0",
}
INPUT_STYLE = {"shape": "ellipse", "style": "filled", "fillcolor": "#ffffff", "color": "#1a1a1a",
               "penwidth": "1.6", "margin": "0.06,0.02"}
OUTPUT_STYLE = {"shape": "ellipse", "style": "filled", "fillcolor": "#ffffff", "color": "#1a1a1a",
                "penwidth": "1.2", "peripheries": "2", "margin": "0.06,0.02"}
PORT_STYLE = {"shape": "ellipse", "style": "filled", "fillcolor": "#ffffff", "color": "#808080",
              "fontsize": "9", "height": "0.2", "margin": "0.04,0.01"}
BLOCK_STYLE = {"shape": "box3d", "style": "filled", "fillcolor": "#fafafa", "color": "#333333",
               "margin": "0.12,0.03"}
CLUSTER_FILLS = ("#f7f7f7", "#ececec")  # nested clusters alternate


def cluster_style(depth: int) -> dict[str, str]:
    return {"style": "rounded,filled", "fillcolor": CLUSTER_FILLS[depth % len(CLUSTER_FILLS)],
            "color": "#9a9a9a", "penwidth": "1", "fontname": FONT, "fontsize": "10",
            "labeljust": "l", "labelloc": "t", "margin": "6"}


def family_style(family: str) -> dict[str, str]:
    fill, border = FAMILIES.get(family, FAMILIES["other"])
    style = {"fillcolor": fill, "color": border}
    if family == "dropout":
        style["style"] = "rounded,filled,dashed"
    return style


def html(text: str) -> str:
    """Mark escaped HTML-like label text as such for the graphviz package."""
    return f"<{text}>"


def legend_table(families: list[str], most_per_row: int = 4) -> str:
    """An HTML table, one swatch per family in the family's own fill and border, in rows of
    even length (5 families: 3 + 2, not 4 + 1)."""
    n_rows = -(-len(families) // most_per_row)
    per_row = -(-len(families) // max(n_rows, 1))
    rows = []
    for k in range(0, len(families), per_row):
        cells = []
        for f in families[k:k + per_row]:
            fill, border = FAMILIES.get(f, FAMILIES["other"])
            cells.append(f'<TD BGCOLOR="{fill}" COLOR="{border}" BORDER="1" CELLPADDING="2" '
                         f'WIDTH="56"><FONT POINT-SIZE="9">{esc(f)}</FONT></TD>')
        rows.append("<TR>" + "".join(cells) + "</TR>")
    return '<TABLE BORDER="0" CELLSPACING="3" CELLPADDING="0">' + "".join(rows) + "</TABLE>"


def title_table(name: str, counts: str, legend: str | None) -> str:
    """The graph label: the model's name over its parameter counts, the legend to the right."""
    title = (f'<TD ALIGN="LEFT" BALIGN="LEFT"><FONT POINT-SIZE="16"><B>{esc(name)}</B></FONT><BR/>'
             f'<FONT POINT-SIZE="11">{esc(counts)}</FONT></TD>')
    side = f'<TD WIDTH="12"></TD><TD>{legend}</TD>' if legend else ""
    return html(f'<TABLE BORDER="0" CELLSPACING="0" CELLPADDING="2"><TR>{title}{side}</TR></TABLE>')


_CONTROL = re.compile("[\x00-\x1f\x7f\ud800-\udfff\ufffe\uffff]")  # no text in XML/UTF-8


def esc(text) -> str:
    """Text for an HTML-like label: markup characters escaped, control characters made spaces.
    Nothing else needs escaping there: HTML-like labels take no backslash escapes."""
    text = _CONTROL.sub(" ", str(text))
    for char, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;")):
        text = text.replace(char, entity)
    return text
