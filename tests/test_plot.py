"""Tests for shapjax.plot: panel layout, displayed values, titles, atomic saving."""
import os

import numpy as np
import pytest
from matplotlib.figure import Figure

from shapjax import plot
from shapjax.image import segment as S
from shapjax.image.explain import Explanation


def _explanation(B=3, H=12, W=10, C=3, K=2, rows=3, cols=2, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.random((B, H, W, C), dtype=np.float32)
    seg = S.grid(rows, cols)(images)
    M = rows * cols
    return Explanation(
        values=rng.normal(size=(B, M, K)).astype(np.float32),
        base_values=np.zeros((B, K), np.float32),
        full_values=np.zeros((B, K), np.float32),
        std=None,
        segments=seg,
        images=images,
        output_indexes=np.tile(np.arange(K), (B, 1)),
        method="kernel",
        masker="blur(5)",
        n_evals=64,
    )


def _image_axes(fig):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def test_image_plot_layout_row_scale():
    e = _explanation()
    fig = plot.image_plot(e)
    assert isinstance(fig, Figure)
    assert len(_image_axes(fig)) == 3 * (1 + 2)
    assert len(fig.axes) - len(_image_axes(fig)) == 3  # one colour bar per row


def test_image_plot_figure_scale_and_limits():
    e = _explanation(B=5, K=4)
    fig = plot.image_plot(e, scale="figure", max_images=2, max_outputs=3)
    assert len(_image_axes(fig)) == 2 * (1 + 3)
    assert len(fig.axes) - len(_image_axes(fig)) == 1
    # one shared symmetric scale over the plotted values
    lims = {ax.get_images()[-1].get_clim() for ax in _image_axes(fig)[1:4]}
    assert len(lims) == 1
    lo, hi = lims.pop()
    assert lo == -hi and np.isclose(hi, np.abs(np.asarray(e.values)[:2, :, :3]).max())


def test_panel_shows_segment_value_not_divided():
    e = _explanation()
    fig = plot.image_plot(e, show_boundaries=False)
    ax = _image_axes(fig)[2]  # row 0, output 1
    shown = np.asarray(ax.get_images()[-1].get_array())
    expected = np.asarray(e.values)[0, :, 1][np.asarray(e.segments)[0]]
    np.testing.assert_allclose(shown, expected, rtol=1e-6)
    lo, hi = ax.get_images()[-1].get_clim()
    assert lo == -hi  # symmetric


def test_titles_with_class_names_and_probs():
    e = _explanation(B=2, K=2)
    e = e.replace(output_indexes=np.array([[2, 0], [1, 2]]))
    probs = np.array([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
    fig = plot.image_plot(e, class_names=["cat", "dog", "ship"], probs=probs, title="demo")
    titles = [ax.get_title() for ax in _image_axes(fig)]
    assert titles[1] == "ship (p=0.70)" and titles[2] == "cat (p=0.10)" and titles[4] == "dog (p=0.30)"
    assert fig._suptitle.get_text() == "demo"
    with pytest.raises(ValueError, match="probs"):
        plot.image_plot(e, probs=probs[:, :2])


def test_grayscale_image_plot():
    e = _explanation(B=1, C=1, K=1)
    fig = plot.image_plot(e)
    first = _image_axes(fig)[0].get_images()[0]
    assert np.asarray(first.get_array()).ndim == 2 and first.get_cmap().name == "gray"


def test_save_image_plot_writes_png_atomically(tmp_path):
    e = _explanation(B=1)
    path = tmp_path / "sub" / "fig.png"
    out = plot.save_image_plot(e, path, dpi=50)
    assert out == str(path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(path.parent) == ["fig.png"]  # no temp file left behind


def test_pixel_map_plot():
    rng = np.random.default_rng(3)
    images = rng.random((2, 8, 8, 3), dtype=np.float32)
    fig = plot.pixel_map_plot(rng.normal(size=(2, 8, 8)), images, clip_percentile=None)
    assert len(_image_axes(fig)) == 2 * 2 and len(fig.axes) == 2 * 2 + 2
    fig = plot.pixel_map_plot(rng.normal(size=(2, 8, 8, 3)), images, titles=["a", "b", "c"], max_outputs=2)
    assert [ax.get_title() for ax in _image_axes(fig)[:3]] == ["image", "a", "b"]
    with pytest.raises(ValueError, match="attributions"):
        plot.pixel_map_plot(np.zeros((2, 7, 8)), images)


def test_colormaps_are_diverging():
    cm = plot.red_transparent_blue()
    lo, mid, hi = cm(0.0), cm(0.5), cm(1.0)
    assert lo[2] > lo[0] and hi[0] > hi[2]  # blue low, red high
    assert mid[3] < 0.05 and lo[3] == hi[3] == 1.0  # transparent at zero
    assert plot.red_white_blue()(0.5)[:3] == pytest.approx((1.0, 1.0, 1.0), abs=0.01)
