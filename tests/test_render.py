"""`netdsl render` and `netdsl.render`: diagrams from the IR.

Goldens hold the DOT text of the seed specs (tests/goldens/render/; `pytest --update-goldens`
rewrites them: look at the diff, and at the pictures). The other tests check properties against
the IR itself: every node drawn once, every edge labelled with the shape it carries, escaping of
hostile names, and (where graphviz's `dot` is installed, as in CI) real SVG and PNG output.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal

import graphviz
import pytest
from click.testing import CliRunner

import netdsl
from netdsl.cli import cli, main
from netdsl.diagnostics import NetdslError
from netdsl.ir.graph import Graph, Node, Output, Ref
from netdsl.ir.types import TensorType
from netdsl.ops import get_op
from netdsl.ops.base import Op
from netdsl.targets.diagram import expanded_blocks, render, repeat_runs
from netdsl.targets.diagram_output import save
from netdsl.targets.diagram_style import FAMILIES

SPECS = Path(__file__).parents[1] / "specs"
SEEDS = ["linear_regression", "mlp", "mlp_wide", "mlp_deep", "lenet", "multitask", "resnet18"]
HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="graphviz `dot` is not installed")
SVG = "{http://www.w3.org/2000/svg}"


def spec(name: str):
    return netdsl.load(SPECS / f"{name}.net")


# ---- reading DOT back (independent of how diagram.py writes it) --------------------------------

_ID = r'(?:"(?:[^"\\]|\\.)*"|[^\s"\[\];{}]+)'
_NODE = re.compile(rf"^\s*({_ID}) \[(.*)\]$")
_EDGE = re.compile(rf"^\s*({_ID}) -> ({_ID})(?: \[(.*)\])?$")


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('\\"', '"') if ident.startswith('"') else ident


def html_attr(attrs: str, name: str) -> str | None:
    """The HTML-like value of attribute `name` (`label=<...>`), found by matching brackets: an
    unescaped `<` or `>` inside a label would unbalance them and fail the tests that use it."""
    m = re.search(rf"(?:^|\s){name}=<", attrs)
    if not m:
        return None
    depth, start = 0, m.end() - 1
    for i in range(start, len(attrs)):
        depth += {"<": 1, ">": -1}.get(attrs[i], 0)
        if depth == 0:
            return attrs[start + 1:i]
    raise AssertionError(f"unbalanced HTML label in {attrs!r}")


def label_text(html_label: str | None) -> str:
    """What an HTML-like label shows: it must be well-formed XML (so, escaped)."""
    assert html_label is not None, "no label"
    return "".join(ET.fromstring(f"<L>{html_label}</L>").itertext())


def parse_dot(source: str):
    """(nodes: {id: attrs}, edges: [(tail, head, attrs)]) of a DOT text, node statements
    counted: an id defined twice fails."""
    nodes, edges = {}, []
    for line in source.splitlines():
        if line.strip().startswith(("graph [", "node [", "edge [", "digraph", "subgraph", "}")):
            continue
        if m := _EDGE.match(line):
            edges.append((_unquote(m[1]), _unquote(m[2]), m[3] or ""))
        elif m := _NODE.match(line):
            ident = _unquote(m[1])
            assert ident not in nodes, f"node {ident} drawn twice"
            nodes[ident] = m[2]
    return nodes, edges


def title_of(source: str) -> str:
    """The text of the graph's own label (title, counts, legend)."""
    line = next(x for x in source.splitlines() if x.startswith("\tlabel=<"))
    return label_text(html_attr(line.strip(), "label"))


def all_nodes(graph: Graph) -> list[tuple[str, Node, Graph]]:
    return list(graph.walk())


def drawn_nodes(graph: Graph, prefix: str = ""):
    """What an expanded drawing shows: every node, through blocks, but a shared block's later
    uses are one node each (their layers are the owner's)."""
    for n in graph.nodes:
        q = prefix + n.name
        yield q, n, graph
        if n.kind == "block" and n.shares is None:
            yield from drawn_nodes(n.graph, q + ".")


def svg_of(dg: graphviz.Digraph) -> ET.Element:
    out = subprocess.run(["dot", "-Tsvg"], input=dg.source.encode(), capture_output=True,
                         check=True)
    assert out.stderr.decode().strip() == "", out.stderr.decode()  # no warnings from dot
    return ET.fromstring(out.stdout)


def svg_node_texts(root: ET.Element) -> dict[str, str]:
    """DOT node id -> the text drawn inside that node, in the SVG."""
    texts = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "node":
            title = g.find(f"{SVG}title").text
            texts[title] = "".join(t.text or "" for t in g.iter(f"{SVG}text"))
    return texts


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


# ---- goldens ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SEEDS)
def test_golden_dot_expanded(name, golden):
    golden(f"goldens/render/{name}.dot", render(spec(name)).source)


@pytest.mark.parametrize("name", ["resnet18", "multitask"])
def test_golden_dot_collapsed(name, golden):
    golden(f"goldens/render/{name}_collapsed.dot", render(spec(name), expand="none").source)


def test_output_is_deterministic():
    a = render(spec("resnet18"), expand="none").source
    assert a == render(spec("resnet18"), expand="none").source
    assert a == render(netdsl.load(SPECS / "resnet18.net").graph(), expand="none").source


# ---- every node once, every edge with its shape -------------------------------------------------

@pytest.mark.parametrize("path", sorted(SPECS.glob("*.net")), ids=lambda p: p.stem)
def test_expanded_drawing_has_every_ir_node_once_and_every_edge_its_shape(path):
    s = netdsl.load(path)
    for model in s.model_names:
        g = s.graph(model)
        source = render(s, model).source
        nodes, edges = parse_dot(source)
        # layers and inputs are nodes, blocks clusters; ids are the qualified names
        want = {q for q, n, _ in drawn_nodes(g) if n.kind != "block" or n.shares}
        assert set(nodes) == want | {f"output/{o.name}" for o in g.outputs}
        clusters = [_unquote(c) for c in re.findall(rf"^\s*subgraph ({_ID}) {{$", source, re.M)]
        assert sorted(clusters) == sorted(f"cluster_{q}" for q, n, _ in drawn_nodes(g)
                                          if n.kind == "block" and not n.shares)
        into: dict[str, list[str]] = {}
        for tail, head, attrs in edges:
            assert tail in nodes and head in nodes
            if "style=dashed" in attrs:  # a shared layer's uses joined: no value flows
                continue
            label = html_attr(attrs, "label")
            assert label is not None, f"edge {tail} -> {head} has no shape"
            into.setdefault(head, []).append(label_text(label))
        # the labels on the edges into each node are the types of that node's inputs
        expect: dict[str, list[str]] = {}
        for q, n, owner in drawn_nodes(g):
            if n.kind == "op" or n.shares:
                expect[q] = [_shape_label(owner, r) for r in n.inputs]
            elif n.kind == "block":  # expanded: the edges go to the block's input ports
                for x, r in zip(n.graph.inputs, n.inputs):
                    expect[f"{q}.{x.name}"] = [_shape_label(owner, r)]
        for o in g.outputs:
            expect[f"output/{o.name}"] = [_shape_label(g, o.ref)]
        expect = {k: v for k, v in expect.items() if v}  # a Parameter has no edge into it
        assert {k: sorted(v) for k, v in into.items()} == {k: sorted(v) for k, v in expect.items()}


def _shape_label(g: Graph, r: Ref) -> str:
    t = g.type_of(r)
    text = t.pretty() + ("" if t.dtype == "float32" else f" {t.dtype}")
    n = g.node(r.node)
    if n.n_outputs > 1:
        names = [o.name for o in n.graph.outputs] if n.kind == "block" else list(n.op.outputs)
        text = f"{names[r.index]}: {text}"
    return text


def test_no_shapes_leaves_edges_bare():
    _, edges = parse_dot(render(spec("lenet"), shapes=False).source)
    assert edges and all("label" not in attrs for _, _, attrs in edges)


def test_node_labels_carry_layer_arguments_name_and_params():
    nodes, _ = parse_dot(render(spec("lenet")).source)
    assert label_text(html_attr(nodes["conv2"], "label")) == "Conv2d 6→16, k=5conv2 · 2,416 params"
    assert label_text(html_attr(nodes["relu1"], "label")) == "ReLUrelu1"  # no params: none shown
    assert label_text(html_attr(nodes["fc1"], "label")) == "Linear 256→120fc1 · 30,840 params"
    assert label_text(html_attr(nodes["x"], "label")) == "x 1×28×28"
    assert label_text(html_attr(nodes["output/logits"], "label")) == "logits 10"


def test_inputs_outputs_and_families_look_different():
    nodes, _ = parse_dot(render(spec("resnet18")).source)
    shape = {k: (re.search(r"shape=(\w+)", v) or [None, "box"])[1] for k, v in nodes.items()}
    fill = {k: re.search(r'fillcolor="([^"]+)"', v)[1] for k, v in nodes.items()}
    assert shape["image"] != shape["conv1"] and shape["output/logits"] != shape["conv1"]
    assert "peripheries=2" in nodes["output/logits"] and "peripheries" not in nodes["image"]
    assert shape["basic1.x"] == "ellipse"
    g = spec("resnet18").graph()
    by_family = {}
    for q, n, _ in all_nodes(g):
        if n.kind == "op":
            by_family.setdefault(n.op.family, set()).add(fill[q])
    assert all(len(colours) == 1 for colours in by_family.values())  # one colour per family
    colours = [c.pop() for c in by_family.values()]
    assert len(set(colours)) == len(colours)  # and different families, different colours
    # the legend shows exactly the families drawn, each in its own colour
    title = render(spec("resnet18")).source.rsplit("label=<", 1)[1]
    for family in by_family:
        assert f'BGCOLOR="{FAMILIES[family][0]}"' in title and f">{family}<" in title
    assert ">recurrent<" not in title


def test_title_has_model_name_and_totals():
    source = render(spec("resnet18")).source
    assert title_of(source).startswith("ResNet1811,689,512 parameters (all trainable)")


def test_frozen_parameters_are_counted_apart():
    s = netdsl.loads("model M {\n input x: [8]\n x -> Linear(4, trainable=false) -> ReLU -> "
                     "Linear(2) -> y\n output y\n}")
    source = render(s).source
    nodes, _ = parse_dot(source)
    assert "fc1 · 36 params (frozen)" in label_text(html_attr(nodes["fc1"], "label"))
    assert "46 parameters (10 trainable, 36 frozen)" in title_of(source)


def test_multiple_outputs_name_their_edges_and_dtypes_show():
    s = netdsl.loads("""
model M {
  input tokens: [12] int64
  e = tokens -> Embedding(100, 16)
  out, h = e -> GRU(32)
  y = h -> Flatten -> Linear(4)
  output y, out
}
""")
    _, edges = parse_dot(render(s).source)
    labels = {(t, h): label_text(html_attr(a, "label")) for t, h, a in edges}
    assert labels[("tokens", "embed1")] == "12 int64"
    assert labels[("gru1", "flatten1")] == "h: 1×32"
    assert labels[("gru1", "output/out")] == "out: 12×32"


def test_learned_tensors_are_nodes_and_tied_weights_a_dashed_line():
    s = netdsl.loads("""
model LM {
  input idx: [8] int64
  pos = Parameter(1, 8, 16, init=normal, std=0.02)
  x = (idx -> Embedding(40, 16) as wte) + pos
  logits = x -> Linear(40, bias=false, weight=wte.weight) as lm_head
  output logits
}
""")
    nodes, edges = parse_dot(render(s).source)
    assert "pos · 128 params" in label_text(html_attr(nodes["pos"], "label"))
    labels = {(t, h): label_text(html_attr(a, "label") or "") for t, h, a in edges}
    assert labels[("pos", "add1")] == "1×8×16"  # no batch: the whole tensor
    tied = [a for t, h, a in edges if (t, h) == ("wte", "lm_head") and "style=dashed" in a]
    assert len(tied) == 1 and "tied" in tied[0]
    head = label_text(html_attr(nodes["lm_head"], "label"))
    assert "weight=wte.weight" in head and "params" not in head  # its weight is counted at wte


# ---- blocks: clusters, collapsed nodes, repeats ------------------------------------------------

def test_resnet18_collapsed_draws_repeats_once_with_their_count():
    s = spec("resnet18")
    dg = render(s, expand="none")
    nodes, edges = parse_dot(dg.source)
    assert "basic2" not in nodes and "cluster" not in dg.source
    head = label_text(html_attr(nodes["basic1"], "label"))
    assert head == "Basic(c=64, stride=1) ×2basic1, basic2 · 147,968 params (2 × 73,984)"
    assert "×" not in label_text(html_attr(nodes["basic3"], "label")).split("basic3")[0]
    # every block node carries its parameter count, as the summary counts it
    summary = {r.name: r.params for r in s.summary().rows}
    for b in ("basic3", "basic4", "basic5", "basic6", "basic7", "basic8"):
        assert f"{summary[b]:,} params" in label_text(html_attr(nodes[b], "label"))
    assert ("pool1", "basic1") in [(t, h) for t, h, _ in edges]
    assert ("basic1", "basic3") in [(t, h) for t, h, _ in edges]
    assert len(nodes) == 16 and dg.netdsl_nodes["basic2"] == "basic1"


def test_repeat_runs_need_same_block_args_types_and_a_private_chain():
    def runs(text, collapsed=lambda i: True):
        g = netdsl.loads(text).graph()
        return [[g.nodes[i].name for i in run] for run in repeat_runs(g, collapsed) if len(run) > 1]

    block = "block B(c) {\n input x\n output x -> Linear(c) -> ReLU\n}\n"
    body = "model M {\n input x: [8]\n %s\n}"
    assert runs(block + body % "x -> B(8) * 3 -> y\n output y") == [["b1", "b2", "b3"]]
    # written out by hand it is the same picture
    assert runs(block + body % "x -> B(8) -> B(8) -> y\n output y") == [["b1", "b2"]]
    # other arguments, other types: not a repeat
    assert runs(block + body % "x -> B(8) -> B(4) -> y\n output y") == []
    assert runs(block + body % "x -> B(4) -> B(4) -> y\n output y") == []  # 8 -> 4, then 4 -> 4
    # a value used elsewhere breaks the chain
    assert runs(block + body % "a = x -> B(8)\n b = a -> B(8)\n output a, b") == []
    # only collapsed instances merge
    three = block + body % "x -> B(8) * 3 -> y\n output y"
    assert runs(three, lambda i: i != 3) == [["b1", "b2"]]  # node 0 is x; b3 expanded
    assert runs(three, lambda i: i != 2) == []  # b2 expanded: b1 and b3 are not consecutive


def test_expanding_one_instance_splits_its_repeat_group():
    nodes, _ = parse_dot(render(spec("resnet18"), expand=["basic2"]).source)
    assert "basic2.conv1" in nodes and "basic1" in nodes and "basic3" in nodes
    assert "×" not in label_text(html_attr(nodes["basic1"], "label")).split("basic1")[0]


NESTED = """
block Inner(c) {
  input x
  output x -> Linear(c) -> ReLU
}
block Outer(c) {
  input x
  output x -> Inner(c) -> Inner(c)
}
model M {
  input x: [8]
  x -> Outer(8) -> Outer(8) -> y
  output y
}
"""


def test_expand_by_block_name_or_instance_expands_what_surrounds_it():
    g = netdsl.loads(NESTED).graph()
    assert expanded_blocks(g, "all") == {"outer1", "outer1.inner1", "outer1.inner2", "outer2",
                                         "outer2.inner1", "outer2.inner2"}
    assert expanded_blocks(g, "none") == set() == expanded_blocks(g, [])
    assert expanded_blocks(g, ["Outer"]) == {"outer1", "outer2"}
    assert expanded_blocks(g, "outer2.inner1") == {"outer2", "outer2.inner1"}
    assert expanded_blocks(g, "Inner,outer1") == expanded_blocks(g, "all")
    nodes, _ = parse_dot(render(g, expand="Outer").source)
    # inside the expanded outers, the two inner instances are one ×2 node each
    assert {"outer1.inner1", "outer2.inner1", "outer1.x"} <= set(nodes)
    assert "outer1.inner2" not in nodes and "×2" in html_attr(nodes["outer1.inner1"], "label")
    # collapsed at the top: the two outers are one node too
    nodes, _ = parse_dot(render(g, expand="none").source)
    assert set(nodes) == {"x", "outer1", "output/y"}


@pytest.mark.parametrize("expand, fragment, hint", [
    ("Basci", "no block or block instance 'Basci'", "did you mean 'Basic'?"),
    ("basic9", "no block or block instance 'basic9'", "did you mean 'basic1'?"),
    (["all", "basic1"], "not a mix", None),
])
def test_unknown_expand_names_are_errors_with_a_hint(expand, fragment, hint):
    with pytest.raises(NetdslError) as info:
        render(spec("resnet18"), expand=expand)
    d = info.value.diagnostics[0]
    assert d.code == "E504" and fragment in d.message and d.hint == hint


def test_expand_names_in_a_model_without_blocks():
    with pytest.raises(NetdslError, match="it has no blocks"):
        render(spec("lenet"), expand="Basic")


# ---- escaping -----------------------------------------------------------------------------------

EVIL = 'q"uo<te>&amp;\\n\\"back\\'  # quotes, brackets, an entity, backslashes, one at the end


class Tagged(Op):
    """A layer with a free-text argument (no built-in layer has one): its value reaches the
    label through `args_label`."""

    op: Literal["Tagged"] = "Tagged"
    tag: str
    family = "custom"
    key_args = ("tag",)

    def shape(self, ins):
        return ins


Tagged.kind = 'Tag<"ged">'


def hostile_graph() -> Graph:
    t = TensorType(shape=(4,))
    linear = get_op("Linear")(out_features=4, in_features=4)
    body = Graph(name='Blk<"&>', kind="block", nodes=[
        Node(name="in\\", kind="input", types=[t]),
        Node(name="lin", kind="op", op=linear, inputs=[Ref(node="in\\")], types=[t]),
    ], outputs=[Output(name="o", ref=Ref(node="lin"))])
    nodes = [
        Node(name=f"x{EVIL}", kind="input", types=[t]),
        Node(name="node", kind="op", op=Tagged(tag=EVIL), inputs=[Ref(node=f"x{EVIL}")], types=[t]),
        Node(name="edge:port", kind="op", op=Tagged(tag="ünï→×"), inputs=[Ref(node="node")],
             types=[t]),
        Node(name="blk<1>", kind="block", block='Blk<"&>', block_args={"mode": EVIL, "k": 3},
             graph=body, inputs=[Ref(node="edge:port")], types=[t]),
        # a plain name equal to the sanitised id of `edge:port`: ids must stay apart
        Node(name="n_edge_port", kind="op", op=Tagged(tag="plain"), inputs=[Ref(node="blk<1>")],
             types=[t]),
    ]
    return Graph(name='Mödel "<1>" \\', nodes=nodes,
                 outputs=[Output(name='out"\\', ref=Ref(node="n_edge_port"))])


HOSTILE_TEXTS = {  # what each drawing must show, verbatim
    "both": [f"x{EVIL}", f"tag={EVIL}", "tag=ünï→×", 'Tag<"ged">', "edge:port",
             f'Blk<"&>(mode="{EVIL}", k=3)', 'Mödel "<1>" \\', 'out"\\', "n_edge_port"],
    "all": ["blk<1>: Blk", "in\\"],
    "none": ["blk<1> · 20 params"],
}


@pytest.mark.parametrize("expand", ["all", "none"])
def test_hostile_names_are_escaped_in_dot(expand):
    dg = render(hostile_graph(), expand=expand)
    nodes, edges = parse_dot(dg.source)
    shown = []
    for ident, attrs in nodes.items():
        assert re.fullmatch(r"[A-Za-z0-9_./~]+", ident), ident  # ids are sanitised
        shown.append(label_text(html_attr(attrs, "label")))  # labels are well-formed
    for cluster in re.findall(r"^\s*color=.* label=<(.*)> labeljust", dg.source, re.M):
        shown.append(label_text(cluster))
    shown.append(title_of(dg.source))
    text = "\n".join(shown)
    for s in HOSTILE_TEXTS["both"] + HOSTILE_TEXTS[expand]:
        assert s in text, s
    assert (len(nodes), len(edges)) == ((7, 6) if expand == "all" else (6, 5))
    assert "n_edge_port~2" in nodes  # the second of two names that sanitise alike


@needs_dot
@pytest.mark.parametrize("expand", ["all", "none"])
def test_hostile_names_render_through_dot(expand):
    root = svg_of(render(hostile_graph(), expand=expand))
    text = "\n".join(t.text or "" for t in root.iter(f"{SVG}text"))
    for s in HOSTILE_TEXTS["both"] + HOSTILE_TEXTS[expand]:
        assert squash(s) in squash(text), s


def test_control_characters_become_spaces():
    g = hostile_graph()
    g.nodes[1] = g.nodes[1].model_copy(update={"op": Tagged(tag="a\x00b\nc\ud800d")})
    nodes, _ = parse_dot(render(g).source)
    assert "tag=a b c d" in label_text(html_attr(nodes["node"], "label"))


# ---- real rendering -----------------------------------------------------------------------------

@needs_dot
@pytest.mark.parametrize("name, expand", [(n, "all") for n in SEEDS] + [("resnet18", "none")])
def test_svg_parses_and_shows_every_label(name, expand):
    dg = render(spec(name), expand=expand)
    nodes, _ = parse_dot(dg.source)
    texts = svg_node_texts(svg_of(dg))
    assert set(texts) == set(nodes)
    for ident, attrs in nodes.items():
        assert squash(texts[ident]) == squash(label_text(html_attr(attrs, "label"))), ident


@needs_dot
@pytest.mark.parametrize("name", ["lenet", "multitask"])
def test_png_is_a_valid_image(name, tmp_path):
    import matplotlib.image

    path = save(render(spec(name)), tmp_path / f"{name}.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path)  # decodes every row
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels[..., :3].min() < 0.2 and pixels[..., :3].max() > 0.9  # dark text, light fills


@needs_dot
def test_resnet18_collapsed_fits_one_screen_and_expanded_stays_legible():
    def size_px(root):  # graphviz writes pt; screens show 96 px per 72 pt
        return [float(root.get(k).removesuffix("pt")) * 96 / 72 for k in ("width", "height")]

    w, h = size_px(svg_of(render(spec("resnet18"), expand="none")))
    assert w <= 1920 and h <= 1080, (w, h)
    root = svg_of(render(spec("resnet18")))
    assert "scale(1 1)" in root.find(f"{SVG}g").get("transform")  # drawn at full size
    sizes = [float(t.get("font-size")) for t in root.iter(f"{SVG}text")]
    assert min(sizes) >= 8  # no text below 8 pt
    w, h = size_px(root)
    assert w <= 1920  # one column: scrolls down, never sideways


# ---- Python API ---------------------------------------------------------------------------------

def test_api_returns_a_digraph_from_spec_graph_or_path():
    dg = netdsl.render(spec("mlp"))
    assert isinstance(dg, graphviz.Digraph) and hasattr(dg, "_repr_mimebundle_")  # Jupyter
    assert netdsl.render(SPECS / "mlp.net").source == dg.source
    assert netdsl.render(str(SPECS / "mlp.net")).source == dg.source
    assert netdsl.render(spec("mlp").graph()).source == dg.source
    assert "rankdir=LR" in netdsl.render(spec("mlp"), direction="LR").source
    with pytest.raises(ValueError, match="TB"):
        netdsl.render(spec("mlp"), direction="BT")
    with pytest.raises(TypeError):
        netdsl.render(42)


TWO_MODELS = ("model A {\n input x: [2]\n x -> Linear(1) -> y\n output y\n}\n"
              "model B {\n input x: [3]\n x -> Linear(2) -> y\n output y\n}")


def test_api_picks_the_model():
    s = netdsl.loads(TWO_MODELS)
    assert "3→2" in render(s, "B").source and "2→1" in render(s).source
    with pytest.raises(NetdslError, match="no model 'C'"):
        render(s, "C")


# ---- command line -------------------------------------------------------------------------------

def run_cli(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return CliRunner().invoke(cli, ["render", *map(str, args)], catch_exceptions=False)


def test_cli_writes_dot_by_extension(tmp_path, monkeypatch):
    r = run_cli([SPECS / "lenet.net", "-o", "out.gv"], tmp_path, monkeypatch)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out.gv").read_text(encoding="utf-8") == render(spec("lenet")).source
    assert "wrote out.gv" in r.output


def test_cli_dot_to_stdout_with_options(tmp_path, monkeypatch):
    r = run_cli([SPECS / "resnet18.net", "-o", "-", "--expand", "none", "--direction", "lr",
                 "--no-shapes", "--no-legend"], tmp_path, monkeypatch)
    assert r.exit_code == 0
    want = render(spec("resnet18"), expand="none", direction="LR", shapes=False, legend=False)
    assert r.output == want.source and list(tmp_path.iterdir()) == []


def test_cli_expand_option_repeats_and_splits_on_commas(tmp_path, monkeypatch):
    args = ["-o", "-", "--expand", "basic3", "--expand", "basic5,basic7"]
    r = run_cli([SPECS / "resnet18.net", *args], tmp_path, monkeypatch)
    assert r.output == render(spec("resnet18"), expand=["basic3", "basic5", "basic7"]).source


@needs_dot
@pytest.mark.parametrize("args, name, magic", [
    (["-o", "d.svg"], "d.svg", b"<?xml"),
    (["-o", "d.png"], "d.png", b"\x89PNG"),
    (["-o", "d.pdf"], "d.pdf", b"%PDF"),
    (["-o", "d.img", "--format", "png"], "d.img", b"\x89PNG"),
    ([], "lenet.svg", b"<?xml"),
    (["--format", "pdf"], "lenet.pdf", b"%PDF"),
])
def test_cli_formats(args, name, magic, tmp_path, monkeypatch):
    r = run_cli([SPECS / "lenet.net", *args], tmp_path, monkeypatch)
    assert r.exit_code == 0, r.output
    assert (tmp_path / name).read_bytes().startswith(magic)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


def cli_error(args, tmp_path, monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    with pytest.raises(SystemExit) as info:
        main(["render", *map(str, args)])
    return info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["-o", "x.jpg"], "E505]: cannot tell the format of 'x.jpg' (extension '.jpg')"),
    (["-o", "x"], "E505]: cannot tell the format of 'x' (no extension)"),
    (["--format", "svgz"], "E505]: unknown format 'svgz' (choose one of svg, png, pdf, dot)"),
    (["-o", "no/x.svg"], "E505]: cannot write no/x.svg: directory no does not exist"),
    (["--expand", "Basic"], "E504]: model LeNet has no block or block instance 'Basic'"),
    (["--model", "Lenet"], "E502]: "),
])
def test_cli_errors_are_clean_and_write_nothing(args, message, tmp_path, monkeypatch, capsys):
    code, err = cli_error([SPECS / "lenet.net", *args], tmp_path, monkeypatch, capsys)
    assert code == 1 and "error[" + message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_cli_will_not_write_over_a_directory(tmp_path, monkeypatch, capsys):
    (tmp_path / "d.dot").mkdir()
    code, err = cli_error([SPECS / "lenet.net", "-o", "d.dot"], tmp_path, monkeypatch, capsys)
    assert code == 1 and "error[E505]: cannot write d.dot: it is a directory" in err
    assert [p.name for p in tmp_path.iterdir()] == ["d.dot"]
    assert not any((tmp_path / "d.dot").iterdir())


def test_cli_without_dot_says_how_to_install_and_still_writes_dot(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    (tmp_path / "old.png").write_bytes(b"old")
    code, err = cli_error([SPECS / "lenet.net", "-o", "old.png"], tmp_path, monkeypatch, capsys)
    assert code == 1
    assert "error[E505]: cannot write png: graphviz's `dot` program is not installed" in err
    assert "apt-get install graphviz" in err and "brew install graphviz" in err
    assert (tmp_path / "old.png").read_bytes() == b"old"  # untouched
    r = CliRunner().invoke(cli, ["render", str(SPECS / "lenet.net"), "-o", "new.dot"])
    assert r.exit_code == 0
    assert (tmp_path / "new.dot").read_text(encoding="utf-8").startswith("digraph")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.dot", "old.png"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "d.dot"
    target.write_text("old", encoding="utf-8")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(NetdslError, match="No space left on device"):
        save(render(spec("mlp")), target)
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["d.dot"]


def test_cli_notes_which_model_it_draws(tmp_path, monkeypatch):
    (tmp_path / "two.net").write_text(TWO_MODELS)
    r = run_cli(["two.net", "-o", "two.dot"], tmp_path, monkeypatch)
    assert r.exit_code == 0 and "drawing A (choose another with --model)" in r.output
    r = run_cli(["two.net", "-o", "b.dot", "--model", "B"], tmp_path, monkeypatch)
    assert "3→2" in (tmp_path / "b.dot").read_text(encoding="utf-8")


def test_cli_help_has_examples():
    r = CliRunner().invoke(cli, ["render", "--help"])
    assert r.exit_code == 0
    for fragment in ("Examples:", "netdsl render specs/lenet.net", "--expand none", "--format dot",
                     "--direction", "--no-shapes", "all|none|BLOCK", "svg|png|pdf|dot"):
        assert fragment in r.output


def test_a_drawing_too_large_for_dot_is_E505_not_E900(monkeypatch, tmp_path):
    """dot runs out of memory on 20,000 layers (12 s here): say so, with what to do instead.
    dot's failure is simulated; any other failure of dot stays an internal error."""
    def out_of_memory(*args, **kwargs):
        raise graphviz.CalledProcessError(1, ["dot"], stderr=b"dot: out of memory\n")

    monkeypatch.setattr(graphviz, "pipe", out_of_memory)
    if shutil.which("dot") is None:
        pytest.skip("graphviz's dot is not installed")
    with pytest.raises(NetdslError) as exc:
        save(render(spec("lenet")), tmp_path / "lenet.svg")
    d = exc.value.diagnostics[0]
    assert d.code == "E505" and "ran out of memory laying out" in d.message and "--format dot" in d.hint
    assert not (tmp_path / "lenet.svg").exists()
