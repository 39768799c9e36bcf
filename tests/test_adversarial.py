"""`tl run --adversarial`: FGSM/PGD training through the core trainer, robust accuracy of
the adversarially and the plainly trained model, ONNX export unchanged."""

import json

import pytest
import torch
from tl.core import ConfigError
from tl.core.adversarial import attack
from tl.core.run import run_plugin
from torch import nn
from toy_plugin import ToyPlugin, toy_options


def test_attacks_stay_in_the_epsilon_ball_and_raise_the_loss():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    images = torch.randint(0, 256, (8, 1, 4, 4), dtype=torch.uint8)
    targets = torch.randint(0, 3, (8,))
    loss = nn.functional.cross_entropy
    before = loss(model(images.float()), targets)
    for method in ("fgsm", "pgd"):
        adv = attack(model, images, targets, loss, method, epsilon=4 / 255, steps=3)
        assert (adv - images.float()).abs().max() <= 4.0 + 1e-4
        assert adv.min() >= 0 and adv.max() <= 255
        assert loss(model(adv), targets) > before
    assert all(p.grad is None for p in model.parameters())


def test_adversarial_run_reports_robust_accuracy_and_exports(toy_data, tmp_path):
    run = run_plugin(
        ToyPlugin(),
        toy_options(toy_data, tmp_path, epochs=1, adversarial="fgsm", epsilon=0.03),
    )
    metrics = json.loads((run / "metrics.json").read_text())
    adv = metrics["adversarial"]
    assert adv["attack"] == "fgsm" and adv["epsilon"] == pytest.approx(0.03)
    for side in (adv, adv["plain"]):
        assert 0 <= side["robust_accuracy"] <= side["clean_accuracy"] <= 1
    assert adv["clean_accuracy"] == pytest.approx(metrics["accuracy"])
    assert metrics["onnx_parity"]["max_abs_diff"] < 1e-4
    assert (run / "plain" / "history.csv").exists()
    assert "Adversarial robustness" in (run / "report.md").read_text()


class _NotAnImageClassifier(ToyPlugin):
    def build_model(self, spec, data, options):
        model = nn.Module()
        model.backbone, model.head = nn.Flatten(), nn.Linear(48 * 48, 3)
        return model


def test_adversarial_needs_an_image_classifier(toy_data, tmp_path):
    with pytest.raises(ConfigError, match="image classification"):
        run_plugin(_NotAnImageClassifier(), toy_options(toy_data, tmp_path, adversarial="fgsm"))


def test_epsilon_in_grey_levels_is_refused(toy_data, tmp_path):
    with pytest.raises(ConfigError, match="epsilon") as info:
        run_plugin(ToyPlugin(), toy_options(toy_data, tmp_path, adversarial="fgsm", epsilon=8))
    assert "[0, 1]" in info.value.line()
