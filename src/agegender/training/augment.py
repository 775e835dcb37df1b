"""Batch augmentation on tensors: cheap enough to run every step on a 2-core CPU."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from agegender.training.config import AugmentConfig

LOW_RESOLUTION_SCALES = (0.35, 1.0)
"""Range of the side a low-resolution face is reduced to, relative to the model input."""


def _uniform(count: int, spread: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(count, generator=generator) * 2 - 1) * spread


def augment_batch(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator,
                  coverage: torch.Tensor | None = None) -> torch.Tensor:
    """Random border fill, flip, rotation, zoom, shift, lower resolution, brightness and
    contrast on an N×C×H×W batch in [0, 1]. `coverage` (N×1×H×W in [0, 1], as the cache's)
    marks the pixels each crop has of its photo; the border fill needs it.

    The random draws come from the CPU `generator` whatever device `images` is on, so a seeded
    run augments identically on a CPU and on a GPU.
    """
    device = images.device
    count = images.shape[0]
    if config.border_fill and coverage is not None:
        images = _fill_border(images, coverage, config.border_fill, generator)
    if config.flip:
        flipped = (torch.rand(count, generator=generator) < 0.5).to(device)
        images = torch.where(flipped[:, None, None, None], images.flip(3), images)
    if config.rotation_degrees or config.zoom or config.shift:
        images = _random_affine(images, config.rotation_degrees, config.zoom, config.shift,
                                generator)
    if config.low_resolution:
        images = _lower_resolution(images, config.low_resolution, generator)
    if config.contrast or config.brightness:
        contrast = 1 + _uniform(count, config.contrast, generator).to(device)[:, None, None, None]
        brightness = _uniform(count, config.brightness, generator).to(device)[:, None, None, None]
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = ((images - mean) * contrast + mean + brightness).clamp(0, 1)
    return images


def jitter(images: torch.Tensor, pixels: float, generator: torch.Generator) -> torch.Tensor:
    """The batch moved by up to `pixels` px, turned by up to as many degrees and scaled by up
    to as many percent, resampled bilinearly: two framings of one face as two runs of a
    detector give them. Works on any N×C×H×W tensor (a model input too)."""
    shift = pixels / images.shape[-1]  # as a share of the side
    return _random_affine(images, pixels, pixels / 100, shift, generator)


def _random_affine(images: torch.Tensor, degrees: float, zoom: float, shift: float,
                   generator: torch.Generator) -> torch.Tensor:
    """Each image rotated by up to ±`degrees`, scaled by up to ±`zoom` and shifted by up to
    ±`shift` of its side (reflecting at the edges)."""
    count = images.shape[0]
    angle = _uniform(count, math.radians(degrees), generator)
    scale = 1 + _uniform(count, zoom, generator)
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0] = torch.cos(angle) / scale
    theta[:, 0, 1] = -torch.sin(angle) / scale
    theta[:, 1, 0] = torch.sin(angle) / scale
    theta[:, 1, 1] = torch.cos(angle) / scale
    theta[:, 0, 2] = _uniform(count, shift * 2, generator)  # grid spans [-1, 1]
    theta[:, 1, 2] = _uniform(count, shift * 2, generator)
    grid = F.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="reflection", align_corners=False)


def _fill_border(images: torch.Tensor, coverage: torch.Tensor, share: float,
                 generator: torch.Generator) -> torch.Tensor:
    """In `share` of the images, the black area where the alignment reached past the photo is
    filled with the same area of the next image in the batch (and, where that one has no
    pixels either, a random colour). A face found in a photo has surroundings there, so the
    model learns to give the same answer whatever they show."""
    count, channels = images.shape[:2]
    chosen = (torch.rand(count, generator=generator) < share).to(images.device)
    colour = torch.rand(count, channels, 1, 1, generator=generator).to(images.device)
    other, other_coverage = images.roll(1, 0), coverage.roll(1, 0)
    fill = other * other_coverage + colour * (1 - other_coverage)
    filled = images * coverage + fill * (1 - coverage)
    return torch.where(chosen[:, None, None, None], filled, images)


def _lower_resolution(images: torch.Tensor, share: float, generator: torch.Generator
                      ) -> torch.Tensor:
    """`share` of the images reduced (area average) to a random side in
    `LOW_RESOLUTION_SCALES` of theirs and enlarged back (bilinear), so the model learns to
    give a small face in a photo the answer it gives the same face at full resolution."""
    count, height, width = images.shape[0], images.shape[2], images.shape[3]
    chosen = torch.rand(count, generator=generator) < share
    low, high = LOW_RESOLUTION_SCALES
    scales = low + torch.rand(count, generator=generator) * (high - low)
    images = images.clone()
    for index in chosen.nonzero().flatten().tolist():
        size = (max(2, round(height * float(scales[index]))),
                max(2, round(width * float(scales[index]))))
        reduced = F.interpolate(images[index:index + 1], size=size, mode="area")
        images[index:index + 1] = F.interpolate(reduced, size=(height, width), mode="bilinear",
                                                align_corners=False).clamp(0, 1)
    return images
