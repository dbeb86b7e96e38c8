"""Hypothesis: whatever the text, `netdsl.loads` either succeeds or raises NetdslError whose
diagnostics all point inside the text. Never another exception (that would be a traceback
reaching the user, or a bug dressed up as their mistake).

Four sources of text: arbitrary unicode; token soup from the language's own vocabulary;
grammar-shaped specs built from fragments (valid layers with random arguments, blocks,
repetition, conditionals, merges); and mutations of the real specs in specs/.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netdsl
from netdsl.diagnostics import CODES, NetdslError

SPECS = {p.name: p.read_text() for p in sorted((Path(__file__).parents[1] / "specs").glob("*.net"))}
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(text: str):
    """Load `text`; check whatever comes out. Returns the Spec or the NetdslError."""
    try:
        spec = netdsl.loads(text, "fuzz.net")
    except NetdslError as exc:
        check_diagnostics(exc.diagnostics, text)
        assert exc.format()  # formatting never fails either
        return exc
    if spec.warnings:
        check_diagnostics(spec.warnings, text)
    for name in spec.model_names:  # a valid spec summarises without torch
        s = spec.summary(name)
        assert s.total_params >= 0
        assert s.table()
    return spec


def check_diagnostics(diagnostics, text: str) -> None:
    assert diagnostics
    lines = text.split("\n")  # the parser counts lines by '\n' alone
    for d in diagnostics:
        assert d.code in CODES, d.code
        assert d.code != "E900"
        d.format()
        d.format(color=True)
        s = d.span
        if s is None:
            continue
        assert 1 <= s.line <= len(lines), (d.format(), s)
        line = lines[s.line - 1].rstrip("\r")
        assert 1 <= s.col <= len(line) + 1, (d.format(), s)
        assert (s.end_line, s.end_col) >= (s.line, s.col), (d.format(), s)
        assert s.end_line <= len(lines), (d.format(), s)
        end_line = lines[s.end_line - 1].rstrip("\r")
        # the caret ends on its line (one place past its end for "unexpected end of line")
        assert s.end_col <= max(len(end_line) + 1, s.col + 1 if s.end_line == s.line else 0), \
            (d.format(), s)
        assert s.source.line(s.line) == line, "the excerpt shows another line than the span's"


# ---- arbitrary text --------------------------------------------------------------------------
@FAST
@given(st.text(max_size=300))
def test_arbitrary_text(text):
    outcome(text)


@FAST
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80).map(
    lambda t: f"model M {{\n  input x: [4]\n  {t}\n  output x\n}}\n"))
def test_arbitrary_statement_inside_a_model(text):
    outcome(text)


# ---- token soup ------------------------------------------------------------------------------
TOKENS = [
    "model", "block", "train", "input", "output", "if", "else", "as", "and", "or", "not", "true",
    "false", "none", "M", "B", "x", "y", "h", "c", "Linear", "Conv2d", "ReLU", "Flatten", "LSTM",
    "BatchNorm2d", "MaxPool2d", "Concat", "Dropout", "Embedding", "resnet18", "Softmax", "Reshape",
    "mypkg.layers.Block", "0", "1", "2", "3", "16", "-1", "0.5", "1e-3", '"a"', "'same'", "->", "=",
    "==", "!=", "<", "+", "-", "*", "/", "//", "%", "**", "(", ")", "[", "]", "{", "}", ",", ":",
    ".", "_", "\n", "\n", "\n", "#c\n", "\\\n", "int64", "float64", "[1, 28, 28]", "stride=2",
    "dim=1", "in_features=3", "bias=false", "@", "abs", "sqrt", "Chunk", "Split", "Permute",
    "Transpose", "(2, 2)", "Parameter", "Buffer", "arange", "expand", "size", "shape", "ndim",
    "x.size(1)", "x.shape[-1]", "x.size(0)", "weight", "weight=x.weight", "key_padding_mask",
    "is_causal=true", "tgt_is_causal", "bool", "TransformerEncoder", "TransformerEncoderLayer",
    "TransformerDecoderLayer", "scaled_dot_product_attention", "MultiheadAttention", "init=normal",
]


@FAST
@given(st.lists(st.sampled_from(TOKENS), max_size=60), st.sampled_from([" ", ""]))
def test_token_soup(tokens, sep):
    outcome(sep.join(tokens))


@FAST
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_token_soup_inside_a_model(tokens):
    outcome("model M {\n  input x: [3, 8, 8]\n  " + " ".join(tokens) + "\n}\n")


# ---- grammar-shaped specs --------------------------------------------------------------------
NUM = st.one_of(st.integers(-2, 40), st.sampled_from([0.0, 0.5, 1.5, -1.0, 1e-3]))
VALUE = st.one_of(NUM, st.booleans().map(lambda b: "true" if b else "false"),
                  st.sampled_from(["none", '"same"', '"valid"', '"reflect"', "c", "(2, 2)", "[3, 1]",
                                   "c * 2", "c // 2 + 1", "kaiming_normal", "(1, 2, 3)", "x.size(1)",
                                   "x.shape[-1]", "x.size(0)", "x.ndim", "x.size(1) // 2", "x",
                                   "TransformerEncoderLayer(2)", "LayerNorm"]))
LAYERS = {
    "Linear": ["out_features", "bias", "in_features", "init"],
    "Conv2d": ["out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias",
               "padding_mode", "in_channels"],
    "Conv1d": ["out_channels", "kernel_size", "stride", "padding"],
    "MaxPool2d": ["kernel_size", "stride", "padding", "ceil_mode"],
    "AvgPool2d": ["kernel_size", "stride"],
    "AdaptiveAvgPool2d": ["output_size"],
    "BatchNorm2d": ["num_features", "eps", "affine"], "BatchNorm1d": ["momentum"],
    "LayerNorm": ["normalized_shape"], "GroupNorm": ["num_groups"],
    "ReLU": [], "GELU": ["approximate"], "Tanh": [], "Sigmoid": [], "Softmax": ["dim"],
    "Dropout": ["p"], "Flatten": ["start_dim", "end_dim"], "Identity": [],
    "LSTM": ["hidden_size", "num_layers", "batch_first", "bidirectional"], "GRU": ["hidden_size"],
    "Embedding": ["num_embeddings", "embedding_dim"], "Reshape": [], "Select": ["dim", "index"],
    "Mean": ["dim"], "Upsample": ["scale_factor", "mode"], "Lineer": ["out"],
    "MultiheadAttention": ["num_heads", "is_causal", "key_padding_mask"],
    "TransformerEncoderLayer": ["nhead", "dim_feedforward", "is_causal", "src_key_padding_mask"],
    "TransformerEncoder": ["encoder_layer", "num_layers", "norm"],
}


@st.composite
def layer_call(draw, blocks=()):
    names = list(LAYERS) + list(blocks)
    name = draw(st.sampled_from(names))
    fields = LAYERS.get(name, ["c", "stride"])
    n_pos = draw(st.integers(0, 3))
    args = [str(draw(VALUE)) for _ in range(n_pos)]
    for f in draw(st.lists(st.sampled_from(fields or ["bogus"]), max_size=3, unique=True)):
        args.append(f"{f}={draw(VALUE)}")
    text = name if not args and draw(st.booleans()) else f"{name}({', '.join(args)})"
    if draw(st.integers(0, 9)) == 0:
        text += f" * {draw(st.integers(0, 3))}"
    if draw(st.integers(0, 9)) == 0:
        text += f" as {draw(st.sampled_from(['enc', 'forward', 'x', 'head']))}"
    return text


@st.composite
def chain(draw, src, blocks=()):
    steps = draw(st.lists(layer_call(blocks), min_size=1, max_size=5))
    return f"{src} -> " + " -> ".join(steps)


@st.composite
def spec_text(draw):
    shape = draw(st.sampled_from(["[3, 16, 16]", "[1, 28, 28]", "[8]", "[10, 4]", "[12] int64",
                                  "[2, 5, 5]", "[0]", "3"]))
    out = []
    blocks = []
    if draw(st.booleans()):
        bname = draw(st.sampled_from(["Res", "Head", "Linear"]))
        blocks.append(bname)
        body = draw(chain("x", ()))
        merge = draw(st.sampled_from(["y + x", "y", "(y, x) -> Concat(dim=1)", "y * x",
                                      "y if c > 2 else x", "ReLU(y + x)", "y - x", "abs(y - x) * 0.5",
                                      "-y / 2", "y @ x"]))
        out.append(f"block {bname}(c, stride = 1) {{\n  input x\n  y = {body}\n"
                   f"  output {merge if 'Concat' not in merge else 'z'}\n}}\n")
        if "Concat" in merge:
            out[-1] = out[-1].replace("  output z", f"  z = {merge}\n  output z")
    lines = [f"  input x: {shape}"]
    names = ["x"]
    for i in range(draw(st.integers(1, 4))):
        src = draw(st.sampled_from(names))
        target = f"v{i}"
        form = draw(st.integers(0, 7))
        if form == 4:  # a learned tensor, broadcast or expanded over the batch
            size = ", ".join(str(draw(st.integers(1, 16))) for _ in range(draw(st.integers(0, 3))))
            held = f"{draw(st.sampled_from(['Parameter', 'Buffer']))}({size}{draw(st.sampled_from(['', ', init=normal, std=0.02', ', init=constant, value=2', ', init=bogus']))})"
            lines.append(draw(st.sampled_from([
                f"  {target} = {src} + {held}", f"  {target} = {held}",
                f"  {target} = ({held}.expand({src}.size(0), -1, -1), {src}) -> Concat(dim=1)"])))
        elif form == 5:  # sizes as numbers, positions
            lines.append(draw(st.sampled_from([
                f"  {target} = {src}.size({draw(st.integers(-3, 3))})",
                f"  {target} = {src} -> Linear({src}.shape[-1] * 2)",
                f"  {target} = {src} + arange({src}.size({draw(st.integers(-2, 2))}))",
                f"  {target} = arange({src}.size(1)) -> Embedding(16, 4)"])))
        elif form == 6:  # tied weights and masks
            lines.append(draw(st.sampled_from([
                f"  {target} = {src} -> Embedding(20, 8) as emb -> Linear(20, weight=emb.weight)",
                f"  {target} = {src} -> Linear(8, weight=x.weight)",
                f"  {target} = {src} -> MultiheadAttention(2, key_padding_mask={src}, is_causal=true)",
                f"  {target} = scaled_dot_product_attention({src}, {src}, {src}, is_causal=true)",
                f"  {target} = ({src}, {src}) -> TransformerDecoderLayer(2, tgt_is_causal=true)"])))
        elif form == 0:
            lines.append(f"  {draw(chain(src, blocks))} -> {target}")
        elif form == 1:
            lines.append(f"  {target} = {draw(chain(src, blocks))}")
        elif form == 2 and len(names) > 1:
            a, b = draw(st.sampled_from(names)), draw(st.sampled_from(names))
            lines.append(f"  {target} = {a} {draw(st.sampled_from(['+', '*', '-']))} {b}")
        else:
            lines.append(f"  {target}, _ = {src} -> {draw(layer_call(blocks))}")
        names.append(target)
    lines.append(f"  output {draw(st.sampled_from(names))}")
    out.append("model M {\n" + "\n".join(lines) + "\n}\n")
    return "\n".join(out)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec_text())
def test_grammar_shaped_specs(text):
    outcome(text)


@st.composite
def valid_spec(draw):
    """A spec that should pass: layers chosen to fit the shape so far, residual blocks, a
    repeated block, an LSTM with three outputs now and then."""
    c0, hw0 = draw(st.sampled_from([1, 3])), draw(st.sampled_from([8, 12, 16]))
    c, hw = c0, hw0
    steps = []
    for _ in range(draw(st.integers(0, 4))):
        k = draw(st.integers(0, 5))
        if k == 0:
            c = draw(st.integers(1, 8))
            steps.append(f"Conv2d({c}, 3, padding=1)")
        elif k == 1:
            steps.append("BatchNorm2d")
        elif k == 2 and hw >= 4:
            steps.append("MaxPool2d(2)")
            hw //= 2
        elif k == 3:
            steps.append(draw(st.sampled_from(["ReLU", "GELU", "Tanh", "Dropout(0.1)", "Identity"])))
        elif k == 4:
            steps.append(f"Res({c})")
        else:
            steps.append(f"Res({c}) * {draw(st.integers(1, 2))}")
    lines = [f"  input x: [{c0}, {hw0}, {hw0}]",
             f"  x -> {' -> '.join(steps + ['Identity'])} -> features"]
    if draw(st.booleans()):  # rows as a sequence for an LSTM: three outputs, one discarded
        lines.append(f"  seq = features -> Reshape({c * hw}, {hw})")
        lines.append(f"  out, h, _ = seq -> LSTM({draw(st.integers(1, 6))})")
        lines.append("  flat = out -> Flatten")
    else:
        lines.append("  flat = features -> Flatten")
    lines.append(f"  flat -> Linear({draw(st.integers(1, 12))}) -> ReLU -> Linear({draw(st.integers(1, 5))})"
                 " -> logits")
    lines.append("  output logits")
    block = ("block Res(c) {\n  input x\n  y = x -> Conv2d(c, 3, padding=1) -> BatchNorm2d -> ReLU\n"
             "  output y + x\n}\n\n")
    return block + "model M {\n" + "\n".join(lines) + "\n}\n", (c0, hw0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_spec())
def test_valid_random_specs_build_and_run(drawn):
    """What the generator makes passes the checks, builds, and runs on a batch of the declared
    shape with the declared output shape and parameter count."""
    import torch

    text, (c0, hw) = drawn
    result = outcome(text)
    assert isinstance(result, netdsl.Spec), str(result)
    g = result.graph()
    model = result.build().eval()
    with torch.no_grad():
        out = model(torch.randn(2, c0, hw, hw))
    assert tuple(out.shape[1:]) == g.type_of(g.outputs[0].ref).shape
    n = sum(p.numel() for p in model.parameters())
    assert n == result.summary().total_params


# ---- mutations of the real specs -------------------------------------------------------------
@st.composite
def mutated_spec(draw):
    text = draw(st.sampled_from(list(SPECS.values())))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.integers(0, 5))
        if not text:
            break
        i = draw(st.integers(0, len(text) - 1))
        j = min(len(text), i + draw(st.integers(1, 12)))
        if kind == 0:  # delete a span
            text = text[:i] + text[j:]
        elif kind == 1:  # insert a token
            text = text[:i] + draw(st.sampled_from(TOKENS)) + text[i:]
        elif kind == 2:  # replace a character
            text = text[:i] + draw(st.characters(codec="utf-8")) + text[i + 1:]
        elif kind == 3:  # duplicate a line
            lines = text.split("\n")
            k = draw(st.integers(0, len(lines) - 1))
            lines.insert(k, lines[k])
            text = "\n".join(lines)
        elif kind == 4:  # swap two lines
            lines = text.split("\n")
            a, b = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[a], lines[b] = lines[b], lines[a]
            text = "\n".join(lines)
        else:  # change a number
            digits = [k for k, ch in enumerate(text) if ch.isdigit()]
            if digits:
                k = draw(st.sampled_from(digits))
                text = text[:k] + str(draw(st.integers(0, 9))) + text[k + 1:]
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_spec())
def test_mutated_specs(text):
    outcome(text)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_real_specs_load(name):
    assert isinstance(outcome(SPECS[name]), netdsl.Spec)


@pytest.mark.parametrize("text", [
    "", "\n", "model", "model M", "model M {", "}", "model M {}\n", "\x00", "model M {\r\n}\r\n",
    "model M {\n input x: [4]\r output x\n}", "model M {\n input x: [4]\x0c\n output x\n}",
    "model M {\n input x: [4]\u2028 output x\n}", "block B() {}\nmodel M {\n input x: [1]\n output B(x)\n}",
    "model M {\n input x: [99999999999999999999]\n output x\n}",
    "model M {\n input x: [4]\n output x -> Linear(10 ** 100)\n}",
    "model M {\n input x: [4]\n output x -> Linear(2) * 100000000\n}",
    "model M {\n input x: [4]\n output x -> Dropout(1e999)\n}",
    "model M {\n input x: [4]\n output x -> Reshape(" + ", ".join(["1"] * 40) + ", 4)\n}",
    "model M {\n input x: [4]\n y = " + "(" * 500 + "x" + ")" * 500 + "\n output y\n}",
    "model M {\n input x: [4]\n output x -> Linear(" + "1+" * 5000 + "1)\n}",
    "model M {\n input x: [4]\n y = " + " + ".join(["x"] * 3000) + "\n output y\n}",
    "".join(f"block B{i} {{\n input x\n output x -> B{i + 1}\n}}\n" for i in range(300))
    + "block B300 {\n input x\n output x -> ReLU\n}\nmodel M {\n input x: [4]\n output x -> B0\n}\n",
])
def test_edge_cases(text):
    outcome(text)
