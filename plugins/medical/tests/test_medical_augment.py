"""Batch augmentation gives the very images of the per-image torchvision pipeline it
replaced, for the same seed, at a fraction of the time."""

from __future__ import annotations

import pytest
import torch
from tl_medical.augment import BatchAugment
from tl_medical.loading import ImageDataset
from torchvision.transforms import v2


def per_image_pipeline() -> v2.Compose:
    return v2.Compose(
        [
            v2.RandomAffine(degrees=7, translate=(0.04, 0.04), scale=(0.92, 1.08)),
            v2.ColorJitter(brightness=0.15, contrast=0.15),
        ]
    )


@pytest.mark.parametrize("shape", [(24, 1, 32, 32), (6, 3, 48, 40), (5, 1, 17, 96)])
def test_a_seed_gives_the_per_image_pipelines_images(shape):
    images = torch.randint(0, 256, shape, dtype=torch.uint8)
    pipeline = per_image_pipeline()
    torch.manual_seed(7)
    expected = torch.stack([pipeline(image) for image in images])
    after_expected = torch.rand(1)
    torch.manual_seed(7)
    batched = BatchAugment()(images)
    assert batched.dtype == torch.uint8 and torch.equal(batched, expected)
    assert torch.equal(torch.rand(1), after_expected)  # the generator moved on the same way


def test_each_image_draws_its_own_augmentation_and_the_input_is_untouched():
    images = torch.randint(0, 256, (8, 1, 32, 32), dtype=torch.uint8)
    images[:] = images[0]
    before = images.clone()
    out = BatchAugment()(images)
    assert len({bytes(o.numpy()) for o in out}) == 8
    assert torch.equal(images, before)


def test_the_dataset_augments_whole_batches_only_for_training():
    images = torch.randint(0, 256, (8, 1, 32, 32), dtype=torch.uint8)
    plain = ImageDataset(images, torch.arange(8))
    assert torch.equal(plain[2][0], images[2]) and plain[5][1] == 5
    train = ImageDataset(images, torch.arange(8), augment=True)
    batch = train.__getitems__([0, 1, 2])
    assert len(batch) == 3 and [int(t) for _, t in batch] == [0, 1, 2]
    train.augment = False
    assert torch.equal(train.__getitems__([4])[0][0], images[4])
