"""`tl.core.image_pretrain`: augmentation, NT-Xent, and the task's weights fit `tl run`."""

import torch
from tl.core import BackboneSpec, ClassifierModel, create_backbone
from tl.core.image_pretrain import BatchAugment, image_pretrain_task, nt_xent


def test_batch_augment_keeps_shape_range_and_is_seeded():
    images = torch.randint(0, 256, (6, 1, 32, 32), dtype=torch.uint8)
    torch.manual_seed(1)
    a = BatchAugment()(images)
    torch.manual_seed(1)
    b = BatchAugment()(images)
    assert a.shape == (6, 1, 32, 32) and a.min() >= 0 and a.max() <= 255
    assert torch.equal(a, b) and not torch.equal(a, images.float())


def test_nt_xent_rewards_matching_views():
    torch.manual_seed(0)
    z = torch.randn(8, 16)
    matched, acc = nt_xent(z, z + 0.01 * torch.randn(8, 16), 0.2)
    shuffled, _ = nt_xent(z, torch.randn(8, 16), 0.2)
    assert matched < shuffled and acc == 1.0


def test_simclr_task_saves_what_the_classifier_loads():
    spec = BackboneSpec("resnet10t", "none")
    images = torch.randint(0, 256, (20, 1, 32, 32), dtype=torch.uint8)
    task = image_pretrain_task(spec, images, val_fraction=0.2)
    assert len(task.train) == 16 and len(task.val) == 4
    loss = task.training_step(task.model, torch.stack([task.train[i] for i in range(4)]))
    assert loss.ndim == 0 and torch.isfinite(loss)
    saved = {k for k in task.model.state_dict() if k.startswith("backbone.")}
    target = ClassifierModel(
        create_backbone(spec, num_classes=0, in_chans=1), 3, mean=(0.5,), std=(0.2,)
    )
    assert saved == {k for k in target.state_dict() if k.startswith("backbone.")}
    assert task.metadata["in_chans"] == 1 and task.metadata["method"] == "simclr"
