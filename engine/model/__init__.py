"""Lite-SRL and SimSiam-configuration models, built from torchvision ResNets."""

from engine.model.config import ModelConfig
from engine.model.litesrl import LiteSRL, build_model

__all__ = ["LiteSRL", "ModelConfig", "build_model"]
