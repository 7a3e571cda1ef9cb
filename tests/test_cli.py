"""The `camlab` command, run in-process: exit status 0 / 1 (runtime error) / 2 (usage error) / 130 (interrupted),
one line on stderr for every error, the files it writes and those it refuses to overwrite."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import camlab
from camlab.cli import build_parser, demo_output, expand_inputs, main as cli, parse_device, parse_methods


def run(capsys, *argv):
    """``(exit status, stdout, stderr)`` of ``camlab ARGV``."""
    status = cli([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(err, command="explain", *phrases):
    assert err.count("\n") == 1 and err.startswith(f"camlab {command}: error: "), err
    assert "Traceback" not in err
    for phrase in phrases:
        assert phrase in err, (phrase, err)


def square_image(path, colour=(230, 30, 30)):
    """A 64x64 grey image with a red 24x24 square in the middle, as the lab draws its scenes."""
    array = np.full((64, 64, 3), 115, np.uint8)
    array[20:44, 20:44] = colour
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test's command if it loads a model (usage errors must be found before that)."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the command line was checked")

    monkeypatch.setattr(camlab, "load_model", refuse)


# --- the sub-commands as they were ----------------------------------------------------------------------------

def test_demo_prints_top5_and_writes_a_figure(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert cli(["demo", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "1. Egyptian cat" in printed and printed.count("class") >= 5
    assert "explaining class 285 ('Egyptian cat', the top-1)" in printed  # it names the class it explains
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
    status, _, err = run(capsys, "explain", "cat", "--layer", "bn3", "--out", tmp_path / "o.png")
    assert status == 2
    assert_one_line_error(err, "explain", "closest: 'bn2'")
    assert not (tmp_path / "o.png").exists()


def test_evaluate_command_passes_its_options_on(monkeypatch):
    from camlab import evaluate

    seen = []
    monkeypatch.setattr(evaluate, "main", lambda argv: seen.append(argv))
    assert cli(["evaluate", "--quick", "--datasets", "lab", "--device", "cpu", "--no-progress"]) == 0
    assert seen == [["--quick", "--datasets", "lab", "--device", "cpu", "--no-progress"]]


# --- conventions ----------------------------------------------------------------------------------------------

def test_version_prints_the_package_version_and_exits_0(capsys):
    assert run(capsys, "--version") == (0, f"camlab {camlab.__version__}\n", "")


def test_help_exits_0_and_lists_the_commands(capsys):
    status, out, _ = run(capsys, "--help")
    assert status == 0 and all(name in out for name in ("explain", "demo", "evaluate", "train", "course"))


@pytest.mark.parametrize("argv, phrases", [
    (["explain", "cat", "--bogus"], ["unrecognized arguments: --bogus"]),
    (["explain", "cat", "--method", "gradcamm"], ["unknown method 'gradcamm'", "'gradcam'"]),
    (["explain", "cat", "--method", ","], ["--method is empty"]),
    (["explain", "cat", "--model", "lab_gapp"], ["unknown model 'lab_gapp'", "closest: 'lab_gap'"]),
    (["explain", "cat", "--model", "resnet"], ["unknown model 'resnet'", "'resnet50'"]),
    (["explain", "cat", "coffee", "--out", "x.png"], ["--out names one file", "2 outputs", "--out-dir"]),
    (["explain", "cat", "--method", "cam,gradcam", "--out", "x.png"], ["2 outputs"]),
    (["explain", "cat", "--out", "x.png", "--out-dir", "d"], ["not both"]),
    (["explain", "cat", "--out", "result"], ["--out 'result'", ".png"]),
    (["explain", "cat", "--out", ".png"], ["--out '.png'"]),
    (["explain", "cat", "--batch-size", "0"], ["at least 1"]),
    (["explain", "cat", "--device", "tpu"], ["unknown device 'tpu'"]),
    (["explain", "cat", "--device", "meta"], ["cpu, cuda, cuda:N or mps"]),
    (["layers", "vgg61"], ["unknown model 'vgg61'", "'vgg16'"]),
    (["train", "lab_gapp"], ["unknown lab model 'lab_gapp'", "closest: 'lab_gap'"]),
])
def test_usage_errors_exit_2_with_one_line_before_any_model_loads(argv, phrases, no_model_load, capsys, tmp_path,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, _, err = run(capsys, *argv)
    assert status == 2
    assert_one_line_error(err, argv[0], *phrases)
    assert list(tmp_path.iterdir()) == []


def test_missing_command_is_a_usage_error(capsys):
    status, _, err = run(capsys)
    assert status == 2 and err.count("\n") == 1 and "required: COMMAND" in err


def test_target_outside_the_models_classes_is_a_usage_error(tmp_path, capsys):
    status, _, err = run(capsys, "explain", "cat", "--model", "lab_gap", "--target", "5", "--out-dir", tmp_path)
    assert status == 2
    assert_one_line_error(err, "explain", "--target 5", "use 0 to 4")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_unavailable_cuda_is_a_clear_usage_error(capsys):
    with pytest.raises(camlab.cli.UsageError, match="no CUDA GPU is available.*--device cpu"):
        parse_device("cuda")
    status, _, err = run(capsys, "explain", "cat", "--device", "cuda:1")
    assert status == 2 and "no CUDA GPU" in err


def truncated_jpeg(path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


@pytest.mark.parametrize("case, phrases", [
    ("truncated image", ["truncated.jpg", "truncated or corrupt"]),
    ("decompression bomb", ["square.png", "decompression bomb", "shrink it"]),
    ("missing file", ["missing.png' does not exist", "neither a file nor a bundled image", "cat"]),
    ("glob without match", ["no file matches", "*.gif"]),
    ("folder as input", ["is a folder", "*.jpg"]),
    ("output folder through a file", ["cannot create the output folder", "Not a directory"]),
    ("output into a missing folder", ["cannot write", "dangling.png", "No such file"]),
])
def test_runtime_errors_exit_1_with_one_line(case, phrases, tmp_path, capsys, monkeypatch):
    out_dir = tmp_path / "out"
    argv = ["explain", str(square_image(tmp_path / "square.png")), "--model", "lab_gap", "--out-dir", out_dir]
    if case == "truncated image":
        argv[1] = truncated_jpeg(tmp_path / "truncated.jpg")
    elif case == "decompression bomb":  # PIL refuses images over twice MAX_IMAGE_PIXELS: 64x64 > 2 x 1000
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    elif case == "missing file":
        argv[1] = tmp_path / "missing.png"
    elif case == "glob without match":
        argv[1] = tmp_path / "*.gif"
    elif case == "folder as input":
        argv[1] = tmp_path
    elif case == "output folder through a file":
        argv[-1] = tmp_path / "square.png" / "sub"
    else:  # a symbolic link into a folder that does not exist: only writing the figure fails
        (tmp_path / "dangling.png").symlink_to(tmp_path / "gone" / "file.png")
        argv[-2:] = ["--out", tmp_path / "dangling.png"]
    status, _, err = run(capsys, *argv)
    assert status == 1
    assert_one_line_error(err, "explain", *phrases)


def test_keyboard_interrupt_exits_130_with_one_line(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(camlab, "load_model", interrupted)
    assert run(capsys, "layers", "lab_gap") == (130, "", "camlab layers: interrupted\n")


def test_unexpected_errors_are_one_line_naming_their_type_unless_camlab_debug_is_set(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(camlab, "load_model", broken)
    status, _, err = run(capsys, "layers", "lab_gap")
    assert status == 1
    assert_one_line_error(err, "layers", "ZeroDivisionError: division by zero", "CAMLAB_DEBUG=1")
    monkeypatch.setenv("CAMLAB_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        cli(["layers", "lab_gap"])


# --- inputs, methods, outputs ---------------------------------------------------------------------------------

def test_methods_are_repeatable_and_comma_separated_in_order_without_repeats():
    assert parse_methods(["gradcam,cam", "GradCAM", " score-cam , cam"]) == ["gradcam", "cam", "scorecam"]
    assert parse_methods(None) == ["gradcam"]


def test_globs_are_expanded_sorted_and_repeats_dropped(tmp_path):
    for name in ("b.png", "a.png"):
        square_image(tmp_path / name)
    sources = expand_inputs(["cat", str(tmp_path / "*.png"), str(tmp_path / "a.png")])
    assert [(s.name, s.video) for s in sources] == [("cat", False), ("a", False), ("b", False)]
    literal = square_image(tmp_path / "shot[1].png")  # an existing name is taken as it is, not as a pattern
    assert [s.name for s in expand_inputs([str(literal)])] == ["shot[1]"]


def test_several_images_and_methods_give_one_figure_each_named_input_method(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("b.png", "a.png"):
        square_image(folder / name)
    out_dir = tmp_path / "maps"
    status, out, _ = run(capsys, "explain", "cat", folder / "*.png", "--model", "lab_gap",
                         "--method", "gradcam,cam", "--method", "GradCAM", "--out-dir", out_dir, "--no-progress")
    assert status == 0
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "a-cam.png", "a-gradcam.png", "b-cam.png", "b-gradcam.png", "cat-cam.png", "cat-gradcam.png"]
    headers = [line for line in out.splitlines() if line.startswith("lab_gap on ")]
    assert headers == ["lab_gap on cat:", f"lab_gap on {folder / 'a.png'}:", f"lab_gap on {folder / 'b.png'}:"]


def test_inputs_with_the_same_name_are_refused_rather_than_overwriting_each_other(tmp_path, capsys):
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        square_image(tmp_path / folder / "x.png")
    status, _, err = run(capsys, "explain", tmp_path / "one" / "x.png", tmp_path / "two" / "x.png",
                         "--out-dir", tmp_path / "out")
    assert status == 2
    assert_one_line_error(err, "explain", "would both write", "x-gradcam.png")
    video = tmp_path / "one" / "x.mp4"  # x.png and x.mp4: different figures, but the same x-gradcam.npy
    video.write_bytes(b"")
    status, _, err = run(capsys, "explain", tmp_path / "one" / "x.png", video, "--raw", "--out-dir", tmp_path / "out")
    assert status == 2
    assert_one_line_error(err, "explain", "would both write", "x-gradcam.npy")


def test_existing_output_is_kept_unless_force_is_given(tmp_path, capsys):
    image = square_image(tmp_path / "square.png")
    out = tmp_path / "square-gradcam.png"
    out.write_bytes(b"keep me")
    status, _, err = run(capsys, "explain", image, "--model", "lab_gap", "--out-dir", tmp_path)
    assert status == 1
    assert_one_line_error(err, "explain", "square-gradcam.png exists", "--force")
    assert out.read_bytes() == b"keep me"
    assert run(capsys, "explain", image, "--model", "lab_gap", "--out-dir", tmp_path, "--force")[0] == 0
    assert Image.open(out).format == "PNG"


def test_out_dot_writes_name_method_png_into_the_folder_not_a_hidden_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "explain", "cat", "--model", "lab_gap", "--out", ".")[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat-gradcam.png"]


def test_default_output_goes_to_the_current_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, _ = run(capsys, "explain", "cat", "--model", "lab_gap", "--method", "layercam")
    assert status == 0 and "wrote cat-layercam.png" in out
    assert (tmp_path / "cat-layercam.png").exists()


def test_raw_writes_the_unscaled_map_at_the_layers_resolution(tmp_path, capsys):
    """lab_gap's ``features`` output is 16x16 for its 64x64 input; the .npy holds exactly
    ``GradCAM(model, "features")(x, raw=True)[0]`` for the predicted class, next to the figure."""
    image = square_image(tmp_path / "square.png")
    assert run(capsys, "explain", image, "--model", "lab_gap", "--layer", "features", "--raw",
               "--out-dir", tmp_path)[0] == 0
    model = camlab.load_model("lab_gap")
    x = camlab.preprocess(camlab.load_image(image), model)
    target = camlab.predict(model, x, k=1)[0][0][0]
    expected = camlab.GradCAM(model, layer="features")(x, target=target, raw=True)[0]
    saved = np.load(tmp_path / "square-gradcam.npy")
    assert saved.shape == (16, 16) and saved.dtype == np.float32
    np.testing.assert_array_equal(saved, expected.numpy())
    assert (tmp_path / "square-gradcam.png").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_device_cuda_gives_the_cpu_map(tmp_path, capsys):
    image = square_image(tmp_path / "square.png")
    for device in ("cpu", "cuda"):
        assert run(capsys, "explain", image, "--model", "lab_gap", "--raw", "--device", device,
                   "--out-dir", tmp_path / device)[0] == 0
    np.testing.assert_allclose(np.load(tmp_path / "cuda" / "square-gradcam.npy"),
                               np.load(tmp_path / "cpu" / "square-gradcam.npy"), rtol=1e-4, atol=1e-5)


def test_device_cpu_is_accepted():
    assert parse_device("cpu") == torch.device("cpu")


# --- demo and train -------------------------------------------------------------------------------------------

def test_demo_replaces_its_own_default_figure_so_the_main_command_runs_again(tmp_path, monkeypatch):
    """Without --out the demo writes camlab-demo.png in the current folder, replacing an earlier one."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "camlab-demo.png").write_bytes(b"an earlier run")
    assert demo_output(None, force=False) == Path("camlab-demo.png")
    assert build_parser().parse_args(["demo"]).out is None


def test_demo_refuses_to_overwrite_before_loading_the_model(tmp_path, capsys, no_model_load):
    (tmp_path / "camlab-demo.png").write_bytes(b"keep me")
    status, _, err = run(capsys, "demo", "--out", tmp_path, "--no-progress")
    assert status == 1
    assert_one_line_error(err, "demo", "camlab-demo.png exists", "--force")
    assert demo_output(str(tmp_path), force=True) == tmp_path / "camlab-demo.png"
    assert demo_output(f"{tmp_path / 'new'}/", force=False) == tmp_path / "new" / "camlab-demo.png"  # made
    assert (tmp_path / "new").is_dir()


def test_train_passes_seed_and_no_progress_on(monkeypatch, capsys):
    from camlab.lab import train

    seen = []
    monkeypatch.setattr(train, "train_model", lambda name, **options: seen.append((name, options)) or {"acc": 1})
    assert run(capsys, "train", "lab_gap", "--seed", "3", "--no-progress") == (0, "acc=1\n", "")
    assert seen == [("lab_gap", {"seed": 3, "progress": False})]


def test_explain_without_no_progress_shows_a_bar_for_several_inputs(tmp_path, capsys):
    for name in ("a.png", "b.png"):
        square_image(tmp_path / name)
    status, _, err = run(capsys, "explain", tmp_path / "*.png", "--model", "lab_gap", "--out-dir", tmp_path / "o")
    assert status == 0 and "explaining" in err
    status, _, err = run(capsys, "explain", tmp_path / "*.png", "--model", "lab_gap", "--out-dir", tmp_path / "o",
                         "--force", "--no-progress")
    assert status == 0 and err == ""
