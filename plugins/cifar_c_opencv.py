"""The OpenCV operations CIFAR-10-C's generator used, rewritten on NumPy and SciPy for a batch of images.

``make_cifar_c.py`` calls ``cv2.GaussianBlur``/``filter2D`` (defocus blur), ``cvtColor`` (snow),
``Canny``/``distanceTransform``/``threshold``/``blur``/``equalizeHist`` (spatter) and
``getAffineTransform``/``warpAffine`` (elastic transform). Each function reproduces OpenCV's arithmetic (its
fixed-point steps, rounding and borders) on ``(N, H, W[, C])`` batches; the docstrings say where it may differ.
Pure module: NumPy, SciPy and the standard library only.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

_F32 = np.float32
_CANNY_SHIFT = 15
_CANNY_TG22 = int(0.4142135623730950488016887242097 * (1 << _CANNY_SHIFT) + 0.5)  # tan(22.5 deg), fixed point
_DIST_L2_5X5 = (1.0, 1.4, 2.1969)  # distanceTransform's DIST_L2 5x5 chamfer weights: step, diagonal, knight
_INTER_BITS = 5  # warpAffine's bilinear sub-pixel grid: 1/32 pixel
_AB_BITS = 10  # warpAffine's fixed-point coordinate precision: 1/1024 pixel
_NEIGHBOURS_8 = np.pad(np.ones((1, 3, 3), dtype=bool), ((1, 1), (0, 0), (0, 0)))  # 8-connected, never across images


def gaussian_kernel_f32(ksize: int, sigma: float) -> np.ndarray:
    """``cv2.getGaussianKernel(ksize, sigma, CV_32F)`` for sigma > 0: float32 taps, normalised in double."""
    scale = -0.5 / (sigma * sigma)
    taps = [_F32(math.exp(scale * (i - (ksize - 1) * 0.5) ** 2)) for i in range(ksize)]
    total = 0.0
    for t in taps:
        total += float(t)
    return np.array([_F32(float(t) * (1.0 / total)) for t in taps], dtype=_F32)


def defocus_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The generator's ``disk(radius, alias_blur)``: an aliased disk blurred by ``cv2.GaussianBlur``.

    The 17x17 float32 disk ``x^2 + y^2 <= radius^2`` divided by its count is smoothed with OpenCV's 3-tap
    float32 Gaussian of sigma ``alias_blur`` along rows then columns (the disk never reaches the border, so
    the border rule does not matter). OpenCV's SIMD code may fuse a multiply-add, which can move a weight by
    one float32 ulp. Only radius <= 8 (all CIFAR values) is supported. Returns the float64 kernel cropped to
    its non-zero support (zeros contribute nothing to the correlation).
    """
    if radius > 8:
        raise ValueError("only disks of radius <= 8 (CIFAR-10-C's) are reproduced")
    ax = np.arange(-8, 9)
    xx, yy = np.meshgrid(ax, ax)
    disk = np.asarray(xx**2 + yy**2 <= radius**2, dtype=_F32)
    disk /= disk.sum(dtype=_F32)
    g = gaussian_kernel_f32(3, alias_blur)
    pad = np.pad(disk, 1)
    rows = g[0] * pad[:, :-2] + g[1] * pad[:, 1:-1] + g[2] * pad[:, 2:]
    kernel = (g[0] * rows[:-2] + g[1] * rows[1:-1] + g[2] * rows[2:]).astype(np.float64)
    nz = np.nonzero(kernel.any(axis=0))[0]
    return kernel[nz[0] : nz[-1] + 1, nz[0] : nz[-1] + 1]


def filter_reflect101(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``cv2.filter2D(x, -1, kernel)`` per channel on a float batch: correlation about the kernel's centre with
    OpenCV's default border (reflect-101, SciPy's ``mirror``). OpenCV correlates a kernel this large through
    its DFT, whose rounding noise (about 1e-16) a direct sum does not have. Returns x's dtype."""
    shape = (1, *kernel.shape) + (1,) * (x.ndim - 3)
    return ndimage.correlate(x, kernel.reshape(shape), mode="mirror")


def rgb_to_gray_f32(rgb: np.ndarray) -> np.ndarray:
    """``cv2.cvtColor(rgb, COLOR_RGB2GRAY)`` on float32: ``0.299 R + 0.587 G + 0.114 B`` with float32
    coefficients, evaluated as OpenCV's AVX2 code does, ``fma(B, 0.114, fma(R, 0.299, G * 0.587))`` (checked
    equal to OpenCV 3.4.18 and 5.1 on an FMA-capable CPU). The fused multiply-add is emulated in float64, exact
    but for a double rounding in rare cases. Returns float32 ``rgb.shape[:-1]``."""
    rgb = rgb.astype(_F32, copy=False)
    inner = _fma_f32(rgb[..., 0], _F32(0.299), rgb[..., 1] * _F32(0.587))
    return _fma_f32(rgb[..., 2], _F32(0.114), inner)


def _fma_f32(a: np.ndarray, b: np.float32, c: np.ndarray) -> np.ndarray:
    """float32 ``a * b + c`` rounded once: the float32 product is exact in float64."""
    return (a.astype(np.float64) * np.float64(b) + c.astype(np.float64)).astype(_F32)


def canny(images: np.ndarray, low: float, high: float) -> np.ndarray:
    """``cv2.Canny(image, low, high)`` (3x3 Sobel, L1 gradient) on a uint8 batch ``(N, H, W)``.

    Sobel with replicated borders; magnitude ``|dx| + |dy|``; non-maximum suppression in OpenCV's four
    fixed-point direction bins with its tie rules (strictly greater than the neighbour behind, at least the one
    ahead; strictly greater than both on diagonals), neighbours outside the image counting as 0; candidates
    above ``floor(low)``; hysteresis keeps each 8-connected group of candidates that holds one above
    ``floor(high)``. Returns uint8 edges, 255 on an edge and 0 elsewhere.
    """
    p = np.pad(images.astype(np.int32), ((0, 0), (1, 1), (1, 1)), mode="edge")
    dx = (p[:, :-2, 2:] + 2 * p[:, 1:-1, 2:] + p[:, 2:, 2:]) - (p[:, :-2, :-2] + 2 * p[:, 1:-1, :-2] + p[:, 2:, :-2])
    dy = (p[:, 2:, :-2] + 2 * p[:, 2:, 1:-1] + p[:, 2:, 2:]) - (p[:, :-2, :-2] + 2 * p[:, :-2, 1:-1] + p[:, :-2, 2:])
    mag = np.abs(dx) + np.abs(dy)
    m = np.pad(mag, ((0, 0), (1, 1), (1, 1)))  # zeros outside, as OpenCV's magnitude ring buffer

    def at(oy: int, ox: int) -> np.ndarray:
        return m[:, 1 + oy : m.shape[1] - 1 + oy, 1 + ox : m.shape[2] - 1 + ox]

    ax, ay = np.abs(dx).astype(np.int64), np.abs(dy).astype(np.int64) << _CANNY_SHIFT
    tg22 = ax * _CANNY_TG22
    horizontal = ay < tg22
    vertical = ~horizontal & (ay > tg22 + (ax << (_CANNY_SHIFT + 1)))
    diagonal = ~horizontal & ~vertical
    same_sign = (dx ^ dy) >= 0
    keep = (
        (horizontal & (mag > at(0, -1)) & (mag >= at(0, 1)))
        | (vertical & (mag > at(-1, 0)) & (mag >= at(1, 0)))
        | (diagonal & same_sign & (mag > at(-1, -1)) & (mag > at(1, 1)))
        | (diagonal & ~same_sign & (mag > at(-1, 1)) & (mag > at(1, -1)))
    )
    candidates = keep & (mag > math.floor(low))
    strong = candidates & (mag > math.floor(high))
    labels, count = ndimage.label(candidates, structure=_NEIGHBOURS_8)
    seeded = np.zeros(count + 1, dtype=bool)
    seeded[labels[strong]] = True
    seeded[0] = False
    return np.where(seeded[labels], 255, 0).astype(np.uint8)


def distance_l2_5x5(images: np.ndarray) -> np.ndarray:
    """``cv2.distanceTransform(image, DIST_L2, 5)`` on a uint8 batch ``(N, H, W)``: the 5x5 chamfer distance
    from each non-zero pixel to the nearest zero pixel, weights 1 (step), 1.4 (diagonal), 2.1969 (knight).

    The two-pass raster scan (forward from the top-left, backward from the bottom-right, each pixel taking the
    least of its already-visited neighbours plus the step cost) in float32 with float32 weights, as the Intel
    IPP code in OpenCV's wheels computes it (checked equal to OpenCV 3.4.18 and 5.1; OpenCV built without IPP
    scans in 16.16 fixed point instead, within 3e-5). An image without a zero pixel gets FLT_MAX everywhere,
    as OpenCV gives. Returns float32 ``(N, H, W)``.
    """
    hv, diag, knight = (_F32(w) for w in _DIST_L2_5X5)
    big = _F32(np.finfo(_F32).max)
    n, h, w = images.shape
    t = np.full((n, h + 4, w + 4), big, dtype=_F32)
    zero = images == 0
    above = ((-2, -1, knight), (-2, 1, knight), (-1, -2, knight), (-1, -1, diag), (-1, 0, hv), (-1, 1, diag))
    above += ((-1, 2, knight),)
    for y in range(h):
        r = y + 2
        best = np.full((n, w), big, dtype=_F32)
        for oy, ox, cost in above:
            best = np.minimum(best, t[:, r + oy, 2 + ox : 2 + ox + w] + cost)
        for x in range(w):  # the left neighbour is this row's running result
            value = np.minimum(best[:, x], t[:, r, x + 1] + hv)
            t[:, r, x + 2] = np.where(zero[:, y, x], _F32(0), value)
    for y in range(h - 1, -1, -1):
        r = y + 2
        best = t[:, r, 2 : 2 + w].copy()
        for oy, ox, cost in above:
            best = np.minimum(best, t[:, r - oy, 2 - ox : 2 - ox + w] + cost)
        for x in range(w - 1, -1, -1):
            t[:, r, x + 2] = np.minimum(best[:, x], t[:, r, x + 3] + hv)
    return t[:, 2 : 2 + h, 2 : 2 + w].copy()


def box3_f32(x: np.ndarray) -> np.ndarray:
    """``cv2.blur(x, (3, 3))`` on float32 ``(N, H, W)``: the 3x3 mean with reflect-101 borders, summed in
    float64 (exact for these inputs) and scaled by 1/9 before rounding to float32. Returns float32."""
    total = ndimage.correlate(x.astype(np.float64), np.ones((1, 3, 3)), mode="mirror")
    return (total * (1.0 / 9.0)).astype(_F32)


def box3_u8(x: np.ndarray) -> np.ndarray:
    """``cv2.blur(x, (3, 3))`` on uint8 ``(N, H, W)``: the 3x3 sum (reflect-101 borders) divided by 9 and
    rounded (OpenCV's fixed-point ``(s + 4) * 7282 >> 16``, equal to rounding for every sum up to 9 * 255)."""
    total = ndimage.correlate(x.astype(np.int64), np.ones((1, 3, 3), dtype=np.int64), mode="mirror")
    return (((total + 4) * 7282) >> 16).astype(np.uint8)


def filter_u8(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``cv2.filter2D(x, CV_8U, kernel)`` for a small integer kernel on uint8 ``(N, H, W)``: the exact integer
    correlation (reflect-101 borders) saturated to [0, 255]. Returns uint8."""
    total = ndimage.correlate(x.astype(np.int64), kernel[None].astype(np.int64), mode="mirror")
    return np.clip(total, 0, 255).astype(np.uint8)


def equalize_hist(images: np.ndarray) -> np.ndarray:
    """``cv2.equalizeHist`` per image of a uint8 batch ``(N, H, W)``.

    OpenCV maps the lowest present level to 0 and level v above it to ``round(cum(v) * scale)``, where
    ``cum(v)`` counts the pixels in (lowest, v] and ``scale = 255 / (pixels - count(lowest))`` in float32
    (rounded half to even, as ``saturate_cast``); a one-level image keeps its level. Returns uint8.
    """
    n = images.shape[0]
    flat = images.reshape(n, -1).astype(np.int64)
    hist = np.zeros((n, 256), dtype=np.int64)
    np.add.at(hist, (np.arange(n)[:, None], flat), 1)
    lowest = np.argmax(hist > 0, axis=1)
    low_count = hist[np.arange(n), lowest]
    total = flat.shape[1]
    single = low_count == total
    scale = (_F32(255.0) / np.where(single, 1, total - low_count).astype(_F32)).astype(_F32)
    cum = np.cumsum(hist, axis=1) - low_count[:, None]
    lut = np.rint(cum.astype(_F32) * scale[:, None]).clip(0, 255)
    lut[np.arange(256)[None, :] <= lowest[:, None]] = 0
    lut = np.where(single[:, None], lowest[:, None], lut).astype(np.uint8)
    return np.take_along_axis(lut, flat, axis=1).reshape(images.shape)


def affine_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``cv2.getAffineTransform(src, dst)`` for a batch: ``src`` (3, 2) shared, ``dst`` (N, 3, 2), as (x, y).

    OpenCV's wheels solve the same 6x6 system through LAPACK (OpenBLAS), as ``numpy.linalg.solve`` does here;
    the two BLAS builds can disagree in the last bit of a coefficient, which moves a warp's sample only if it
    lies within about 1e-12 of a 1/1024-pixel rounding boundary. Returns float64 ``(N, 2, 3)``.
    """
    a = np.zeros((6, 6))
    for i in range(3):
        a[2 * i, :3] = a[2 * i + 1, 3:] = (float(src[i, 0]), float(src[i, 1]), 1.0)
    b = dst.reshape(dst.shape[0], 6).astype(np.float64)
    return np.linalg.solve(a, b.T).T.reshape(-1, 2, 3)


def _invert_affine(m: np.ndarray) -> np.ndarray:
    """``cv2.invertAffineTransform`` for ``(N, 2, 3)``, with OpenCV's operation order."""
    d = m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]
    d = np.where(d != 0, 1.0 / np.where(d != 0, d, 1.0), 0.0)
    a11, a22, a12, a21 = m[:, 1, 1] * d, m[:, 0, 0] * d, -m[:, 0, 1] * d, -m[:, 1, 0] * d
    b1 = -a11 * m[:, 0, 2] - a12 * m[:, 1, 2]
    b2 = -a21 * m[:, 0, 2] - a22 * m[:, 1, 2]
    return np.stack([np.stack([a11, a12, b1], 1), np.stack([a21, a22, b2], 1)], 1)


def warp_affine_reflect101(images: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``cv2.warpAffine(image, M, (W, H), borderMode=BORDER_REFLECT_101)`` (bilinear) on float32 ``(N, H, W,
    C)``, one forward matrix ``M`` (N, 2, 3) per image, as OpenCV 3.x-4.10 computes it.

    Each output pixel samples the inverse map, computed in fixed point: ``round(1024 * (A x))`` plus
    ``round(1024 * (B y + c))`` plus 16, shifted to 1/32 pixel; the four neighbours (reflect-101 outside the
    image) are weighted by float32 products of the 1/32-step fractions, summed in float32. OpenCV 4.11 and
    later sample at exact float coordinates instead (differences below 1/64 of a pixel step). Returns float32.
    """
    n, h, w, _ = images.shape
    inv = _invert_affine(m)
    scale = 1 << _AB_BITS
    half = scale >> _INTER_BITS >> 1
    xs, ys = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    adelta = np.rint(inv[:, 0, 0, None] * xs * scale).astype(np.int64)  # (N, W)
    bdelta = np.rint(inv[:, 1, 0, None] * xs * scale).astype(np.int64)
    x0 = np.rint((inv[:, 0, 1, None] * ys + inv[:, 0, 2, None]) * scale).astype(np.int64) + half  # (N, H)
    y0 = np.rint((inv[:, 1, 1, None] * ys + inv[:, 1, 2, None]) * scale).astype(np.int64) + half
    fx = (x0[:, :, None] + adelta[:, None, :]) >> (_AB_BITS - _INTER_BITS)
    fy = (y0[:, :, None] + bdelta[:, None, :]) >> (_AB_BITS - _INTER_BITS)
    ix, iy = fx >> _INTER_BITS, fy >> _INTER_BITS
    tab = 1 << _INTER_BITS
    ax = ((fx & (tab - 1)) / _F32(tab)).astype(_F32)[..., None]
    ay = ((fy & (tab - 1)) / _F32(tab)).astype(_F32)[..., None]
    batch = np.arange(n)[:, None, None]

    def sample(oy: int, ox: int) -> np.ndarray:
        return images[batch, _reflect101(iy + oy, h), _reflect101(ix + ox, w)]

    one = _F32(1.0)
    w00, w01, w10, w11 = (one - ay) * (one - ax), (one - ay) * ax, ay * (one - ax), ay * ax
    return (sample(0, 0) * w00 + sample(0, 1) * w01) + sample(1, 0) * w10 + sample(1, 1) * w11


def _reflect101(i: np.ndarray, size: int) -> np.ndarray:
    """OpenCV's ``borderInterpolate`` for BORDER_REFLECT_101 (``-1 -> 1``, ``size -> size - 2``)."""
    period = 2 * size - 2
    i = np.abs(i) % period
    return np.where(i >= size, period - i, i)
