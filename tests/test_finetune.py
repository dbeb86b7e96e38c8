"""Fine-tuning: optimizer parameter groups (by name pattern or layer kind), parameters frozen by
pattern and unfrozen at an epoch (exact across a resume), torchvision backbones as feature
extractors (`features=true`), and the mistakes each can hold."""

from __future__ import annotations

import pytest
import torch

import netdsl
from netdsl.ops.backbone import BACKBONES, HEADS
from netdsl.runtime import loop, runner

NET = """\
model Net {{
  input x: [8]
  x -> Linear(16) as body -> LayerNorm -> ReLU -> Linear(3) as head -> logits
  output logits
}}
train Net {{
  data = synthetic(shape=8, num_classes=3, n=256, n_test=64)
  batch_size = 32
  epochs = 3
  optimizer = AdamW(lr=0.01, weight_decay=0.1, groups={groups})
  seed = 0
  {more}
}}
"""
GROUPS = '[Group("*.bias", kinds="LayerNorm", weight_decay=0.0), Group("body.*", lr=0.001)]'


def load(tmp_path, groups=GROUPS, more="", name="net.net"):
    path = tmp_path / name
    path.write_text(NET.format(groups=groups, more=more), encoding="utf-8")
    return netdsl.load(path)


def test_groups_take_parameters_by_pattern_and_kind_first_match_wins(tmp_path):
    spec = load(tmp_path)
    settings = spec.plan().settings()
    model = spec.build()
    opt = loop.make_optimizer(model, settings)
    names = {id(p): n for n, p in model.named_parameters()}
    got = [([names[id(p)] for p in g["params"]], g["lr"], g["weight_decay"])
           for g in opt.param_groups]
    ln = [n for n in names.values() if n.startswith("ln")]  # the LayerNorm, by its kind
    assert got == [
        (["head.weight"], 0.01, 0.1),  # the rest: the optimizer's own settings, first
        (["body.bias", *ln, "head.bias"], 0.01, 0.0),  # body.bias: the first group wins
        (["body.weight"], 0.001, 0.1),
    ]
    text = spec.plan().describe()
    lines = [" ".join(line.split()) for line in text.splitlines()]
    assert 'group 1 Group("*.bias", kinds="LayerNorm", weight_decay=0.0)' in lines
    assert 'group 2 Group("body.*", lr=0.001)' in lines


def test_frozen_parameters_train_from_unfreeze_at_and_resume_exactly(tmp_path, monkeypatch):
    more = 'freeze = "body.*"\n  unfreeze_at = 2\n  checkpoint = Checkpoint(keep="all")'
    spec = load(tmp_path, more=more)
    loop.seed_everything(0)  # as the run does before it builds the model
    start = spec.build().state_dict()
    whole = runner.run(spec, out=tmp_path / "a", progress=False)
    ckpt = loop.load_checkpoint(str(tmp_path / "a" / next((tmp_path / "a").iterdir()).name
                                    / "checkpoints" / "epoch_001.pt"))
    one = ckpt["model"]
    assert torch.equal(one["body.weight"], start["body.weight"])  # frozen in epoch 1
    assert not torch.equal(one["head.weight"], start["head.weight"])
    assert not torch.equal(whole.model.state_dict()["body.weight"], start["body.weight"])
    # an interrupted run resumed across the unfreezing ends where one run does
    from test_run import _interrupt_at

    with monkeypatch.context() as m:
        _interrupt_at(m, (1, None))
        with pytest.raises(loop.TrainingInterrupted) as exc:
            runner.run(spec, out=tmp_path / "b", progress=False)
    resumed = runner.run(spec, resume=exc.value.result["run_dir"], progress=False)
    for k, v in whole.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


@pytest.mark.parametrize("groups, more, message", [
    ('[Group("tail.*", lr=0.1)]', "",
     "parameter group 1 (tail.*) takes no parameter (an earlier group may have taken them); "
     "the trainable parameters are body.weight, body.bias, ln1.weight, ln1.bias, ..."),
    ('[Group("*", lr=0.1), Group(kinds="LayerNorm", lr=0.2)]', "",
     "parameter group 2 (LayerNorm) takes no parameter"),
    ("[]", 'freeze = ["body.*", "bdy.*"]', "freeze: 'bdy.*' matches no trainable parameter"),
])
def test_a_pattern_that_takes_nothing_is_e401_at_its_setting(tmp_path, groups, more, message):
    spec = load(tmp_path, groups=groups, more=more)
    with pytest.raises(netdsl.NetdslError) as e:
        runner.run(spec, out=tmp_path / "runs", progress=False)
    d = e.value.diagnostics[0]
    assert d.code == "E401" and message in d.message
    line = d.span.source.text.splitlines()[d.span.line - 1]
    assert line.lstrip().startswith("freeze" if "freeze" in message else "optimizer")
    assert not list((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("groups, message", [
    ('[Group(lr=0.1)]', "say which parameters"),
    ('[Group("*.bias")]', "give the group a setting of its own"),
    ('[Group("*.bias", momentum=0.9)]', "group 1: AdamW has no setting 'momentum'"),
])
def test_group_mistakes_are_found_by_check(tmp_path, groups, message):
    with pytest.raises(netdsl.NetdslError) as e:
        load(tmp_path, groups=groups).plan()
    assert message in str(e.value)


def test_compiled_scripts_train_groups_and_freezing_like_netdsl_run(tmp_path):
    from test_compile_train import compiled_file, run_netdsl, run_script, same_result

    path = tmp_path / "net.net"
    load(tmp_path, more='freeze = "body.*"\n  unfreeze_at = 2')
    file = compiled_file(path, tmp_path)
    got = run_script(file, "--out", str(tmp_path / "out"), cwd=tmp_path)
    same_result(got, run_netdsl(path, None, tmp_path))


# ---- backbones as feature extractors -----------------------------------------------------------
@pytest.mark.parametrize("builder", BACKBONES)
def test_heads_name_each_backbones_last_classification_layer(builder):
    import torchvision

    try:
        with torch.device("meta"):
            model = getattr(torchvision.models, builder)()
    except NotImplementedError:  # a builder that initialises by copying (regnet)
        model = getattr(torchvision.models, builder)()
    last = [n for n, m in model.named_modules()
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))][-1]
    path = HEADS[builder].replace("]", "").replace("[", ".")
    assert last == path


def test_a_backbone_as_a_feature_extractor(tmp_path):
    text = """\
model Transfer {
  input image: [3, 64, 64]
  f = image -> resnet18(features=true, trainable=false) as backbone
  f -> Linear(5) as head -> logits
  output logits
}
"""
    spec = netdsl.loads(text, "t.net")
    graph = spec.graph("Transfer")
    f = next(n for n in graph.nodes if n.name == "backbone")
    assert list(f.types[0].shape) == [512]  # the features fc would read
    model = spec.build()
    assert isinstance(model.backbone.fc, torch.nn.Identity)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    src = netdsl.compile(spec)
    assert "self.backbone.fc = nn.Identity()" in src
    import torchvision

    torch.manual_seed(0)
    ref = torchvision.models.resnet18()
    ref.fc = torch.nn.Identity()
    model.backbone.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.eval().backbone(x), ref.eval()(x))
    bad = text.replace("features=true,", "features=true, num_classes=5,")
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.loads(bad, "t.net").graph("Transfer")
    assert "num_classes has no effect" in str(e.value)


def test_one_cycle_keeps_each_groups_own_learning_rate(tmp_path):
    spec = load(tmp_path, more="scheduler = OneCycleLR")
    settings = spec.plan().settings()
    model = spec.build()
    opt = loop.make_optimizer(model, settings)
    sched = loop.make_scheduler(opt, settings, 8)
    peaks = [g["max_lr"] for g in opt.param_groups]
    assert peaks == [0.01, 0.01, 0.001]  # the rest, group 1 (no lr of its own), group 2
    assert sched is not None


def test_unfreeze_at_without_freeze_is_e401(tmp_path):
    with pytest.raises(netdsl.NetdslError) as e:
        load(tmp_path, more="unfreeze_at = 2").plan()
    assert "unfreeze_at has nothing to unfreeze" in str(e.value)
