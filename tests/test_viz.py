"""camlab.viz: percentile-clipped gradient images, signed maps on a centred diverging scale, colorbars, readable
panels. Expected values are derived by hand in each test."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import camlab  # noqa: E402
from camlab.viz import MIN_PANEL_INCHES, gradient_image, heat_scale  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def colorbars(figure):
    return [axis for axis in figure.axes if axis.get_label() == "<colorbar>"]


# --- gradient_image ------------------------------------------------------------------------------------------------

def test_rgb_mode_maps_zero_to_grey_and_plus_minus_q_to_white_and_black():
    # |G| takes the values 0, 1, 2, 4 equally often; at percentile 100, q = 4: G/(2*4) + 0.5
    gradient = torch.tensor([0.0, 1.0, -2.0, 4.0, -4.0, 2.0]).repeat(2).view(3, 2, 2)
    shown = gradient_image(gradient, percentile=100)
    assert shown.shape == (3, 2, 2)
    assert torch.allclose(shown.flatten(), (gradient.flatten() / 8 + 0.5))
    assert shown.min() == 0.0 and shown.max() == 1.0


def test_one_outlier_no_longer_flattens_the_image_to_grey():
    # 3*10*10 = 300 values of +-1 and one of 1000: max scaling puts everything at 0.5 +- 0.0005 (flat grey);
    # the 99th percentile of |G| is 1, so the ordinary pixels reach 0 and 1 and the outlier saturates
    gradient = torch.ones(3, 10, 10)
    gradient[1] = -1
    gradient[0, 0, 0] = 1000
    flat = gradient_image(gradient, percentile=100)
    assert float((flat - 0.5).abs().max()) == pytest.approx(0.5) and float((flat[1] - 0.5).abs().max()) < 1e-3
    clipped = gradient_image(gradient)
    assert torch.all(clipped[1] == 0.0) and torch.all(clipped[2] == 1.0) and clipped[0, 0, 0] == 1.0


def test_abs_mode_takes_the_largest_magnitude_over_channels():
    gradient = torch.zeros(3, 1, 4)
    gradient[0, 0] = torch.tensor([1.0, 0.0, 0.0, -4.0])
    gradient[2, 0] = torch.tensor([0.0, -2.0, 3.0, 1.0])
    # S = max_c |G| = [1, 2, 3, 4]; at percentile 100, q = 4
    shown = gradient_image(gradient, percentile=100, mode="abs")
    assert shown.shape == (1, 4)
    assert torch.allclose(shown[0], torch.tensor([0.25, 0.5, 0.75, 1.0]))


def test_each_image_of_a_batch_gets_its_own_percentile():
    one = torch.full((3, 2, 2), 2.0)
    batch = torch.stack([one, 100 * one])
    shown = gradient_image(batch, percentile=100)
    assert shown.shape == (2, 3, 2, 2) and torch.all(shown == 1.0)
    assert gradient_image(batch, mode="abs").shape == (2, 2, 2)


def test_a_zero_gradient_is_plain_grey_or_zero_and_never_nan():
    assert torch.all(gradient_image(torch.zeros(3, 5, 5)) == 0.5)
    assert torch.all(gradient_image(torch.zeros(3, 5, 5), mode="abs") == 0.0)


@pytest.mark.parametrize("shape", [(5, 5), (1, 5, 5), (4, 5, 5), (2, 1, 5, 5)])
def test_gradient_image_refuses_what_is_not_a_three_channel_image(shape):
    with pytest.raises(ValueError, match=r"\(3,H,W\) or \(N,3,H,W\)"):
        gradient_image(torch.zeros(shape))


@pytest.mark.parametrize("options, message", [({"percentile": 0}, "percentile"), ({"percentile": 101}, "percentile"),
                                              ({"mode": "grey"}, "mode must be")])
def test_gradient_image_refuses_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        gradient_image(torch.zeros(3, 2, 2), **options)


# --- signed maps ---------------------------------------------------------------------------------------------------

def test_a_map_with_negative_values_gets_a_diverging_scale_centred_at_zero():
    cmap, norm = heat_scale(torch.tensor([[-0.5, 0.0], [1.0, 2.0]]))
    assert cmap == "RdBu_r" and (norm.vmin, norm.vmax) == (-2.0, 2.0) and norm(0.0) == 0.5
    cmap, norm = heat_scale(torch.tensor([[0.0, 0.3], [0.6, 1.0]]))
    assert cmap == "jet" and (norm.vmin, norm.vmax) == (0.0, 1.0)
    assert heat_scale(torch.tensor([[0.0, 0.3]]), signed=True)[1].vmin == pytest.approx(-0.3)


def test_zero_of_a_signed_map_is_drawn_white_positive_red_negative_blue():
    heat = torch.tensor([[-1.0, 0.0, 1.0]])
    figure = camlab.show(None, {"signed": heat})
    rgb = figure.axes[0].images[0].get_array()
    assert np.allclose(rgb[0, 1], 0.97, atol=0.03)                     # RdBu_r's centre is (near) white
    assert rgb[0, 0, 2] > rgb[0, 0, 0] and rgb[0, 2, 0] > rgb[0, 2, 2]  # blue for -1, red for +1


def test_overlay_of_a_map_in_unit_range_is_unchanged_by_the_signed_support():
    image, heat = Image.new("RGB", (2, 1), (200, 100, 0)), torch.tensor([[0.0, 1.0]])
    jet = matplotlib.colormaps["jet"](np.array([0.0, 1.0]))[:, :3]
    expected = 0.5 * np.array([[200, 100, 0], [200, 100, 0]]) / 255 + 0.5 * jet
    assert np.allclose(np.asarray(camlab.overlay(image, heat)) / 255, expected, atol=1 / 255)


# --- show: colorbars, sizes, titles --------------------------------------------------------------------------------

def test_maps_sharing_the_unit_scale_get_one_colorbar_for_the_whole_figure():
    figure = camlab.show(Image.new("RGB", (8, 8)), {f"map {k}": torch.rand(8, 8) for k in range(5)}, ncols=3)
    assert len(colorbars(figure)) == 1                                 # two rows, one shared [0, 1] scale
    assert all(tuple(map(float, bar.get_ylim())) == (0.0, 1.0) for bar in colorbars(figure))   # the [0, 1] scale


def test_a_figure_mixing_signed_and_unit_maps_gets_a_colorbar_beside_each_map():
    signed = torch.tensor([[-1.0, 0.5], [0.0, 2.0]])
    figure = camlab.show(None, {"unit": torch.rand(4, 4), "signed": signed, "unit too": torch.rand(4, 4)})
    assert [tuple(map(float, bar.get_ylim())) for bar in colorbars(figure)] == [(0.0, 1.0), (-2.0, 2.0), (0.0, 1.0)]


def test_every_colorbar_says_what_its_colours_measure():
    signed = torch.tensor([[-1.0, 0.5], [0.0, 2.0]])
    figure = camlab.show(None, {"unit": torch.rand(4, 4), "signed": signed})
    assert [bar.get_ylabel() for bar in colorbars(figure)] == ["map value", "signed map value (white = 0)"]
    shared = camlab.show(None, {"a": torch.rand(4, 4), "b": torch.rand(4, 4)})
    assert [bar.get_ylabel() for bar in colorbars(shared)] == ["map value"]


def test_pictures_get_no_colorbar_and_colorbar_false_removes_them():
    picture = gradient_image(torch.randn(3, 8, 8))
    assert colorbars(camlab.show(Image.new("RGB", (8, 8)), {"guided backprop": picture})) == []
    assert colorbars(camlab.show(Image.new("RGB", (8, 8)), {"map": torch.rand(8, 8)}, colorbar=False)) == []


def test_panels_are_at_least_three_inches_wide_and_rows_hold_at_most_four():
    figure = camlab.show(None, [torch.rand(4, 4) for _ in range(6)], titles=list("abcdef"), size=1.4,
                         colorbar=False)
    assert figure.get_figwidth() >= 4 * MIN_PANEL_INCHES
    figure.canvas.draw()
    widths = [axis.get_window_extent().width / figure.dpi for axis in figure.axes if axis.images]
    assert len(widths) == 6 and min(widths) >= 0.8 * MIN_PANEL_INCHES   # constrained layout keeps small margins


def test_long_titles_are_wrapped_and_no_two_titles_overlap():
    long = "Grad-CAM of the Egyptian cat at the last convolutional layer, scaled to [0, 1]"
    figure = camlab.show(Image.new("RGB", (8, 8)), {long: torch.rand(8, 8), long + " again": torch.rand(8, 8)})
    assert "\n" in figure.axes[1].get_title()
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    boxes = [axis.title.get_window_extent(renderer) for axis in figure.axes if axis.images]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
