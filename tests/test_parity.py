"""Differential tests: each seed network in specs/ against the PyTorch the seed tutorials wrote
by hand (/work/shared/seeds/*.txt, transcribed below), and ResNet-18, ResNet-50, MobileNetV2,
DenseNet-121, EfficientNet-B0, ViT-B/16 and ConvNeXt-T against torchvision.

For every pair: the same parameter count, the same state_dict shapes in the same order; with the
reference's weights loaded into the netdsl module (by position: the names differ, `fc1` vs
`linear`), the same outputs and the same gradients.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netdsl

SPECS = Path(__file__).parents[1] / "specs"


# ---- the references, as the seeds wrote them ----------------------------------------------------
class LinearRegression(nn.Module):  # seed 002
    def __init__(self, input_size, output_size):
        super(LinearRegression, self).__init__()
        self.linear = nn.Linear(input_size, output_size)

    def forward(self, x):
        return self.linear(x)


class Net000(nn.Module):  # seed 000 (and seed 004's Net: the same layers, x.view + F.relu)
    def __init__(self):
        super(Net000, self).__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = self.fc2(x)
        return x


class Net004(nn.Module):  # seed 004
    def __init__(self):
        super(Net004, self).__init__()
        self.fc1 = nn.Linear(28 * 28, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = x.view(-1, 28 * 28)
        x = F.relu(self.fc1(x))
        x = self.fc2(x)
        return x


class Net001(nn.Module):  # seed 001
    def __init__(self):
        super(Net001, self).__init__()
        self.fc1 = nn.Linear(28 * 28, 512)
        self.fc2 = nn.Linear(512, 256)
        self.fc3 = nn.Linear(256, 10)

    def forward(self, x):
        x = x.view(x.shape[0], -1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        x = self.fc3(x)
        return x


class Net003(nn.Module):  # seed 003, the MLP
    def __init__(self):
        super(Net003, self).__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 10)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = x.view(-1, 784)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        x = self.fc3(x)
        return x


class ConvNet(nn.Module):  # seed 003, LeNet
    def __init__(self):
        super(ConvNet, self).__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = x.view(-1, 16 * 4 * 4)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        x = self.fc3(x)
        return x


class MultiHead(nn.Module):  # seed 004, three heads in ModuleLists
    def __init__(self):
        super(MultiHead, self).__init__()
        self.net1 = nn.ModuleList([nn.Linear(28 * 28, 128), nn.Linear(128, 10)])
        self.net2 = nn.ModuleList([nn.Linear(28 * 28, 128), nn.Linear(128, 10)])
        self.net3 = nn.ModuleList([nn.Linear(28 * 28, 128), nn.Linear(128, 10)])

    def forward(self, x):
        # The seed feeds x straight in, which only works on flat inputs; the spec takes MNIST
        # images [1, 28, 28] and flattens once, so the reference does too.
        x = x.view(x.shape[0], -1)
        x1 = F.relu(self.net1[0](x))
        x2 = F.relu(self.net2[0](x))
        x3 = F.relu(self.net3[0](x))
        x1 = self.net1[1](x1)
        x2 = self.net2[1](x2)
        x3 = self.net3[1](x3)
        return x1, x2, x3


def resnet18():
    import torchvision

    return torchvision.models.resnet18()


def resnet50():
    import torchvision

    return torchvision.models.resnet50()


def mobilenet_v2():
    import torchvision

    return torchvision.models.mobilenet_v2()


def densenet121():
    import torchvision

    return torchvision.models.densenet121()


def efficientnet_b0():
    import torchvision

    return torchvision.models.efficientnet_b0()


def vit_b_16():
    import torchvision

    return torchvision.models.vit_b_16()


def convnext_tiny():
    import torchvision

    return torchvision.models.convnext_tiny()


CASES = {
    "linear_regression": ("linear_regression.net", lambda: LinearRegression(2, 1), (2,), 3),
    "mlp_seed000": ("mlp.net", Net000, (1, 28, 28), 101_770),
    "mlp_seed004": ("mlp.net", Net004, (1, 28, 28), 101_770),
    "mlp_wide": ("mlp_wide.net", Net001, (1, 28, 28), 535_818),
    "mlp_deep": ("mlp_deep.net", Net003, (1, 28, 28), 109_386),
    "lenet": ("lenet.net", ConvNet, (1, 28, 28), 44_426),
    "multitask": ("multitask.net", MultiHead, (1, 28, 28), 3 * 101_770),
    "resnet18": ("resnet18.net", resnet18, (3, 224, 224), 11_689_512),
    "resnet50": ("resnet50.net", resnet50, (3, 224, 224), 25_557_032),
    "mobilenet_v2": ("mobilenet_v2.net", mobilenet_v2, (3, 224, 224), 3_504_872),
    "densenet121": ("densenet121.net", densenet121, (3, 224, 224), 7_978_856),
    "efficientnet_b0": ("efficientnet_b0.net", efficientnet_b0, (3, 224, 224), 5_288_548),
    "vit_b_16": ("vit_b_16.net", vit_b_16, (3, 224, 224), 86_567_656),
    "convnext_tiny": ("convnext_tiny.net", convnext_tiny, (3, 224, 224), 28_589_128),
}
# image networks: batch 2, smaller images
RESNETS = ("resnet18", "resnet50", "mobilenet_v2", "densenet121", "efficientnet_b0",
           "convnext_tiny")
# the layers are the same on a smaller image, in both modes: the side of the square image.
# 32 is the least that five halvings take down to 1x1 (DenseNet needs 29 or more)
SMALL_IMAGES = {"resnet50": 32, "mobilenet_v2": 64, "densenet121": 32, "efficientnet_b0": 32,
                "convnext_tiny": 32}
# networks that take one image size only (ViT's position embeddings fix 197 tokens, so 224x224):
# the batch size, and the one mode compared. Every dropout of ViT has p=0 and it has no batch
# statistics, so its train mode computes what eval mode does.
FIXED_IMAGES = {"vit_b_16": (2, "eval")}
# outputs compared, gradients not: ResNet-50's and ConvNeXt's are compared in train mode, and
# ViT-B/16's backward pass alone takes over 10 s on two cores (its outputs, with every tensor
# randomised, leave no tensor unchecked)
NO_GRADIENTS = {("resnet50", "eval"), ("convnext_tiny", "eval"), ("vit_b_16", "eval")}


@functools.lru_cache(maxsize=None)
def _built(case):
    spec_file, make_ref, shape, params = CASES[case]
    torch.manual_seed(0)
    spec = netdsl.load(SPECS / spec_file)
    return spec, spec.build(), make_ref()


def pair(case):
    """The spec, a fresh netdsl module and a fresh reference (copies: initialising ResNet-18
    twice per test would dominate the run time)."""
    spec, ours, ref = _built(case)
    _, _, shape, params = CASES[case]
    return spec, copy.deepcopy(ours), copy.deepcopy(ref), shape, params


def randomise(ref: nn.Module) -> None:
    """Random reference weights and statistics: torch's default init (BatchNorm's ones and
    zeros above all, ConvNeXt's layer scale of 1e-6, ViT's zero class token) would hide a
    swapped or mis-shaped tensor. Every floating tensor is drawn anew, scaled by fan-in so that a
    50-layer network's activations stay finite; a class token or positions [1, ...], which are
    added to activations, at theirs (std 1)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in ref.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.dim() > 2 and t.shape[0] == 1:  # a class token or positions: no fan-in
                t.copy_(torch.randn(t.shape, generator=g))
            elif t.dim() > 1:  # (ConvNeXt's layer scale [C, 1, 1] too: fan-in 1)
                t.copy_(torch.randn(t.shape, generator=g) / t[0].numel() ** 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1 + (1.0 if name.endswith("weight") else 0.0))


def load_by_position(ours: nn.Module, ref: nn.Module) -> None:
    randomise(ref)
    keys = list(ours.state_dict())
    ours.load_state_dict(dict(zip(keys, ref.state_dict().values())))


def as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("case", CASES)
def test_parameter_count(case):
    spec, ours, ref, _, params = pair(case)
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in ref.parameters()) == params
    assert spec.summary().total_params == params


@pytest.mark.parametrize("case", CASES)
def test_state_dict_shapes_in_order(case):
    _, ours, ref, _, _ = pair(case)
    mine = [tuple(t.shape) for t in ours.state_dict().values()]
    theirs = [tuple(t.shape) for t in ref.state_dict().values()]
    assert mine == theirs


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_same_outputs_and_gradients(case, mode):
    if case in FIXED_IMAGES and mode != FIXED_IMAGES[case][1]:
        pytest.skip(f"{case} is compared in {FIXED_IMAGES[case][1]} mode only")
    _, ours, ref, shape, _ = pair(case)
    load_by_position(ours, ref)
    ours.train(mode == "train")
    ref.train(mode == "train")
    if case in RESNETS and mode == "train":  # any size works after the adaptive pool
        shape = (3, 64, 64)
    if case in SMALL_IMAGES:
        shape = (3, SMALL_IMAGES[case], SMALL_IMAGES[case])
    batch = FIXED_IMAGES[case][0] if case in FIXED_IMAGES else 2 if case in RESNETS else 5
    x = torch.randn(batch, *shape)
    with torch.set_grad_enabled((case, mode) not in NO_GRADIENTS):
        torch.manual_seed(7)  # the same dropout (and stochastic depth) masks on both
        a = as_tuple(ours(x))
        torch.manual_seed(7)
        b = as_tuple(ref(x))
    assert len(a) == len(b)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v)
    if (case, mode) in NO_GRADIENTS:
        return
    # the same loss on both: a fixed random weighting of every output
    weights = [torch.randn_like(v) for v in b]
    sum((u * w).sum() for u, w in zip(a, weights)).backward()
    sum((v * w).sum() for v, w in zip(b, weights)).backward()
    for (name, p), (ref_name, q) in zip(ours.named_parameters(), ref.named_parameters()):
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, q.grad, msg=f"{name} vs {ref_name}")
    if mode == "train":  # batch statistics moved the same way
        for (name, s), t in zip(ours.state_dict().items(), ref.state_dict().values()):
            torch.testing.assert_close(s, t, msg=name)


def test_vit_b_16_state_dict_loads_into_torchvision_by_name():
    """ViT-B/16's keys are torchvision's but for the MLPs' `linear_1`/`linear_2` (torchvision:
    `0`/`3`), the names torchvision's MLPBlock still reads from older checkpoints."""
    _, ours, ref, _, _ = pair("vit_b_16")
    renamed = [k.replace(".mlp.0.", ".mlp.linear_1.").replace(".mlp.3.", ".mlp.linear_2.")
               for k in ref.state_dict()]
    assert list(ours.state_dict()) == renamed
    ref.load_state_dict(ours.state_dict())  # strict: every key matched
    for t, u in zip(ours.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(t, u)


def test_resnet18_as_a_backbone_layer_is_torchvisions():
    """`image -> resnet18 -> logits`: the same module torchvision builds, under `backbone1`."""
    import torchvision

    spec = netdsl.loads("model R {\n  input image: [3, 64, 64]\n  image -> resnet18 -> logits\n"
                        "  output logits\n}\n")
    ours, ref = spec.build(), torchvision.models.resnet18()
    assert isinstance(ours.backbone1, torchvision.models.ResNet)
    assert [k.removeprefix("backbone1.") for k in ours.state_dict()] == list(ref.state_dict())
    ours.load_state_dict({f"backbone1.{k}": v for k, v in ref.state_dict().items()})
    ours.eval()
    ref.eval()
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(ours(x), ref(x))
    assert spec.summary().total_params == 11_689_512
