import pytest
import timm
import torch
from tl.core import ClassifierModel, ConfigError
from tl.core.backbones import is_vit
from tl.core.strategies import (
    FitContext,
    StrategyPlan,
    backbone_stages,
    build_plan,
    parameter_counts,
    parse_strategy,
    register_strategy,
    strategy_names,
)


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


def test_auto_unfreezes_gradually_and_holds_early_stopping_until_all_has_trained():
    model = make_model()
    options = {"strategy": "auto", "lr": 1e-3, "weight_decay": 0.05, "epochs": 15}
    plan = build_plan(model, options)
    head = sum(p.numel() for p in model.head.parameters())
    counts = []
    for epoch in range(8):
        plan.apply(model, epoch)
        counts.append(parameter_counts(model)[0])
    assert counts[0] == head and counts[0] < counts[1] < counts[2] < counts[5]
    assert counts[5:] == [parameter_counts(model)[1]] * 3  # all 5 stages from epoch 6 on
    assert {g["lr"] for g in plan.param_groups} == {1e-3}
    assert plan.min_epochs == 7  # two epochs of the whole model before it may stop
    slower = build_plan(make_model(), {**options, "unfreeze_every": 2})
    assert slower.min_epochs == 12


def test_early_stopping_waits_for_the_plans_minimum_epochs():
    from types import SimpleNamespace

    from tl.core.callbacks import EarlyStopping
    from tl.core.trainer import FitResult

    trainer = SimpleNamespace(
        task=SimpleNamespace(monitor="accuracy", monitor_mode="max"),
        config=SimpleNamespace(patience=1),
    )
    state = SimpleNamespace(plan=SimpleNamespace(min_epochs=4), result=FitResult(), bad_epochs=0)
    stopped_at = None
    for epoch, score in enumerate([0.9, 0.5, 0.5, 0.5, 0.5]):
        state.epoch, state.val_metrics = epoch, {"accuracy": score}
        EarlyStopping().on_validation_end(trainer, state)
        if state.result.stopped_early:
            stopped_at = epoch + 1
            break
    assert stopped_at == 4 and state.result.best_epoch == 1


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


@pytest.mark.parametrize("backbone", ["resnet10t", "vit_tiny_patch16_224"])
def test_train_mode_switches_off_exactly_the_frozen_parts_under_partial(backbone):
    """Eval mode for every module inside one whose parameters are all frozen (its BatchNorm,
    dropout and activations alike); train mode for everything on a path to a trained one."""
    model = make_model(backbone)
    build_plan(model, "partial:1", 1e-3, 0.0).train_mode(model)

    def frozen(module):
        params = list(module.parameters())
        return bool(params) and not any(p.requires_grad for p in params)

    expected = {}
    for name, module in model.backbone.named_modules():
        parent = name.rpartition(".")[0] if name else None
        expected[name] = not (frozen(module) or (parent is not None and not expected[parent]))
    actual = {name: module.training for name, module in model.backbone.named_modules()}
    assert actual == expected
    assert model.head.training and any(actual.values()) and not all(actual.values())


def test_batchnorm_statistics_update_under_full():
    model = make_model()
    plan = build_plan(model, "full", 1e-3, 0.0)
    before = model.backbone.bn1.running_mean.clone() if hasattr(model.backbone, "bn1") else None
    plan.train_mode(model)
    model(torch.rand(8, 3, 32, 32) * 255)
    assert before is not None and not torch.equal(before, model.backbone.bn1.running_mean)


# ---------------------------------------------------------------------------- registry
def test_every_builtin_strategy_is_registered_in_order():
    assert strategy_names() == [
        "linear",
        "partial:N",
        "full",
        "gradual",
        "llrd",
        "auto",
        "lora",
        "prompt",
        "prototypes",
    ]
    assert parse_strategy(" Partial:2 ") == ("partial", 2)
    assert parse_strategy(None) == ("full", None)


@pytest.mark.parametrize("text", ["freeze-some", "partial", "linear:2", "partial:x"])
def test_unknown_strategy_names_every_registered_one_on_one_line(text):
    with pytest.raises(ConfigError) as info:
        parse_strategy(text)
    line = str(info.value)
    assert "\n" not in line and line.startswith(f"error: unknown strategy '{text}'")
    assert all(name in line for name in strategy_names())


def test_options_mapping_and_keyword_form_build_the_same_plan():
    options = {"strategy": "llrd", "lr": 1e-3, "weight_decay": 0.05, "layer_decay": 0.5}
    by_options = build_plan(make_model(), options)
    by_keywords = build_plan(make_model(), "llrd", 1e-3, 0.05, layer_decay=0.5)
    summary = [
        [(g["name"], g["lr"], g["weight_decay"]) for g in p.param_groups]
        for p in (by_options, by_keywords)
    ]
    assert summary[0] == summary[1]
    with pytest.raises(TypeError):
        build_plan(make_model(), options, 1e-3)


def test_prototypes_plan_freezes_the_whole_model():
    model = make_model()
    plan = build_plan(model, {"strategy": "prototypes", "lr": 1e-3})
    assert plan.param_groups == [] and plan.n_stages == 0
    assert parameter_counts(model)[0] == 0


class _FakeTrainer:
    def __init__(self):
        self.calls = []

    def fit(self, model, plan, train, val, collate, resume=False):
        self.calls.append(("fit", resume))
        return "result"


def test_a_registered_strategy_builds_and_fits_through_the_default_plan():
    finished = []

    class HeadOnlyPlan(StrategyPlan):
        def finish(self, model):
            finished.append(model)

    @register_strategy("test-head-only")
    def build_head_only(model, options):
        head = [n for n, _ in model.named_parameters() if n.startswith("head.")]
        plan = HeadOnlyPlan("test-head-only", [], head, [], 0)
        plan.apply(model)
        return plan

    model = make_model()
    plan = build_plan(model, {"strategy": "test-head-only", "lr": 1e-3})
    assert trainable_names(model) == {"head.1.weight", "head.1.bias"}
    assert "test-head-only" in strategy_names()
    trainer = _FakeTrainer()
    ctx = FitContext(trainer, model, train=[1], val=[], resume=True)
    assert plan.fit(ctx) == "result"
    assert trainer.calls == [("fit", True)] and finished == [model]
    register_strategy("test-head-only")(build_head_only)  # the same builder again: fine
    with pytest.raises(ValueError, match="already registered"):
        register_strategy("full")(build_head_only)


def test_is_vit_accepts_a_model_or_its_backbone():
    vit = ClassifierModel(
        timm.create_model("test_vit2", num_classes=0), 3, mean=(0.5,) * 3, std=(0.25,) * 3
    )
    assert is_vit(vit) and is_vit(vit.backbone)
    cnn = make_model()
    assert not is_vit(cnn) and not is_vit(cnn.backbone)


def test_a_tie_on_a_saturated_metric_goes_to_the_lower_validation_loss():
    from types import SimpleNamespace

    from tl.core.callbacks import EarlyStopping
    from tl.core.trainer import FitResult

    trainer = SimpleNamespace(
        task=SimpleNamespace(monitor="auroc", monitor_mode="max"),
        config=SimpleNamespace(patience=2),
    )
    state = SimpleNamespace(plan=SimpleNamespace(min_epochs=0), result=FitResult(), bad_epochs=0)
    best = []
    for epoch, loss in enumerate([0.60, 0.40, 0.45, 0.30, 0.50, 0.55]):
        state.epoch, state.val_metrics = epoch, {"auroc": 1.0, "loss": loss}
        state.result.history.append({"epoch": epoch + 1, "val_auroc": 1.0, "val_loss": loss})
        EarlyStopping().on_validation_end(trainer, state)
        best.append(state.result.best_epoch)
        if state.result.stopped_early:
            break
    assert best == [1, 2, 2, 4, 4, 4] and state.result.stopped_early


def test_the_torch_free_strategy_list_matches_the_registry():
    from tl.core.run_options import STRATEGIES

    builtin = strategy_names()[: len(STRATEGIES)]  # other tests register more after these
    assert [name for name, _ in STRATEGIES] == builtin
