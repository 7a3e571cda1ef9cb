"""The `camlab` command."""
from __future__ import annotations

from PIL import Image

from camlab.cli import main as cli


def test_demo_prints_top5_and_writes_a_figure(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert cli(["demo", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "1. Egyptian cat" in printed and printed.count("class") >= 5
    assert Image.open(out).size[0] > 600


def test_explain_writes_an_overlay(tmp_path, capsys):
    out = tmp_path / "explain.png"
    assert cli(["explain", "coffee", "--method", "gradcam", "--layer", "bn2", "--target", "967", "--out", str(out)]) == 0
    assert "espresso" in capsys.readouterr().out
    assert out.exists()


def test_models_and_layers_list(capsys):
    assert cli(["models"]) == 0
    assert "efficientnet_lite0" in capsys.readouterr().out
    assert cli(["layers", "efficientnet_lite0", "--spatial"]) == 0
    assert "(1, 1280, 7, 7)" in capsys.readouterr().out


def test_unknown_layer_on_the_command_line_exits_2_with_the_closest_names(tmp_path, capsys):
    assert cli(["explain", "cat", "--layer", "bn3", "--out", str(tmp_path / "o.png")]) == 2
    assert "closest: 'bn2'" in capsys.readouterr().err


def test_evaluate_command_passes_its_options_on(monkeypatch):
    from camlab import evaluate

    seen = []
    monkeypatch.setattr(evaluate, "main", lambda argv: seen.append(argv))
    assert cli(["evaluate", "--quick", "--datasets", "lab"]) == 0
    assert seen == [["--quick", "--datasets", "lab"]]
