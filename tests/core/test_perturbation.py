"""Occlusion and RISE (core/perturbation.py) against references written here from the definitions:
brute-force float64 loops over window positions and masks, NumPy "models" as the scores function,
nothing taken from the module's own code. No TensorFlow involved.

Tolerance of a float32 map against a float64 reference ``ref``: the module accumulates in float64
too (only the order of the sums differs, ~1e-15 relative) and rounds once to float32, so
|map − ref| ≤ u32·|ref| + 1e-12·max|ref| with u32 = 2⁻²⁴ (``assert_float32_of``).
"""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from gradcam_desktop.core import perturbation as pt
from gradcam_desktop.core.errors import MethodError

U32 = 2.0 ** -24


def assert_float32_of(result: np.ndarray, reference: np.ndarray) -> None:
    assert result.dtype == np.float32
    assert result.shape == reference.shape
    scale = float(np.abs(reference).max()) if reference.size else 0.0
    bound = U32 * np.abs(reference) + 1e-12 * scale + 1e-300
    excess = np.abs(result.astype(np.float64) - reference) - bound
    assert (excess <= 0).all(), f"max excess {excess.max():.3g} over the bound"


# ------------------------------------------------------------------ NumPy "models"

class Recorder:
    """A scores function that records the batch size of every call (and checks the input type)."""

    def __init__(self, single):
        self.single = single  # float64 (H, W, C) -> float
        self.sizes: list[int] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        assert batch.dtype == np.float32 and batch.ndim == 4
        self.sizes.append(len(batch))
        return np.array([self.single(row.astype(np.float64)) for row in batch])


def linear(weights: np.ndarray):
    """y = Σ_ijc w_ijc x_ijc, in float64."""
    return lambda picture: float((weights * picture).sum())


def nonlinear(weights: np.ndarray):
    """y = tanh(0.1 Σ w x) + max of channel 0 over a patch + mean of channel 1 squared."""
    def single(picture):
        return float(np.tanh(0.1 * (weights * picture).sum()) + picture[2:6, 3:9, 0].max()
                     + 0.5 * (picture[..., 1] ** 2).mean())
    return single


def picture_and_weights(height, width, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, (height, width, channels)).astype(np.float32)
    w = rng.normal(size=(height, width, channels))
    return x, w


# ------------------------------------------------------------------ occlusion references

def window_starts(size, window, stride):
    """0, s, 2s, … while the window still fits."""
    starts, start = [], 0
    while start + window <= size:
        starts.append(start)
        start += stride
    return starts


def occlusion_reference(single, x, window, stride, baseline=0.0):
    """Per pixel: mean over the windows covering it of y(x) − y(occluded); NaN/inf drops count 0."""
    picture = x.astype(np.float64)
    height, width, _ = picture.shape
    base = np.broadcast_to(np.asarray(baseline, np.float32).astype(np.float64), picture.shape)
    reference = single(picture)
    drops = {}
    for r in window_starts(height, window, stride):
        for c in window_starts(width, window, stride):
            occluded = picture.copy()
            occluded[r:r + window, c:c + window, :] = base[r:r + window, c:c + window, :]
            drop = reference - single(occluded)
            drops[r, c] = drop if math.isfinite(drop) else 0.0
    out = np.zeros((height, width))
    for i in range(height):
        for j in range(width):
            covering = [d for (r, c), d in drops.items() if r <= i < r + window and c <= j < c + window]
            out[i, j] = sum(covering) / len(covering) if covering else 0.0
    return out


def test_linear_occlusion_is_the_mean_of_window_sums():
    # For y = Σ w x and baseline 0, y(x) − y(x with window zeroed) = Σ_window w x.
    x, w = picture_and_weights(20, 17)
    window, stride = 5, 2
    contribution = w * x.astype(np.float64)
    sums = {}
    for r in range(0, 20 - window + 1, stride):
        for c in range(0, 17 - window + 1, stride):
            sums[r, c] = contribution[r:r + window, c:c + window].sum()
    expected = np.zeros((20, 17))
    for i in range(20):
        for j in range(17):
            covering = [s for (r, c), s in sums.items() if r <= i < r + window and c <= j < c + window]
            expected[i, j] = np.mean(covering) if covering else 0.0
    result = pt.occlusion(Recorder(linear(w)), x, window=window, stride=stride)
    assert_float32_of(result, expected)
    # 17 − 5 = 12 is a multiple of 2, 20 − 5 = 15 is not: the last row is uncovered, every column covered.
    assert (result[19] == 0).all() and (result[:19] != 0).all()


@pytest.mark.parametrize(("shape", "window", "stride", "baseline"), [
    ((12, 9, 3), 4, 3, 0.0),
    ((11, 11, 3), 4, 3, 0.25),
    ((10, 13, 3), 3, 1, np.array([0.5, -1.0, 0.25], np.float32)),
    ((8, 8, 2), 8, 5, -0.5),  # a single window covering everything
    ((9, 7, 2), 1, 2, 0.0),  # 1-pixel windows with gaps between them
])
def test_nonlinear_occlusion_against_brute_force(shape, window, stride, baseline):
    x, w = picture_and_weights(*shape, seed=1)
    single = nonlinear(w)
    expected = occlusion_reference(single, x, window, stride, baseline)
    result = pt.occlusion(Recorder(single), x, window=window, stride=stride, baseline=baseline, batch=4)
    assert_float32_of(result, expected)


def test_positions_stop_where_the_window_still_fits():
    # 11 − 4 = 7, 7 % 3 = 1: windows at 0, 3, 6 cover rows and columns 0..9; 10 is uncovered.
    assert list(pt.occlusion_positions(11, 4, 3)) == window_starts(11, 4, 3) == [0, 3, 6]
    assert list(pt.occlusion_positions(10, 4, 3)) == [0, 3, 6]
    assert list(pt.occlusion_positions(4, 4, 3)) == [0]
    x, w = picture_and_weights(11, 11, seed=2)
    result = pt.occlusion(Recorder(linear(np.abs(w))), np.abs(x), window=4, stride=3)
    assert (result[10, :] == 0).all() and (result[:, 10] == 0).all()
    assert (result[:10, :10] > 0).all()  # positive weights, positive input: every covered drop > 0


def test_occlusion_passes_count_the_model_evaluations():
    x, w = picture_and_weights(13, 10, seed=3)
    for window, stride in ((4, 3), (3, 1), (10, 4), (1, 1)):
        model = Recorder(linear(w))
        run = pt.OcclusionRun(model, x, window, stride, batch=1)
        run.result()
        expected = 1 + len(window_starts(13, window, stride)) * len(window_starts(10, window, stride))
        assert pt.occlusion_passes(13, 10, window, stride) == run.passes == len(model.sizes) == expected


def test_default_window_and_stride_scale_with_the_input():
    # round(16 · min(H, W) / 224), half up, at least 1; stride w // 2, at least 1.
    cases = {(224, 224): 16, (112, 300): 8, (448, 448): 32, (299, 299): 21, (21, 40): 2, (35, 35): 3,
             (10, 10): 1, (1, 5): 1}
    for (height, width), window in cases.items():
        assert pt.default_window(height, width) == window
    assert [pt.default_stride(w) for w in (1, 2, 3, 16, 21)] == [1, 1, 1, 8, 10]
    run = pt.OcclusionRun(Recorder(lambda p: 0.0), np.zeros((224, 224, 3), np.float32))
    assert (run.window, run.stride, run.batch) == (16, 8, 16)
    assert run.passes == pt.occlusion_passes(224, 224, 16, 8) == 1 + ((224 - 16) // 8 + 1) ** 2 == 730
    assert run.total == math.ceil(730 / 16)


def test_occlusion_does_not_depend_on_the_batch_size():
    x, w = picture_and_weights(15, 14, seed=4)
    maps = [pt.occlusion(Recorder(nonlinear(w)), x, window=4, stride=2, batch=b) for b in (1, 7, 16)]
    for other in maps[1:]:
        assert_float32_of(other, maps[0].astype(np.float64))


def test_occlusion_accepts_a_batch_axis_and_takes_no_other_shape():
    x, w = picture_and_weights(9, 9, seed=5)
    single = pt.occlusion(Recorder(linear(w)), x, 3, 2)
    batched = pt.occlusion(Recorder(linear(w)), x[np.newaxis], 3, 2)
    np.testing.assert_array_equal(single, batched)
    with pytest.raises(MethodError):
        pt.occlusion(Recorder(linear(w)), x[..., 0], 3, 2)


@pytest.mark.parametrize(("window", "stride", "baseline", "batch", "words"), [
    (12, 2, 0.0, 16, "larger than the 10×11 input"),
    (0, 2, 0.0, 16, "window"),
    (3, 0, 0.0, 16, "stride"),
    (3, -1, 0.0, 16, "stride"),
    (3, 2, np.zeros(2), 16, "baseline"),
    (3, 2, 0.0, 0, "batch"),
])
def test_occlusion_refuses_bad_settings_in_one_line(window, stride, baseline, batch, words):
    x, w = picture_and_weights(10, 11, seed=6)
    with pytest.raises(MethodError) as caught:
        pt.OcclusionRun(Recorder(linear(w)), x, window, stride, baseline, batch)
    message = str(caught.value)
    assert words in message and "\n" not in message


def test_occlusion_turns_broken_scores_into_zero_contributions():
    x, w = picture_and_weights(10, 10, seed=7)
    smooth = nonlinear(w)

    def broken(picture):  # NaN whenever pixel (0, 0) is hidden, inf whenever (9, 9) is
        if picture[0, 0, 0] == 0 and picture[0, 0, 1] == 0:
            return float("nan")
        if picture[9, 9, 0] == 0 and picture[9, 9, 1] == 0:
            return float("inf")
        return smooth(picture)

    result = pt.occlusion(Recorder(broken), x, window=4, stride=2)
    assert np.isfinite(result).all()
    assert_float32_of(result, occlusion_reference(broken, x, 4, 2))
    assert result[0, 0] == 0 and result[9, 9] == 0  # their only covering windows were broken
    # A broken reference score: every drop is NaN, the map is 0.
    nowhere = pt.occlusion(Recorder(lambda p: float("nan")), x, window=4, stride=2)
    np.testing.assert_array_equal(nowhere, np.zeros((10, 10), np.float32))
    huge = pt.occlusion(Recorder(lambda p: 3e38 * (p.sum() > 0) - 3e38 * (p.sum() <= 0)), x, window=4, stride=2)
    assert np.isfinite(huge).all()


# ------------------------------------------------------------------ stepping and padding

def test_runs_step_one_batch_at_a_time():
    x, w = picture_and_weights(10, 10, seed=8)
    model = Recorder(linear(w))
    run = pt.OcclusionRun(model, x, window=4, stride=3, batch=4)  # 1 + 9 passes: 3 steps
    assert (run.passes, run.total, run.done, run.finished) == (10, 3, 0, False)
    assert run.step() is False and run.done == 1 and len(model.sizes) == 1
    assert run.step() is False
    assert run.step() is True and run.finished
    assert run.step() is True and len(model.sizes) == 3  # nothing left: no more calls
    rise = pt.RiseRun(model, x, n=10, grid=3, seed=0, batch=4)
    assert (rise.passes, rise.total) == (10, 3)
    steps = [rise.step() for _ in range(3)]
    assert steps == [False, False, True] and rise.finished


@pytest.mark.parametrize("batch", [1, 3, 16, 64])
def test_the_model_sees_only_one_batch_size(batch):
    x, w = picture_and_weights(9, 11, seed=9)
    model = Recorder(linear(w))
    reference = pt.occlusion(Recorder(linear(w)), x, 3, 2, batch=1)
    assert_float32_of(pt.occlusion(model, x, 3, 2, batch=batch), reference.astype(np.float64))
    rise_model = Recorder(linear(w))
    pt.rise(rise_model, x, n=37, grid=3, seed=1, batch=batch)
    assert set(model.sizes) == set(rise_model.sizes) == {batch}
    assert len(model.sizes) == math.ceil(pt.occlusion_passes(9, 11, 3, 2) / batch)
    assert len(rise_model.sizes) == math.ceil(37 / batch)


def test_a_wrong_number_of_scores_is_a_clear_error():
    x, w = picture_and_weights(8, 8, seed=10)
    with pytest.raises(MethodError, match="one score per input"):
        pt.occlusion(lambda batch: np.zeros(len(batch) + 1), x, 3, 2)
    with pytest.raises(MethodError, match="one score per input"):
        pt.rise(lambda batch: np.zeros(1), x, n=5, grid=2, seed=0, batch=4)


# ------------------------------------------------------------------ RISE

def rise_reference(single, x, masks, p):
    """Σ_i y(x ⊙ M_i) M_i / (N p) in a plain loop; the masked input is float32, as the model gets it."""
    total = np.zeros(masks.shape[1:])
    for mask in masks:
        masked = x * mask.astype(np.float32)[..., np.newaxis]
        score = single(masked.astype(np.float64))
        if math.isfinite(score):
            total += score * mask.astype(np.float64)
    return total / (len(masks) * p)


def test_rise_with_given_masks_is_the_weighted_sum_of_masks():
    x, w = picture_and_weights(9, 12, seed=11)
    rng = np.random.default_rng(12)
    masks = rng.uniform(0.0, 1.0, (13, 9, 12)).astype(np.float32)
    single = nonlinear(w)
    expected = rise_reference(single, x, masks, 0.3)
    assert_float32_of(pt.rise(Recorder(single), x, masks=masks, p=0.3, batch=5), expected)
    # An iterable of (H, W) masks works the same.
    assert_float32_of(pt.rise(Recorder(single), x, masks=iter(list(masks)), p=0.3, batch=5), expected)


def test_rise_drops_broken_scores():
    x, w = picture_and_weights(8, 8, seed=13)
    masks = (np.random.default_rng(14).random((20, 8, 8)) < 0.5).astype(np.float32)
    smooth = linear(w)

    def broken(picture):  # NaN when pixel (0, 0) is masked out, inf when (7, 7) is
        if picture[0, 0, 0] == 0:
            return float("nan")
        return float("inf") if picture[7, 7, 0] == 0 else smooth(picture)

    result = pt.rise(Recorder(broken), x, masks=masks, p=0.5, batch=6)
    assert np.isfinite(result).all()
    assert_float32_of(result, rise_reference(broken, x, masks, 0.5))


def bilinear(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Half-pixel-centred bilinear resize with edge replication, written out (what INTER_LINEAR does)."""
    def weights(size_out, size_in):
        matrix = np.zeros((size_out, size_in))
        for o in range(size_out):
            source = min(max((o + 0.5) * size_in / size_out - 0.5, 0.0), size_in - 1.0)
            low = int(math.floor(source))
            high = min(low + 1, size_in - 1)
            matrix[o, low] += 1.0 - (source - low)
            matrix[o, high] += source - low
        return matrix
    return weights(height, grid.shape[0]) @ grid.astype(np.float64) @ weights(width, grid.shape[1]).T


@pytest.mark.parametrize(("height", "width", "grid"), [(28, 28, 7), (30, 23, 7), (16, 16, 5), (5, 9, 8), (12, 12, 1)])
def test_generated_masks_are_upsampled_binary_grids_cropped_at_a_shift(height, width, grid):
    masks = pt.RiseMasks(height, width, n=40, grid=grid, p=0.5, seed=3)
    cell = (math.ceil(height / grid), math.ceil(width / grid))
    assert masks.cell == cell and masks.upsampled == ((grid + 1) * cell[0], (grid + 1) * cell[1])
    assert masks.grids.dtype == bool and masks.grids.shape == (40, grid, grid)
    assert ((masks.shifts >= 0) & (masks.shifts < np.array(cell))).all()
    block = masks[0:40]
    assert block.shape == (40, height, width) and block.dtype == np.float32
    assert block.min() >= 0.0 and block.max() <= 1.0
    for i in range(40):
        dy, dx = masks.shifts[i]
        up = bilinear(masks.grids[i], *masks.upsampled)
        np.testing.assert_allclose(block[i], up[dy:dy + height, dx:dx + width], atol=1e-5)
        np.testing.assert_array_equal(masks[i], block[i])


def test_generated_masks_keep_a_share_p():
    height = width = 28
    n, grid, p = 500, 7, 0.3
    masks = pt.RiseMasks(height, width, n=n, grid=grid, p=p, seed=4)
    # The grid cells are N·g² independent Bernoulli(p): their mean is within 5σ, σ² = p(1 − p)/(N g²).
    sigma_cells = math.sqrt(p * (1 - p) / (n * grid * grid))
    assert abs(masks.grids.mean() - p) < 5 * sigma_cells
    # A mask's pixel mean is Σ_k a_k b_k over its cells b_k ~ Bernoulli(p), with a_k ≥ 0, Σ a_k = 1 (the
    # bilinear weights of each pixel sum to 1): mean p, variance p(1 − p) Σ a_k² ≤ p(1 − p) max a_k. A cell
    # reaches only pixels less than one cell away in the upsampled image (fewer than 2·cell per side, each
    # weight ≤ 1), so a_k ≤ (2 cell_h)(2 cell_w)/(H W). Over N independent masks: σ² ≤ that / N.
    cell_h, cell_w = masks.cell
    sigma_pixels = math.sqrt(p * (1 - p) * 4 * cell_h * cell_w / (height * width) / n)
    assert abs(float(masks[0:n].astype(np.float64).mean()) - p) < 5 * sigma_pixels


def test_rise_is_repeatable_and_independent_of_the_batch_size():
    x, w = picture_and_weights(14, 14, seed=15)
    single = nonlinear(w)
    maps = [pt.rise(Recorder(single), x, n=60, grid=4, p=0.5, seed=7, batch=b) for b in (1, 7, 16)]
    np.testing.assert_array_equal(pt.rise(Recorder(single), x, n=60, grid=4, p=0.5, seed=7, batch=7), maps[1])
    for other in maps[1:]:
        assert_float32_of(other, maps[0].astype(np.float64))
    different = pt.rise(Recorder(single), x, n=60, grid=4, p=0.5, seed=8, batch=7)
    assert np.abs(different - maps[1]).max() > 1e-3 * np.abs(maps[1]).max()
    # The generated masks are the ones RiseMasks gives, whole or lazily.
    masks = pt.RiseMasks(14, 14, n=60, grid=4, p=0.5, seed=7)
    assert_float32_of(maps[1], rise_reference(single, x, masks[0:60], 0.5))
    np.testing.assert_array_equal(pt.rise(Recorder(single), x, masks=masks, p=0.5, batch=7), maps[1])


def test_rise_memory_does_not_grow_with_the_number_of_masks():
    height = width = 32
    n = 2000
    all_masks = n * height * width * 4  # 8 MB of float32 masks if they were all made at once
    x = np.ones((height, width, 1), np.float32)
    tracemalloc.start()
    try:
        pt.rise(lambda batch: batch.sum(axis=(1, 2, 3)), x, n=n, grid=4, seed=0, batch=16)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < all_masks / 8


def test_rise_of_a_linear_model_follows_its_weights():
    # For y = Σ w x with x = 1, E[map(u)] = Σ_v w_v E[M(u) M(v)] / p: the weights blurred by the masks'
    # autocorrelation (about one cell, 8 px here) plus a constant, which Pearson's r ignores. The
    # weights are two Gaussian bumps of σ 5 and 6 px, one positive, one negative, so the blur keeps
    # their shape; 1000 masks leave Monte Carlo noise well under the bumps' contrast. Measured r ≈ 0.95
    # over seeds; 0.85 leaves room for the blur and the noise.
    size = 32
    rows, cols = np.mgrid[0:size, 0:size]
    w = (np.exp(-((rows - 8) ** 2 + (cols - 10) ** 2) / (2 * 5.0 ** 2))
         - 0.7 * np.exp(-((rows - 22) ** 2 + (cols - 22) ** 2) / (2 * 6.0 ** 2)))
    x = np.ones((size, size, 1), np.float32)
    result = pt.rise(Recorder(linear(w[..., np.newaxis])), x, n=1000, grid=4, p=0.5, seed=5, batch=32)
    assert np.corrcoef(result.ravel(), w.ravel())[0, 1] > 0.85
    assert np.hypot(*np.subtract(np.unravel_index(result.argmax(), result.shape), (8, 10))) < 5
    assert np.hypot(*np.subtract(np.unravel_index(result.argmin(), result.shape), (22, 22))) < 5


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"p": 0.0}, "keep probability"),
    ({"p": 1.5}, "keep probability"),
    ({"grid": 0}, "grid"),
    ({"n": 0}, "at least 1 mask"),
    ({"batch": 0}, "batch"),
    ({"masks": np.ones((3, 5, 5))}, "input's size"),
    ({"masks": pt.RiseMasks(5, 5, n=3, grid=2, seed=0)}, "input's size"),
])
def test_rise_refuses_bad_settings_in_one_line(kwargs, words):
    x, w = picture_and_weights(6, 6, seed=16)
    with pytest.raises(MethodError) as caught:
        pt.RiseRun(Recorder(linear(w)), x, **kwargs)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_display_is_the_finite_positive_part():
    raw = np.array([[-1.0, 2.0], [np.nan, np.inf]])
    shown = pt.display(raw)
    assert shown.dtype == np.float32
    np.testing.assert_array_equal(shown, np.array([[0.0, 2.0], [0.0, 0.0]], np.float32))
