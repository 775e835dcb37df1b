import pytest
import torch

from agegender.models import create_model
from agegender.training import PRESETS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_and_outputs_one_gender_logit_and_one_age_per_image(name):
    config = PRESETS[name]
    prep = config.preprocessing
    model = create_model(config.model, prep).eval()
    gender_logit, age = model(torch.rand(3, prep.channels, prep.size, prep.size))
    assert gender_logit.shape == (3,)
    assert age.shape == (3,)
    assert (age >= 0).all(), "the age head ends in a ReLU"


def test_presets_differ_in_architecture_and_input():
    cnn, separate = PRESETS["seed-cnn"], PRESETS["seed-separate"]
    assert cnn.model.architecture != separate.model.architecture
    assert separate.preprocessing.grayscale and separate.preprocessing.size == 48
    separate_model = create_model(separate.model, separate.preprocessing)
    assert hasattr(separate_model, "gender_trunk") and hasattr(separate_model, "age_trunk")


def test_input_too_small_for_the_pooling_blocks_is_refused():
    config = PRESETS["seed-cnn"]
    with pytest.raises(ValueError, match="too small"):
        create_model(config.model, config.preprocessing.__class__(size=8))


def test_unknown_architecture_is_refused():
    config = PRESETS["seed-cnn"]
    with pytest.raises(ValueError, match="unknown architecture"):
        create_model(config.model.__class__(architecture="nope"), config.preprocessing)
