"""Differential tests of the op vocabulary against real torch.

Every registered op is built from its declaration (`ctor_args()` into the torch constructor, or
the code `forward_lines` emits for functional ops), run on a random batch, and compared with
what the declaration says: output shapes and dtypes (`shape()`), parameter counts
(`param_count()`), and the constructor signature (field order and defaults). Invalid inputs
must raise ShapeError; invalid argument values must be rejected by validation.
"""

from __future__ import annotations

import importlib
import inspect

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from netdsl.ir.types import INT_DTYPES
from netdsl.ir.types import TensorType as T
from netdsl.ops import OPS, ShapeError, op_adapter
from netdsl.ops.base import Extra, Inferred, _marker

torch.manual_seed(0)
pytestmark = [pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel"),
              pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")]


# ---- helpers -------------------------------------------------------------------------------

def build(spec: dict, ins: list[T]):
    """Validate a spec and fill in its inferred fields from the input types."""
    op = op_adapter().validate_python(spec)
    return op.model_copy(update=op.infer(ins))


def torch_class(cls):
    """The class an op declaration names: `nn.Conv2d`, `torchvision.ops.StochasticDepth`."""
    module, _, name = cls.torch.rpartition(".")
    return getattr(torch.nn if module == "nn" else importlib.import_module(module), name)


def make_module(op):
    if op.torch is None:
        return None
    args, kwargs = op.ctor_args()
    return torch_class(type(op))(*args, **kwargs)


def rand(t: T, batch: int, high: int = 10) -> torch.Tensor:
    dtype = getattr(torch, t.dtype)
    if t.dtype in INT_DTYPES:
        return torch.randint(0, high, (batch, *t.shape), dtype=dtype)
    return torch.randn(batch, *t.shape, dtype=dtype)


def run(op, module, ins: list[T], batch: int, high: int = 10) -> list[torch.Tensor]:
    """Apply the op the way generated code does: through `forward_lines`."""
    names = [f"x{i}" for i in range(len(ins))]
    outs = [f"y{i}" for i in range(len(op.outputs))]
    ns = {"torch": torch, "F": torch.nn.functional, "m": module, "self": torch.nn.Module(), **{n: rand(t, batch, high) for n, t in zip(names, ins)}}
    code = "\n".join(op.forward_lines("m" if module is not None else None, names, outs))
    exec(code, ns)  # noqa: S102
    return [ns[o] for o in outs]


def types(*shapes, dtype="float32") -> list[T]:
    return [T(shape=s, dtype=dtype) for s in shapes]


def C(spec: dict, *shapes, dtype="float32", batches=(2, 1)):
    """One configuration: a spec (op name first) and the input shapes (batch excluded)."""
    return pytest.param(spec, types(*shapes, dtype=dtype), batches,
                        id=f"{spec['op']}-" + ",".join(f"{k}={v}" for k, v in spec.items() if k != "op")
                        + "-" + "+".join("x".join(map(str, s)) or "scalar" for s in shapes)
                        + ("" if dtype == "float32" else f"-{dtype}"))


def op(name, **kw):
    return {"op": name, **kw}


# ---- the table: every op, several realistic configurations ----------------------------------

CASES = [
    # activations
    C(op("ReLU"), (3, 4, 4)), C(op("ReLU", inplace=True), (7,)), C(op("ReLU"), (5,), dtype="float64"),
    C(op("ReLU"), (2, 3), dtype="int64"),
    C(op("LeakyReLU"), (3, 5)), C(op("LeakyReLU", negative_slope=0.2, inplace=True), (2, 3, 3)),
    C(op("GELU"), (8,)), C(op("GELU", approximate="tanh"), (4, 6), dtype="float64"),
    C(op("SiLU"), (3, 4)), C(op("SiLU", inplace=True), (6,)),
    C(op("ELU"), (5,)), C(op("ELU", alpha=0.5), (2, 4, 4)),
    C(op("Tanh"), (5,)), C(op("Tanh"), (3, 2), dtype="float64"),
    C(op("Sigmoid"), (1,)), C(op("Sigmoid"), (4, 3, 2)),
    C(op("Hardswish"), (6,)), C(op("Hardswish", inplace=True), (3, 3)),
    C(op("ReLU6"), (3, 4)), C(op("ReLU6", inplace=True), (5,)), C(op("ReLU6"), (2, 3), dtype="int64"),
    C(op("ReLU6"), (4,), dtype="uint8"),
    C(op("Hardtanh"), (6,)), C(op("Hardtanh", min_val=-2.5, max_val=0.5, inplace=True), (3, 4)),
    C(op("Hardtanh", min_val=0, max_val=3), (2, 5), dtype="int32"),
    C(op("Hardtanh", min_val=0.0, max_val=200), (4,), dtype="uint8"),
    C(op("Hardtanh", min_val=-6e4, max_val=6e4), (3,), dtype="float16"),
    C(op("Hardsigmoid"), (7,)), C(op("Hardsigmoid", inplace=True), (2, 3), dtype="float64"),
    C(op("PReLU"), (3, 4, 4)), C(op("PReLU", num_parameters=3, init=0.1), (3, 5)),
    C(op("PReLU", num_parameters=2, init=-1), (2, 3, 3, 3)), C(op("PReLU"), ()),
    C(op("Mish"), (5,)), C(op("Mish", inplace=True), (2, 4), dtype="float64"),
    C(op("Softplus"), (4,)), C(op("Softplus", beta=2, threshold=0.5), (3, 3)),
    C(op("Softplus", beta=1e30, threshold=1e38), (2, 2), dtype="float16"),
    C(op("LeakyReLU", negative_slope=1e30), (3,), dtype="bfloat16"),
    C(op("Softmax", dim=-1), (10,)), C(op("Softmax", dim=1), (3, 4)), C(op("Softmax", dim=2), (3, 4, 5)),
    C(op("LogSoftmax", dim=-1), (10,)), C(op("LogSoftmax", dim=1), (3, 4), dtype="float64"),
    # dense
    C(op("Linear", out_features=5), (10,)), C(op("Linear", out_features=3, bias=False), (4, 6)),
    C(op("Linear", in_features=7, out_features=2), (2, 3, 7)),
    C(op("Linear", out_features=4), (6,), dtype="float64"),
    C(op("Bilinear", out_features=4), (3,), (5,)),
    C(op("Bilinear", out_features=2, bias=False), (6, 3), (6, 2)),
    C(op("Bilinear", in1_features=3, in2_features=3, out_features=1), (3,), (3,)),
    C(op("Embedding", num_embeddings=10, embedding_dim=4), (7,), dtype="int64"),
    C(op("Embedding", num_embeddings=10, embedding_dim=3, padding_idx=0), (2, 5), dtype="int64"),
    C(op("Embedding", num_embeddings=10, embedding_dim=6, max_norm=1.0, norm_type=1.0,
         scale_grad_by_freq=True), (4,), dtype="int64"),
    C(op("Embedding", num_embeddings=10, embedding_dim=6, sparse=True), (4,), dtype="int64"),
    C(op("Embedding", num_embeddings=10, embedding_dim=2, padding_idx=-1), (3,), dtype="int32"),
    C(op("Identity"), (3, 4)), C(op("Identity"), (5,), dtype="int64"),
    # convolutions
    C(op("Conv1d", out_channels=4, kernel_size=3), (2, 10)),
    C(op("Conv1d", out_channels=6, kernel_size=5, stride=2, padding=2, dilation=2, groups=3, bias=False),
      (3, 17)),
    C(op("Conv1d", out_channels=4, kernel_size=4, padding="same", padding_mode="reflect"), (2, 9)),
    C(op("Conv1d", out_channels=2, kernel_size=3, padding="valid"), (1, 5), dtype="float64"),
    C(op("Conv2d", out_channels=6, kernel_size=5), (1, 28, 28)),
    C(op("Conv2d", out_channels=8, kernel_size=(3, 1), stride=(2, 1), padding=(1, 0)), (3, 9, 7)),
    C(op("Conv2d", out_channels=4, kernel_size=3, padding=2, dilation=2, groups=4), (4, 6, 6)),
    C(op("Conv2d", out_channels=4, kernel_size=3, padding=1, padding_mode="circular", bias=False), (2, 5, 5)),
    C(op("Conv2d", out_channels=2, kernel_size=2, padding="same", dilation=(1, 2)), (2, 5, 6)),
    C(op("Conv2d", in_channels=3, out_channels=4, kernel_size=3, stride=3, padding=1,
         padding_mode="replicate"), (3, 8, 8), dtype="float64"),
    C(op("Conv3d", out_channels=2, kernel_size=3), (1, 5, 5, 5)),
    C(op("Conv3d", out_channels=4, kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), groups=2),
      (2, 3, 6, 7)),
    C(op("ConvTranspose1d", out_channels=3, kernel_size=4, stride=2, padding=1), (2, 8)),
    C(op("ConvTranspose1d", out_channels=4, kernel_size=3, stride=3, output_padding=2, groups=2,
         bias=False, dilation=2), (2, 5)),
    C(op("ConvTranspose2d", out_channels=6, kernel_size=2, stride=2), (4, 7, 7)),
    C(op("ConvTranspose2d", out_channels=4, kernel_size=(3, 5), stride=(2, 1), padding=(1, 2),
         output_padding=(1, 0)), (3, 4, 4)),
    C(op("ConvTranspose2d", out_channels=2, kernel_size=3, dilation=3, output_padding=2, groups=2),
      (4, 3, 3), dtype="float64"),
    C(op("ConvTranspose3d", out_channels=2, kernel_size=2, stride=2), (3, 2, 3, 3)),
    C(op("ConvTranspose3d", out_channels=4, kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1),
         output_padding=(0, 1, 1), groups=2, bias=False), (2, 3, 4, 4)),
    C(op("ConvTranspose3d", in_channels=1, out_channels=2, kernel_size=3, dilation=2), (1, 2, 2, 2),
      dtype="float64"),
    # merges
    C(op("Add"), (3, 4, 4), (3, 4, 4)), C(op("Add"), (3, 4, 4), (3, 1, 1)), C(op("Add"), (1, 5), (4, 1)),
    C(op("Add"), (6,), (6,), (6,)), C(op("Add"), (2, 3), (2, 3), dtype="int64"),
    C(op("Mul"), (3, 4), (3, 4)), C(op("Mul"), (8, 2, 2), (8, 1, 1), dtype="float64"),
    C(op("Mul"), (5,), (1,), (5,)),
    C(op("Concat", dim=1), (2, 4, 4), (3, 4, 4)), C(op("Concat", dim=-1), (5, 3), (5, 4), (5, 1)),
    C(op("Concat", dim=2), (2, 3, 4), (2, 1, 4)), C(op("Concat", dim=1), (3,), (4,), dtype="int64"),
    # normalisation and dropout
    C(op("BatchNorm1d"), (5,)), C(op("BatchNorm1d", affine=False), (4, 7)),
    C(op("BatchNorm1d", eps=1e-3, momentum=None, track_running_stats=False), (3, 6)),
    C(op("BatchNorm1d", bias=False), (3,)),
    C(op("BatchNorm2d"), (3, 4, 4)), C(op("BatchNorm2d", num_features=2, momentum=0.5), (2, 3, 3)),
    C(op("BatchNorm2d", affine=False, track_running_stats=False), (4, 2, 2), dtype="float64"),
    C(op("BatchNorm3d"), (3, 2, 4, 4)), C(op("BatchNorm3d", num_features=2, affine=False, momentum=None), (2, 3, 3, 3)),
    C(op("BatchNorm3d", bias=False, eps=1e-3), (4, 2, 2, 2), dtype="float64"),
    C(op("InstanceNorm2d"), (3, 4, 4)), C(op("InstanceNorm2d", affine=True), (2, 5, 5)),
    C(op("InstanceNorm2d", affine=True, track_running_stats=True, bias=False), (2, 3, 3)),
    C(op("LayerNorm"), (10,)), C(op("LayerNorm"), (5, 8)),
    C(op("LayerNorm", normalized_shape=(4, 5)), (3, 4, 5)),
    C(op("LayerNorm", elementwise_affine=False), (6,)), C(op("LayerNorm", bias=False, eps=1e-6), (2, 6)),
    C(op("LayerNorm", normalized_shape=6), (2, 6), dtype="float64"),
    C(op("GroupNorm", num_groups=2), (4, 3, 3)), C(op("GroupNorm", num_groups=1, affine=False), (3, 5)),
    C(op("GroupNorm", num_groups=3, num_channels=6, eps=1e-3), (6,)),
    C(op("GroupNorm", num_groups=2, bias=False), (4, 2, 2)),
    C(op("Dropout"), (10,)), C(op("Dropout", p=0.1, inplace=True), (3, 4)), C(op("Dropout", p=0), (2, 2, 2)),
    C(op("Dropout", p=1), (4,), dtype="float64"),
    C(op("Dropout2d"), (3, 4, 4)), C(op("Dropout2d", p=0.2), (2, 5, 5)),
    C(op("StochasticDepth", p=0.2, mode="row"), (3, 4)), C(op("StochasticDepth", p=0.5, mode="batch"), (2, 3, 3)),
    C(op("StochasticDepth", p=1, mode="row"), (5,), dtype="float64"),
    C(op("StochasticDepth", p=0, mode="batch"), (4,), dtype="bfloat16"),
    # pooling
    C(op("MaxPool1d", kernel_size=2), (3, 8)),
    C(op("MaxPool1d", kernel_size=3, stride=2, ceil_mode=True), (2, 10)),
    C(op("MaxPool1d", kernel_size=3, stride=1, padding=1, dilation=2), (9,)),
    C(op("MaxPool2d", kernel_size=2), (3, 8, 8)), C(op("MaxPool2d", kernel_size=2), (7, 7)),
    C(op("MaxPool2d", kernel_size=3, stride=2, padding=1, ceil_mode=True), (2, 8, 8)),
    C(op("MaxPool2d", kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1)), (1, 6, 7)),
    C(op("MaxPool2d", kernel_size=3, stride=2, ceil_mode=True), (1, 6, 6), dtype="float64"),
    C(op("MaxPool2d", kernel_size=2), (1, 4, 4), dtype="int64"),
    C(op("MaxPool3d", kernel_size=2), (2, 4, 4, 4)), C(op("MaxPool3d", kernel_size=3, stride=2), (5, 5, 5)),
    C(op("MaxPool3d", kernel_size=(1, 2, 2), stride=(1, 2, 1), padding=(0, 1, 0), dilation=(1, 1, 2),
         ceil_mode=True), (3, 5, 6, 7)),
    C(op("MaxPool3d", kernel_size=2), (1, 2, 2, 2), dtype="float16"),
    C(op("AvgPool1d", kernel_size=3), (2, 9)),
    C(op("AvgPool1d", kernel_size=4, stride=3, padding=2, ceil_mode=True, count_include_pad=False), (2, 10)),
    C(op("AvgPool2d", kernel_size=2), (3, 6, 6)),
    C(op("AvgPool2d", kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), (2, 7, 7)),
    C(op("AvgPool2d", kernel_size=(2, 4), divisor_override=3), (5, 9)),
    C(op("AvgPool2d", kernel_size=2, stride=1), (2, 3, 3), dtype="int64"),
    C(op("AvgPool3d", kernel_size=2), (2, 4, 4, 4)), C(op("AvgPool3d", kernel_size=2), (4, 4, 4), dtype="float64"),
    C(op("AvgPool3d", kernel_size=(3, 2, 2), stride=1, padding=1, ceil_mode=True, count_include_pad=False,
         divisor_override=5), (1, 4, 5, 6)),
    C(op("AdaptiveAvgPool1d", output_size=3), (2, 10)), C(op("AdaptiveAvgPool1d", output_size=4), (7,)),
    C(op("AdaptiveAvgPool2d", output_size=1), (8, 5, 5)),
    C(op("AdaptiveAvgPool2d", output_size=(2, 3)), (3, 7, 9)),
    C(op("AdaptiveAvgPool2d", output_size=(None, 2)), (3, 4, 6), dtype="float64"),
    C(op("AdaptiveMaxPool2d", output_size=2), (3, 5, 5)),
    C(op("AdaptiveMaxPool2d", output_size=(3, None)), (6, 4)),
    C(op("AdaptiveAvgPool3d", output_size=1), (3, 4, 4, 4)),
    C(op("AdaptiveAvgPool3d", output_size=(2, None, 3)), (2, 5, 6, 7)),
    C(op("AdaptiveAvgPool3d", output_size=2), (4, 5, 6), dtype="float64"),
    C(op("AdaptiveMaxPool1d", output_size=3), (2, 10)), C(op("AdaptiveMaxPool1d", output_size=4), (7,)),
    C(op("AdaptiveMaxPool1d", output_size=(5,)), (3, 5), dtype="float16"),
    # arithmetic (ops/arith.py): shapes and dtypes as torch computes them
    C(op("Sub"), (3, 4), (3, 4)), C(op("Sub"), (3, 4), (1, 4)), C(op("Sub"), (3,), (3,), dtype="int64"),
    C(op("Div"), (3, 4), (3, 1)), C(op("Div"), (5,), (5,), dtype="int64"),
    C(op("MatMul"), (3, 4), (4, 5)), C(op("MatMul"), (2, 3, 4), (1, 4, 6)),
    C(op("MatMul"), (2, 3, 4), (2, 4, 1), dtype="float64"),
    C(op("Scalar", symbol="*", value=0.5), (3, 4)), C(op("Scalar", symbol="-", value=1, reverse=True), (3,)),
    C(op("Scalar", symbol="/", value=2), (4,), dtype="int64"),
    C(op("Scalar", symbol="*", value=2), (4,), dtype="int64"),
    C(op("Scalar", symbol="*", value=0.5), (4,), dtype="int32"),
    C(op("Scalar", symbol="**", value=2), (4,), dtype="int64"),
    C(op("Scalar", symbol="**", value=-1.5), (4,)),
    C(op("Neg"), (3, 4)), C(op("Neg"), (3,), dtype="int64"),
    C(op("abs"), (3, 4)), C(op("abs"), (3,), dtype="int64"), C(op("exp"), (3, 4)),
    C(op("log"), (3,), dtype="float64"), C(op("sqrt"), (2, 2)),
    C(op("Permute", dims=(0, 2, 1)), (3, 4)), C(op("Permute", dims=(0, -1, 1, 2)), (2, 3, 4)),
    C(op("Transpose", dim0=1, dim1=2), (3, 4)), C(op("Transpose", dim0=-1, dim1=1), (2, 3, 4)),
    C(op("Chunk", chunks=3, dim=1), (7, 2)), C(op("Chunk", chunks=2, dim=-1), (3, 4), dtype="int64"),
    C(op("Split", split_size_or_sections=(1, 3), dim=-1), (2, 4)),
    C(op("Split", split_size_or_sections=(2, 2, 1), dim=1), (5,)),
    # sequences
    C(op("RNN", hidden_size=8), (5, 3)),
    C(op("RNN", hidden_size=4, num_layers=2, nonlinearity="relu", bidirectional=True, dropout=0.1), (6, 3)),
    C(op("RNN", input_size=3, hidden_size=5, bias=False), (4, 3), dtype="float64"),
    C(op("LSTM", hidden_size=8), (5, 3)),
    C(op("LSTM", hidden_size=6, num_layers=2, bidirectional=True), (4, 5)),
    C(op("LSTM", hidden_size=6, num_layers=3, proj_size=2, bias=False), (4, 5)),
    C(op("LSTM", hidden_size=5, num_layers=2, proj_size=3, bidirectional=True, dropout=0.2), (3, 4)),
    C(op("GRU", hidden_size=8), (5, 3)),
    C(op("GRU", hidden_size=4, num_layers=2, bidirectional=True, bias=False), (6, 2)),
    C(op("GRU", hidden_size=3, num_layers=3), (2, 7), dtype="float64"),
    C(op("MultiheadAttention", num_heads=2), (5, 8)),
    C(op("scaled_dot_product_attention"), (2, 5, 4), (2, 7, 4), (2, 7, 3)),
    C(op("scaled_dot_product_attention", is_causal=True, scale=0.5), (3, 6, 8), (3, 6, 8), (3, 6, 8)),
    C(op("scaled_dot_product_attention", dropout=0.2), (5, 4), (5, 4), (5, 4)),
    C(op("scaled_dot_product_attention"), (2, 5, 4), (2, 7, 4), (2, 7, 4), (2, 5, 7)),
    C(op("scaled_dot_product_attention"), (3, 4), (3, 4), (3, 4), dtype="float64"),
    C(op("MultiheadAttention", num_heads=1, bias=False, add_bias_kv=True), (4, 6)),
    C(op("MultiheadAttention", num_heads=2, add_zero_attn=True, dropout=0.1), (3, 4)),
    C(op("MultiheadAttention", num_heads=2), (5, 8), (7, 8), (7, 8)),
    C(op("MultiheadAttention", num_heads=2, kdim=6, vdim=3), (5, 8), (7, 6), (7, 3)),
    C(op("MultiheadAttention", num_heads=4, kdim=5, vdim=5, add_bias_kv=True, add_zero_attn=True),
      (2, 8), (3, 5), (3, 5)),
    C(op("MultiheadAttention", num_heads=2), (4, 6), dtype="float64"),
    C(op("TransformerEncoderLayer", nhead=2, dim_feedforward=16), (5, 8)),
    C(op("TransformerEncoderLayer", nhead=2, dim_feedforward=16, is_causal=True), (5, 8)),
    C(op("TransformerDecoderLayer", nhead=2, dim_feedforward=16), (5, 8), (7, 8)),
    C(op("TransformerDecoderLayer", nhead=4, dim_feedforward=8, activation="gelu", norm_first=True,
         bias=False, tgt_is_causal=True), (3, 8), (4, 8)),
    C(op("TransformerDecoderLayer", nhead=1, dim_feedforward=6), (2, 4), (3, 4), dtype="float64"),
    C(op("MultiheadAttention", num_heads=2, is_causal=True), (5, 8)),
    C(op("TransformerEncoderLayer", nhead=4, dim_feedforward=8, activation="gelu", norm_first=True,
         dropout=0.0, layer_norm_eps=1e-6), (3, 8)),
    C(op("TransformerEncoderLayer", nhead=1, dim_feedforward=12, bias=False), (4, 6)),
    C(op("TransformerEncoderLayer", nhead=2, dim_feedforward=32), (6, 4), dtype="float64"),
    # shape ops
    C(op("Flatten"), (3, 4, 5)), C(op("Flatten"), (7,)), C(op("Flatten", start_dim=2), (2, 3, 4)),
    C(op("Flatten", start_dim=1, end_dim=-2), (2, 3, 4)), C(op("Flatten", start_dim=-2), (2, 3, 4)),
    C(op("Flatten", start_dim=1, end_dim=2), (2, 3, 4, 5), dtype="int64"),
    C(op("Unflatten", dim=1, unflattened_size=(3, 4)), (12,)),
    C(op("Unflatten", dim=-1, unflattened_size=(2, 2, 2)), (3, 8)),
    C(op("Unflatten", dim=2, unflattened_size=(5, 1)), (2, 5, 3)),
    C(op("Reshape", shape_=(4, 7, 7)), (196,)), C(op("Reshape", shape_=(-1,)), (2, 3, 4)),
    C(op("Reshape", shape_=(2, -1)), (3, 4)), C(op("Reshape", shape_=(6, 1)), (2, 3), dtype="float64"),
    C(op("Select", dim=1, index=-1), (5, 8)), C(op("Select", dim=-1, index=2), (3, 4)),
    C(op("Select", dim=2, index=0), (2, 3, 4), dtype="int64"),
    C(op("Mean", dim=1), (5, 8)), C(op("Mean", dim=-1, keepdim=True), (3, 4)),
    C(op("Mean", dim=2), (2, 3, 4), dtype="float64"),
    C(op("Upsample", scale_factor=2), (3, 4, 4)),
    C(op("Upsample", size=(6, 8), mode="bilinear", align_corners=True), (2, 3, 5)),
    C(op("Upsample", scale_factor=1.5, mode="linear"), (2, 5)),
    C(op("Upsample", size=7, mode="nearest-exact"), (1, 3)),
    C(op("Upsample", scale_factor=(2, 0.5), mode="bicubic"), (1, 4, 6)),
    C(op("Upsample", scale_factor=2, mode="trilinear", align_corners=False), (1, 2, 3, 2)),
    C(op("Upsample", scale_factor=1.7), (2, 5, 3), dtype="float64"),
    C(op("Upsample", scale_factor=1.7, recompute_scale_factor=True), (2, 5, 3)),
    # spatial rearrangements
    C(op("PixelShuffle", upscale_factor=2), (8, 3, 3)), C(op("PixelShuffle", upscale_factor=1), (3, 4, 5)),
    C(op("PixelShuffle", upscale_factor=3), (2, 9, 2, 2), dtype="int64"),
    C(op("PixelUnshuffle", downscale_factor=2), (2, 4, 6)),
    C(op("PixelUnshuffle", downscale_factor=3), (1, 3, 6), dtype="uint8"),
    C(op("ZeroPad2d", padding=1), (3, 4, 4)), C(op("ZeroPad2d", padding=(1, 0, 2, -1)), (5, 6)),
    C(op("ZeroPad2d", padding=(-1, -1, 0, 3)), (2, 3, 4, 4), dtype="int64"),
    C(op("ConstantPad2d", padding=2, value=0.5), (3, 3, 3)),
    C(op("ConstantPad2d", padding=(0, 1, 1, 0), value=-3), (4, 4), dtype="int32"),
    C(op("ConstantPad2d", padding=(1, 2, 3, 4), value=6e4), (2, 2), dtype="float16"),
]


# Ops that make or take values without a batch, which this table's harness cannot feed:
# tests/test_tensors.py runs each in whole specs against hand-written torch.
WITHOUT_BATCH = {"Parameter", "Buffer", "arange", "expand"}
# Stacks built from a layer given to them: tests/test_transformer.py, with masks, against torch.
STACKS = {"TransformerEncoder", "TransformerDecoder"}


def test_every_op_is_covered():
    covered = {c.values[0]["op"] for c in CASES} | WITHOUT_BATCH | STACKS
    assert covered == set(OPS), f"ops without differential cases: {sorted(set(OPS) - covered)}"


@pytest.mark.parametrize("spec, ins, batches", CASES)
def test_against_torch(spec, ins, batches):
    o = build(spec, ins)
    outs = o.shape(ins)
    assert len(outs) == len(o.outputs)
    module = make_module(o)
    if module is not None:
        module = module.to(getattr(torch, ins[0].dtype) if ins[0].dtype not in INT_DTYPES else torch.float32)
        assert o.param_count() == sum(p.numel() for p in module.parameters())
    else:
        assert o.param_count() == 0
    high = spec.get("num_embeddings", 10)
    with torch.no_grad():
        for batch in batches:
            if module is not None:
                module.train(batch > 1)  # batch norm cannot train on one sample
            got = run(o, module, ins, batch, high)
            for want, y in zip(outs, got):
                assert tuple(y.shape) == (batch, *want.shape), f"torch {tuple(y.shape)}, shape() {want}"
                assert str(y.dtype).removeprefix("torch.") == want.dtype
    assert o.macs(ins, outs) >= 0


# ---- the declarations match the torch constructors -------------------------------------------

# nn.RNN & co. take *args, **kwargs; their documented signatures:
_RNN_SIG = ["input_size", "hidden_size", "num_layers", "nonlinearity", "bias", "batch_first", "dropout",
            "bidirectional", "proj_size"]
_RNN_DEFAULTS = {"num_layers": 1, "nonlinearity": "tanh", "bias": True, "batch_first": False,
                 "dropout": 0.0, "bidirectional": False, "proj_size": 0}
# Where netdsl's default deliberately differs (activation by name).
_TRANSLATED = {("TransformerEncoderLayer", "activation"), ("TransformerDecoderLayer", "activation")}


def _torch_signature(cls):
    if cls.kind in ("RNN", "LSTM", "GRU"):
        names = [n for n in _RNN_SIG if n != "nonlinearity" or cls.kind == "RNN"]
        names = [n for n in names if n != "proj_size" or cls.kind == "LSTM"]
        return {n: _RNN_DEFAULTS.get(n, inspect.Parameter.empty) for n in names}
    ctor = torch_class(cls).__init__
    return {n: p.default for n, p in list(inspect.signature(ctor).parameters.items())[1:]
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


@pytest.mark.parametrize("name", sorted(n for n, c in OPS.items() if c.torch and n not in WITHOUT_BATCH | STACKS))
def test_fields_follow_torch_signature(name):  # (a Parameter's fields describe its tensor)
    cls = OPS[name]
    sig = _torch_signature(cls)
    fields = {n: f for n, f in cls.model_fields.items() if n != "op" and not _marker(f, Extra)}
    order = list(sig)
    assert set(fields) <= set(sig), f"{name}: fields not in torch: {set(fields) - set(sig)}"
    idx = [order.index(n) for n in fields]
    assert idx == sorted(idx), f"{name}: field order {list(fields)} differs from torch {order}"
    for n, f in fields.items():
        if _marker(f, Inferred):
            assert sig[n] is inspect.Parameter.empty or sig[n] is None, f"{name}.{n} is optional in torch"
        elif f.is_required():
            assert sig[n] is inspect.Parameter.empty, f"{name}.{n} has a default in torch"
        elif (name, n) not in _TRANSLATED:
            assert f.default == sig[n] and type(f.default) is type(sig[n]), \
                f"{name}.{n}: default {f.default!r}, torch {sig[n]!r}"
    for n in cls.fixed:
        assert n in sig and n not in fields
    # torch's positional order, as netdsl reads a call written the torch way, is torch's own
    positional = cls.torch_fields()
    if cls.kind not in ("RNN", "LSTM", "GRU"):
        params = inspect.signature(torch_class(cls).__init__).parameters
        order = [n for n in order if params[n].kind is not inspect.Parameter.KEYWORD_ONLY]
    assert positional == order[:len(positional)], \
        f"{name}: positional order {positional} is not torch's {order[:len(positional)]}"


@pytest.mark.parametrize("name", sorted(OPS))
def test_ctor_args_use_torch_names(name):
    """ctor_args passes torch's leading parameters positionally and the rest by torch's names."""
    for c in CASES:
        if c.values[0]["op"] == name:
            o = build(c.values[0], c.values[1])
            args, kwargs = o.ctor_args()
            if o.torch:
                sig = _torch_signature(type(o))
                assert len(args) <= len(sig)
                assert set(kwargs) <= set(list(sig)[len(args):])


def test_recurrent_partial_outputs():
    ins = types((5, 3))
    lstm = build(op("LSTM", hidden_size=4, num_layers=2), ins)
    m = make_module(lstm)
    outs = lstm.shape(ins)
    ns = {"torch": torch, "m": m, "x": torch.randn(2, 5, 3)}
    exec("\n".join(lstm.forward_lines("m", ["x"], ["y", None, "c"])), ns)  # noqa: S102
    assert tuple(ns["y"].shape) == (2, *outs[0].shape) and tuple(ns["c"].shape) == (2, *outs[2].shape)
    exec("\n".join(lstm.forward_lines("m", ["x"], ["z", None, None])), ns)  # noqa: S102
    assert tuple(ns["z"].shape) == (2, *outs[0].shape)
    attn = build(op("MultiheadAttention", num_heads=2), types((5, 4)))
    ns["a"] = make_module(attn)
    ns["x"] = torch.randn(2, 5, 4)
    exec("\n".join(attn.forward_lines("a", ["x"], ["o", None])), ns)  # noqa: S102
    assert tuple(ns["o"].shape) == (2, 5, 4)


# ---- shape errors --------------------------------------------------------------------------

def B(spec: dict, *shapes, arg=None, dtype="float32", stricter=False):
    """A configuration shape inference must refuse (`arg`: the argument blamed). `stricter`: netdsl
    refuses what torch would run (a guessed dim, silent dtype promotion)."""
    ins = [s if isinstance(s, T) else T(shape=s, dtype=dtype) for s in shapes]
    return pytest.param(spec, ins, arg, stricter, id=f"{spec['op']}-" + "+".join(map(str, ins)))


BAD_SHAPES = [
    B(op("Conv2d", out_channels=4, kernel_size=3), (3, 8)),  # wrong rank
    B(op("Conv2d", out_channels=4, kernel_size=3), (8, 8, 8, 8)),
    B(op("Conv1d", out_channels=4, kernel_size=3), (3, 4, 4)),
    B(op("Conv2d", out_channels=4, kernel_size=5), (3, 4, 4), arg="kernel_size"),  # kernel too large
    B(op("Conv2d", out_channels=4, kernel_size=3, dilation=3), (3, 6, 6), arg="kernel_size"),
    B(op("Conv2d", in_channels=3, out_channels=4, kernel_size=3), (2, 8, 8), arg="in_channels"),
    B(op("Conv2d", out_channels=4, kernel_size=3, groups=2), (3, 8, 8), arg="groups"),
    B(op("Conv2d", out_channels=3, kernel_size=3, groups=2), (4, 8, 8), arg="groups"),
    B(op("Conv2d", out_channels=3, kernel_size=3, stride=2, padding="same"), (4, 8, 8), arg="padding"),
    B(op("Conv2d", out_channels=3, kernel_size=1, padding=4, padding_mode="reflect"), (1, 4, 4), arg="padding"),
    B(op("Conv3d", out_channels=2, kernel_size=3), (1, 5, 5)),
    B(op("ConvTranspose2d", out_channels=2, kernel_size=3, stride=2, output_padding=2), (1, 4, 4),
      arg="output_padding"),
    B(op("ConvTranspose1d", out_channels=2, kernel_size=1, padding=3), (1, 4), arg="kernel_size"),
    B(op("Linear", out_features=4), ()),
    B(op("Linear", in_features=10, out_features=4), (12,), arg="in_features"),
    B(op("Bilinear", out_features=4), (3, 2), (4, 2)),
    B(op("Bilinear", in1_features=3, out_features=4), (2,), (2,), arg="in1_features"),
    B(op("Embedding", num_embeddings=5, embedding_dim=3), (4,)),  # float indices
    B(op("Embedding", num_embeddings=5, embedding_dim=3), (4,), dtype="uint8"),
    B(op("Embedding", num_embeddings=5, embedding_dim=3, padding_idx=5), (4,), dtype="int64",
      arg="padding_idx"),
    B(op("Softmax"), (10,), stricter=True),  # no dim: torch would guess one
    B(op("Softmax", dim=3), (3, 4), arg="dim"),
    B(op("Softmax", dim=0), (3, 4), arg="dim", stricter=True),  # torch: over the batch; refused
    B(op("LogSoftmax", dim=-3), (3, 4), arg="dim", stricter=True),  # torch: the batch dim
    B(op("Add"), (3, 4), (3, 5)),
    B(op("Add"), (3, 4, 4), (4,)),  # ranks differ: torch would align the batch with a feature dim
    B(op("Mul"), T(shape=(3,)), T(shape=(3,), dtype="float64"), stricter=True),  # mixed dtypes
    B(op("Concat", dim=1), (3, 4), (3, 5), arg="dim"), B(op("Concat", dim=0), (3, 4), (3, 4), arg="dim", stricter=True),
    B(op("Concat", dim=3), (3, 4), (3, 4), arg="dim"),
    B(op("Concat", dim=1), (3, 4), (3, 4, 1), arg="dim"),
    B(op("BatchNorm1d"), (2, 3, 4)),
    B(op("BatchNorm2d"), (3, 4)),
    B(op("BatchNorm2d", num_features=4), (3, 4, 4), arg="num_features"),
    B(op("InstanceNorm2d"), (3, 4)),
    B(op("LayerNorm", normalized_shape=5), (3, 4), arg="normalized_shape"),
    B(op("LayerNorm", normalized_shape=(3, 4)), (4,), arg="normalized_shape"),
    B(op("LayerNorm"), ()),
    B(op("GroupNorm", num_groups=3), (4, 2, 2), arg="num_groups"),
    B(op("GroupNorm", num_groups=2, num_channels=6), (4, 2, 2), arg="num_channels"),
    B(op("GroupNorm", num_groups=1), ()),
    B(op("Dropout2d"), (3, 4), stricter=True),  # torch guesses channel-wise 1d dropout
    B(op("MaxPool2d", kernel_size=3), (3, 2, 2), arg="kernel_size"),
    B(op("MaxPool2d", kernel_size=2), (3, 4, 4, 4)),
    B(op("MaxPool2d", kernel_size=3, padding=2), (3, 8, 8), arg="padding"),
    B(op("MaxPool1d", kernel_size=2, dilation=4), (2, 4), arg="kernel_size"),
    B(op("AvgPool2d", kernel_size=2, padding=2), (3, 8, 8), arg="padding"),
    B(op("AvgPool1d", kernel_size=4), (2, 3), arg="kernel_size"),
    B(op("AdaptiveAvgPool2d", output_size=2), (8,)),
    B(op("AdaptiveAvgPool1d", output_size=2), (1, 8, 8)),
    B(op("RNN", hidden_size=4), (5,)),
    B(op("GRU", hidden_size=4), (5, 3, 2)),
    B(op("LSTM", input_size=4, hidden_size=4), (5, 3), arg="input_size"),
    B(op("LSTM", hidden_size=4, proj_size=4), (5, 3), arg="proj_size"),
    B(op("MultiheadAttention", num_heads=3), (5, 8), arg="num_heads"),
    B(op("MultiheadAttention", embed_dim=6, num_heads=2), (5, 8), arg="embed_dim"),
    B(op("MultiheadAttention", num_heads=2), (5, 8), (5, 8)),
    B(op("MultiheadAttention", num_heads=2), (5, 8), (4, 8), (5, 8)),
    B(op("MultiheadAttention", num_heads=2), (5, 8), (4, 6), (4, 8), arg="kdim"),
    B(op("MultiheadAttention", num_heads=2, vdim=4), (5, 8), (4, 8), (4, 8), arg="vdim"),
    B(op("MultiheadAttention", num_heads=2, kdim=6), (5, 8), arg="kdim"),  # self-attention: key is x
    B(op("MultiheadAttention", num_heads=2), (5, 8), (8,), (8,)),
    B(op("MultiheadAttention", num_heads=2), (8,)),
    B(op("TransformerEncoderLayer", nhead=3), (5, 8), arg="nhead"),
    B(op("TransformerEncoderLayer", nhead=2), (8,)),
    B(op("Flatten"), ()),
    B(op("Flatten", start_dim=3), (3, 4), arg="start_dim"), B(op("Flatten", start_dim=0), (3, 4), arg="start_dim", stricter=True),
    B(op("Flatten", start_dim=2, end_dim=1), (3, 4)),
    B(op("Unflatten", dim=1, unflattened_size=(3, 5)), (12,), arg="unflattened_size"),
    B(op("Unflatten", dim=3, unflattened_size=(3, 4)), (12,), arg="dim"),
    B(op("Reshape", shape_=(5, 5)), (24,)),
    B(op("Reshape", shape_=(-1, -1)), (24,)),
    B(op("Reshape", shape_=(5, -1)), (24,)),
    B(op("Reshape", shape_=(0, 24)), (24,)),
    B(op("Select", dim=1, index=5), (5, 8), arg="index"), B(op("Select", dim=0, index=0), (5, 8), arg="dim", stricter=True),
    B(op("Select", dim=3, index=0), (5, 8), arg="dim"),
    B(op("Mean", dim=2), (5,), arg="dim"), B(op("Mean", dim=0), (5,), arg="dim", stricter=True),
    B(op("Upsample"), (3, 4, 4)),
    B(op("Upsample", size=4, scale_factor=2), (3, 4, 4), stricter=True),
    B(op("Upsample", scale_factor=2, mode="bilinear"), (3, 4), arg="mode"),
    B(op("Upsample", scale_factor=2), (3,)),
    B(op("Upsample", size=(4, 4, 4)), (3, 4, 4), arg="size"),
    B(op("Upsample", scale_factor=(2, 2, 2)), (3, 4, 4), arg="scale_factor"),
    B(op("Upsample", scale_factor=0.1), (3, 4, 4), arg="scale_factor"),
    B(op("Upsample", scale_factor=2, align_corners=True), (3, 4, 4), arg="align_corners"),
    B(op("Hardtanh", min_val=1.0, max_val=1.0), (4,), arg="max_val"),
    B(op("Hardtanh", min_val=2, max_val=-2), (3, 4), arg="max_val"),
    B(op("Hardtanh"), (4,), dtype="uint8", arg="min_val"),  # the default min_val=-1 on unsigned input
    B(op("Hardtanh", max_val=7e4), (4,), dtype="float16", arg="max_val"),
    B(op("Hardtanh", min_val=0, max_val=3e9), (4,), dtype="int32", arg="max_val"),
    B(op("Hardtanh", min_val=-1e39), (4,), arg="min_val"),
    B(op("PReLU", num_parameters=3), (4, 5), arg="num_parameters"),
    B(op("PReLU", num_parameters=2), (), arg="num_parameters", stricter=True),  # torch: the batch
    B(op("PReLU"), (4,), dtype="float64"), B(op("PReLU"), (2, 3), dtype="bfloat16"),
    B(op("PReLU", init=1e39), (4,), arg="init"),
    B(op("Softplus", beta=1e39), (4,), arg="beta"), B(op("Softplus", threshold=-4e38), (4,), dtype="float16", arg="threshold"),
    B(op("LeakyReLU", negative_slope=1e39), (4,), dtype="float16", arg="negative_slope"),
    B(op("ELU", alpha=-1e300), (3,), arg="alpha"),
    B(op("MaxPool3d", kernel_size=2), (4, 4)), B(op("MaxPool3d", kernel_size=3), (1, 2, 4, 4), arg="kernel_size"),
    B(op("AvgPool3d", kernel_size=2), (1, 4, 4, 4), dtype="float16"),  # no CPU kernel
    B(op("AvgPool3d", kernel_size=2), (4, 4, 4), dtype="bfloat16"),
    B(op("AvgPool3d", kernel_size=3, padding=1), (1, 4, 2, 4), arg="kernel_size"),
    B(op("AvgPool3d", kernel_size=4, stride=4, ceil_mode=True), (2, 6, 5, 1), arg="kernel_size"),
    B(op("AdaptiveAvgPool3d", output_size=2), (8, 8)), B(op("AdaptiveMaxPool1d", output_size=2), (1, 8, 8)),
    B(op("BatchNorm3d"), (3, 4, 4)), B(op("BatchNorm3d", num_features=2), (3, 2, 2, 2), arg="num_features"),
    B(op("ConvTranspose3d", out_channels=2, kernel_size=3), (1, 5, 5)),
    B(op("ConvTranspose3d", out_channels=2, kernel_size=2, stride=2, output_padding=2), (1, 2, 2, 2),
      arg="output_padding"),
    B(op("ConvTranspose3d", out_channels=3, kernel_size=1, groups=2), (4, 2, 2, 2), arg="groups"),
    B(op("PixelShuffle", upscale_factor=2), (6, 3, 3), arg="upscale_factor"),
    B(op("PixelShuffle", upscale_factor=3), (18, 1, 1, 1), dtype="int64", arg="upscale_factor"),
    B(op("PixelShuffle", upscale_factor=2), (8, 3), stricter=True),  # torch: the batch as channels
    B(op("PixelUnshuffle", downscale_factor=2), (2, 5, 4), arg="downscale_factor"),
    B(op("PixelUnshuffle", downscale_factor=4), (1, 8, 6), arg="downscale_factor"),
    B(op("ZeroPad2d", padding=(0, 0, -5, 1)), (3, 4), arg="padding"),
    B(op("ZeroPad2d", padding=(-6, 3, 0, 0)), (2, 3, 4), arg="padding"),
    B(op("ZeroPad2d", padding=(-2, -2, 0, 0)), (3, 4), arg="padding", stricter=True),  # torch: empty
    B(op("ZeroPad2d", padding=1), (4,), stricter=True),  # torch would pad the batch
    B(op("ConstantPad2d", padding=1, value=-1), (3, 3), dtype="uint8", arg="value"),
    B(op("ConstantPad2d", padding=1, value=1e5), (2, 3, 3), dtype="float16", arg="value"),
    B(op("ConstantPad2d", padding=(1, 1, 1, 1), value=2**31), (3, 3), dtype="int32", arg="value"),
    B(op("ConstantPad2d", padding=2, value=1e39), (3, 3), arg="value"),
    # integer input where torch needs floating point (ids go through an Embedding first)
    *(B(spec, shape, dtype="int64") for spec, shape in [
        (op("Linear", out_features=3), (4,)), (op("RNN", hidden_size=3), (5, 4)),
        (op("Conv2d", out_channels=3, kernel_size=1), (2, 3, 3)), (op("GELU"), (4,)),
        (op("Softmax", dim=-1), (4,)), (op("BatchNorm1d"), (4,)), (op("LayerNorm"), (4,)),
        (op("GroupNorm", num_groups=2), (4,)), (op("Dropout"), (4,)), (op("Mean", dim=1), (4,)),
        (op("AdaptiveAvgPool2d", output_size=2), (1, 4, 4)), (op("Upsample", scale_factor=2), (1, 4)),
        (op("LSTM", hidden_size=3), (5, 4)), (op("MultiheadAttention", num_heads=2), (5, 4)),
        (op("TransformerEncoderLayer", nhead=2), (5, 4))]),
    *(B(spec, shape, dtype="int64") for spec, shape in [
        (op("Hardsigmoid"), (4,)), (op("Mish"), (4,)), (op("Softplus"), (4,)), (op("PReLU"), (4,)),
        (op("StochasticDepth", p=0.5, mode="row"), (4,)), (op("BatchNorm3d"), (2, 2, 2, 2)),
        (op("ConvTranspose3d", out_channels=2, kernel_size=1), (1, 2, 2, 2)),
        (op("AdaptiveAvgPool3d", output_size=1), (1, 2, 2, 2)), (op("AdaptiveMaxPool1d", output_size=1), (1, 4))]),
    B(op("Tanh"), (4,), dtype="int64", stricter=True),  # torch returns float32
    B(op("Concat", dim=1), T(shape=(3,)), T(shape=(3,), dtype="float64"), stricter=True),  # torch promotes
]


@pytest.mark.parametrize("spec, ins, arg, stricter", BAD_SHAPES)
def test_shape_errors(spec, ins, arg, stricter):
    o = op_adapter().validate_python(spec)
    with pytest.raises(ShapeError) as err:
        o = o.model_copy(update=o.infer(ins))
        o.shape(ins)
    if arg is not None:
        assert err.value.arg == arg, err.value.message
    if stricter:
        return
    try:
        o = o.model_copy(update=o.infer(ins))
    except ShapeError:
        if any(getattr(o, f) is None for f in o.inferred_fields()):
            return  # torch cannot even be asked without the inferred arguments
    # torch agrees that the configuration is broken
    with pytest.raises((RuntimeError, ValueError, IndexError, TypeError, AssertionError)):
        module = make_module(o)
        with torch.no_grad():
            run(o, module, ins, 2, spec.get("num_embeddings", 10))


# ---- argument validation ---------------------------------------------------------------------

BAD_ARGS = [
    op("Linear", out_features=2.5), op("Linear", out_features=0), op("Linear", out_features=-3),
    op("Linear", out_features=True), op("Linear", out_features="4"), op("Linear"),
    op("Linear", out_features=4, bias=1), op("Linear", out_features=4, bias="yes"),
    op("Linear", out_features=4, bogus=1), op("Linear", out_features=4, in_features=0),
    op("Dropout", p=1.5), op("Dropout", p=-0.1), op("Dropout", p=True), op("Dropout", p="0.5"),
    op("Conv2d", out_channels=4, kernel_size=(3, 3, 3)), op("Conv2d", out_channels=4, kernel_size=0),
    op("Conv2d", out_channels=4, kernel_size=3, stride=True), op("Conv2d", out_channels=4, kernel_size=3.0),
    op("Conv2d", out_channels=4, kernel_size=3, padding=-1), op("Conv2d", out_channels=4, kernel_size=3,
                                                                 padding="full"),
    op("Conv2d", out_channels=4, kernel_size=3, padding_mode="mirror"),
    op("ConvTranspose2d", out_channels=4, kernel_size=3, padding="same"),
    op("ConvTranspose2d", out_channels=4, kernel_size=3, padding_mode="reflect"),
    op("MaxPool2d", kernel_size=2, return_indices=True), op("MaxPool2d", kernel_size=2, ceil_mode=1),
    op("MaxPool2d", kernel_size=2, stride=0), op("AvgPool2d", kernel_size=2, divisor_override=0),
    op("AdaptiveAvgPool2d", output_size=(2, 2, 2)), op("AdaptiveAvgPool2d", output_size=0),
    op("LeakyReLU", negative_slope=True), op("LeakyReLU", negative_slope="0.1"),
    op("ELU", alpha=False), op("GELU", approximate="sigmoid"), op("Softmax", dim=1.0), op("Softmax", dim=True),
    op("BatchNorm2d", eps=True), op("BatchNorm2d", momentum="0.1"), op("LayerNorm", normalized_shape=0),
    op("LayerNorm", normalized_shape=(4, 0)), op("GroupNorm", num_groups=0),
    op("Embedding", num_embeddings=5), op("Embedding", num_embeddings=5, embedding_dim=3, padding_idx=True),
    op("Embedding", num_embeddings=5, embedding_dim=3, padding_idx="1"),
    op("Embedding", num_embeddings=5, embedding_dim=3, max_norm=True),
    op("RNN", hidden_size=4, nonlinearity="sigmoid"), op("RNN", hidden_size=4, num_layers=0),
    op("RNN", hidden_size=4, dropout="0.1"), op("LSTM", hidden_size=4, proj_size=True),
    op("LSTM", hidden_size=4, proj_size=-1), op("GRU", hidden_size=4, bidirectional=2),
    op("MultiheadAttention", num_heads=2, kdim=0), op("MultiheadAttention", num_heads=2, dropout=2.0),
    op("TransformerEncoderLayer", nhead=2, activation="tanh"),
    op("TransformerEncoderLayer", nhead=2, layer_norm_eps=True),
    op("Flatten", start_dim=0.5), op("Flatten", end_dim=False), op("Unflatten", dim=0, unflattened_size=(3, 0)),
    op("Reshape", shape_=(True, 3)), op("Reshape", shape_=(2.0, 3)), op("Select", dim=0, index=True),
    op("Mean", dim=True), op("Upsample", scale_factor=True), op("Upsample", scale_factor="2"),
    op("Upsample", mode="area2"), op("Upsample", size=0), op("Concat", dim=1.0),
    op("Linear", out_features=4, init="he"), op("Linear", out_features=4, trainable=0),
    op("Nope"),
    op("ReLU6", inplace=1), op("Hardtanh", min_val="-1"), op("Hardtanh", max_val=True),
    op("PReLU", num_parameters=0), op("PReLU", init="0.25"), op("PReLU", init=0.1, num_parameters=2.0),
    op("Softplus", beta=True), op("Softplus", threshold="20"), op("Mish", inplace="no"),
    op("StochasticDepth", p=0.5, mode="col"), op("StochasticDepth", p=1.5, mode="row"),
    op("StochasticDepth", p=0.5), op("StochasticDepth", mode="row"), op("StochasticDepth", p=True, mode="row"),
    op("MaxPool3d", kernel_size=(2, 2)), op("AvgPool3d", kernel_size=2, divisor_override=0),
    op("AdaptiveMaxPool1d", output_size=None), op("AdaptiveMaxPool1d", output_size=2, return_indices=True),
    op("AdaptiveAvgPool3d", output_size=(2, 2)), op("BatchNorm3d", eps=0),
    op("ConvTranspose3d", out_channels=2, kernel_size=3, padding_mode="reflect"),
    op("ConvTranspose3d", out_channels=2, kernel_size=(3, 3)),
    op("PixelShuffle", upscale_factor=0), op("PixelShuffle"), op("PixelUnshuffle", downscale_factor=2.0),
    op("ZeroPad2d", padding=(1, 2)), op("ZeroPad2d", padding=1.5), op("ZeroPad2d"),
    op("ConstantPad2d", padding=1), op("ConstantPad2d", padding=(1, 1, 1), value=0.0),
    op("ConstantPad2d", padding=1, value="0"),
]


@pytest.mark.parametrize("spec", BAD_ARGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_validation_rejects(spec):
    with pytest.raises(ValidationError):
        op_adapter().validate_python(spec)


def test_validation_accepts_ints_for_floats_and_lists_for_tuples():
    a = op_adapter()
    assert a.validate_python(op("Dropout", p=1)).p == 1
    assert a.validate_python(op("LeakyReLU", negative_slope=0)).negative_slope == 0
    assert a.validate_python(op("Conv2d", out_channels=4, kernel_size=[3, 5])).kernel_size == (3, 5)
    assert a.validate_python(op("Linear", out_features=4, init="kaiming_normal")).init == "kaiming_normal"


def test_error_titles_name_the_layer():
    with pytest.raises(ValidationError) as err:
        OPS["Conv2d"].model_validate({"out_channels": 0, "kernel_size": 3})
    assert err.value.title == "Conv2d"


# ---- multiply-accumulates ------------------------------------------------------------------------

def test_macs_by_hand():
    ins = types((3, 10))
    lin = build(op("Linear", out_features=5), ins)
    assert lin.macs(ins, lin.shape(ins)) == 3 * 10 * 5
    ins = types((3, 10, 10))
    conv = build(op("Conv2d", out_channels=8, kernel_size=3), ins)
    assert conv.macs(ins, conv.shape(ins)) == (8 * 8 * 8) * (3 * 3 * 3)
    ins = types((4, 9, 9))
    conv = build(op("Conv2d", out_channels=6, kernel_size=3, stride=2, padding=1, groups=2), ins)
    assert conv.shape(ins)[0].shape == (6, 5, 5)
    assert conv.macs(ins, conv.shape(ins)) == (6 * 5 * 5) * (2 * 3 * 3)
    # a transposed conv spreads every input value over out_channels/groups * k taps
    ins = types((4, 5, 5))
    deconv = build(op("ConvTranspose2d", out_channels=6, kernel_size=3, stride=2, groups=2), ins)
    assert deconv.macs(ins, deconv.shape(ins)) == (4 * 5 * 5) * (3 * 3 * 3)
    ins = types((5, 8), (7, 6), (7, 4))
    attn = build(op("MultiheadAttention", num_heads=2, kdim=6, vdim=4), ins)
    projections = 5 * 8 * 8 + 7 * 6 * 8 + 7 * 4 * 8 + 5 * 8 * 8  # q, k, v, out
    assert attn.macs(ins, attn.shape(ins)) == projections + 2 * 5 * 7 * 8  # scores, weighted sum



def test_macs_of_3d_layers_and_data_movers():
    ins = types((2, 3, 3, 3))
    # every input value is spread over out_channels/groups * k taps
    deconv = build(op("ConvTranspose3d", out_channels=4, kernel_size=2, stride=2, groups=2), ins)
    assert deconv.shape(ins)[0].shape == (4, 6, 6, 6)
    assert deconv.macs(ins, deconv.shape(ins)) == (2 * 27) * (2 * 8)
    pool = build(op("MaxPool3d", kernel_size=(1, 3, 3), stride=1, padding=(0, 1, 1)), ins)
    assert pool.shape(ins)[0].shape == (2, 3, 3, 3)
    assert pool.macs(ins, pool.shape(ins)) == 54 * 9
    avg = build(op("AvgPool3d", kernel_size=3), ins)
    assert avg.macs(ins, avg.shape(ins)) == 2 * 27
    adaptive = build(op("AdaptiveAvgPool3d", output_size=1), ins)
    assert adaptive.macs(ins, adaptive.shape(ins)) == 54  # each value read once
    bn = build(op("BatchNorm3d"), ins)
    assert bn.macs(ins, bn.shape(ins)) == 2 * 54 and bn.param_count() == 4
    ins = types((8, 2, 2))
    for spec in (op("PixelShuffle", upscale_factor=2), op("ZeroPad2d", padding=1),
                 op("ConstantPad2d", padding=(1, 0, 0, 1), value=2.5), op("PReLU", num_parameters=8),
                 op("StochasticDepth", p=0.1, mode="row"), op("Hardtanh")):
        o = build(spec, ins)
        assert o.macs(ins, o.shape(ins)) == 0, spec  # elementwise or data movement, as ReLU

# ---- random configurations -----------------------------------------------------------------

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_TORCH_ERRORS = (RuntimeError, ValueError, IndexError)


def _compare(spec: dict, shape: tuple[int, ...]):
    ins = [T(shape=shape)]
    o = op_adapter().validate_python(spec)
    try:
        o = o.model_copy(update=o.infer(ins))
        ours = o.shape(ins)[0].shape
    except ShapeError:
        ours = None
    try:
        module = make_module(o)
        with torch.no_grad():
            theirs = tuple(run(o, module, ins, 1)[0].shape[1:])
    except _TORCH_ERRORS:
        theirs = None
    if theirs is not None and 0 in theirs:
        theirs = None  # torch quietly makes an empty tensor (ConvTranspose); netdsl refuses
    assert ours == theirs, f"{spec} on {shape}: shape() {ours}, torch {theirs}"
    if ours is not None:
        assert o.param_count() == sum(p.numel() for p in module.parameters())


pair = st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3)))
size = st.tuples(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9))


@FAST
@given(size=size, out=st.integers(1, 4), k=st.integers(1, 4), s=pair,
       p=st.one_of(pair, st.sampled_from(["same", "valid"])), d=st.integers(1, 3),
       g=st.sampled_from([1, 2]), bias=st.booleans(),
       mode=st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
def test_conv2d_random(size, out, k, s, p, d, g, bias, mode):
    _compare(op("Conv2d", in_channels=size[0], out_channels=out, kernel_size=k, stride=s, padding=p,
                dilation=d, groups=g, bias=bias, padding_mode=mode), size)


@FAST
@given(size=size, out=st.integers(1, 4), k=pair, s=pair, p=st.integers(0, 2), op_=st.integers(0, 2),
       d=st.integers(1, 2), g=st.sampled_from([1, 2]))
def test_conv_transpose2d_random(size, out, k, s, p, op_, d, g):
    _compare(op("ConvTranspose2d", in_channels=size[0], out_channels=out, kernel_size=k, stride=s,
                padding=p, output_padding=op_, dilation=d, groups=g), size)


@FAST
@given(size=st.one_of(size, st.tuples(st.integers(1, 9), st.integers(1, 9))), k=pair,
       s=st.one_of(st.none(), pair), p=st.integers(0, 2), d=st.integers(1, 2), ceil=st.booleans())
def test_maxpool2d_random(size, k, s, p, d, ceil):
    _compare(op("MaxPool2d", kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil), size)


@FAST
@given(size=size, k=pair, s=st.one_of(st.none(), pair), p=st.integers(0, 2), ceil=st.booleans(),
       cip=st.booleans())
def test_avgpool2d_random(size, k, s, p, ceil, cip):
    _compare(op("AvgPool2d", kernel_size=k, stride=s, padding=p, ceil_mode=ceil, count_include_pad=cip), size)


@FAST
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), out=st.integers(1, 6), bias=st.booleans(),
       given_in=st.one_of(st.none(), st.integers(1, 5)))
def test_linear_random(shape, out, bias, given_in):
    spec = op("Linear", out_features=out, bias=bias)
    if given_in is not None:
        spec["in_features"] = given_in
    _compare(spec, tuple(shape))


triple = st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)))


@FAST
@given(size=st.tuples(st.integers(1, 2), st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)),
       kind=st.sampled_from(["MaxPool3d", "AvgPool3d"]), k=triple, s=st.one_of(st.none(), triple),
       p=st.integers(0, 1), ceil=st.booleans())
def test_pool3d_random(size, kind, k, s, p, ceil):
    _compare(op(kind, kernel_size=k, stride=s, padding=p, ceil_mode=ceil), size)


@FAST
@given(shape=st.lists(st.integers(1, 6), min_size=2, max_size=4),  # rank 1: torch pads the batch
       pad=st.one_of(st.integers(-3, 3), st.tuples(*[st.integers(-4, 3)] * 4)))
def test_zero_pad2d_random(shape, pad):
    _compare(op("ZeroPad2d", padding=pad), tuple(shape))


@FAST
@given(shape=st.lists(st.integers(1, 12), min_size=3, max_size=4), r=st.integers(1, 3), down=st.booleans())
def test_pixel_shuffle_random(shape, r, down):
    spec = op("PixelUnshuffle", downscale_factor=r) if down else op("PixelShuffle", upscale_factor=r)
    _compare(spec, tuple(shape))
