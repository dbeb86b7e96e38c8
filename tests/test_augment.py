"""Per-sample augmentation (torchvision.transforms.v2): the steps take torchvision's own
arguments and defaults; each sample's draws are what torchvision gives from the sample's own
seed (a differential test against v2 run by hand); batches are a pure function of (seed,
epoch), with any number of workers; masks follow their image's geometry exactly; evaluation
gets the usual counterparts; a compiled script trains like `netdsl run`. (Streamed versus
in-memory histories and kill -9 resume with these steps: tests/test_streaming.py.)"""

from __future__ import annotations

import inspect

import pytest
import torch

import netdsl
from netdsl.runtime import data as D
from netdsl.runtime import sources
from netdsl.runtime.data import DataError, load_data


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """An image folder: 3 classes × 8 RGB images of 20×24 random pixels."""
    from PIL import Image

    root = tmp_path_factory.mktemp("rgb")
    g = torch.Generator().manual_seed(0)
    for c in range(3):
        (root / f"c{c}").mkdir()
        for i in range(8):
            px = torch.randint(0, 256, (20, 24, 3), generator=g, dtype=torch.uint8)
            Image.fromarray(px.numpy()).save(root / f"c{c}" / f"{i}.png")
    return root


# ---- the declarations are torchvision's -------------------------------------------------
def test_per_sample_steps_take_torchvision_v2s_arguments_and_defaults():
    from torchvision.transforms import v2

    for name, (allowed, required) in D._PER_SAMPLE.items():
        params = inspect.signature(getattr(v2, name)).parameters
        assert tuple(allowed) == tuple(params), name  # names and (positional) order
        for k, p in params.items():
            if p.default is inspect.Parameter.empty:
                assert k in required, (name, k)
            else:
                default = getattr(p.default, "value", p.default)  # AutoAugmentPolicy
                assert allowed[k] == default, (name, k)
        assert sources.TRANSFORMS.lookup(name).random == "sample"


@pytest.mark.parametrize("name", sorted(D._PER_SAMPLE))
def test_every_step_runs_on_images_and_keeps_the_shape_check_predicts(name, folder):
    needs = {"RandomResizedCrop": {"size": 16}, "RandomRotation": {"degrees": 20},
             "RandomAffine": {"degrees": 10}, "GaussianBlur": {"kernel_size": 3},
             "RandomPosterize": {"bits": 3}, "RandomSolarize": {"threshold": 128},
             "RandomAdjustSharpness": {"sharpness_factor": 2},
             "ElasticTransform": {"sigma": 2.0}}
    step = sources.TRANSFORMS.lookup(name)(**needs.get(name, {}))
    steps = [[name, step.kwargs()], "ToTensor"]
    d = load_data("ImageFolder", path=str(folder), transforms=steps, workers=0, val=4)
    want = step.shape((3, 20, 24))  # what `netdsl check` predicts
    batch = next(iter(d.loader("train", 8)))
    assert batch["image"].shape == (8, *want) and batch["image"].dtype == torch.float32
    assert d.info.fields["image"].shape == want and d.info.per_sample
    assert d.val["image"].shape[1:] == want  # evaluation comes out the same size
    again = next(iter(d.loader("train", 8)))
    assert torch.equal(batch["image"], again["image"])


# ---- a sample's draws are torchvision's, from the sample's own seed -------------------------
def test_a_sample_is_what_torchvision_v2_gives_from_its_seed(folder):
    import numpy
    from PIL import Image
    from torchvision.transforms import v2

    steps = [("RandomCrop", {"size": (18, 20), "padding": (1, 2, 3, 4), "fill": 7}),
             ("RandomResizedCrop", {"size": 16, "scale": (0.5, 1.0)}),
             ("ColorJitter", {"brightness": 0.5, "hue": 0.1}), "ToTensor",
             ("Normalize", {"mean": (0.5, 0.4, 0.3), "std": (0.2, 0.25, 0.3)}),
             ("RandomErasing", {"p": 0.7, "value": 1.5})]
    d = load_data("ImageFolder", path=str(folder), transforms=steps, workers=1, seed=5)
    by_hand = v2.Compose([
        v2.RandomCrop((18, 20), padding=[1, 2, 3, 4], fill=7),
        v2.RandomResizedCrop(16, scale=(0.5, 1.0)), v2.ColorJitter(brightness=0.5, hue=0.1),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.3)), v2.RandomErasing(p=0.7, value=1.5)])
    loader = d.loader("train", 5, seed=5)
    files = [p for c in sorted(folder.iterdir()) for p in sorted(c.iterdir())]
    for epoch in (0, 3):
        order = loader.order(epoch)
        batch = next(loader.batches(epoch))
        for j in range(5):
            pos = int(order[j])
            with Image.open(files[pos]) as im:
                x = torch.tensor(numpy.asarray(im.convert("RGB"))).permute(2, 0, 1)
            torch.manual_seed(D._derive_seed(5, "sample", epoch, pos))
            want = by_hand(x)
            torch.testing.assert_close(batch["image"][j], want.as_subclass(torch.Tensor),
                                       atol=1e-6, rtol=0)
    assert not torch.equal(next(loader.batches(0))["image"], next(loader.batches(1))["image"])


def test_the_global_rng_the_model_draws_from_is_left_alone(folder):
    d = load_data("ImageFolder", path=str(folder), workers=0,
                  transforms=[("RandomRotation", {"degrees": 30}), "ToTensor"])
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    for _ in d.loader("train", 8):
        pass
    assert torch.equal(torch.rand(3), want)


def test_batches_do_not_depend_on_workers_or_on_where_an_epoch_starts(folder):
    steps = [("RandAugment", {}), ("RandomResizedCrop", {"size": 12}), "ToTensor"]
    runs = []
    for w in (0, 2):
        d = load_data("ImageFolder", path=str(folder), transforms=steps, workers=w)
        loader = d.loader("train", 6)
        runs.append([b["image"] for e in (0, 1) for b in loader.batches(e)])
        resumed = [b["image"] for b in loader.batches(1, start_step=2)]
        assert all(torch.equal(a, b) for a, b in zip(resumed, runs[-1][4 + 2:]))
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_the_training_split_without_augmentation_is_what_evaluation_sees(folder):
    steps = [("RandomResizedCrop", {"size": 14}), ("ColorJitter", {"contrast": 0.3}),
             "ToTensor"]
    d = load_data("ImageFolder", path=str(folder), transforms=steps, workers=0)
    assert [t.name for t in d.augment.eval_steps()] == ["Resize", "CenterCrop", "ToTensor"]
    assert d.augment.eval_steps()[0].kwargs["size"] == 16  # 14 / 0.875, torchvision's recipe
    plain = next(iter(d.loader("train", 24, shuffle=False, augment=False)))["image"]
    import torchvision.transforms.functional as F

    raw = D._apply_static_tensor(d.train["image"], [])  # uint8, as decoded
    want = F.center_crop(F.resize(raw, 16, antialias=True), [14, 14]).float() / 255
    torch.testing.assert_close(plain, want, atol=0, rtol=0)


# ---- masks --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def masks(tmp_path_factory):
    """Images whose grey level is 40 × the class of the pixel in their mask."""
    from PIL import Image

    root = tmp_path_factory.mktemp("seg")
    (root / "img").mkdir()
    (root / "mask").mkdir()
    g = torch.Generator().manual_seed(1)
    for i in range(12):
        m = torch.randint(0, 5, (6, 8), generator=g).repeat_interleave(4, 0).repeat_interleave(4, 1)
        Image.fromarray((m * 40).to(torch.uint8).numpy()).save(root / "img" / f"{i}.png")
        Image.fromarray(m.to(torch.uint8).numpy()).save(root / "mask" / f"{i}.png")
    return root


@pytest.mark.parametrize("stream", [False, True])
def test_masks_follow_their_image_and_padding_is_ignored(masks, stream):
    steps = [("RandomResizedCrop", {"size": 20, "scale": (0.3, 1.0), "interpolation": "nearest"}),
             ("RandomRotation", {"degrees": 40}), ("RandomCrop", {"size": 24, "padding": 3}),
             ("ColorJitter", {"brightness": 0.0}), ("RandomHorizontalFlip", {})]
    d = load_data("MaskFolder", images=str(masks / "img"), masks=str(masks / "mask"),
                  convert="L", transforms=steps, stream=stream, workers=0,
                  label_check=[{"field": "mask", "ignore_index": 255, "classes": 5}])
    batch = next(iter(d.loader("train", 12)))
    image, mask = batch["image"][:, 0], batch["mask"]
    assert mask.shape == (12, 24, 24) and d.info.fields["mask"].shape == (24, 24)
    seen = mask != 255
    assert (~seen).any() and seen.float().mean() > 0.3  # rotated corners and padding
    torch.testing.assert_close(image[seen], (mask[seen] * 40).float() / 255)
    assert (image[~seen] == 0).all()  # the image's fill where the mask's is ignored


# ---- errors -------------------------------------------------------------------------------
def test_steps_that_cannot_run_on_the_data_fail_when_it_loads(folder):
    with pytest.raises(DataError, match="RandomRotation: expand=true"):
        load_data("ImageFolder", path=str(folder),
                  transforms=[("RandomRotation", {"degrees": 5, "expand": True})])
    with pytest.raises(DataError, match="GaussianBlur: Kernel size value should be an odd"):
        load_data("ImageFolder", path=str(folder),
                  transforms=[("GaussianBlur", {"kernel_size": 4})])
    with pytest.raises(DataError) as e:  # a threshold of 128 is for uint8, not 0..1 floats
        load_data("ImageFolder", path=str(folder),
                  transforms=["ToTensor", ("RandomSolarize", {"threshold": 128, "p": 1.0})])
    assert "RandomSolarize cannot run on a 3×20×24 float32 sample" in str(e.value)
    assert "before ToTensor" in e.value.hint
    with pytest.raises(DataError, match="Resize is written after ColorJitter"):
        load_data("ImageFolder", path=str(folder),
                  transforms=[("ColorJitter", {"hue": 0.2}), ("Resize", {"size": 8})])


# ---- a run, and its compiled script ---------------------------------------------------------
SPEC = """\
model Net {{
  input image: [3, 16, 16]
  image -> Conv2d(4, 3) -> ReLU -> Flatten -> Linear(3) -> logits
  output logits
}}
train Net {{
  data = ImageFolder(path="{path}", val=6, workers=1,
                     transform=[RandomResizedCrop(16, scale=(0.5, 1.0)), ColorJitter(0.3, 0.3),
                                RandomHorizontalFlip, ToTensor, Normalize(0.5, 0.25)])
  batch_size = 6
  epochs = 2
  optimizer = Adam(lr=1e-2)
  seed = 3
}}
"""


def test_a_compiled_script_augments_like_netdsl_run(folder, tmp_path):
    from test_compile_train import compiled_file, run_netdsl, run_script, same_result

    path = tmp_path / "aug.net"
    path.write_text(SPEC.format(path=folder.as_posix()))
    ours = run_netdsl(path, None, tmp_path)
    assert any("augmented sample by sample by 1 DataLoader worker" in n for n in ours["notes"])
    got = run_script(compiled_file(path, tmp_path), "--out", str(tmp_path / "o"), cwd=tmp_path)
    same_result(got, ours)
    plan = netdsl.load(path).plan().describe()
    assert "RandomResizedCrop(size=16, scale=[0.5, 1.0])" in plan
