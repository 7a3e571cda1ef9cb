"""`camlab evaluate`'s command line: one-line errors with exit status 2 (usage) or 1 (runtime), never a traceback;
`--device` and `--no-progress`; and the benchmarks build explainers the one way camlab builds them."""
from pathlib import Path

import pytest
import torch

from camlab import cli
from camlab.evaluate import cli as evaluate_cli

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *options):
    status = cli.main(["evaluate", *options])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line_error(err: str, *fragments: str):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("camlab evaluate: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize("options, fragments", [
    (["--methods", "gradcam", "no_such_method"], ["unknown method 'no_such_method'"]),
    (["--methods", "gradcam,grad_cam_pp"], ["unknown method 'grad_cam_pp'"]),
    (["--lab-model", "lab_gapp"], ["unknown model 'lab_gapp'", "lab_gap"]),
    (["--lab-model", "efficientnet_lite0"], ["--lab-model efficientnet_lite0", "a lab model"]),
    (["--photo-model", "lab_gap"], ["--photo-model lab_gap", "an ImageNet model"]),
    (["--datasets", "lab", "imagenet"], ["invalid choice: 'imagenet'"]),
    (["--scenes", "0"], ["--scenes", "at least 1, got '0'"]),
    (["--scenes", "ten"], ["--scenes", "got 'ten'"]),
    (["--scenes", "1"], ["--scenes 1: the lab set needs at least 2 scenes"]),
    (["--scenes", "100000000"], ["--scenes 100000000: at most 10000", "held in memory"]),
    (["--lab-model", "lab_seg"], ["--lab-model lab_seg is a segmentation model", "classifiers: lab_gap"]),
    (["--threads", "-1"], ["--threads", "got '-1'"]),
    (["--device", "tpu"], ["unknown device 'tpu'"]),
    (["--no-such-option"], ["unrecognized arguments: --no-such-option"]),
])
def test_usage_errors_are_one_line_with_status_2_before_anything_runs(capsys, monkeypatch, options, fragments):
    monkeypatch.setattr(evaluate_cli, "run", lambda **kwargs: pytest.fail("ran despite a usage error"))
    status, out, err = run_cli(capsys, *options)
    assert status == 2 and out == ""
    assert_one_line_error(err, *fragments)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_cuda_device_without_cuda_is_a_usage_error(capsys):
    status, _, err = run_cli(capsys, "--device", "cuda")
    assert status == 2
    assert_one_line_error(err, "--device cuda: no CUDA GPU", "use --device cpu")


def test_an_unwritable_out_folder_is_a_usage_error_before_the_run(capsys, monkeypatch, tmp_path):
    """On main an unwritable --out failed only after the whole evaluation had run."""
    import os

    monkeypatch.setattr(evaluate_cli, "run", lambda **kwargs: pytest.fail("ran despite an unwritable --out"))
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked)
    status, _, err = run_cli(capsys, "--out", str(locked / "results"))
    assert status == 2
    assert_one_line_error(err, "--out", "is not writable")


def test_out_naming_an_existing_file_is_a_usage_error(capsys, tmp_path):
    target = tmp_path / "results.md"
    target.write_text("keep me")
    status, _, err = run_cli(capsys, "--out", str(target))
    assert status == 2 and target.read_text() == "keep me"
    assert_one_line_error(err, "--out", "names a folder")


def test_a_failure_while_running_is_one_line_with_status_1(capsys, monkeypatch):
    def failing(**kwargs):
        raise RuntimeError("CUDA out of memory while computing maps")

    monkeypatch.setattr(evaluate_cli, "run", failing)
    status, out, err = run_cli(capsys, "--quick")
    assert status == 1 and out == ""
    assert_one_line_error(err, "CUDA out of memory")


def test_a_model_without_weights_leaves_nothing_to_measure_status_1(capsys, monkeypatch):
    import camlab.models

    def missing(name, *args, **kwargs):
        raise FileNotFoundError(f"no trained weights for {name}")

    monkeypatch.setattr(camlab.models, "load_model", missing)
    status, _, err = run_cli(capsys, "--quick", "--datasets", "lab", "--no-progress")
    assert status == 1
    assert_one_line_error(err, "nothing was measured", "no trained weights for lab_gap")


def test_auto_picks_cuda_then_mps_then_the_cpu():
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert evaluate_cli.resolve_device("auto").type == expected
    assert evaluate_cli.resolve_device("cpu") == torch.device("cpu")


def test_the_options_reach_run(capsys, monkeypatch):
    seen = {}

    def fake_run(**kwargs):
        seen.update(kwargs)
        from camlab.evaluate.table import Table
        return Table([{"dataset": "lab", "model": "m", "method": "gradcam", "note": "", "loc_error": 0.5}], ["n"], {})

    monkeypatch.setattr(evaluate_cli, "run", fake_run)
    status, out, _ = run_cli(capsys, "--methods", "Grad-CAM,gradcam++", "random", "--scenes", "12", "--device", "auto",
                             "--no-progress", "--threads", "1")
    assert status == 0 and "gradcam" in out
    assert seen["methods"] == ["gradcam", "gradcam++", "random"] and seen["n_scenes"] == 12
    assert seen["progress"] is False and seen["threads"] == 1 and isinstance(seen["device"], torch.device)


def test_a_real_run_prints_the_table_on_stdout_and_progress_only_when_asked(capsys):
    options = ["--quick", "--datasets", "lab", "--scenes", "2", "--methods", "gradcam", "--threads", "1"]
    status, out, err = run_cli(capsys, *options, "--no-progress")
    assert status == 0 and err == ""
    assert out.startswith("dataset  model    method") and "lab_gap  gradcam" in out and "] " in out
    status, _, err = run_cli(capsys, *options)
    assert status == 0 and "evaluate" in err  # the tqdm bar, on stderr


def test_python_m_camlab_evaluate_follows_the_same_conventions():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "camlab.evaluate", "--methods", "no_such_method"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2 and done.stdout == ""
    assert_one_line_error(done.stderr, "unknown method 'no_such_method'")


def test_the_benchmarks_build_explainers_with_camlab_build():
    """No signature sniffing in the benchmarks: every camlab explainer comes from camlab.build."""
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        text = script.read_text(encoding="utf-8")
        assert "signature(" not in text, script.name
    text = (ROOT / "benchmarks" / "bench_methods.py").read_text(encoding="utf-8")
    assert "camlab.build(name, model, layer_for(name, LAYER)" in text
    assert "camlab.METHODS[" not in text and "camlab.ScoreCAM(" not in text
