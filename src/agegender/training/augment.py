"""Batch augmentation on tensors: cheap enough to run every step on a 2-core CPU.

`augment_batch` applies the stages in the order a photograph forms: the face's pose and
framing (flip, in-plane turn, zoom, shift, out-of-plane turn), then the optics (low resolution,
blur), the exposure and the print's colour (exposure and gamma, brightness and contrast,
grayscale, a faded colour cast), the sensor's noise, the JPEG compression, and last an
occluder (random erasing). Every stage works on the batch's device and keeps pixels in [0, 1],
its shape and dtype; a stage that is off (a share of 0) draws no random numbers, so runs
configured before it existed repeat exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from agegender.training.config import AugmentConfig

LOW_RESOLUTION_SCALES = (0.35, 1.0)
"""Range of the side a low-resolution face is reduced to, relative to the model input."""

PERSPECTIVE_DEGREES = (15.0, 10.0)
"""Largest out-of-plane turn of a face plane: about the vertical axis (yaw), then about the
horizontal one (pitch)."""

PERSPECTIVE_DISTANCE = 3.0
"""Distance of the camera from the face plane, in half-sides of the image: closer than most
photos are taken from, so a flat plane turns with something of the depth of a real head."""

BLUR_SIGMA = (0.5, 1.5)
"""Range of the Gaussian blur's standard deviation in pixels at a side of 112 px (scaled with
the side)."""

EXPOSURE_STOPS = 1.0
"""Largest under- or over-exposure, in stops (a factor of 2 in linear light)."""

GAMMA_OCTAVES = 1.0
"""Gamma is drawn from 2 ** ±this: [0.5, 2]."""

NOISE_SIGMA = (0.01, 0.08)
"""Range of the luminance noise's standard deviation (pixels in [0, 1]); chroma noise, at half
resolution, gets up to as much again."""

JPEG_QUALITY = (30, 90)
"""Range of the JPEG quality (libjpeg's scale of the standard quantisation tables)."""

ERASED_AREA = (0.02, 0.2)
"""Range of the erased rectangle's share of the image (Zhong et al., random erasing)."""

ERASED_ASPECT = 0.3
"""The erased rectangle's height / width lies between this and its inverse."""

Stage = Callable[[torch.Tensor, AugmentConfig, torch.Generator], torch.Tensor]


def _uniform(count: int | tuple[int, ...], spread: float, generator: torch.Generator
             ) -> torch.Tensor:
    shape = (count,) if isinstance(count, int) else count
    return (torch.rand(shape, generator=generator) * 2 - 1) * spread


def _between(count: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + torch.rand(count, generator=generator) * (high - low)


def _choose(count: int, share: float, generator: torch.Generator) -> torch.Tensor:
    """A CPU mask of about `share` of `count` faces."""
    return torch.rand(count, generator=generator) < share


def _per_face(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-face values as an N×1×1×1 tensor on the device and in the dtype of `like`."""
    return values.to(like.device, like.dtype)[:, None, None, None]


def _replace(images: torch.Tensor, chosen: torch.Tensor,
             change: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """`images` with the `chosen` faces replaced by `change(faces, index)` (`index`: their
    positions in the batch, on the CPU, to pick their random parameters), clamped to [0, 1];
    the other faces are left as they are, bit for bit."""
    index = chosen.nonzero().flatten()
    if not len(index):
        return images
    if len(index) == len(images):
        return change(images, index).clamp(0, 1).to(images.dtype)
    on_device = index.to(images.device)
    images = images.clone()
    images[on_device] = change(images[on_device], index).clamp(0, 1).to(images.dtype)
    return images


def augment_batch(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator,
                  coverage: torch.Tensor | None = None) -> torch.Tensor:
    """Random border fill, then each of `STAGES` (see the module's doc) on an N×C×H×W batch in
    [0, 1]. `coverage` (N×1×H×W in [0, 1], as the cache's) marks the pixels each crop has of
    its photo; the border fill needs it.

    The random draws come from the CPU `generator` whatever device `images` is on, so a seeded
    run augments identically on a CPU and on a GPU.
    """
    if config.border_fill and coverage is not None:
        images = _fill_border(images, coverage, config.border_fill, generator)
    for stage in STAGES:
        images = stage(images, config, generator)
    return images


def _flip(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator
          ) -> torch.Tensor:
    if not config.flip:
        return images
    flipped = (torch.rand(images.shape[0], generator=generator) < 0.5).to(images.device)
    return torch.where(flipped[:, None, None, None], images.flip(3), images)


def _move(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator
          ) -> torch.Tensor:
    """In-plane rotation, zoom and shift of every face, and the out-of-plane turn of
    `config.perspective` of them, in one resampling."""
    affine = bool(config.rotation_degrees or config.zoom or config.shift)
    if not affine and not config.perspective:
        return images
    count = images.shape[0]
    theta = (_affine_theta(count, config.rotation_degrees, config.zoom, config.shift, generator)
             if affine else torch.eye(2, 3).expand(count, 2, 3))
    grid = F.affine_grid(theta.to(images.device, images.dtype), list(images.shape),
                         align_corners=False)
    turned = torch.zeros(count, dtype=torch.bool)
    if config.perspective:
        turned = _choose(count, config.perspective, generator)
        homography = _turn_homography(count, generator)
        if turned.any():
            index = turned.nonzero().flatten()
            grid[index.to(grid.device)] = _apply_homography(grid[index.to(grid.device)],
                                                            homography[index])
    return _replace(images, turned | affine, lambda faces, index: F.grid_sample(
        faces, grid if len(index) == count else grid[index.to(grid.device)],
        padding_mode="reflection", align_corners=False))


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
    theta = _affine_theta(images.shape[0], degrees, zoom, shift, generator)
    grid = F.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="reflection", align_corners=False)


def _affine_theta(count: int, degrees: float, zoom: float, shift: float,
                  generator: torch.Generator) -> torch.Tensor:
    """N×2×3 CPU matrices (as `F.affine_grid` takes them) of random turns, zooms and shifts."""
    angle = _uniform(count, math.radians(degrees), generator)
    scale = 1 + _uniform(count, zoom, generator)
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0] = torch.cos(angle) / scale
    theta[:, 0, 1] = -torch.sin(angle) / scale
    theta[:, 1, 0] = torch.sin(angle) / scale
    theta[:, 1, 1] = torch.cos(angle) / scale
    theta[:, 0, 2] = _uniform(count, shift * 2, generator)  # grid spans [-1, 1]
    theta[:, 1, 2] = _uniform(count, shift * 2, generator)
    return theta


def _turn_homography(count: int, generator: torch.Generator) -> torch.Tensor:
    """N×3×3 CPU homographies from the image to a face plane turned by a random yaw and pitch
    (up to `PERSPECTIVE_DEGREES`) about its centre, seen from `PERSPECTIVE_DISTANCE`: they map
    the output's grid coordinates to the input's, and keep the centre in place."""
    yaw_limit, pitch_limit = PERSPECTIVE_DEGREES
    yaw = _uniform(count, math.radians(yaw_limit), generator).double()
    pitch = _uniform(count, math.radians(pitch_limit), generator).double()
    zero, one = torch.zeros_like(yaw), torch.ones_like(yaw)
    turn_y = torch.stack([torch.cos(yaw), zero, torch.sin(yaw), zero, one, zero,
                          -torch.sin(yaw), zero, torch.cos(yaw)], 1).view(count, 3, 3)
    turn_x = torch.stack([one, zero, zero, zero, torch.cos(pitch), -torch.sin(pitch),
                          zero, torch.sin(pitch), torch.cos(pitch)], 1).view(count, 3, 3)
    rotation = turn_y @ turn_x
    # plane point (X, Y) → camera point rotation · (X, Y, 0) + (0, 0, d) → image d·(x/z, y/z)
    distance = PERSPECTIVE_DISTANCE
    plane_to_image = torch.zeros(count, 3, 3, dtype=torch.float64)
    plane_to_image[:, :2, :2] = distance * rotation[:, :2, :2]
    plane_to_image[:, 2, :2] = rotation[:, 2, :2]
    plane_to_image[:, 2, 2] = distance
    return torch.linalg.inv(plane_to_image).float()


def _apply_homography(grid: torch.Tensor, homography: torch.Tensor) -> torch.Tensor:
    """A N×H×W×2 sampling grid mapped through N×3×3 `homography` (CPU)."""
    matrix = homography.to(grid.device, grid.dtype)
    mapped = grid @ matrix[:, None, :2, :2].transpose(-1, -2) + matrix[:, None, None, :2, 2]
    depth = grid @ matrix[:, None, 2, :2, None] + matrix[:, None, None, 2, 2, None]
    return mapped / depth


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


def _blur(images: torch.Tensor, share: float, generator: torch.Generator) -> torch.Tensor:
    """`share` of the images blurred by a Gaussian of a random width in `BLUR_SIGMA`: a face
    out of focus, moving, or behind a soft lens."""
    chosen = _choose(images.shape[0], share, generator)
    sigma = _between(images.shape[0], *BLUR_SIGMA, generator) * images.shape[-1] / 112
    return _replace(images, chosen, lambda faces, index: gaussian_blur(faces, sigma[index]))


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Each N×C×H×W image blurred by a Gaussian of its standard deviation in `sigma` (N, on
    the CPU, in pixels): separable, edges repeated."""
    count, channels, height, width = images.shape
    radius = max(1, math.ceil(3 * float(sigma.max())))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma[:, None].float()) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(channels, 0)
    kernel = kernel.to(images.device, images.dtype)
    flat = images.reshape(1, count * channels, height, width)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"),
                    kernel[:, None, None, :], groups=count * channels)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"),
                    kernel[:, None, :, None], groups=count * channels)
    return flat.reshape(images.shape)


def _expose(images: torch.Tensor, share: float, generator: torch.Generator) -> torch.Tensor:
    """`share` of the images under- or over-exposed by up to `EXPOSURE_STOPS` (highlights
    clip) and given a gamma in 2 ** ±`GAMMA_OCTAVES`."""
    count = images.shape[0]
    chosen = _choose(count, share, generator)
    # pixels are gamma-encoded (≈ linear light ** (1 / 2.2)): a stop is 2 ** (1 / 2.2) here
    gain = 2 ** (_uniform(count, EXPOSURE_STOPS, generator) / 2.2)
    gamma = 2 ** _uniform(count, GAMMA_OCTAVES, generator)
    return _replace(images, chosen, lambda faces, index: (
        faces * _per_face(gain[index], faces)).clamp(0, 1) ** _per_face(gamma[index], faces))


def _brightness_contrast(images: torch.Tensor, config: AugmentConfig,
                         generator: torch.Generator) -> torch.Tensor:
    if not config.contrast and not config.brightness:
        return images
    count = images.shape[0]
    contrast = 1 + _per_face(_uniform(count, config.contrast, generator), images)
    brightness = _per_face(_uniform(count, config.brightness, generator), images)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return ((images - mean) * contrast + mean + brightness).clamp(0, 1)


def _luma(images: torch.Tensor) -> torch.Tensor:
    """N×1×H×W luma (Rec. 601, as JPEG) of RGB images; a one-channel image is its own."""
    if images.shape[1] != 3:
        return images.mean(1, keepdim=True)
    weights = torch.tensor([0.299, 0.587, 0.114], device=images.device, dtype=images.dtype)
    return (images * weights[:, None, None]).sum(1, keepdim=True)


def _to_grayscale(images: torch.Tensor, share: float, generator: torch.Generator
                  ) -> torch.Tensor:
    """`share` of the images in grayscale (their luma in every channel), as black-and-white
    photos are."""
    chosen = _choose(images.shape[0], share, generator)
    return _replace(images, chosen, lambda faces, _: _luma(faces).expand_as(faces))


def _fade(images: torch.Tensor, share: float, generator: torch.Generator) -> torch.Tensor:
    """`share` of the images given the look of a faded or colour-cast print: colours washed
    out (saturation 30–100 %), contrast lowered (60–100 %), blacks lifted (by up to 0.15), and
    each channel's gain changed by up to ±15 % with a warm (sepia-like) tint of up to 15 %."""
    count, channels = images.shape[:2]
    chosen = _choose(count, share, generator)
    saturation = _between(count, 0.3, 1.0, generator)
    contrast = _between(count, 0.6, 1.0, generator)
    black = _between(count, 0.0, 0.15, generator)
    gains = 1 + _uniform((count, channels), 0.15, generator)
    warmth = _between(count, 0.0, 0.15, generator)
    if channels == 3:  # more red, less blue
        gains = gains * (1 + warmth[:, None] * torch.tensor([1.0, 0.0, -1.0]))

    def fade(faces: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        luma = _luma(faces)
        faces = luma + (faces - luma) * _per_face(saturation[index], faces)
        mean = faces.mean(dim=(1, 2, 3), keepdim=True)
        faces = (faces - mean) * _per_face(contrast[index], faces) + mean
        faces = faces * gains[index].to(faces.device, faces.dtype)[:, :, None, None]
        lift = _per_face(black[index], faces)
        return lift + (1 - lift) * faces.clamp(0, 1)

    return _replace(images, chosen, fade)


def _add_noise(images: torch.Tensor, share: float, generator: torch.Generator
               ) -> torch.Tensor:
    """`share` of the images with Gaussian sensor noise or film grain: luminance noise at full
    resolution of a random strength in `NOISE_SIGMA`, and (RGB) chroma noise at half
    resolution of up to as much again."""
    count, channels, height, width = images.shape
    chosen = _choose(count, share, generator)
    strength = _between(count, *NOISE_SIGMA, generator)
    chroma = strength * torch.rand(count, generator=generator)
    picked = int(chosen.sum())
    luma_noise = torch.randn(picked, 1, height, width, generator=generator)
    chroma_noise = (torch.randn(picked, 2, (height + 1) // 2, (width + 1) // 2,
                                generator=generator) if channels == 3 else None)

    def add(faces: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        noise = luma_noise.to(faces.device, faces.dtype) * _per_face(strength[index], faces)
        if chroma_noise is not None:
            colour = F.interpolate(chroma_noise.to(faces.device, faces.dtype),
                                   size=(height, width), mode="bilinear", align_corners=False)
            colour = colour * _per_face(chroma[index], faces)
            noise = noise + _mix_channels(colour, CHROMA_TO_RGB)
        return faces + noise

    return _replace(images, chosen, add)


RGB_TO_YCBCR = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5),
                (0.5, -0.418688, -0.081312))
"""JPEG's (JFIF's) colour transform, with chroma centred on 0."""

CHROMA_TO_RGB = ((0.0, 1.402), (-0.344136, -0.714136), (1.772, 0.0))
"""The RGB change of a change in chroma (Cb, Cr) at unchanged luma (JFIF)."""


def _mix_channels(images: torch.Tensor, matrix: tuple[tuple[float, ...], ...]) -> torch.Tensor:
    """Each pixel's channels multiplied by `matrix` (out × in)."""
    weight = torch.tensor(matrix, device=images.device, dtype=images.dtype)
    return (weight @ images.flatten(2)).unflatten(2, images.shape[2:])


_LUMA_QUANTISATION = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
_CHROMA_QUANTISATION = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, *(99,) * 38)
"""The JPEG standard's (Annex K) quantisation tables at quality 50, row by row."""


def _compress(images: torch.Tensor, share: float, generator: torch.Generator) -> torch.Tensor:
    """`share` of the images passed through JPEG compression at a random quality in
    `JPEG_QUALITY`, computed on the batch's device (`jpeg_round_trip`)."""
    count = images.shape[0]
    chosen = _choose(count, share, generator)
    low, high = JPEG_QUALITY
    quality = low + (torch.rand(count, generator=generator) * (high - low + 1)).floor()
    return _replace(images, chosen,
                    lambda faces, index: jpeg_round_trip(faces, quality[index]))


def jpeg_round_trip(images: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """N×C×H×W images in [0, 1] encoded and decoded as baseline JPEG at each one's `quality`
    (N, 1–100, CPU) would be: YCbCr with 4:2:0 chroma (RGB), the standard tables scaled as
    libjpeg scales them, 8×8 DCT quantisation, pixels rounded to 8 bits. Only the lossless
    entropy coding is left out."""
    count, channels, height, width = images.shape
    pixels = (images * 255).round()
    if height % 16 or width % 16:  # whole 16×16 blocks (8×8 of chroma), edges repeated
        pixels = F.pad(pixels, (0, -width % 16, 0, -height % 16), mode="replicate")
    luma_steps = _quantisation(_LUMA_QUANTISATION, quality)
    if channels != 3:
        planes = pixels.reshape(count * channels, 1, *pixels.shape[2:]) - 128
        decoded = _quantise_blocks(planes, luma_steps.repeat_interleave(channels, 0))
        decoded = decoded.reshape(pixels.shape) + 128
    else:
        ycc = _mix_channels(pixels, RGB_TO_YCBCR)
        luma = _quantise_blocks(ycc[:, :1] - 128, luma_steps) + 128
        chroma = F.avg_pool2d(ycc[:, 1:], 2)  # 4:2:0
        chroma = _quantise_blocks(chroma.reshape(count * 2, 1, *chroma.shape[2:]),
                                  _quantisation(_CHROMA_QUANTISATION, quality)
                                  .repeat_interleave(2, 0)).reshape(chroma.shape)
        chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)
        decoded = luma + _mix_channels(chroma, CHROMA_TO_RGB)
    return (decoded[:, :, :height, :width].clamp(0, 255).round() / 255).to(images.dtype)


def _quantisation(table: tuple[int, ...], quality: torch.Tensor) -> torch.Tensor:
    """N×8×8 quantisation steps of `table` at each `quality` (libjpeg's scaling)."""
    quality = quality.double().clamp(1, 100)
    scale = torch.where(quality < 50, 5000 / quality, 200 - 2 * quality)
    base = torch.tensor(table, dtype=torch.float64)
    return ((base * scale[:, None] + 50) / 100).floor().clamp(1, 255).view(-1, 8, 8).float()


def _dct_matrix(device: torch.device) -> torch.Tensor:
    """The orthonormal 2-D DCT-II of an 8×8 block (JPEG's) as a 64×64 matrix acting on the
    block's pixels row by row: one matrix product transforms every block of a batch."""
    frequency = torch.arange(8, dtype=torch.float64)[:, None]
    position = torch.arange(8, dtype=torch.float64)[None]
    matrix = torch.cos((2 * position + 1) * frequency * math.pi / 16) * math.sqrt(2 / 8)
    matrix[0] /= math.sqrt(2)
    return torch.kron(matrix, matrix).float().to(device)


def _quantise_blocks(plane: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """N×1×H×W planes of levels centred on 0 (H, W multiples of 8) with each 8×8 block's DCT
    quantised by the N×8×8 `steps`, and back."""
    count, _, height, width = plane.shape
    dct = _dct_matrix(plane.device)
    blocks = plane.float().reshape(count, height // 8, 8, width // 8, 8).transpose(2, 3)
    steps = steps.to(plane.device).reshape(count, 1, 64)
    coefficients = torch.round(blocks.reshape(count, -1, 64) @ dct.T / steps) * steps
    blocks = (coefficients @ dct).reshape(count, height // 8, width // 8, 8, 8)
    return blocks.transpose(2, 3).reshape(count, 1, height, width).to(plane.dtype)


def _erase(images: torch.Tensor, share: float, generator: torch.Generator) -> torch.Tensor:
    """`share` of the images with one rectangle (`ERASED_AREA` of the image, aspect within
    `ERASED_ASPECT`) erased (Zhong et al., random erasing): filled with uniform noise or a flat
    grey of random level, an occluder such as a hand, a microphone or a scratch."""
    count, channels, height, width = images.shape
    chosen = _choose(count, share, generator)
    area = _between(count, *ERASED_AREA, generator)
    aspect = torch.exp(_uniform(count, -math.log(ERASED_ASPECT), generator))
    rows = (torch.sqrt(area * aspect) * height).round().clamp(1, height).long()
    columns = (torch.sqrt(area / aspect) * width).round().clamp(1, width).long()
    top = (torch.rand(count, generator=generator) * (height - rows + 1)).long()
    left = (torch.rand(count, generator=generator) * (width - columns + 1)).long()
    noisy = torch.rand(count, generator=generator) < 0.5
    grey = torch.rand(count, generator=generator)
    fills = {index: torch.rand(channels, int(rows[index]), int(columns[index]),
                               generator=generator)
             for index in chosen.nonzero().flatten().tolist() if noisy[index]}

    def erase(faces: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        faces = faces.clone()
        for row, face in enumerate(index.tolist()):
            first_row, first_column = int(top[face]), int(left[face])
            fill = fills.get(face, grey[face]).to(faces.device, faces.dtype)
            faces[row, :, first_row:first_row + int(rows[face]),
                  first_column:first_column + int(columns[face])] = fill
        return faces

    return _replace(images, chosen, erase)


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


def _when(name: str, change: Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]
          ) -> Stage:
    """The stage that applies `change` with the config's share `name` when it is above 0."""
    def stage(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator
              ) -> torch.Tensor:
        share = getattr(config, name)
        return change(images, share, generator) if share else images

    stage.__name__ = f"_{name}_stage"
    return stage


STAGES: tuple[Stage, ...] = (
    _flip, _move,  # pose and framing
    _when("low_resolution", _lower_resolution), _when("blur", _blur),  # optics
    _when("exposure", _expose), _brightness_contrast,  # exposure and colour
    _when("grayscale", _to_grayscale), _when("colour_cast", _fade),
    _when("noise", _add_noise), _when("jpeg", _compress),  # sensor, file
    _when("erasing", _erase),  # occluder
)
"""`augment_batch`'s stages after the border fill, in the order a photograph forms."""
