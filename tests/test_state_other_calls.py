"""Calls outside the explainers leave the model and the global random state as they found them, and read every
image array by its dtype. Each test failed on main (e3ff581) unless its docstring says otherwise."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import camlab
from camlab.analysis import dense_logits
from tests.snapshots import ModelSnapshot


def _mixed_mode_lab_model():
    model = camlab.load_model("lab_gap").train()
    model.features[0].eval()  # a submodule in another mode than its parent
    return model


def test_dense_logits_keeps_each_submodule_mode():
    """On main ``DenseLogits`` called ``self.train(model.training)``, which set every shared submodule to one mode."""
    model = _mixed_mode_lab_model()
    snapshot = ModelSnapshot.of(model)
    dense = dense_logits(model)
    snapshot.assert_unchanged(model)
    assert dense.training is True


def test_predict_keeps_each_submodule_mode_also_after_an_error():
    """Held on main too (predict already ran inside ``preserved_state``): a guard."""
    model = _mixed_mode_lab_model()
    snapshot = ModelSnapshot.of(model)
    camlab.predict(model, torch.rand(2, 3, 64, 64), k=2)
    snapshot.assert_unchanged(model)
    with pytest.raises(RuntimeError):
        camlab.predict(model, torch.rand(2, 5, 64, 64), k=2)  # wrong channel count: the conv raises
    snapshot.assert_unchanged(model)


def test_predict_refuses_an_input_on_another_device():
    model = camlab.load_model("lab_gap")
    with pytest.raises(ValueError, match="input is on device meta but the model is on cpu"):
        camlab.predict(model, torch.rand(1, 3, 64, 64, device="meta"))


def test_load_model_leaves_the_global_random_state_alone():
    """Building a model initialises its layers at random before the weights are loaded; on main that advanced the
    global RNG, so a seeded notebook changed its numbers when a model was loaded."""
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    camlab.load_model("lab_vgg")
    assert torch.equal(torch.rand(3), expected)


@pytest.fixture(scope="module")
def lab_gap():
    return camlab.load_model("lab_gap")


def _photo():
    """A 64x64 RGB image (the lab models' input size, so no path resizes it) with values over the whole 0..255."""
    return np.random.default_rng(0).integers(0, 256, size=(64, 64, 3)).astype(np.uint8)


@pytest.mark.parametrize("convert, tolerance", [
    pytest.param(lambda a: a.astype(np.float32) / 255, 1e-5, id="float32 in [0,1]"),
    pytest.param(lambda a: a.astype(np.uint16) * 256, 0.02, id="uint16 in [0,65535]"),
    pytest.param(lambda a: a.astype(np.float64), 1e-5, id="float64 in [0,255]"),
    pytest.param(lambda a: a.astype(np.int64), 1e-5, id="int64 in [0,255]"),
])
def test_preprocess_reads_float_and_16_bit_arrays_by_their_range(lab_gap, convert, tolerance):
    """On main every non-uint8 array went through ``np.asarray(image, dtype=np.uint8)``: a float image in [0, 1]
    became 0 and 1 (black), uint16 wrapped around modulo 256 (256 x became 0: black). Integral arrays in [0, 255]
    (float64, int64) survived that cast, so those two cases held on main. uint16 256 x / 65535 differs from x / 255
    by at most 0.004 before normalisation (std ~0.25), hence its tolerance."""
    expected = camlab.preprocess(_photo(), lab_gap)
    assert torch.allclose(camlab.preprocess(convert(_photo()), lab_gap), expected, atol=tolerance)


@pytest.mark.parametrize("array, message", [
    (np.full((8, 8, 3), 300.0), r"values in \[0, 1\] or \[0, 255\].*got values in \[300, 300\]"),
    (np.full((8, 8, 3), -0.5), r"got values in \[-0.5, -0.5\]"),
    (np.full((8, 8, 3), np.nan), "NaN or inf"),
    (np.zeros((8, 8, 3), dtype=bool), "integers or floats, not bool"),
])
def test_preprocess_refuses_arrays_outside_the_range_their_dtype_implies(lab_gap, array, message):
    with pytest.raises((ValueError, TypeError), match=message):
        camlab.preprocess(array, lab_gap)
