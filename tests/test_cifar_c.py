"""CIFAR-10-C regenerated (cifar_bench.plugins.cifar_c): each corruption against its definition, the library
operations against what they reproduce, determinism across processes and seeds, and the API's contracts.
Synthetic images only, so the file runs in seconds."""

from __future__ import annotations

import colorsys
import io
import itertools
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from cifar_bench.plugins import cifar_c as cc
from cifar_bench.plugins import cifar_c_opencv as cv
from cifar_bench.plugins import cifar_c_ops as ops

ORIGINAL_NAMES = {
    "gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "gaussian_blur", "glass_blur", "defocus_blur",
    "motion_blur", "zoom_blur", "fog", "snow", "spatter", "contrast", "brightness", "saturate", "jpeg_compression",
    "pixelate", "elastic_transform", "frost",
}  # fmt: skip


def flat(value: int, n: int = 8) -> np.ndarray:
    return np.full((n, 32, 32, 3), value, dtype=np.uint8)


def natural(n: int = 12, seed: int = 0) -> np.ndarray:
    """Smooth colour fields with a few hard edges: closer to photographs than white noise."""
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.random((n, 32, 32, 3)), (0, 3, 3, 0))
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    edges = (rng.random((n, 1, 1, 3)) > 0.5) * (np.arange(32)[None, :, None, None] > rng.integers(8, 24, (n, 1, 1, 1)))
    return (np.clip(0.7 * smooth + 0.3 * edges, 0, 1) * 255).astype(np.uint8)


def params(name: str, severity: int):
    return cc.CORRUPTIONS[name].params[severity - 1]


# -- the set and the API ------------------------------------------------------------------------------


def test_reproduced_and_left_out_cover_the_original_nineteen_exactly():
    assert set(cc.CORRUPTIONS) | set(cc.LEFT_OUT) == ORIGINAL_NAMES
    assert not set(cc.CORRUPTIONS) & set(cc.LEFT_OUT)
    assert cc.LEFT_OUT["frost"]  # a reason, not just a name
    assert set(cc.EXTRA) <= set(cc.CORRUPTIONS) and len(cc.CORRUPTIONS) - len(cc.EXTRA) == 14
    assert all(len(c.params) == len(cc.SEVERITIES) for c in cc.CORRUPTIONS.values())


@pytest.mark.parametrize("name", list(cc.CORRUPTIONS))
def test_every_corruption_returns_uint8_of_the_input_shape_and_changes_the_image(name):
    images = natural(6)
    for severity in (1, 5):
        out = cc.corrupt(images, name, severity)
        assert out.dtype == np.uint8 and out.shape == images.shape
        assert out is not images and not np.array_equal(out, images)


@pytest.mark.parametrize("name", list(cc.CORRUPTIONS))
def test_batching_never_couples_images(name):
    """Image i's corruption depends on image i and its id only: not on the batch, its size or the chunking."""
    images = natural(5, seed=1)
    batch = cc.corrupt(images, name, 3, seed=4)
    alone = [cc.corrupt(images[i : i + 1], name, 3, seed=4, ids=[i])[0] for i in range(len(images))]
    assert np.array_equal(batch, np.stack(alone))
    reordered = cc.corrupt(images[::-1], name, 3, seed=4, ids=list(range(4, -1, -1)))
    assert np.array_equal(reordered, batch[::-1])


def test_seed_changes_exactly_the_random_corruptions():
    images = natural(4)
    for name, corruption in cc.CORRUPTIONS.items():
        same = np.array_equal(cc.corrupt(images, name, 2, seed=0), cc.corrupt(images, name, 2, seed=1))
        assert same != corruption.random, name


def test_generation_is_byte_identical_in_another_process():
    images = natural(3, seed=2)
    here = cc.digest(cc.generate(images, severities=(1, 4), seed=11))
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from cifar_bench.plugins import cifar_c as cc
        images = np.frombuffer(sys.stdin.buffer.read(), dtype=np.uint8).reshape(-1, 32, 32, 3)
        print(cc.digest(cc.generate(images, severities=(1, 4), seed=11)))
        assert "torch" not in sys.modules, "cifar_c must stay importable without torch"
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], input=images.tobytes(), capture_output=True, check=True, timeout=300
    )
    assert done.stdout.decode().strip() == here


def test_digest_covers_every_byte_and_ignores_dict_order():
    generated = cc.generate(natural(2), names=["contrast", "pixelate"], severities=(1, 2))
    reversed_order = dict(reversed(list(generated.items())))
    assert cc.digest(reversed_order) == cc.digest(generated)
    generated[("pixelate", 2)] = generated[("pixelate", 2)].copy()
    generated[("pixelate", 2)][0, 0, 0, 0] ^= 1
    assert cc.digest(generated) != cc.digest(reversed_order)


def test_bad_requests_are_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"left out: .*frost"):
        cc.corrupt(flat(0), "frost", 1)
    with pytest.raises(ValueError, match="unknown corruption 'fogg'"):
        cc.corrupt(flat(0), "fogg", 1)
    with pytest.raises(ValueError, match="severity"):
        cc.corrupt(flat(0), "fog", 6)
    with pytest.raises(TypeError):
        cc.corrupt(flat(0).astype(np.float32), "fog", 1)
    with pytest.raises(ValueError, match="shaped"):
        cc.corrupt(np.zeros((2, 28, 28, 3), np.uint8), "fog", 1)
    with pytest.raises(ValueError, match="ids"):
        cc.corrupt(flat(0, 2), "fog", 1, ids=[3, 3])
    with pytest.raises(ValueError, match="seed"):
        cc.corrupt(flat(0, 2), "fog", 1, seed=-1)


def test_subset_is_class_balanced_first_in_dataset_order():
    labels = np.repeat(np.arange(10), 1000)  # ImageFolder order: class by class
    chosen = cc.subset_indices(labels)
    assert len(chosen) == 1000 and np.all(np.diff(chosen) > 0)
    assert np.array_equal(np.bincount(labels[chosen]), np.full(10, 100))
    assert np.array_equal(chosen[:100], np.arange(100))  # the first images of class 0
    interleaved = np.tile(np.arange(10), 1000)  # torchvision order: classes mixed
    assert np.array_equal(cc.subset_indices(interleaved, 25), np.arange(25))
    uneven = np.array([0] * 2 + [1] * 50 + [2] * 50)
    counts = np.bincount(uneven[cc.subset_indices(uneven, 31)])
    assert counts.tolist() == [2, 15, 14]  # the short class gives its remainder to the others
    assert np.array_equal(cc.subset_indices(uneven, 500), np.arange(102))


# -- noise --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("severity", cc.SEVERITIES)
def test_gaussian_noise_has_the_stated_sigma(severity):
    sigma = params("gaussian_noise", severity)
    out = cc.corrupt(flat(128, 16), "gaussian_noise", severity).astype(float)
    # truncation to uint8 shifts the mean by -0.5 and adds a uniform rounding variance of 1/12
    assert out.mean() - 127.5 == pytest.approx(0, abs=0.3)
    assert np.sqrt(out.var() - 1 / 12) == pytest.approx(sigma * 255, rel=0.02)


@pytest.mark.parametrize("severity", cc.SEVERITIES)
def test_shot_noise_keeps_the_mean_with_poisson_variance(severity):
    rate, value = params("shot_noise", severity), 100
    out = cc.corrupt(flat(value, 16), "shot_noise", severity).astype(float)
    assert out.mean() + 0.5 == pytest.approx(value, abs=0.25)
    poisson_var = value / 255 / rate * 255**2  # Var(Poisson(x c) / c) = x / c, in 8-bit levels
    assert out.var() == pytest.approx(poisson_var + 1 / 12, rel=0.05)


@pytest.mark.parametrize("severity", cc.SEVERITIES)
def test_impulse_noise_hits_the_stated_fraction_half_salt_half_pepper(severity):
    amount = params("impulse_noise", severity)
    out = cc.corrupt(flat(100, 16), "impulse_noise", severity)
    salt, pepper = (out == 255).mean(), (out == 0).mean()
    assert salt + pepper == pytest.approx(amount, rel=0.1)
    assert salt == pytest.approx(pepper, rel=0.25)
    assert np.all((out == 100) | (out == 0) | (out == 255))


@pytest.mark.parametrize("severity", cc.SEVERITIES)
def test_speckle_noise_scales_with_the_intensity(severity):
    sigma = params("speckle_noise", severity)
    out = cc.corrupt(flat(100, 16), "speckle_noise", severity).astype(float)
    assert np.sqrt(out.var() - 1 / 12) == pytest.approx(sigma * 100, rel=0.03)


# -- blur ---------------------------------------------------------------------------------------------


def sampled_gaussian(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """SciPy's kernel definition: exp(-x^2 / 2 sigma^2) on integers |x| <= int(truncate sigma + 0.5), sum 1."""
    radius = int(truncate * sigma + 0.5)
    taps = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2 * sigma**2))
    return taps / taps.sum()


@pytest.mark.parametrize("severity", cc.SEVERITIES)
def test_gaussian_blur_of_a_line_is_the_stated_gaussian(severity):
    sigma = params("gaussian_blur", severity)
    line = np.zeros((1, 32, 32, 3), np.uint8)
    line[:, :, 16] = 255
    profile = cc.corrupt(line, "gaussian_blur", severity)[0, 10, :, 0].astype(float)
    expected = np.zeros(32)
    kernel = sampled_gaussian(sigma)
    r = len(kernel) // 2
    expected[16 - r : 17 + r] = 255 * kernel
    assert np.all(profile <= expected + 1e-9) and np.all(profile > expected - 1)  # truncated, never rounded up
    assert np.array_equal(cc.corrupt(line.transpose(0, 2, 1, 3), "gaussian_blur", severity)[0, :, 10, 0], profile)


def test_glass_shuffle_is_what_the_original_loop_does():
    """The original's per-pixel "swap" statement on NumPy rows, literally, against the vectorised gather."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    offsets = rng.integers(-1, 1, size=(30, 30, 2))  # randint(-1, 1): dx, dy in {-1, 0}
    x = image.copy()
    for h in range(31, 1, -1):
        for w in range(31, 1, -1):
            dx, dy = offsets[h - 2, w - 2]
            hp, wp = h + dy, w + dx
            x[h, w], x[hp, wp] = x[hp, wp], x[h, w]
    gathered = ops.glass_shuffle(image[None], offsets[None, ..., 1], offsets[None, ..., 0], 1)[0]
    assert np.array_equal(gathered, x)
    assert np.array_equal(gathered[:2], image[:2]) and np.array_equal(gathered[:, :2], image[:, :2])


@pytest.mark.parametrize("severity", cc.SEVERITIES)
def test_defocus_blur_of_an_impulse_is_the_anti_aliased_disk(severity):
    radius, alias = params("defocus_blur", severity)
    kernel = cv.defocus_kernel(radius, alias)
    assert (
        kernel.sum() == pytest.approx(1, abs=1e-6)
        and np.allclose(kernel, kernel.T)
        and np.allclose(kernel, kernel[::-1])
    )
    g = np.exp(-((np.arange(3) - 1) ** 2) / (2 * alias**2))
    g /= g.sum()
    disk = (np.add.outer(np.arange(-2, 3) ** 2, np.arange(-2, 3) ** 2) <= radius**2).astype(float)
    expected = ndimage.correlate(disk / disk.sum(), np.outer(g, g), mode="constant")
    pad = (5 - kernel.shape[0]) // 2
    assert np.allclose(np.pad(kernel, pad), expected, atol=1e-6)
    impulse = np.zeros((1, 32, 32, 3), np.uint8)
    impulse[0, 16, 16] = 255
    r = kernel.shape[0] // 2
    out = cc.corrupt(impulse, "defocus_blur", severity)[0, 16 - r : 17 + r, 16 - r : 17 + r, 0].astype(float)
    assert np.all(np.abs(out - 255 * kernel) < 1)


@pytest.mark.parametrize("angle", [-44.0, -20.0, 0.0, 13.0, 45.0])
@pytest.mark.parametrize("severity", cc.SEVERITIES)
def test_motion_blur_kernel_is_a_one_sided_gaussian_line(severity, angle):
    radius, sigma = params("motion_blur", severity)
    weights, dx, dy = ops.motion_blur_taps(radius, sigma, angle)
    assert len(weights) == 2 * int(np.ceil(radius)) + 1 and weights.sum() == pytest.approx(1, abs=1e-12)
    assert np.all(np.diff(weights) < 0) and weights[1] / weights[0] == pytest.approx(np.exp(-1 / (2 * sigma**2)))
    assert (dx[0], dy[0]) == (0, 0) and np.all(dx >= 0) and np.all(np.sign(dy) * np.sign(angle) >= 0)
    steps = np.arange(len(weights))
    a = np.deg2rad(angle)
    assert np.all(np.abs(dx - steps * np.cos(a)) <= 0.5) and np.all(np.abs(dy - steps * np.sin(a)) <= 0.5)


def test_motion_blur_smears_a_dot_back_along_the_angle_and_keeps_flat_images():
    dot = np.zeros((1, 32, 32, 3), np.uint8)
    dot[0, 10, 20] = 255
    out = ops.motion_blur(dot, 6, 2, np.array([0.0]))[0, :, :, 0]
    weights, _, _ = ops.motion_blur_taps(6, 2, 0.0)
    assert np.array_equal(np.nonzero(out)[0], np.full(np.count_nonzero(out), 10))
    row = out[10, 20 - len(weights) + 1 : 21][::-1].astype(float)  # column 20 - i samples the dot through tap i
    assert np.all(np.abs(row - 255 * weights) <= 1)
    assert np.array_equal(cc.corrupt(flat(77), "motion_blur", 5), flat(77))


def test_zoom_matches_scipy_zoom_of_the_centre_crop():
    """The native zoom against the generator's own clipped_zoom (scipy.ndimage.zoom, per image)."""
    rng = np.random.default_rng(5)
    x = rng.random((3, 32, 32, 3)).astype(np.float32)
    for factor in [*np.arange(1, 1.26, 0.01), 1.75, 2.25]:
        crop = int(np.ceil(32 / factor))
        top = (32 - crop) // 2
        for image, mine in zip(x, ops.clipped_zoom(x, factor), strict=True):
            zoomed = ndimage.zoom(image[top : top + crop, top : top + crop], (factor, factor, 1), order=1)
            trim = (zoomed.shape[0] - 32) // 2
            assert np.array_equal(mine, zoomed[trim : trim + 32, trim : trim + 32]), factor


def test_zoom_blur_keeps_a_flat_image_flat():
    for severity in cc.SEVERITIES:
        out = cc.corrupt(flat(90, 2), "zoom_blur", severity).astype(int)
        assert np.all(np.abs(out - 90) <= 1)


# -- weather ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("severity", cc.SEVERITIES)
def test_fog_spans_the_plasma_from_zero_to_one(severity):
    strength, _ = params("fog", severity)
    v = 150 / 255
    out = cc.corrupt(flat(150, 4), "fog", severity).astype(float)
    # a flat image v becomes (v + s p) v / (v + s) with the plasma p spanning [0, 1] exactly
    assert np.all(np.abs(out.max(axis=(1, 2, 3)) - 150) <= 1)
    assert np.all(np.abs(out.min(axis=(1, 2, 3)) - v * v / (v + strength) * 255) <= 1)
    assert np.array_equal(cc.corrupt(flat(0), "fog", severity), flat(0))


def test_plasma_fractal_consumes_its_draws_and_is_normalised():
    uniforms = np.random.default_rng(0).random((2, ops.plasma_fractal_draws(32)))
    plasma = ops.plasma_fractal(uniforms, 2.0)
    assert plasma.shape == (2, 32, 32) and plasma.min() == 0 and plasma.max() == 1
    assert ops.plasma_fractal_draws(32) == 3 * (1 + 4 + 16 + 64 + 256)


@pytest.mark.parametrize("severity", cc.SEVERITIES)
def test_snow_on_black_is_a_lifted_floor_plus_point_symmetric_flakes(severity):
    keep = params("snow", severity)[6]
    out = cc.corrupt(flat(0, 4), "snow", severity)
    assert np.all(out >= int((1 - keep) * 0.5 * 255))  # max(x, 1.5 grey + 0.5) lifts black to 0.5
    assert np.array_equal(out, out[:, ::-1, ::-1])  # the flake layer plus its 180-degree turn
    assert out.max() > int((1 - keep) * 0.5 * 255) + 10


@pytest.mark.parametrize("severity", cc.SEVERITIES)
def test_spatter_only_adds_water_or_blends_towards_mud(severity):
    images = natural(6)
    out = cc.corrupt(images, "spatter", severity).astype(int)
    if params("spatter", severity)[5] == 0:
        assert np.all(out >= images)  # x + m * turquoise, m >= 0
    else:
        mud = np.array([63, 42, 20])
        low, high = np.minimum(images, mud) - 1, np.maximum(images, mud) + 1
        assert np.all((out >= low) & (out <= high))  # x (1 - m) + mud m, 0 <= m <= 1


def test_canny_draws_a_thin_line_at_a_step_and_nothing_on_flat_ground():
    step = np.zeros((1, 32, 32), np.uint8)
    step[:, :, 16:] = 200
    edges = cv.canny(step, 50, 150)[0]
    columns = np.nonzero(edges.any(axis=0))[0]
    assert len(columns) == 1 and columns[0] in (15, 16) and edges[:, columns[0]].all()
    assert not cv.canny(np.full((1, 32, 32), 90, np.uint8), 50, 150).any()
    faint = (step // 200 * 10).astype(np.uint8)  # gradient 40, below the low threshold
    assert not cv.canny(faint, 50, 150).any()


def test_chamfer_distance_uses_the_5x5_weights():
    image = np.full((1, 9, 9), 255, np.uint8)
    image[0, 4, 4] = 0
    d = cv.distance_l2_5x5(image)[0, 4:, 4:]
    f = np.float32
    assert (d[0, 1], d[1, 1], d[1, 2], d[2, 2]) == (1, f(1.4), f(2.1969), f(1.4) + f(1.4))
    assert d[0, 4] == 4 and cv.distance_l2_5x5(np.full((1, 4, 4), 9, np.uint8)).min() == np.finfo(f).max


def test_equalize_hist_follows_the_cumulative_formula():
    image = np.array([[10] * 4 + [20] * 8 + [30] * 4], np.uint8).reshape(1, 4, 4)
    out = cv.equalize_hist(image)[0].ravel()
    assert sorted(set(out.tolist())) == [0, round(8 * 255 / 12), 255]
    assert np.array_equal(cv.equalize_hist(np.full((1, 3, 3), 42, np.uint8)), np.full((1, 3, 3), 42))


def test_gray_and_box_filters_follow_opencv_definitions():
    rgb = np.random.default_rng(1).random((2, 5, 5, 3)).astype(np.float32)
    assert np.allclose(cv.rgb_to_gray_f32(rgb), rgb @ np.array([0.299, 0.587, 0.114]), atol=1e-6)
    ones = np.full((1, 6, 6), 9, np.uint8)
    assert np.array_equal(cv.box3_u8(ones), ones) and np.array_equal(cv.box3_f32(ones.astype(np.float32)), ones)
    dot = np.array([[[0, 0, 0], [0, 9, 0], [0, 0, 0]]], np.uint8)
    assert np.array_equal(cv.box3_u8(dot)[0, 1], [2, 1, 2])  # reflect-101: column -1 is column 1, counted twice


# -- digital ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("severity", cc.SEVERITIES)
def test_contrast_pulls_each_channel_towards_its_mean(severity):
    factor = params("contrast", severity)
    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[:, :16] = (40, 100, 200)
    image[:, 16:] = (200, 60, 0)
    mean = np.array([120, 80, 100])
    out = cc.corrupt(image, "contrast", severity).astype(float)
    for half, value in ((slice(0, 16), (40, 100, 200)), (slice(16, 32), (200, 60, 0))):
        expected = (np.array(value) - mean) * factor + mean
        assert np.all(np.abs(out[0, half] - expected) < 1)


def test_hsv_conversions_agree_with_colorsys():
    rgb = np.random.default_rng(2).integers(0, 256, (400, 3)) / 255.0
    rgb[:50, 1] = rgb[:50, 0]  # ties between channels
    rgb[50:60] = rgb[50:60, :1]  # greys
    hsv = ops.rgb_to_hsv(rgb)
    assert np.allclose(hsv, [colorsys.rgb_to_hsv(*p) for p in rgb], atol=1e-12)
    assert np.allclose(ops.hsv_to_rgb(hsv), rgb, atol=1e-12)


@pytest.mark.parametrize("severity", cc.SEVERITIES)
def test_brightness_raises_the_hsv_value(severity):
    shift = params("brightness", severity)
    image = natural(4)
    out = cc.corrupt(image, "brightness", severity)
    value_in, value_out = image.max(axis=-1).astype(float), out.max(axis=-1).astype(float)
    expected = np.minimum(value_in + 255 * shift, 255)
    assert np.all(np.abs(value_out - expected) <= 1)
    grey = cc.corrupt(flat(60), "brightness", severity).astype(float)
    assert np.all(np.abs(grey - min(60 + 255 * shift, 255)) <= 1)


@pytest.mark.parametrize("severity", cc.SEVERITIES)
def test_saturate_scales_and_shifts_the_hsv_saturation(severity):
    scale, shift = params("saturate", severity)
    image = natural(4)
    out = cc.corrupt(image, "saturate", severity)
    s_in = ops.rgb_to_hsv(image / 255.0)[..., 1]
    s_out = ops.rgb_to_hsv(out / 255.0)[..., 1]
    bright = image.max(axis=-1) > 60  # where 8-bit rounding moves saturation little
    assert np.allclose(s_out[bright], np.clip(s_in * scale + shift, 0, 1)[bright], atol=0.03)


@pytest.mark.parametrize("severity", cc.SEVERITIES)
def test_jpeg_compression_is_pillows_round_trip_at_the_stated_quality(severity):
    quality = params("jpeg_compression", severity)
    image = natural(2)
    out = cc.corrupt(image, "jpeg_compression", severity)
    for before, after in zip(image, out, strict=True):
        buffer = io.BytesIO()
        Image.fromarray(before).save(buffer, "JPEG", quality=quality)
        assert np.array_equal(after, np.asarray(Image.open(buffer)))


@pytest.mark.parametrize("severity", cc.SEVERITIES)
def test_pixelate_is_a_box_down_and_up_at_the_stated_factor(severity):
    side = int(32 * params("pixelate", severity))
    image = natural(2)
    out = cc.corrupt(image, "pixelate", severity)
    for before, after in zip(image, out, strict=True):
        small = Image.fromarray(before).resize((side, side), Image.BOX)
        assert np.array_equal(after, np.asarray(small.resize((32, 32), Image.BOX)))
    if 32 % side == 0:
        blocks = image.reshape(2, side, 32 // side, side, 32 // side, 3).mean(axis=(2, 4))
        assert np.all(np.abs(out[:, :: 32 // side, :: 32 // side] - blocks) <= 1)


def test_elastic_transform_without_displacement_or_jitter_is_the_identity():
    image = natural(3)
    rngs = cc.streams(0, "elastic_transform", 1, range(3))
    assert np.array_equal(cc.elastic_transform(image, (0.0, 0.0, 0.0), rngs), image)


def test_affine_warp_follows_opencv_conventions():
    src = np.float32([[26, 26], [26, 6], [6, 6]])
    shifted = cv.affine_from_points(src, (src + np.float32([3, -2]))[None])
    assert np.allclose(shifted[0], [[1, 0, 3], [0, 1, -2]], atol=1e-12)
    image = np.random.default_rng(0).random((1, 32, 32, 3)).astype(np.float32)
    out = cv.warp_affine_reflect101(image, shifted)[0]  # dst(x, y) = src(x - 3, y + 2)
    assert np.array_equal(out[:30, 3:], image[0, 2:, :29])
    assert np.array_equal(out[:30, 0], image[0, 2:, 3])  # reflect-101: column -3 is column 3


# -- the whole set --------------------------------------------------------------------------------------

# In the original constants these do not grow monotonically with severity on every image: glass blur's
# severities 1-3 and 4-5 share a shift and differ only in a small blur; spatter switches from water to mud at 4;
# saturate first removes colour (0.3, 0.1) and then adds it (1.5, 2, 2.5); elastic's jitter shrinks with
# severity while its displacement grows.
NOT_MONOTONE = {"glass_blur", "spatter", "saturate", "elastic_transform"}


@pytest.mark.parametrize("name", [n for n in cc.CORRUPTIONS if n not in NOT_MONOTONE])
def test_change_from_the_clean_image_grows_with_severity(name):
    images = natural(12, seed=3)
    change = [np.abs(cc.corrupt(images, name, s).astype(int) - images).mean() for s in cc.SEVERITIES]
    assert all(b >= a * 0.98 for a, b in itertools.pairwise(change)), change
    assert change[-1] > change[0] * 1.3, change
