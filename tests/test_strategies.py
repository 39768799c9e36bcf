import pytest
import timm
import torch
from tl.core import ClassifierModel, ConfigError
from tl.core.strategies import backbone_stages, build_plan, parameter_counts


def make_model(name="resnet10t"):
    torch.manual_seed(0)
    return ClassifierModel(
        timm.create_model(name, num_classes=0), 3, mean=(0.5,) * 3, std=(0.25,) * 3
    )


def trainable_names(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_stages_follow_timm_group_matcher():
    model = make_model()
    stages = backbone_stages(model)
    assert len(stages) == 5  # stem + 4 residual stages
    assert all(n.startswith("backbone.layer4") for n in stages[-1])
    assert sum(len(s) for s in stages) == len(list(model.backbone.parameters()))


def test_linear_trains_only_the_head():
    model = make_model()
    build_plan(model, "linear", 1e-3, 0.05)
    assert trainable_names(model) == {"head.1.weight", "head.1.bias"}


def test_partial_trains_last_n_stages():
    model = make_model()
    build_plan(model, "partial:1", 1e-3, 0.05)
    names = trainable_names(model)
    assert {n for n in names if n.startswith("backbone.")} == {
        n for n, _ in model.named_parameters() if n.startswith("backbone.layer4")
    }
    assert "head.1.weight" in names


def test_full_trains_everything():
    model = make_model()
    build_plan(model, "full", 1e-3, 0.05)
    trainable, total = parameter_counts(model)
    assert trainable == total


def test_partial_out_of_range_is_a_config_error():
    with pytest.raises(ConfigError, match="partial:9"):
        build_plan(make_model(), "partial:9", 1e-3, 0.05)


def test_unknown_strategy_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown strategy"):
        build_plan(make_model(), "freeze-some", 1e-3, 0.05)


def test_gradual_unfreezes_one_stage_per_step_keeping_param_groups():
    model = make_model()
    plan = build_plan(model, "gradual", 1e-3, 0.05, unfreeze_every=2)
    groups_before = [id(g["params"][0]) for g in plan.param_groups]
    counts = []
    for epoch in range(12):
        plan.apply(model, epoch)
        counts.append(parameter_counts(model)[0])
    head = sum(p.numel() for p in model.head.parameters())
    assert counts[0] == counts[1] == head
    assert counts[2] > counts[1] and counts[4] > counts[3]
    assert counts[-1] == parameter_counts(model)[1]
    assert [id(g["params"][0]) for g in plan.param_groups] == groups_before


def test_llrd_lowers_the_learning_rate_towards_the_input():
    model = make_model()
    plan = build_plan(model, "llrd", 1e-3, 0.05, layer_decay=0.5)
    lr = {g["name"]: g["lr"] for g in plan.param_groups}
    assert lr["head"] == pytest.approx(1e-3)
    assert lr["stage4"] == pytest.approx(1e-3 * 0.5)
    assert lr["stage0"] == pytest.approx(1e-3 * 0.5**5)
    no_decay = [g for g in plan.param_groups if g["name"].endswith("no_decay")]
    assert all(g["weight_decay"] == 0 for g in no_decay)
    assert all(p.ndim <= 1 for g in no_decay for p in g["params"])


def test_batchnorm_statistics_stay_frozen_under_linear():
    model = make_model()
    plan = build_plan(model, "linear", 1e-2, 0.0)
    before = {n: b.clone() for n, b in model.named_buffers() if "running" in n}
    optimizer = torch.optim.AdamW(plan.param_groups, lr=1e-2)
    plan.train_mode(model)
    assert not model.backbone.training and model.head.training
    for _ in range(3):
        loss = model(torch.rand(8, 3, 32, 32) * 255).logsumexp(1).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = dict(model.named_buffers())
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert all(p.grad is None for p in model.backbone.parameters())


def test_batchnorm_statistics_update_under_full():
    model = make_model()
    plan = build_plan(model, "full", 1e-3, 0.0)
    before = model.backbone.bn1.running_mean.clone() if hasattr(model.backbone, "bn1") else None
    plan.train_mode(model)
    model(torch.rand(8, 3, 32, 32) * 255)
    assert before is not None and not torch.equal(before, model.backbone.bn1.running_mean)
