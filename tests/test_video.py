"""Explaining videos frame by frame (``camlab.video`` and ``camlab explain clip.mp4``), on clips the tests draw:
a red square sliding left to right over a grey background, explained by the lab's GAP model."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

import camlab
from camlab.cli import main as cli
from camlab.video import explain_video, open_video, open_writer, read_batches

WIDTH, HEIGHT, FPS = 160, 128, 10.0
#: the square's centre column in each frame (pixels of the 160-px-wide frame); its row is fixed at 64
CENTRES = list(range(30, 131, 10))
HALF = 15  # half the square's side: 30 px in a 128-px-high frame, i.e. 15 px after the resize to lab_gap's 64x64


def moving_square(path, centres=CENTRES, colour=(230, 30, 30)):
    """Write a clip, one frame per centre: a filled ``colour`` (RGB) square of side 2*HALF centred at
    (centre, 64) on grey. Returns the path."""
    writer = open_writer(path, FPS, WIDTH, HEIGHT)
    for centre in centres:
        frame = np.full((HEIGHT, WIDTH, 3), 115, np.uint8)
        frame[64 - HALF:64 + HALF, centre - HALF:centre + HALF] = colour
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def lab_gap():
    return camlab.load_model("lab_gap")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return moving_square(tmp_path_factory.mktemp("clip") / "square.mp4")


def read_all(path):
    capture, info = open_video(path)
    frames = np.concatenate(list(read_batches(capture, 4)))
    capture.release()
    return frames, info


def test_overlay_video_has_the_source_frame_count_size_and_frame_rate(lab_gap, clip, tmp_path):
    result = explain_video(camlab.GradCAM(lab_gap), clip, tmp_path / "out.mp4", batch_size=4, progress=False)
    frames, info = read_all(result.video)
    assert result.frames == len(CENTRES) == len(frames) == info.frames
    assert (info.width, info.height, info.fps) == (WIDTH, HEIGHT, FPS)
    assert frames.shape == (len(CENTRES), HEIGHT, WIDTH, 3)


def test_map_peak_follows_the_moving_square(lab_gap, clip, tmp_path):
    """The raw maps are lab_gap's 16x16 feature grid over the 160x128 frame, so a cell is 10 px wide; the peak's
    cell centre must lie within 1.5 cells of the square's centre in every frame, and so move with it."""
    result = explain_video(camlab.GradCAM(lab_gap), clip, tmp_path / "out.mp4", raw=tmp_path / "maps.npy",
                           progress=False)
    maps = np.load(result.raw)
    assert maps.shape == (len(CENTRES), 16, 16) and maps.dtype == np.float32
    cell = WIDTH / 16
    peak_columns = [(np.unravel_index(m.argmax(), m.shape)[1] + 0.5) * cell for m in maps]
    for centre, column in zip(CENTRES, peak_columns):
        assert abs(column - centre) <= 1.5 * cell, (centre, column)
    assert peak_columns[-1] - peak_columns[0] >= 0.8 * (CENTRES[-1] - CENTRES[0])


def test_frames_are_read_as_rgb_in_batches(tmp_path):
    """10 frames in batches of 4 come as 4, 4, 2; a red (RGB) square stays red (OpenCV's BGR is converted)."""
    path = moving_square(tmp_path / "red.avi", centres=list(range(30, 130, 10)))
    capture, _ = open_video(path)
    batches = list(read_batches(capture, 4))
    assert [len(batch) for batch in batches] == [4, 4, 2]
    red, green, blue = batches[0][0, 64, 30].astype(int)
    assert red > 180 and green < 80 and blue < 80


def test_half_written_video_is_removed_when_explaining_is_interrupted(lab_gap, clip, tmp_path):
    calls = []

    def interrupted(x, target=None, raw=False):
        calls.append(len(x))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return camlab.GradCAM(lab_gap)(x, target=target, raw=raw)

    interrupted.model = lab_gap
    out = tmp_path / "partial.mp4"
    with pytest.raises(KeyboardInterrupt):
        explain_video(interrupted, clip, out, batch_size=4, progress=False)
    assert calls == [4, 4] and not out.exists()


def test_unreadable_missing_and_unwritable_videos_are_clear_errors(lab_gap, tmp_path):
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(ValueError, match="not a video OpenCV can read"):
        open_video(tmp_path / "text.mp4")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_video(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match=r"cannot write a video to .*\.gif.*\.mp4"):
        open_writer(tmp_path / "out.gif", FPS, WIDTH, HEIGHT)
    with pytest.raises(OSError, match="its folder does not exist"):
        open_writer(tmp_path / "no" / "out.mp4", FPS, WIDTH, HEIGHT)


def test_input_space_methods_are_refused_for_videos(lab_gap, clip, tmp_path):
    with pytest.raises(ValueError, match="input-space images, not maps"):
        explain_video(camlab.GuidedBackprop(lab_gap), clip, tmp_path / "out.mp4")


def test_explain_command_writes_the_overlay_video_and_raw_maps(clip, tmp_path, capsys):
    assert cli(["explain", str(clip), "--model", "lab_gap", "--method", "gradcam,cam", "--raw", "--no-progress",
                "--out-dir", str(tmp_path)]) == 0
    printed, errors = capsys.readouterr()
    assert errors == ""  # --no-progress: no bar
    assert f"gradcam on {clip}: {len(CENTRES)} frames, {WIDTH}x{HEIGHT} at 10 fps" in printed
    for method in ("gradcam", "cam"):
        assert read_all(tmp_path / f"square-{method}.mp4")[1].frames == len(CENTRES)
        assert np.load(tmp_path / f"square-{method}.npy").shape == (len(CENTRES), 16, 16)


def test_explain_command_with_out_writes_that_video(clip, tmp_path):
    out = tmp_path / "clip-cam.avi"
    assert cli(["explain", str(clip), "--model", "lab_gap", "--out", str(out), "--no-progress"]) == 0
    assert read_all(out)[1].frames == len(CENTRES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip-cam.avi"]


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_explain_never_writes_over_its_own_input(tmp_path, capsys, force):
    """On main `camlab explain v.mp4 --out v.mp4 --force` truncated its input (60 frames -> 16) and exited 0."""
    from camlab.cli import main

    clip = moving_square(tmp_path / "v.mp4")
    before = clip.read_bytes()
    status = main(["explain", str(clip), "--model", "lab_gap", "--no-progress", "--out", str(clip), *force])
    err = capsys.readouterr().err
    assert status == 2 and "is the input" in err, err
    assert clip.read_bytes() == before
