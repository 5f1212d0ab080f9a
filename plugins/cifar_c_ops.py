"""The image operations CIFAR-10-C's generator borrowed from scikit-image, ImageMagick and SciPy, rewritten on
NumPy and SciPy for a batch of images at once.

``make_cifar_c.py`` (hendrycks/robustness, ImageNet-C/create_c) corrupts one PIL image at a time with
``skimage.filters.gaussian``, ``skimage.util.random_noise``, ``skimage.color.rgb2hsv``/``hsv2rgb``,
ImageMagick's ``MotionBlurImage`` (through Wand) and ``scipy.ndimage.zoom``. Each function here reproduces one
of those on a batch shaped ``(N, H, W[, C])``; the docstrings say what is reproduced and where it may differ.
Pure module: NumPy, SciPy and the standard library only.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

# ImageMagick (Q16, the build Debian and Ubuntu ship): an 8-bit sample v is the quantum 257 * v.
_Q16_PER_CHAR = 257.0
_Q16_MAX = 65535.0
_SQRT_2PI = 2.50662827463100024161235523934010416269302368164062  # ImageMagick's MagickSQ2PI


def gaussian(x: np.ndarray, sigma: float, *, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """``skimage.filters.gaussian`` over the two spatial axes (1, 2) of a batch, other axes untouched.

    scikit-image's function is ``scipy.ndimage.gaussian_filter`` with ``mode='nearest'`` and ``truncate=4``
    unless told otherwise, and sigma 0 on the channel axis when ``multichannel=True``: the same call here, so
    the result is the same to the bit (SciPy skips the axes whose sigma is 0). Returns the input's float dtype.
    """
    sigmas = [0.0, float(sigma), float(sigma)] + [0.0] * (x.ndim - 3)
    return ndimage.gaussian_filter(x, sigmas, mode=mode, truncate=truncate)


def salt_and_pepper(x: np.ndarray, amount: float, flip_u: np.ndarray, salt_u: np.ndarray) -> np.ndarray:
    """``skimage.util.random_noise(x, mode='s&p', amount=amount)`` (salt_vs_pepper 0.5) given its uniforms.

    Every element (each channel of each pixel on its own) is hit with probability ``amount`` (``flip_u <=
    amount``) and then set to 1 (``salt_u <= 0.5``) or 0. This is scikit-image's per-element Bernoulli form (its
    ``_bernoulli``, the same law as the ``np.random.choice`` it replaced); releases before 0.14 drew a fixed
    count of coordinates instead. ``x`` is float in [0, 1]; returns a new array.
    """
    out = x.copy()
    flipped = flip_u <= amount
    salted = salt_u <= 0.5
    out[flipped & salted] = 1.0
    out[flipped & ~salted] = 0.0
    return out


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """``skimage.color.rgb2hsv`` on float RGB in [0, 1] (last axis), with its arithmetic and tie rule.

    Hue takes the formula of the largest channel, blue over green over red on ties (each later assignment
    wins in scikit-image); grey pixels (delta 0) get hue and saturation 0, and black gets saturation 0.
    Returns float64 HSV, each in [0, 1].
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(-1)
    delta = np.ptp(rgb, axis=-1)
    grey = delta == 0.0
    safe = np.where(grey, 1.0, delta)  # no 0/0: those places are overwritten with 0 below, as in skimage
    h = np.where(r == v, (g - b) / safe, 0.0)
    h = np.where(g == v, 2.0 + (b - r) / safe, h)
    h = np.where(b == v, 4.0 + (r - g) / safe, h)
    h = (h / 6.0) % 1.0
    h[grey] = 0.0
    s = np.where(grey, 0.0, delta / np.where(v == 0.0, 1.0, v))
    return np.stack([h, s, v], axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """``skimage.color.hsv2rgb``: the sextant ``floor(6 h) % 6`` picks (v, t, p), (q, v, p), ... per pixel.

    Same operations in the same order as scikit-image, so the same float64 results. Returns RGB in [0, 1].
    """
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    hi = np.floor(h * 6)
    f = h * 6 - hi
    p = v * (1 - s)
    q = v * (1 - f * s)
    t = v * (1 - (1 - f) * s)
    sextant = hi.astype(np.uint8) % 6
    # np.choose's six (R, G, B) picks from (v, p, q, t): (v,t,p) (q,v,p) (p,v,t) (p,q,v) (t,p,v) (v,p,q)
    picks = np.array([[0, 3, 1], [2, 0, 1], [1, 0, 3], [1, 2, 0], [3, 1, 0], [0, 1, 2]])
    return np.take_along_axis(np.stack([v, p, q, t], axis=-1), picks[sextant], axis=-1)


def motion_blur_taps(radius: float, sigma: float, angle: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ImageMagick's motion-blur kernel: ``(weights, dx, dy)`` for ``MotionBlurImage(radius, sigma, angle)``.

    A one-sided Gaussian along a line: ``width = 2 ceil(radius) + 1`` taps, tap i weighted
    ``exp(-i^2 / (2 sigma^2)) / (sqrt(2 pi) sigma)`` then normalised to sum 1 (summed in tap order, as
    ImageMagick does), and placed at the pixel offset ``(ceil(i cos a - 0.5), ceil(i sin a - 0.5))`` in (x, y)
    with y downwards and ``a`` in degrees, computed through ImageMagick's ``width * sin``/``cos`` and ``hypot``.
    Tap 0 is the pixel itself, so the blur only looks towards the angle.
    """
    width = int(2.0 * math.ceil(radius) + 1.0) if radius > 1e-12 else 3
    sig = max(abs(sigma), 1e-12)
    raw = [math.exp(-(i * i) / (2.0 * sig * sig)) / (_SQRT_2PI * sig) for i in range(width)]
    total = 0.0
    for w in raw:  # ImageMagick sums in order; np.sum would sum pairwise
        total += w
    weights = np.array([w / total for w in raw])
    rad = math.pi * angle / 180.0
    px, py = width * math.sin(rad), width * math.cos(rad)
    norm = math.hypot(px, py)
    dx = np.array([math.ceil(i * py / norm - 0.5) for i in range(width)], dtype=np.intp)
    dy = np.array([math.ceil(i * px / norm - 0.5) for i in range(width)], dtype=np.intp)
    return weights, dx, dy


def motion_blur(images: np.ndarray, radius: float, sigma: float, angles: np.ndarray) -> np.ndarray:
    """ImageMagick's ``MotionBlurImage`` on 8-bit images, PNG in and PNG out as the generator ran it.

    ``images`` is uint8 ``(N, H, W)`` or ``(N, H, W, C)``; ``angles`` is one angle per image, in degrees. Each
    output sample is ``sum_i w_i * 257 * v(x + dx_i, y + dy_i)`` accumulated in float64 in tap order, with
    coordinates clamped to the image (ImageMagick's default "edge" virtual pixels), rounded to a 16-bit
    quantum, and written to 8 bits as ``floor(quantum / 257)``. Checked equal, sample for sample, to
    ImageMagick 6.9.11-60 Q16 (non-HDRI) through Wand; other releases of the PNG writer may round the last
    step instead, which raises about half the samples by one level. Returns uint8 of the input's shape.
    """
    n, h, w = images.shape[:3]
    taps = [motion_blur_taps(radius, sigma, float(a)) for a in angles]
    weights = taps[0][0]  # the weights do not depend on the angle
    dx, dy = np.array([t[1] for t in taps]), np.array([t[2] for t in taps])  # (N, taps)
    pad = int(max(np.abs(dx).max(), np.abs(dy).max()))
    edges = ((0, 0), (pad, pad), (pad, pad)) + ((0, 0),) * (images.ndim - 3)
    side_y, side_x = h + 2 * pad, w + 2 * pad
    # ImageMagick's quanta (257 v, exact in float64) of the edge-padded images, one row per pixel
    quanta = np.pad(images, edges, mode="edge").reshape(n * side_y * side_x, -1) * _Q16_PER_CHAR
    base = (np.arange(n) * side_y * side_x)[:, None, None] + (pad + np.arange(h))[:, None] * side_x + pad + np.arange(w)
    acc = np.zeros((n, h, w, quanta.shape[1]))
    for i, weight in enumerate(weights):  # tap by tap, all images at once: the same order of additions
        acc += weight * np.take(quanta, base + (dy[:, i] * side_x + dx[:, i])[:, None, None], axis=0)
    quantum = np.floor(np.clip(acc, 0.0, _Q16_MAX) + 0.5)
    return (quantum // _Q16_PER_CHAR).astype(np.uint8).reshape(images.shape)


def clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """The generator's ``clipped_zoom`` on a batch ``(N, H, W[, C])``; see ``clipped_zoom_hw``."""
    moved = np.ascontiguousarray(np.moveaxis(x, 0, 2))
    return np.moveaxis(clipped_zoom_hw(moved, factor), 2, 0)


def clipped_zoom_hw(x: np.ndarray, factor: float) -> np.ndarray:
    """``clipped_zoom`` on images laid out ``(H, W, ...)`` (batch and channels last, so that each gather
    moves whole contiguous rows): ``scipy.ndimage.zoom(order=1)`` of the centre crop of side
    ``ceil(H / factor)``, cut back to the centre ``H x W``.

    Only the kept window is computed, with SciPy's own arithmetic for a linear zoom in its default
    ``constant`` mode: source coordinate ``k * (crop - 1) / (out - 1)`` with ``out = round(crop * factor)``,
    weights ``w0 = 1 - frac`` and ``w1 = 1 - w0``, the four products ``(v * wy) * wx`` added in SciPy's
    order in float64 (a channel axis, zoomed by 1, only adds exact zeros), then cast to ``x``'s dtype; a
    coordinate past the last sample gives 0 (the ``cval``). Checked equal to SciPy's per-image call for every
    CIFAR factor. Returns ``x``'s dtype and shape.
    """
    side = x.shape[0]
    crop = int(np.ceil(side / factor))
    top = (side - crop) // 2
    out = round(crop * factor)
    if crop == side and out == side:  # zoom 1: every weight is 1 or 0, SciPy returns the input's values
        return x.copy()
    zoom = (crop - 1) / (out - 1) if out > 1 else 1.0
    trim = (out - side) // 2
    cc = np.arange(trim, trim + side, dtype=np.float64) * zoom
    start = np.floor(cc)
    w0 = 1.0 - (cc - start)
    w1 = 1.0 - w0
    i0 = start.astype(np.intp)
    i1 = np.where(i0 + 1 > crop - 1, crop - 2, i0 + 1)  # SciPy mirrors the missing neighbour; its weight is 0
    src = x[top : top + crop, top : top + crop]
    tail = (1,) * (x.ndim - 2)
    total = np.zeros(x.shape)
    for iy, wy in ((i0, w0), (i1, w1)):
        rows = np.take(src, iy, axis=0) * wy.reshape(-1, 1, *tail)  # v * wy, float64
        for ix, wx in ((i0, w0), (i1, w1)):
            term = np.take(rows, ix, axis=1)
            term *= wx.reshape(-1, *tail)
            total += term  # in SciPy's order: (y0, x0), (y0, x1), (y1, x0), (y1, x1)
    if cc[-1] > crop - 1:
        inside = (cc <= crop - 1)[:, None] & (cc <= crop - 1)[None, :]
        total[~inside] = 0.0
    return total.astype(x.dtype)


def plasma_fractal_draws(mapsize: int = 32) -> int:
    """How many uniform numbers ``plasma_fractal`` consumes for one map of side ``mapsize``."""
    count, step = 0, mapsize
    while step >= 2:
        cells = (mapsize // step) ** 2
        count += 3 * cells  # one square step, then two diamond steps of the same grid size
        step //= 2
    return count


def plasma_fractal(uniforms: np.ndarray, wibbledecay: float, mapsize: int = 32) -> np.ndarray:
    """The generator's diamond-square ``plasma_fractal`` for a batch, given each map's uniforms in [0, 1).

    ``uniforms`` is ``(N, plasma_fractal_draws(mapsize))``; they are consumed in the original's order (square
    step, then the two diamond steps, per scale) and mapped as ``np.random.uniform(-w, w)`` maps them
    (``-w + 2w u``). Returns float64 ``(N, mapsize, mapsize)`` scaled to [0, 1] per map.
    """
    n = uniforms.shape[0]
    grid = np.zeros((n, mapsize, mapsize))
    step, wibble, used = mapsize, 100.0, 0

    def wibbled_mean(total: np.ndarray) -> np.ndarray:
        nonlocal used
        size = total.shape[1] * total.shape[2]
        u = uniforms[:, used : used + size].reshape(total.shape)
        used += size
        return total / 4 + wibble * (-wibble + (wibble - -wibble) * u)

    while step >= 2:
        half = step // 2
        corners = grid[:, 0:mapsize:step, 0:mapsize:step]
        square = corners + np.roll(corners, shift=-1, axis=1)
        square += np.roll(square, shift=-1, axis=2)
        grid[:, half:mapsize:step, half:mapsize:step] = wibbled_mean(square)
        centres = grid[:, half:mapsize:step, half:mapsize:step]
        corners = grid[:, 0:mapsize:step, 0:mapsize:step]
        left = (centres + np.roll(centres, 1, axis=1)) + (corners + np.roll(corners, -1, axis=2))
        grid[:, 0:mapsize:step, half:mapsize:step] = wibbled_mean(left)
        top = (centres + np.roll(centres, 1, axis=2)) + (corners + np.roll(corners, -1, axis=1))
        grid[:, half:mapsize:step, 0:mapsize:step] = wibbled_mean(top)
        step //= 2
        wibble /= wibbledecay
    grid -= grid.min(axis=(1, 2), keepdims=True)
    return grid / grid.max(axis=(1, 2), keepdims=True)


def glass_shuffle(images: np.ndarray, dy: np.ndarray, dx: np.ndarray, delta: int) -> np.ndarray:
    """One pass of glass blur's "local shuffle", as the original loop actually behaves.

    The loop visits (h, w) from the bottom-right corner (``range(H - delta, delta, -1)`` on both axes) and runs
    ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` with ``(h', w') = (h + dy, w + dx)``, ``dy, dx`` drawn from
    ``randint(-delta, delta)`` (so in ``[-delta, delta)``). On NumPy rows that statement is not a swap: both
    right-hand values are views, ``x[h, w]`` is overwritten first, and ``x[h', w']`` is then written back with
    its own value. And as ``h' <= h`` and ``w' <= w`` for delta 1 (the only CIFAR value), every source is read
    before the loop reaches it. So each pass is exactly a gather from the image before the pass:
    ``out[h, w] = x[h + dy, w + dx]`` over the visited square, everything else unchanged. ``dy``/``dx`` are
    ``(N, S, S)`` ints for the visited square ``S = H - 2 delta``; returns a new uint8 batch.
    """
    if delta != 1:
        raise ValueError("the gather form is exact for delta 1 only (CIFAR-10-C's value)")
    size = images.shape[1]
    visited = np.arange(delta + 1, size - delta + 1)
    n = images.shape[0]
    rows = visited[None, :, None] + dy
    cols = visited[None, None, :] + dx
    out = images.copy()
    lo, hi = visited[0], visited[-1] + 1
    out[:, lo:hi, lo:hi] = images[np.arange(n)[:, None, None], rows, cols]
    return out
