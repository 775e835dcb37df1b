"""The photographic augmentations of `training.augment`: grayscale, faded colour, noise, blur,
JPEG, exposure, erasing and perspective, each on the chosen share of faces only."""

import argparse
import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from agegender.training.augment import augment_batch, jpeg_round_trip
from agegender.training.config import AugmentConfig
from agegender.training.flags import add_config_flags, given_overrides

NEW = ("perspective", "blur", "exposure", "grayscale", "colour_cast", "noise", "jpeg",
       "erasing")
OFF = {"flip": False, "rotation_degrees": 0, "zoom": 0, "shift": 0, "brightness": 0,
       "contrast": 0}
ASTRONAUT = Path(__file__).parents[1] / "examples" / "astronaut_face.jpg"


def only(name: str, share: float = 1.0, **more) -> AugmentConfig:
    """A config with every augmentation off but `name` at `share`."""
    return AugmentConfig(**{**OFF, name: share, **more})


def faces(count: int = 64, side: int = 64, channels: int = 3, seed: int = 0,
          dtype: torch.dtype = torch.float32, cells: int = 16) -> torch.Tensor:
    """Smooth random colour images in [0.1, 0.9]: `cells` × `cells` random colours blended
    bilinearly."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, channels, cells, cells, generator=generator)
    images = F.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False)
    return (0.1 + 0.8 * images).to(dtype)


def run(images: torch.Tensor, config: AugmentConfig, seed: int = 0) -> torch.Tensor:
    return augment_batch(images, config, torch.Generator().manual_seed(seed))


def changed(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Per face: whether any pixel differs."""
    return (before != after).flatten(1).any(1)


def high_frequency(images: torch.Tensor) -> torch.Tensor:
    """Per face: mean squared difference of horizontal and vertical neighbours."""
    return ((images.diff(dim=3) ** 2).mean((1, 2, 3)) + (images.diff(dim=2) ** 2).mean((1, 2, 3)))


def test_new_augmentations_are_off_by_default():
    defaults = AugmentConfig()
    assert all(getattr(defaults, name) == 0 for name in NEW)


@pytest.mark.parametrize("name", NEW)
def test_a_share_of_0_changes_nothing_and_draws_nothing(name):
    images = faces(8)
    generator = torch.Generator().manual_seed(5)
    state = generator.get_state()
    out = augment_batch(images, only(name, 0.0), generator)
    assert torch.equal(out, images)
    assert torch.equal(generator.get_state(), state)


def test_seeded_runs_of_the_earlier_augmentations_repeat_as_before():
    images = faces(6, side=32)
    coverage = torch.ones(6, 1, 32, 32)
    coverage[:, :, :6] = 0
    config = AugmentConfig(low_resolution=0.5, border_fill=0.5)  # every earlier stage on
    out = augment_batch(images, config, torch.Generator().manual_seed(5), coverage)
    # per-face means from the augmentation before the photographic stages were added
    before = [0.469883, 0.689109, 0.691188, 0.671904, 0.596905, 0.651095]
    assert torch.allclose(out.mean((1, 2, 3)), torch.tensor(before), atol=1e-5)


@pytest.mark.parametrize("name", NEW)
def test_only_the_chosen_share_of_faces_changes(name):
    images = faces(200)
    out = run(images, only(name, 0.5))
    share = changed(images, out).float().mean().item()
    assert 0.38 < share < 0.62
    assert changed(images, run(images, only(name, 1.0))).all()


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("channels", [3, 1])
def test_range_shape_and_dtype_are_kept(name, channels):
    images = faces(16, side=40, channels=channels, dtype=torch.float64)  # 40: not a multiple of 16
    images[:, :, :4] = 0.0  # black and white areas: nothing may leave [0, 1]
    images[:, :, -4:] = 1.0
    out = run(images, only(name, 1.0))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("name", NEW)
def test_the_same_seed_repeats_exactly(name):
    images = faces(16)
    assert torch.equal(run(images, only(name, 0.7), seed=3), run(images, only(name, 0.7), seed=3))
    assert not torch.equal(run(images, only(name, 0.7), seed=3),
                           run(images, only(name, 0.7), seed=4))


def test_all_at_once_with_the_defaults_repeats_and_keeps_range():
    config = AugmentConfig(**dict.fromkeys(NEW, 0.5), low_resolution=0.5, rotation_degrees=40)
    images = faces(32)
    out = run(images, config, seed=1)
    assert torch.equal(out, run(images, config, seed=1))
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1


def test_grayscale_sets_every_channel_to_the_luma():
    images = faces(8)
    out = run(images, only("grayscale"))
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    luma = 0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]
    assert torch.allclose(out[:, 0], luma, atol=1e-6)


def test_blur_lowers_and_noise_raises_high_frequency_energy():
    images = faces(32, side=112)  # the side the blur's widths are given for
    before = high_frequency(images)
    assert (high_frequency(run(images, only("blur"))) < 0.9 * before).all()
    assert (high_frequency(run(images, only("noise"))) > 1.1 * before).all()


def test_noise_is_zero_mean_and_at_most_a_few_percent():
    images = faces(64)
    difference = run(images, only("noise")) - images
    assert difference.mean().abs() < 0.005
    assert 0.005 < difference.std() < 0.1


def test_jpeg_stays_close_to_the_input_and_to_a_real_jpeg():
    photo = np.asarray(Image.open(ASTRONAUT).convert("RGB").resize((112, 112))).copy()
    image = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255
    out = run(image.expand(8, -1, -1, -1), only("jpeg"))
    error = (out - image).abs().mean((1, 2, 3))
    assert (error > 0.002).all() and (error < 0.04).all()
    for quality in (30, 90):
        buffer = io.BytesIO()
        Image.fromarray(photo).save(buffer, "JPEG", quality=quality)
        real = torch.from_numpy(np.asarray(Image.open(buffer)).copy()).permute(2, 0, 1)[None]
        real = real.float() / 255
        ours = jpeg_round_trip(image, torch.tensor([quality]))
        # the same blocks and steps: far closer to libjpeg's result than either is to the input
        assert (ours - real).abs().mean() < 0.5 * (real - image).abs().mean()


def test_jpeg_error_is_blocky():
    images = faces(16, cells=4)  # smooth: block edges show
    error = jpeg_round_trip(images, torch.full((16,), 30)) - images
    steps = error.diff(dim=3).abs().mean((0, 1, 2))  # between columns x and x + 1
    across = steps[7::8].mean()  # steps across the 8×8 block boundaries
    within = torch.cat([steps[offset::8] for offset in range(7)]).mean()
    assert across > 1.5 * within


def test_exposure_moves_the_mean_and_keeps_the_order_of_pixels():
    images = faces(64)
    out = run(images, only("exposure"))
    moved = (out.mean((1, 2, 3)) - images.mean((1, 2, 3))).abs()
    assert (moved > 0.01).float().mean() > 0.8
    assert (out.mean((1, 2, 3)) > images.mean((1, 2, 3))).any()  # brighter and darker faces
    assert (out.mean((1, 2, 3)) < images.mean((1, 2, 3))).any()
    order = images.flatten(1).argsort(1)  # a monotone tone curve: sorted stays sorted
    assert (out.flatten(1).gather(1, order).diff(dim=1) >= 0).all()


def test_colour_cast_washes_out_colour_and_contrast():
    images = faces(128)
    out = run(images, only("colour_cast"))

    def colourfulness(batch):
        return (batch.amax(1) - batch.amin(1)).mean()

    assert colourfulness(out) < 0.85 * colourfulness(images)
    assert out.std((2, 3)).mean() < 0.9 * images.std((2, 3)).mean()
    tint = out.mean((0, 2, 3)) - images.mean((0, 2, 3))
    assert tint[0] > tint[2]  # warm on average: more red than blue


def test_erasing_replaces_one_rectangle():
    images = faces(64)
    out = run(images, only("erasing"))
    for before, after in zip(images, out, strict=True):
        mask = (before != after).any(0)
        rows, columns = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        box = mask[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1]
        assert box.all()  # every pixel of the bounding box is replaced: a full rectangle
        assert mask.sum() == box.numel()  # and nothing outside it
        assert 0.015 < box.numel() / mask.numel() < 0.22


def blob(count: int, side: int, centre: tuple[float, float]) -> torch.Tensor:
    """A Gaussian spot at `centre` (x, y in pixels) on black."""
    y, x = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    spot = torch.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * 2.0 ** 2))
    return spot.expand(count, 3, side, side).clone()


def centroid(images: torch.Tensor) -> torch.Tensor:
    side = images.shape[-1]
    weights = images[:, 0] / images[:, 0].sum((1, 2), keepdim=True)
    y, x = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    return torch.stack([(weights * x).sum((1, 2)), (weights * y).sum((1, 2))], 1)


def test_perspective_turns_faces_about_their_centre():
    side = 64
    middle = (side - 1) / 2
    centred = blob(32, side, (middle, middle))
    out = run(centred, only("perspective"))
    assert (centroid(out) - middle).abs().max() < 0.5  # the centre stays in place
    corner = (middle + 20, middle - 20)
    off_centre = run(blob(32, side, corner), only("perspective"))
    moved = (centroid(off_centre) - torch.tensor(corner)).norm(dim=1)
    assert moved.mean() > 0.5 and moved.max() > 1.5  # points away from the centre move
    assert moved.max() < 6  # by a turn of at most 15°: ~2 px at 28 px from the centre


def test_perspective_and_the_affine_move_share_one_resampling():
    images = faces(64)
    affine = AugmentConfig(**{**OFF, "rotation_degrees": 30, "zoom": 0.1})
    turned = AugmentConfig(**{**OFF, "rotation_degrees": 30, "zoom": 0.1, "perspective": 0.5})
    plain, both = run(images, affine), run(images, turned)
    same = ~changed(plain, both)  # the same turns and zooms: unturned faces are bit-identical
    assert 0.3 < same.float().mean() < 0.7


def test_share_fields_are_flags_and_refuse_values_outside_0_to_1():
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    args = parser.parse_args(["--grayscale", "0.2", "--colour-cast", "0.3", "--jpeg", "0.5"])
    assert given_overrides(args) == {"augment.grayscale": 0.2, "augment.colour_cast": 0.3,
                                     "augment.jpeg": 0.5}
    with pytest.raises(ValueError, match="noise"):
        AugmentConfig(noise=1.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_a_gpu_batch_is_augmented_there_as_on_the_cpu():
    config = AugmentConfig(**dict.fromkeys(NEW, 0.5))
    images = faces(16)
    on_gpu = run(images.cuda(), config)
    assert on_gpu.is_cuda
    assert (on_gpu.cpu() - run(images, config)).abs().max() < 0.02
