"""CIFAR-10-C, regenerated offline and reproducibly: the corruptions of CIFAR-10-C's own generator at its five
severities and with its CIFAR constants, on NumPy, SciPy and Pillow alone.

The reference is ``make_cifar_c.py`` (hendrycks/robustness, ImageNet-C/create_c), which corrupts one PIL image
at a time with scikit-image, ImageMagick (Wand) and OpenCV, unseeded. Here every corruption takes a batch
``(N, 32, 32, 3)`` of uint8 images, uses the same constants and the same arithmetic (the library operations
are rewritten in ``cifar_c_ops`` and ``cifar_c_opencv``), and draws its randomness from one
``numpy.random.Generator`` per image, derived from (seed, corruption name, severity, image id): the same
inputs give byte-identical outputs in any process, and an image's corruption does not depend on the rest of
the batch. As in the original, every float result is truncated (not rounded) to uint8.

Fidelity: fed the same random draws, every corruption here gave the same bytes as the original's code run on
the libraries themselves (OpenCV 3.4.18, scikit-image 0.24, ImageMagick 6.9.11 Q16 through Wand, SciPy 1.13,
NumPy 1.26), on 300 CIFAR-10 test images at all five severities. With OpenCV 4.11 or later, whose
``warpAffine`` no longer samples on a 1/32-pixel grid, the original's elastic_transform itself changes (12-17%
of samples, by up to 4 levels); this module keeps the earlier arithmetic. The random streams are NumPy's,
not the original's (unseeded, so not reproducible anyway).

Pure module: NumPy, SciPy, Pillow and the standard library only.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from . import cifar_c_opencv as cv
from . import cifar_c_ops as ops

GENERATOR_VERSION = 1  # bump whenever any output byte changes: it keys caches of generated sets
SEVERITIES = (1, 2, 3, 4, 5)
IMAGE_SIZE = 32  # CIFAR's side in pixels; the constants below are for this size
DEFAULT_SUBSET = 1000  # test images corrupted by default, class-balanced (see subset_indices)
_CHUNK = 50  # images corrupted per call: keeps the float64 temporaries in cache (the output does not change)

# CIFAR-10-C's constants, one entry per severity 1..5, straight from make_cifar_c.py. Intensities are on
# [0, 1] images unless a unit is given.
_NOISE_SIGMA = (0.04, 0.06, 0.08, 0.09, 0.10)  # gaussian_noise: standard deviation
_SHOT_RATE = (500, 250, 100, 75, 50)  # shot_noise: Poisson events per unit intensity
_IMPULSE_AMOUNT = (0.01, 0.02, 0.03, 0.05, 0.07)  # impulse_noise: fraction of samples hit
_SPECKLE_SIGMA = (0.06, 0.1, 0.12, 0.16, 0.2)  # speckle_noise: std of the multiplicative noise
_BLUR_SIGMA = (0.4, 0.6, 0.7, 0.8, 1.0)  # gaussian_blur: sigma in pixels
_GLASS = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))  # sigma px, max shift px, passes
_DEFOCUS = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))  # disk radius px, anti-alias sigma px
_MOTION = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))  # ImageMagick radius px, sigma px; angle U(-45, 45) deg
_ZOOM_STEP = 0.01  # zoom_blur: the zoom factors are np.arange(1, stop, 0.01) ...
_ZOOM_STOP = (1.06, 1.11, 1.16, 1.21, 1.26)  # ... with these stops (np.arange includes some of them)
_FOG = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))  # plasma strength, wibble decay
# snow: flake mean, flake std, zoom, threshold, blur radius px, blur sigma px, share of the image kept
_SNOW = (
    (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
    (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
    (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
    (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
    (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
)
# spatter: liquid mean, std, blur sigma px, threshold, then water intensity (mode 0) or mud sigma px (mode 1)
_SPATTER = (
    (0.62, 0.1, 0.7, 0.7, 0.5, 0),
    (0.65, 0.1, 0.8, 0.7, 0.5, 0),
    (0.65, 0.3, 1, 0.69, 0.5, 0),
    (0.65, 0.1, 0.7, 0.69, 0.6, 1),
    (0.65, 0.1, 0.5, 0.68, 0.6, 1),
)
_WATER_RGB = (175, 238, 238)  # pale turquoise, 8-bit
_MUD_RGB = (63, 42, 20)  # mud brown, 8-bit
_SPATTER_EMBOSS = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
_CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)  # factor on the distance from each channel's mean
_BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)  # added to HSV value
_SATURATE = ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2))  # HSV saturation * a + b
_JPEG_QUALITY = (80, 65, 58, 50, 40)  # Pillow JPEG quality
_PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)  # side scale of the box down-sampling
# elastic_transform, in pixels for a 32-pixel image: displacement scale, its smoothing sigma, affine jitter
_ELASTIC = tuple(
    (IMAGE_SIZE * a, IMAGE_SIZE * s, IMAGE_SIZE * j)
    for a, s, j in ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))
)

Streams = Sequence[np.random.Generator]


@dataclass(frozen=True)
class Corruption:
    """One corruption: ``apply(images, constants, streams)`` maps a uint8 batch to a uint8 batch, with
    ``constants`` one entry of ``params`` (severity 1..5) and one random stream per image."""

    name: str
    apply: Callable[[np.ndarray, Any, Streams], np.ndarray]
    params: tuple
    random: bool  # whether it draws random numbers, so whether the seed changes it


def _truncate(values: np.ndarray) -> np.ndarray:
    """The original's ``np.uint8(float_image)``: truncation toward zero, for values already in [0, 255]."""
    return values.astype(np.uint8)


def _draw(streams: Streams, draw: Callable[[np.random.Generator], np.ndarray]) -> np.ndarray:
    """One draw per image, from that image's own stream, stacked on a leading batch axis."""
    return np.stack([draw(s) for s in streams])


def _unit(images: np.ndarray) -> np.ndarray:
    """``np.array(img) / 255.``: float64 in [0, 1]."""
    return images / 255.0


def _unit_f32(images: np.ndarray) -> np.ndarray:
    """``np.array(img, dtype=np.float32) / 255.``: float32 in [0, 1]."""
    return images.astype(np.float32) / 255.0


def _to_bytes(unit: np.ndarray) -> np.ndarray:
    """``np.clip(x, 0, 1) * 255`` truncated to uint8, keeping x's float dtype on the way as the original."""
    return _truncate(np.clip(unit, 0, 1) * 255)


# -- noise ------------------------------------------------------------------------------------------


def gaussian_noise(images: np.ndarray, sigma: float, streams: Streams) -> np.ndarray:
    """Adds N(0, sigma^2) to every sample of the [0, 1] image, clips. Same as the original but the stream."""
    noise = _draw(streams, lambda s: s.normal(scale=sigma, size=images.shape[1:]))
    return _to_bytes(_unit(images) + noise)


def shot_noise(images: np.ndarray, rate: float, streams: Streams) -> np.ndarray:
    """``Poisson(x * rate) / rate`` per sample of the [0, 1] image, clipped. Same as the original."""
    x = _unit(images)
    return _to_bytes(np.stack([s.poisson(xi * rate) for s, xi in zip(streams, x, strict=True)]) / rate)


def impulse_noise(images: np.ndarray, amount: float, streams: Streams) -> np.ndarray:
    """scikit-image's salt & pepper (``random_noise(mode='s&p', amount)``): each sample independently set to
    0 or 1 with probability ``amount``, half each. See ``cifar_c_ops.salt_and_pepper``."""
    u = _draw(streams, lambda s: s.random((2, *images.shape[1:])))
    return _to_bytes(ops.salt_and_pepper(_unit(images), amount, u[:, 0], u[:, 1]))


def speckle_noise(images: np.ndarray, sigma: float, streams: Streams) -> np.ndarray:
    """``x + x * N(0, sigma^2)`` on the [0, 1] image, clipped. Same as the original but the stream."""
    x = _unit(images)
    return _to_bytes(x + x * _draw(streams, lambda s: s.normal(scale=sigma, size=images.shape[1:])))


# -- blur -------------------------------------------------------------------------------------------


def gaussian_blur(images: np.ndarray, sigma: float, streams: Streams) -> np.ndarray:
    """scikit-image's ``gaussian(x, sigma, multichannel=True)``: SciPy's Gaussian filter, nearest-edge
    borders, truncated at 4 sigma. The same SciPy call as the original."""
    return _to_bytes(ops.gaussian(_unit(images), sigma))


def glass_blur(images: np.ndarray, params: tuple, streams: Streams) -> np.ndarray:
    """Gaussian blur (truncated to uint8), ``passes`` local shuffles with offsets in ``[-delta, delta)``,
    Gaussian blur again. The original's per-pixel loop is a gather from the image before each pass (see
    ``cifar_c_ops.glass_shuffle`` for why), done here for the whole batch at once with the same offsets law."""
    sigma, delta, passes = params
    x = _truncate(ops.gaussian(_unit(images), sigma) * 255)
    side = images.shape[1] - 2 * delta
    offsets = _draw(streams, lambda s: s.integers(-delta, delta, size=(passes, side, side, 2)))
    for p in range(passes):
        x = ops.glass_shuffle(x, offsets[:, p, :, :, 1], offsets[:, p, :, :, 0], delta)
    return _to_bytes(ops.gaussian(x / 255.0, sigma))


def defocus_blur(images: np.ndarray, params: tuple, streams: Streams) -> np.ndarray:
    """Correlation with an anti-aliased disk (``cifar_c_opencv.defocus_kernel``), reflect-101 borders, as the
    original's ``cv2.filter2D`` per channel (which sums through a DFT, ~1e-16 apart)."""
    radius, alias_blur = params
    return _to_bytes(cv.filter_reflect101(_unit(images), cv.defocus_kernel(radius, alias_blur)))


def motion_blur(images: np.ndarray, params: tuple, streams: Streams) -> np.ndarray:
    """ImageMagick's motion blur at an angle drawn from U(-45, 45) degrees per image
    (``cifar_c_ops.motion_blur``, checked equal to ImageMagick 6.9.11 Q16). Already uint8."""
    radius, sigma = params
    angles = _draw(streams, lambda s: s.uniform(-45, 45))
    return ops.motion_blur(images, radius, sigma, angles)


def zoom_blur(images: np.ndarray, stop: float, streams: Streams) -> np.ndarray:
    """The mean of the float32 image and its centre zooms by ``np.arange(1, stop, 0.01)`` (SciPy's linear
    ``zoom`` of the centre crop), accumulated in float32 in the original's order."""
    x = np.ascontiguousarray(_unit(images).astype(np.float32).transpose(1, 2, 0, 3))  # (H, W, N, C): fast gathers
    factors = np.arange(1, stop, _ZOOM_STEP)
    total = np.zeros_like(x)
    for factor in factors:
        total += ops.clipped_zoom_hw(x, factor)
    return _to_bytes(((x + total) / (len(factors) + 1)).transpose(2, 0, 1, 3))


# -- weather ----------------------------------------------------------------------------------------


def fog(images: np.ndarray, params: tuple, streams: Streams) -> np.ndarray:
    """Adds ``strength * plasma`` (diamond-square fractal, ``cifar_c_ops.plasma_fractal``) to every channel
    and rescales by ``max / (max + strength)``, with ``max`` the image's largest sample."""
    strength, decay = params
    x = _unit(images)
    top = x.max(axis=(1, 2, 3), keepdims=True)
    draws = ops.plasma_fractal_draws(images.shape[1])
    plasma = ops.plasma_fractal(_draw(streams, lambda s: s.random(draws)), decay, images.shape[1])
    x = x + strength * plasma[..., None]
    return _to_bytes(x * top / (top + strength))


def snow(images: np.ndarray, params: tuple, streams: Streams) -> np.ndarray:
    """Gaussian flakes, zoomed and thresholded, motion-blurred by ImageMagick at U(-135, -45) degrees, added
    twice (the layer and its 180-degree turn) to an image lightened towards ``1.5 grey + 0.5``."""
    loc, scale, zoom, threshold, radius, sigma, keep = params
    x = _unit_f32(images)
    layer = _draw(streams, lambda s: s.normal(loc=loc, scale=scale, size=images.shape[1:3]))
    angles = _draw(streams, lambda s: s.uniform(-135, -45))
    layer = ops.clipped_zoom(layer, zoom)
    layer[layer < threshold] = 0
    flakes = ops.motion_blur(_truncate(np.clip(layer, 0, 1) * 255), radius, sigma, angles) / 255.0
    grey = cv.rgb_to_gray_f32(x)[..., None]
    x = keep * x + (1 - keep) * np.maximum(x, grey * 1.5 + 0.5)
    return _to_bytes(x + flakes[..., None] + flakes[:, ::-1, ::-1, None])


def _wrap_uint8(values: np.ndarray) -> np.ndarray:
    """NumPy 1.x's ``astype(np.uint8)`` of non-negative floats on x86: truncate, keep the low 8 bits (a
    liquid level above 1 wrapped round in the original instead of saturating)."""
    return (np.floor(values).astype(np.int64) & 0xFF).astype(np.uint8)


def _water(x: np.ndarray, liquid: np.ndarray, intensity: float) -> np.ndarray:
    """Spatter's water branch: an embossed, histogram-equalised distance-to-edge map of the liquid layer
    shades pale turquoise drops (OpenCV's Canny, distanceTransform, blur and equalizeHist, as rewritten in
    ``cifar_c_opencv``). An image whose shading is zero everywhere divides 0 by 0 in the original, and its NaNs
    became 0 in the uint8 cast: that image comes out black here too."""
    level = _wrap_uint8(liquid * 255)
    dist = cv.distance_l2_5x5(255 - cv.canny(level, 50, 150))
    dist = _truncate(cv.box3_f32(np.minimum(dist, np.float32(20))))
    dist = cv.box3_u8(cv.filter_u8(cv.equalize_hist(dist), _SPATTER_EMBOSS)).astype(np.float32)
    shade = level * dist
    top = shade.max(axis=(1, 2), keepdims=True)
    shade = shade / np.where(top > 0, top, np.float32(1)) * intensity
    colour = np.array([c / 255.0 for c in _WATER_RGB], dtype=np.float32)
    out = _to_bytes(x + shade[..., None] * colour)
    out[top[:, 0, 0] == 0] = 0
    return out


def _mud(x: np.ndarray, liquid: np.ndarray, threshold: float, sigma: float) -> np.ndarray:
    """Spatter's mud branch: the liquid mask, blurred (float32, as current scikit-image keeps it) and cut
    below 0.8, blends mud brown over the image."""
    mask = ops.gaussian((liquid > threshold).astype(np.float32), sigma)
    mask[mask < 0.8] = 0
    colour = np.array([c / 255.0 for c in _MUD_RGB], dtype=np.float32) * mask[..., None]
    return _to_bytes(x * (1 - mask[..., None]) + colour)


def spatter(images: np.ndarray, params: tuple, streams: Streams) -> np.ndarray:
    """A Gaussian liquid layer, blurred and thresholded, drawn as water (severities 1-3) or mud (4-5)."""
    loc, scale, sigma, threshold, strength, mode = params
    liquid = ops.gaussian(_draw(streams, lambda s: s.normal(loc=loc, scale=scale, size=images.shape[1:3])), sigma)
    liquid[liquid < threshold] = 0
    x = _unit_f32(images)
    return _water(x, liquid, strength) if mode == 0 else _mud(x, liquid, threshold, strength)


# -- digital ----------------------------------------------------------------------------------------


def contrast(images: np.ndarray, factor: float, streams: Streams) -> np.ndarray:
    """``(x - mean) * factor + mean`` with each channel's mean over the image (computed image by image, as
    NumPy sums one image, so the means match the original's to the bit)."""
    x = _unit(images)
    means = np.stack([np.mean(xi, axis=(0, 1), keepdims=True) for xi in x])
    return _to_bytes((x - means) * factor + means)


def brightness(images: np.ndarray, shift: float, streams: Streams) -> np.ndarray:
    """HSV value + ``shift``, clipped, through scikit-image's HSV formulas (``cifar_c_ops.rgb_to_hsv``)."""
    hsv = ops.rgb_to_hsv(_unit(images))
    hsv[..., 2] = np.clip(hsv[..., 2] + shift, 0, 1)
    return _to_bytes(ops.hsv_to_rgb(hsv))


def saturate(images: np.ndarray, params: tuple, streams: Streams) -> np.ndarray:
    """HSV saturation ``* a + b``, clipped, through scikit-image's HSV formulas."""
    scale, shift = params
    hsv = ops.rgb_to_hsv(_unit(images))
    hsv[..., 1] = np.clip(hsv[..., 1] * scale + shift, 0, 1)
    return _to_bytes(ops.hsv_to_rgb(hsv))


def jpeg_compression(images: np.ndarray, quality: int, streams: Streams) -> np.ndarray:
    """Pillow's JPEG round trip at ``quality`` (its default 4:2:0 subsampling): the original's own call."""
    out = np.empty_like(images)
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=quality)
        out[i] = np.asarray(Image.open(buffer).convert("RGB"))
    return out


def pixelate(images: np.ndarray, scale: float, streams: Streams) -> np.ndarray:
    """Pillow BOX resize to ``int(32 * scale)`` and back to 32: the original's own calls."""
    side = images.shape[1]
    small = int(side * scale)
    out = np.empty_like(images)
    for i, image in enumerate(images):
        reduced = Image.fromarray(image).resize((small, small), Image.BOX)
        out[i] = np.asarray(reduced.resize((side, side), Image.BOX))
    return out


def elastic_transform(images: np.ndarray, params: tuple, streams: Streams) -> np.ndarray:
    """A random affine warp (three points jittered by U(-jitter, jitter) px; OpenCV's bilinear warp,
    reflect-101 borders) followed by a smooth random displacement field (U(-1, 1) noise, Gaussian of
    ``sigma`` px with reflect borders truncated at 3 sigma, times ``alpha`` px) sampled by SciPy's linear
    ``map_coordinates`` with reflect borders."""
    alpha, sigma, jitter = params
    n, side = images.shape[0], images.shape[1]
    half, third = side // 2, side // 3
    anchors = np.float32([[half + third, half + third], [half + third, half - third], [half - third] * 2])
    moved = anchors + _draw(streams, lambda s: s.uniform(-jitter, jitter, size=(3, 2)).astype(np.float32))
    warped = cv.warp_affine_reflect101(_unit_f32(images), cv.affine_from_points(anchors, moved))
    noise = _draw(streams, lambda s: s.uniform(-1, 1, size=(2, side, side)))
    dy, dx = ((ops.gaussian(noise[:, k], sigma, mode="reflect", truncate=3) * alpha).astype(np.float32) for k in (1, 0))
    grid_y, grid_x, chan = np.meshgrid(np.arange(side), np.arange(side), np.arange(3), indexing="ij")
    sampled = np.empty_like(warped)
    for k in range(n):  # image by image: SciPy's 3-D call, as the original (and faster than one 4-D call)
        coords = (grid_y + dy[k, :, :, None], grid_x + dx[k, :, :, None], chan)
        sampled[k] = ndimage.map_coordinates(warped[k], coords, order=1, mode="reflect")
    return _to_bytes(sampled)


# -- the set ----------------------------------------------------------------------------------------

# In make_cifar_c.py's generation order: the 15 benchmark corruptions, then its 4 extra ones.
CORRUPTIONS: dict[str, Corruption] = {
    c.name: c
    for c in (
        Corruption("gaussian_noise", gaussian_noise, _NOISE_SIGMA, True),
        Corruption("shot_noise", shot_noise, _SHOT_RATE, True),
        Corruption("impulse_noise", impulse_noise, _IMPULSE_AMOUNT, True),
        Corruption("defocus_blur", defocus_blur, _DEFOCUS, False),
        Corruption("glass_blur", glass_blur, _GLASS, True),
        Corruption("motion_blur", motion_blur, _MOTION, True),
        Corruption("zoom_blur", zoom_blur, _ZOOM_STOP, False),
        Corruption("snow", snow, _SNOW, True),
        Corruption("fog", fog, _FOG, True),
        Corruption("brightness", brightness, _BRIGHTNESS, False),
        Corruption("contrast", contrast, _CONTRAST, False),
        Corruption("elastic_transform", elastic_transform, _ELASTIC, True),
        Corruption("pixelate", pixelate, _PIXELATE, False),
        Corruption("jpeg_compression", jpeg_compression, _JPEG_QUALITY, False),
        Corruption("speckle_noise", speckle_noise, _SPECKLE_SIGMA, True),
        Corruption("gaussian_blur", gaussian_blur, _BLUR_SIGMA, False),
        Corruption("spatter", spatter, _SPATTER, True),
        Corruption("saturate", saturate, _SATURATE, False),
    )
}
# The generator's four extra corruptions: published CIFAR-10-C means usually average the other 15.
EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
LEFT_OUT: dict[str, str] = {
    "frost": "blends crops of six frost photographs (frost1.png ... frost6.jpg) shipped beside the original "
    "generator; they are not available offline here, and no synthetic texture would be the same corruption",
}


def _check_images(images: np.ndarray) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise TypeError("images must be a uint8 numpy array")
    if images.ndim != 4 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise ValueError(f"images must be shaped (N, {IMAGE_SIZE}, {IMAGE_SIZE}, 3), got {images.shape}")


def _lookup(name: str, severity: int) -> Corruption:
    if name in LEFT_OUT:
        raise ValueError(f"{name!r} is left out: {LEFT_OUT[name]}")
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    return CORRUPTIONS[name]


def _name_key(name: str) -> int:
    """A stable 64-bit number for a name (Python's ``hash()`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


def streams(seed: int, name: str, severity: int, ids: Iterable[int]) -> list[np.random.Generator]:
    """One PCG64 generator per image id, seeded by ``SeedSequence([seed, key(name), severity, id])``."""
    key = _name_key(name)
    return [np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, key, severity, int(i)]))) for i in ids]


def corrupt(
    images: np.ndarray, name: str, severity: int, seed: int = 0, *, ids: Sequence[int] | None = None
) -> np.ndarray:
    """Corrupt a uint8 batch ``(N, 32, 32, 3)`` with corruption ``name`` at ``severity`` (1..5).

    ``ids`` names each image's random stream (default ``0..N-1``); pass the images' indices in the dataset to
    get an image the same corruption whatever batch it comes in. Same arguments, same bytes, in any process.
    Returns a new uint8 array of the same shape.
    """
    _check_images(images)
    corruption = _lookup(name, severity)
    ids = np.arange(len(images)) if ids is None else np.asarray(ids)
    if ids.shape != (len(images),) or len(set(ids.tolist())) != len(ids) or (ids < 0).any():
        raise ValueError("ids must be one distinct non-negative integer per image")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if len(images) == 0:
        return images.copy()
    out = np.empty_like(images)
    for start in range(0, len(images), _CHUNK):  # every image is corrupted on its own, so chunks are free
        part = slice(start, start + _CHUNK)
        rngs = streams(seed, name, severity, ids[part]) if corruption.random else []
        out[part] = corruption.apply(np.ascontiguousarray(images[part]), corruption.params[severity - 1], rngs)
    return out


def generate(
    images: np.ndarray,
    *,
    names: Iterable[str] | None = None,
    severities: Iterable[int] = SEVERITIES,
    seed: int = 0,
    ids: Sequence[int] | None = None,
) -> dict[tuple[str, int], np.ndarray]:
    """Every ``(name, severity)`` of the set (default: all of ``CORRUPTIONS``, severities 1..5) applied to
    ``images``; returns ``{(name, severity): uint8 (N, 32, 32, 3)}`` in the canonical order."""
    names = list(CORRUPTIONS) if names is None else list(names)
    return {(n, s): corrupt(images, n, s, seed, ids=ids) for n in names for s in severities}


def digest(generated: dict[tuple[str, int], np.ndarray]) -> str:
    """sha256 (hex) of a generated set: every entry's name, severity, shape and bytes, in canonical order
    (``CORRUPTIONS`` order, then severity), whatever the dict's own order."""
    order = list(CORRUPTIONS)
    h = hashlib.sha256(f"cifar-c v{GENERATOR_VERSION}\n".encode())
    for name, severity in sorted(generated, key=lambda k: (order.index(k[0]), k[1])):
        array = np.ascontiguousarray(generated[(name, severity)])
        h.update(f"{name} {severity} {array.shape} {array.dtype}\n".encode())
        h.update(array.tobytes())
    return h.hexdigest()


def subset_indices(labels: np.ndarray, n: int = DEFAULT_SUBSET) -> np.ndarray:
    """The fixed class-balanced subset: the first images of each class in dataset order.

    The ``n`` places are spread as evenly as the classes allow (sizes differ by at most one; the extra places
    go to the lowest labels), and a class with too few images gives its remainder to the next ones. Returns
    the chosen indices into ``labels``, ascending (dataset order); all of them when ``n >= len(labels)``.
    """
    labels = np.asarray(labels)
    if n < 0:
        raise ValueError("n must be non-negative")
    if n >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.zeros(len(classes), dtype=np.int64)
    left = n
    while left:  # hand out one round of places to every class that still has images
        open_ = np.nonzero(quota < counts)[0]
        share, extra = divmod(left, len(open_))
        add = np.full(len(open_), share) + (np.arange(len(open_)) < extra)
        add = np.minimum(add, counts[open_] - quota[open_])
        quota[open_] += add
        left -= int(add.sum())
    chosen = [np.nonzero(labels == c)[0][:q] for c, q in zip(classes, quota, strict=True)]
    return np.sort(np.concatenate(chosen))


def library_versions() -> dict[str, str]:
    """The versions that, with ``GENERATOR_VERSION``, determine the bytes (NumPy's Generator distributions,
    SciPy's filters and zoom, Pillow's JPEG and resize): part of any cache key."""
    import PIL
    import scipy

    return {"numpy": np.__version__, "scipy": scipy.__version__, "pillow": PIL.__version__}
