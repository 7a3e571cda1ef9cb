"""`camlab explain` on inputs and models it cannot take as they are: one line on stderr, never a traceback or a
library's multi-line warning. (Truncated images, decompression bombs over PIL's hard limit, unwritable outputs,
unknown model names and ``--out .`` are covered in test_cli.py.)

Each test failed on main at e3ff581."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import camlab
from camlab.cli import main as cli


def run(capsys, *argv):
    status = cli([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_an_image_over_pils_warning_limit_is_loaded_with_a_one_line_warning(tmp_path, capsys, monkeypatch):
    """64x64 = 4,096 pixels, between PIL's limit (set to 3,000) and twice it: PIL warns (a
    DecompressionBombWarning, two lines with its source line) and loads the image; camlab says it in one line."""
    path = tmp_path / "large.png"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)
    status, out, err = run(capsys, "explain", path, "--model", "lab_gap", "--out-dir", tmp_path / "out")
    assert status == 0 and "wrote" in out
    assert err.count("\n") == 1 and err.startswith("camlab: warning: "), err
    assert "large.png" in err and "4096 pixels" in err and "decompression bomb" in err


@pytest.fixture
def no_model_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the command line was checked")

    monkeypatch.setattr(camlab, "load_model", refuse)


@pytest.mark.parametrize("name, kind", [("lab_seg", "segmentation"), ("lab_vqa", "vqa"), ("lab_caption", "caption")])
def test_a_lab_model_that_is_not_a_classifier_is_a_usage_error_before_it_loads(name, kind, tmp_path, capsys,
                                                                               no_model_load):
    """On main lab_seg ended in "AttributeError: 'collections.OrderedDict' object has no attribute 'softmax'"
    (exit 1, after loading the model), lab_vqa and lab_caption in errors of the model's forward."""
    status, _, err = run(capsys, "explain", "cat", "--model", name, "--out-dir", tmp_path)
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("camlab explain: error: "), err
    assert f"--model {name} is a {kind} model, not an image classifier" in err and "from Python" in err
    assert list(tmp_path.iterdir()) == []
