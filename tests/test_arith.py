"""Tensor arithmetic and the ops attention is written with: `-`, `/`, `@`, numbers with tensors,
unary minus, abs/exp/log/sqrt, Permute, Transpose, Chunk, Split. Each against torch itself."""

from __future__ import annotations

import pytest
import torch

import netdsl
from netdsl.diagnostics import NetdslError


def model(body: str, inputs: str = "input x: [10, 32]"):
    text = "model M {\n" + "\n".join(f"  {line}" for line in inputs.split(";")) + "\n" + body + "\n}\n"
    spec = netdsl.loads(text)
    return spec, spec.build()


def error(body: str, inputs: str = "input x: [10, 32]") -> str:
    with pytest.raises(NetdslError) as exc:
        model(body, inputs)
    return str(exc.value)


def test_scaled_dot_product_attention_by_hand_matches_torch():
    spec, m = model("""
  q, k, v = x -> Linear(96, bias=false) -> Chunk(3, dim=-1)
  scores = q @ (k -> Transpose(1, 2)) / sqrt(32)
  o = (scores -> Softmax(dim=-1)) @ v
  output o""")
    torch.manual_seed(0)
    w = torch.randn(96, 32)
    m.load_state_dict({"fc1.weight": w})
    x = torch.randn(4, 10, 32)
    q, k, v = (x @ w.T).chunk(3, -1)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(m(x), want, rtol=1e-5, atol=1e-5)
    assert spec.graph().type_of(spec.graph().outputs[0].ref).shape == (10, 32)


def test_siamese_abs_difference_head():
    _, m = model("""
  ea = a -> Flatten -> Linear(16)
  eb = b -> Flatten -> Linear(16)
  output abs(ea - eb)""", "input a: [1, 4, 4];input b: [1, 4, 4]")
    a, b = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    want = (m.fc1(a.flatten(1)) - m.fc2(b.flatten(1))).abs()
    torch.testing.assert_close(m(a, b), want, rtol=0, atol=0)


EXPRESSIONS = [  # spec expression, the same in torch (x and y are the inputs)
    ("x - y", lambda x, y: x - y),
    ("x / y", lambda x, y: x / y),
    ("x * 0.5", lambda x, y: x * 0.5),
    ("0.5 * x", lambda x, y: 0.5 * x),
    ("1 - x", lambda x, y: 1 - x),
    ("x - 1", lambda x, y: x - 1),
    ("2 / x", lambda x, y: 2 / x),
    ("x ** 2", lambda x, y: x**2),
    ("2 ** x", lambda x, y: 2**x),
    ("-x", lambda x, y: -x),
    ("-x ** 2", lambda x, y: -(x**2)),
    ("-x * y + x / 4 - y", lambda x, y: -x * y + x / 4 - y),
    ("x * -0.5", lambda x, y: x * -0.5),
    ("abs(x - y)", lambda x, y: (x - y).abs()),
    ("exp(x) + log(abs(y) + 1) * sqrt(abs(x))", lambda x, y: x.exp() + (y.abs() + 1).log() * x.abs().sqrt()),
    ("x @ (y -> Transpose(1, 2))", lambda x, y: x @ y.transpose(1, 2)),
    ("x * (y -> Mean(-1, keepdim=true))", lambda x, y: x * y.mean(-1, keepdim=True)),
    ("x / sqrt(max(4, 2 * 8))", lambda x, y: x / 4.0),
]


@pytest.mark.parametrize("expr, ref", EXPRESSIONS, ids=[e for e, _ in EXPRESSIONS])
def test_expressions_mean_what_they_mean_in_torch(expr, ref):
    _, m = model(f"  out = {expr}\n  output out, y", "input x: [5, 6];input y: [5, 6]")
    torch.manual_seed(1)
    x, y = torch.randn(3, 5, 6), torch.randn(3, 5, 6)
    torch.testing.assert_close(m(x, y)[0], ref(x, y), rtol=0, atol=0)


def test_integer_division_is_true_division_as_in_torch():
    spec, m = model("  output t / 2, t * 2, t - u", "input t: [4] int64;input u: [4] int64")
    types = [spec.graph().type_of(o.ref).dtype for o in spec.graph().outputs]
    assert types == ["float32", "int64", "int64"]
    t, u = torch.arange(8).reshape(2, 4), torch.ones(2, 4, dtype=torch.int64)
    outs = m(t, u)
    assert [o.dtype for o in outs] == [torch.float32, torch.int64, torch.int64]
    torch.testing.assert_close(outs[0], t / 2)


def test_permute_transpose_chunk_split_against_torch():
    _, m = model("""
  p = x -> Unflatten(2, (4, 8)) -> Permute(0, 2, 1, 3)
  t = x -> Transpose(-1, -2)
  c1, c2, c3 = x -> Chunk(3, dim=2)
  s1, s2 = x -> Split((8, 24), -1)
  output p, t, c1, c3, s1, s2""", "input x: [10, 32]")
    x = torch.randn(2, 10, 32)
    p, t, c1, c3, _, s2 = m(x)
    torch.testing.assert_close(p, x.unflatten(2, (4, 8)).permute(0, 2, 1, 3), rtol=0, atol=0)
    torch.testing.assert_close(t, x.transpose(-1, -2), rtol=0, atol=0)
    want = x.chunk(3, 2)
    assert c1.shape == want[0].shape == (2, 10, 11) and c3.shape == want[2].shape == (2, 10, 10)
    torch.testing.assert_close(c3, want[2], rtol=0, atol=0)
    torch.testing.assert_close(s2, x[..., 8:], rtol=0, atol=0)


MISUSES = [
    ("  output x - y", "input x: [5, 6];input y: [5, 7]", "E301", "cannot subtract"),
    ("  output x @ y", "input x: [5, 6];input y: [5, 6]", "E301", "6 columns against 5 rows"),
    ("  output x @ y", "input x: [6];input y: [6, 3]", "E301", "vector per sample"),
    ("  output x % y", "input x: [6];input y: [6]", "E209", "not with '%'"),
    ("  output x // 2", "input x: [6]", "E209", "by '//'"),
    ("  output x / 0", "input x: [6]", "E301", "division by zero"),
    ("  output x * true", "input x: [6]", "E104", "not true"),
    ("  output x * foo", "input x: [6]", "E201", "undefined name 'foo'"),
    ("  output t ** -1", "input t: [6] int64", "E303", "negative integer power"),
    ("  output -t", "input t: [6] bool", "E303", "negate"),
    ("  output exp(t)", "input t: [6] int64", "E303", "floating-point"),
    ("  a, b, c = x -> Chunk(3, dim=1)\n  output a, b, c", "input x: [4, 2]", "E301", "gives 2 chunks"),
    ("  a = x -> Chunk(2)\n  output a", "input x: [4, 2]", "E103", "'dim'"),
    ("  a = x -> Chunk(2, dim=0)\n  output a", "input x: [4, 2]", "E301", "batch"),
    ("  a, b = x -> Split((3, 3), dim=1)\n  output a, b", "input x: [4, 2]", "E301", "add up to 6"),
    ("  a = x -> Split(2, dim=1)\n  output a", "input x: [4, 2]", "E104", "give each size"),
    ("  output x -> Permute(1, 0, 2)", "input x: [4, 2]", "E301", "moves the batch"),
    ("  output x -> Permute(0, 1)", "input x: [4, 2]", "E301", "each of 0..2 once"),
    ("  output x -> Transpose(0, 1)", "input x: [4, 2]", "E301", "batch dimension"),
    ("  output x * (1 @ 2)", "input x: [4]", "E104", "multiplies matrices"),
    ("  output x - y", "input x: [4] bool;input y: [4] bool", "E303", "subtract bool"),
    ("  a, b = x -> Chunk(2, dim=1)\n  output a -> ReLU(inplace=true), b", "input x: [4, 2]", "E301",
     "one of several views"),
]


@pytest.mark.parametrize("body, inputs, code, words", MISUSES, ids=[m[0].strip() for m in MISUSES])
def test_misuse_is_a_located_error(body, inputs, code, words):
    text = error(body, inputs)
    assert f"error[{code}]" in text and words in text, text


def test_scalar_functions_in_arguments():
    _, m = model("  output x -> Linear(max(8, int(24 * 0.75)))", "input x: [4]")
    assert m.fc1.out_features == 18
    assert "E104" in error("  output x -> Linear(int(sqrt(-1)))", "input x: [4]")


def test_generated_source_uses_torch_operators():
    from netdsl.targets.compile import compile_spec

    spec, _ = model("  q = abs(x - y) @ (x -> Transpose(1, 2)) / 2\n  output -q * 0.5",
                    "input x: [5, 6];input y: [5, 6]")
    src = compile_spec(spec)
    for line in ("torch.abs(", " @ ", ".transpose(1, 2)", " / 2", "= -q", " * 0.5"):
        assert line in src, (line, src)
