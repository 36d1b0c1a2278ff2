"""The data settings a DHP run sends to its stage-1 nodes carry the recipe's augmentations exactly."""

import pytest

from engine.augment import AugmentConfig
from engine.dhp.batches import DataSettings
from engine.errors import ConfigError
from engine.model import ModelConfig
from engine.pretrain import PretrainConfig


def test_a_sar_recipe_with_strong_radiometry_travels_to_the_nodes_unchanged():
    recipe = PretrainConfig(model=ModelConfig(in_channels=1), modality="sar",
                            augment=AugmentConfig(size=32, crop_scale=(0.5, 1.0), rotation="any", sar_radiometry="strong"))
    data = DataSettings.of_recipe(recipe, load_size=48)
    assert data.augment == recipe.augment
    assert DataSettings.from_dict(data.to_dict()) == data  # what the wire carries rebuilds the same views


def test_a_recipe_a_dhp_run_cannot_carry_and_an_unknown_radiometry_are_refused():
    blurless = PretrainConfig(augment=AugmentConfig(size=32, blur_probability=0.0))
    with pytest.raises(ConfigError, match="DHP run takes"):
        DataSettings.of_recipe(blurless, load_size=48)
    with pytest.raises(ConfigError, match="SAR radiometry"):
        DataSettings(path=None, modality="sar", sar_radiometry="harsh")
    with pytest.raises(ConfigError, match="rotation"):
        DataSettings(path=None, rotation="rot45")
