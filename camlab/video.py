"""Explaining a video frame by frame: read frames in batches with OpenCV, explain each batch, write the overlay video.

    >>> model = camlab.load_model("efficientnet_lite0")
    >>> explain_video(camlab.GradCAM(model), "clip.mp4", "clip-gradcam.mp4")   # same size, fps and frame count

Every frame is treated as an image: it is resized to the model's input (:func:`camlab.preprocess`), explained with
the target given (``None``: each frame's own top-1 class), and the map, upsampled back to the frame's size, is blended
over the original frame (:func:`camlab.overlay`). OpenCV (the ``opencv-python-headless`` wheel: no GUI libraries,
so it installs on servers and in Colab) reads and writes the containers; it stores frames as BGR, and this module
converts them to RGB on reading and back on writing, so camlab itself only ever sees RGB.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

#: file suffixes read as videos (anything OpenCV's FFmpeg backend opens)
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg")
#: file suffixes a video can be written to, with the codec (FourCC) used; all are in OpenCV's own FFmpeg build
VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}


def is_video(path: str | Path) -> bool:
    """Whether ``path`` names a video (by its suffix, see :data:`VIDEO_SUFFIXES`)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video: frame count (0 when it does not say), frames per second, size."""

    frames: int
    fps: float
    width: int
    height: int


def _cv2():
    import cv2

    # FFmpeg logs demuxer complaints (e.g. "moov atom not found") straight to stderr; camlab raises its own error.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    return cv2


def open_video(path: str | Path):
    """``(capture, info)`` for a video file: an open ``cv2.VideoCapture`` and its :class:`VideoInfo`."""
    cv2 = _cv2()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video file {str(path)!r} does not exist" if not path.exists()
                                else f"{str(path)!r} is a folder, not a video file")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"{str(path)!r} is not a video OpenCV can read (e.g. .mp4, .avi, .mov)")
    info = VideoInfo(max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0), float(capture.get(cv2.CAP_PROP_FPS)),
                     int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    return capture, info


def read_batches(capture, batch_size: int) -> Iterator[np.ndarray]:
    """The frames of an open capture, ``batch_size`` at a time, as (B,H,W,3) uint8 RGB arrays (the last may be
    shorter)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    cv2 = _cv2()
    batch = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        batch.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


def open_writer(path: str | Path, fps: float, width: int, height: int):
    """A ``cv2.VideoWriter`` for ``path`` with the codec its suffix calls for (see :data:`VIDEO_CODECS`)."""
    cv2 = _cv2()
    path = Path(path)
    codec = VIDEO_CODECS.get(path.suffix.lower())
    if codec is None:
        raise ValueError(f"cannot write a video to {str(path)!r}: use one of {', '.join(VIDEO_CODECS)}")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps if fps > 0 else 25.0, (width, height))
    if not writer.isOpened():
        folder = path.parent
        why = "its folder does not exist" if not folder.is_dir() else (
            "its folder is not writable" if not os.access(folder, os.W_OK) else f"OpenCV cannot encode {codec} here")
        raise OSError(f"cannot write the video {str(path)!r}: {why}")
    return writer


@dataclass(frozen=True)
class VideoResult:
    """What :func:`explain_video` wrote: the overlay video, the raw maps (or ``None``) and the frame count."""

    video: Path
    raw: Path | None
    frames: int
    info: VideoInfo


def _explain_batch(explainer, frames: np.ndarray, target, raw: bool):
    """``(maps, raw_maps)`` for a (B,H,W,3) batch: (B,h,w) maps in [0, 1] at the model's input size, and the
    unscaled layer-resolution maps as a float32 array when ``raw`` (else ``None``)."""
    from camlab.models import preprocess

    model = explainer.model
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    x = torch.cat([preprocess(frame, model) for frame in frames]).to(device)
    maps = explainer(x, target=target)
    raw_maps = explainer(x, target=target, raw=True).float().cpu().numpy() if raw else None
    return maps.cpu(), raw_maps


def _write_overlays(writer, frames: np.ndarray, maps: torch.Tensor) -> None:
    from camlab.viz import overlay

    cv2 = _cv2()
    for frame, heat in zip(frames, maps):
        writer.write(cv2.cvtColor(np.asarray(overlay(frame, heat)), cv2.COLOR_RGB2BGR))


def explain_video(explainer, source: str | Path, out: str | Path, *, target=None, batch_size: int = 16,
                  raw: str | Path | None = None, progress: bool = True) -> VideoResult:
    """Explain every frame of the video ``source`` with ``explainer`` (a layer method such as
    ``camlab.GradCAM(model)``) and write the overlay video to ``out``: same size, frame rate and frame count.

    Frames go through the model ``batch_size`` at a time. ``target``: a class index for every frame, or ``None`` for
    each frame's top-1 class. ``raw``: a ``.npy`` path for the unscaled maps at the layer's resolution, (T,h,w)
    float32 (``explainer(x, raw=True)`` stacked over the frames). A half-written video is removed when explaining
    fails or is interrupted."""
    from camlab.methods.base import InputMethod

    if isinstance(explainer, InputMethod):
        raise ValueError(f"{type(explainer).__name__} returns input-space images, not maps to overlay on a video; "
                         "use a layer method such as gradcam")
    capture, info = open_video(source)
    out = Path(out)
    writer = open_writer(out, info.fps, info.width, info.height)
    raw_maps, frames = [], 0
    try:
        from tqdm.auto import tqdm

        with tqdm(total=info.frames or None, unit="frame", desc=Path(source).name, disable=not progress) as bar:
            for batch in read_batches(capture, batch_size):
                maps, raw_batch = _explain_batch(explainer, batch, target, raw is not None)
                _write_overlays(writer, batch, maps)
                raw_maps.extend(raw_batch if raw_batch is not None else [])
                frames += len(batch)
                bar.update(len(batch))
    except BaseException:
        writer.release()
        out.unlink(missing_ok=True)
        raise
    finally:
        capture.release()
    writer.release()
    if frames == 0:
        out.unlink(missing_ok=True)
        raise ValueError(f"{str(source)!r} holds no frame OpenCV can decode")
    if raw is not None:
        np.save(raw, np.stack(raw_maps))
    return VideoResult(out, Path(raw) if raw is not None else None, frames, info)
