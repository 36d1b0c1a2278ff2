"""Fine-tuning: backbone and a linear classifier trained end to end on the labelled split."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.transforms import v2

from engine.augment.ops import RandomRot90
from engine.data.folder import ImageSet
from engine.eval_config import EvalConfig, Progress
from engine.lr_schedule import cosine_lr


def finetune_classifier(
    backbone: nn.Module, train: ImageSet, num_classes: int, mean: torch.Tensor, std: torch.Tensor,
    config: EvalConfig, device: torch.device, on_progress: Progress | None,
) -> nn.Sequential:
    """Train ``Sequential(backbone, Linear)`` with Adam (backbone at ``backbone_lr``, classifier at
    ``lr``, both cosine-decayed), light geometric augmentation and batch ``batch_size``."""
    feature_dim = backbone(torch.zeros(2, train.images.shape[1], config.image_size, config.image_size, device=device)).shape[1]
    model = nn.Sequential(backbone, nn.Linear(feature_dim, num_classes)).to(device)
    optimizer = torch.optim.Adam([
        {"params": backbone.parameters(), "lr": config.backbone_lr, "peak": config.backbone_lr},
        {"params": model[1].parameters(), "lr": config.lr, "peak": config.lr},
    ])
    augment = v2.Compose([
        v2.RandomResizedCrop(config.image_size, scale=(0.6, 1.0), antialias=True),
        v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(), RandomRot90(),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean.tolist(), std.tolist()),
    ])
    generator = torch.Generator().manual_seed(config.seed)
    batch = min(config.batch_size, len(train))
    steps_per_epoch = max(1, len(train) // batch)
    total = config.epochs * steps_per_epoch
    step = 0
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(len(train), generator=generator)
        for position in range(steps_per_epoch):
            index = order[position * batch : (position + 1) * batch]
            x = torch.stack([augment(image) for image in train.images[index]]).to(device)
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, total, group["peak"])
            loss = nn.functional.cross_entropy(model(x), train.labels[index].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
        if on_progress:
            on_progress("fine-tuning", epoch + 1, config.epochs)
    return model.eval()
