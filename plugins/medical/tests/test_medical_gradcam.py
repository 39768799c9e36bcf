"""Grad-CAM samples: every class, correct and wrong predictions, chosen deterministically;
the figure from an untrained tiny model (no training needed to check the report)."""

from types import SimpleNamespace

import numpy as np
import pytest
from tl.core import Fitted
from tl_medical.reporting import _gradcam_section, gradcam_samples, predicted_classes


def test_every_class_gets_a_correct_and_a_wrong_image_where_there_is_one():
    truth = np.array([0, 0, 0, 1, 1, 2, 2, 2, 0, 1])
    predicted = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2, 0])  # class 2 is never predicted wrongly
    chosen = gradcam_samples(truth, predicted, multilabel=False, budget=8)
    assert chosen == gradcam_samples(truth, predicted, multilabel=False, budget=8)
    kinds = {(int(truth[i]), bool(truth[i] == predicted[i])) for i in chosen}
    assert kinds == {(0, True), (0, False), (1, True), (1, False), (2, True)}
    assert len(chosen) == 8 and len(set(chosen)) == 8  # the rest filled with other images
    assert chosen[:5] == [0, 2, 3, 9, 5]  # grouped by class, correct first, test order


def test_coverage_comes_before_a_second_image_of_a_class():
    truth = np.repeat(np.arange(6), 3)
    predicted = np.roll(truth, 1)  # each class has correct and wrong predictions
    chosen = gradcam_samples(truth, predicted, multilabel=False, budget=6)
    assert sorted(int(truth[i]) for i in chosen) == list(range(6))


def test_multilabel_groups_include_images_without_a_label():
    truth = np.array([[1, 0], [1, 0], [0, 1], [0, 0], [0, 0]])
    predicted = np.array([[1, 0], [1, 1], [0, 1], [0, 0], [1, 0]])
    chosen = gradcam_samples(truth, predicted, multilabel=True, budget=8)
    assert set(chosen) == {0, 1, 2, 3, 4}


def test_predicted_classes_use_the_fitted_threshold():
    probs = np.array([[0.7, 0.3], [0.9, 0.1]])
    assert predicted_classes(probs, False, 0.2).tolist() == [1, 0]
    assert predicted_classes(probs, False, None).tolist() == [0, 0]
    assert predicted_classes(probs, True, None).tolist() == [[1, 0], [1, 0]]


def test_gradcam_section_draws_the_chosen_samples(tmp_path):
    timm = pytest.importorskip("timm")
    import torch
    from PIL import Image
    from tl.core import ClassifierModel, data_config

    torch.manual_seed(0)
    backbone = timm.create_model("resnet10t", pretrained=False, num_classes=0)
    config = data_config(backbone, 32, 3)
    model = ClassifierModel(backbone, 3, 0.0, config["mean"], config["std"]).eval()
    images = torch.randint(0, 256, (9, 3, 32, 32), dtype=torch.uint8)
    targets = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    probs = np.eye(3)[[0, 1, 1, 0, 2, 2, 1, 1, 2]] * 0.8 + 0.2 / 3
    data = SimpleNamespace(test=_Test(images, targets), labels=["a", "b", "c"], multilabel=False)
    fitted = Fitted(metrics={}, export={"threshold": None}, artifacts={"test_probs": probs})
    section = _gradcam_section(tmp_path, data, model, fitted)
    assert section.images == ["gradcam.png"]
    assert "correct" in section.markdown and "wrong" in section.markdown
    width, height = Image.open(tmp_path / "gradcam.png").size
    assert width >= 640 and height > 300


class _Test:
    def __init__(self, images, targets):
        self.images, self.targets = images, targets

    def __len__(self):
        return len(self.images)
