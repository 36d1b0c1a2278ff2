"""Two-view augmentation pipelines (torchvision transforms v2): optical and SAR."""

from engine.augment.pipelines import AugmentConfig, build_view_transform, eval_transform

__all__ = ["AugmentConfig", "build_view_transform", "eval_transform"]
