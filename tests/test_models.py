import pytest
import torch

from agegender.models.factory import create_model
from agegender.training.presets import PRESETS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_and_outputs_one_gender_logit_and_one_age_per_image(name):
    config = PRESETS[name]
    prep = config.preprocessing
    model = create_model(config.model, prep, load_pretrained=False).eval()
    gender_logit, age, *_ = model(torch.rand(3, prep.channels, prep.size, prep.size))
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


def test_transfer_presets_predict_an_age_distribution_whose_mean_is_the_age():
    from agegender.models.age_distribution import NUM_AGE_BINS, expected_age

    config = PRESETS["transfer-mobilenet_v2"]
    prep = config.preprocessing
    model = create_model(config.model, prep, load_pretrained=False).eval()
    with torch.no_grad():
        _, age, age_logits = model(torch.rand(2, 3, prep.size, prep.size))
    assert age_logits.shape == (2, NUM_AGE_BINS)
    torch.testing.assert_close(age, expected_age(age_logits))


def test_transfer_models_refuse_grayscale_input():
    config = PRESETS["transfer-mobilenet_v2"]
    with pytest.raises(ValueError, match="RGB"):
        create_model(config.model, config.preprocessing.__class__(size=32, grayscale=True))
