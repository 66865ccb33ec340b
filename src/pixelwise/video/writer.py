"""Writing a video's outputs frame by frame, each under a temporary name until closed.

- :class:`OverlayVideo`: ``NAME_overlay.mp4`` (MPEG-4 Part 2, which OpenCV's FFmpeg
  encodes everywhere), the input's frame rate and size.
- :class:`NpzFrames`: one compressed ``.npz`` with an array per frame (``frame_000000``,
  ...), written as it goes, so memory stays flat however long the video;
  ``numpy.load(path)["frame_000000"]`` reads one frame back.
- :class:`PngFrames`: a folder of PNGs, one per frame (``000000.png``, ...).

Closing finishes the file (an MP4's index, the zip's directory) and renames it into place,
so an error or Ctrl-C part-way leaves valid outputs that hold the frames written so far;
only a killed process leaves a ``.tmp-`` file behind.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from pixelwise.data.spec import DatasetSpec
from pixelwise.io import temporary_path, write_atomically
from pixelwise.video.opencv import opencv

OVERLAY_FOURCC = "mp4v"
MAP_FORMATS = ("npz", "png")


def publish(temporary: Path, path: Path) -> None:
    """Move the finished file or folder ``temporary`` onto ``path`` (flushed, atomic for
    files; see :func:`pixelwise.io.write_atomically`)."""
    write_atomically(path, lambda destination: os.replace(temporary, destination))


def frame_key(index: int) -> str:
    """The name of frame ``index`` in outputs: ``000000``, ``000001``, ..."""
    return f"{index:06d}"


class OverlayVideo:
    """An RGB video written frame by frame (see the module docstring)."""

    def __init__(self, path: str | Path, frame_rate: float, size: tuple[int, int]) -> None:
        cv2 = opencv()
        self.path = Path(path)
        self.size = (int(size[0]), int(size[1]))
        self.frames_written = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._temporary = temporary_path(self.path)
        self._writer = cv2.VideoWriter(str(self._temporary), cv2.VideoWriter_fourcc(*OVERLAY_FOURCC),
                                       float(frame_rate), (self.size[1], self.size[0]))
        if not self._writer.isOpened():
            self._temporary.unlink(missing_ok=True)
            raise OSError(f"{self.path}: cannot write an {OVERLAY_FOURCC} video here")

    def write(self, picture: np.ndarray) -> None:
        """Append one uint8 RGB frame of the video's size."""
        if picture.shape[:2] != self.size:
            raise ValueError(f"{self.path}: frame of {picture.shape[0]}x{picture.shape[1]} in a "
                             f"video of {self.size[0]}x{self.size[1]}")
        self._writer.write(opencv().cvtColor(np.ascontiguousarray(picture), opencv().COLOR_RGB2BGR))
        self.frames_written += 1

    def close(self) -> Path | None:
        """Finish the file; returns its path, or None (and no file) without frames."""
        self._writer.release()
        if not self.frames_written:
            self._temporary.unlink(missing_ok=True)
            return None
        publish(self._temporary, self.path)
        return self.path


class _FramesOutput:
    """A file or folder filled item by item under a temporary name, published on close."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._temporary = temporary_path(self.path)
        self.count = 0

    def _finish(self) -> None:
        """Complete the temporary (e.g. write an archive's directory)."""

    def close(self) -> Path | None:
        """Finish and move into place; returns the path, or None (and nothing) when empty."""
        self._finish()
        if not self.count:
            if self._temporary.is_dir():
                shutil.rmtree(self._temporary, ignore_errors=True)
            else:
                self._temporary.unlink(missing_ok=True)
            return None
        publish(self._temporary, self.path)
        return self.path


class NpzFrames(_FramesOutput):
    """Arrays appended one by one to a compressed .npz (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self._zip = zipfile.ZipFile(self._temporary, "w", compression=zipfile.ZIP_DEFLATED)

    def add(self, key: str, array: np.ndarray) -> None:
        """Store ``array`` under ``key``."""
        with self._zip.open(f"{key}.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
        self.count += 1

    def _finish(self) -> None:
        self._zip.close()


class PngFrames(_FramesOutput):
    """Images saved one by one into a folder (see the module docstring)."""

    def __init__(self, folder: str | Path) -> None:
        super().__init__(folder)
        self._temporary.mkdir()

    def add(self, name: str, image: Image.Image) -> None:
        """Save ``image`` as ``name`` (a file name ending in .png) in the folder."""
        image.save(self._temporary / name, format="PNG")
        self.count += 1


def palette_image(class_map: np.ndarray, spec: DatasetSpec) -> Image.Image:
    """A class map as a palette image coloured with the dataset's colours."""
    image = Image.fromarray(np.asarray(class_map, dtype=np.uint8), mode="P")
    image.putpalette(spec.palette().reshape(-1).tolist())
    return image


def probability_image(probability: np.ndarray) -> Image.Image:
    """A probability map (0..1) as an 8-bit grey image (0..255)."""
    return Image.fromarray(np.clip(np.round(np.asarray(probability) * 255.0), 0, 255)
                           .astype(np.uint8), mode="L")


def mask_image(mask: np.ndarray) -> Image.Image:
    """A boolean mask as an 8-bit grey image (0 or 255)."""
    return Image.fromarray(np.where(np.asarray(mask, bool), 255, 0).astype(np.uint8), mode="L")


class FrameMaps:
    """A video's per-frame class maps and drivable space, in ``npz`` or ``png`` form.

    ``npz``: ``NAME_classes.npz`` (uint8 class maps) and ``NAME_drivable.npz``
    (``probability_000000`` float32, ``mask_000000`` bool, ...). ``png``: folders
    ``NAME_classes/`` (palette PNGs) and ``NAME_drivable/`` (``000000.png``, the
    probability times 255 in grey, and ``000000_mask.png``).
    """

    def __init__(self, out_dir: Path, stem: str, map_format: str, spec: DatasetSpec, *,
                 class_maps: bool, drivable: bool) -> None:
        if map_format not in MAP_FORMATS:
            raise ValueError(f"class map format must be one of {', '.join(MAP_FORMATS)}, "
                             f"got {map_format!r}")
        self.map_format = map_format
        self.spec = spec
        kind = NpzFrames if map_format == "npz" else PngFrames
        suffix = ".npz" if map_format == "npz" else ""
        self.class_maps = kind(out_dir / f"{stem}_classes{suffix}") if class_maps else None
        self.drivable = kind(out_dir / f"{stem}_drivable{suffix}") if drivable else None

    def paths(self) -> list[Path]:
        """Where the outputs will be."""
        return [output.path for output in (self.class_maps, self.drivable) if output]

    def write(self, index: int, class_map: np.ndarray, probability: np.ndarray | None,
              mask: np.ndarray | None) -> None:
        """Add frame ``index``'s class map and (when written) drivable probability and mask."""
        key = frame_key(index)
        npz = self.map_format == "npz"
        if self.class_maps is not None:
            if npz:
                self.class_maps.add(f"frame_{key}", class_map.astype(np.uint8))
            else:
                self.class_maps.add(f"{key}.png", palette_image(class_map, self.spec))
        if self.drivable is not None:
            if npz:
                self.drivable.add(f"probability_{key}", probability.astype(np.float32))
                self.drivable.add(f"mask_{key}", mask.astype(bool))
            else:
                self.drivable.add(f"{key}.png", probability_image(probability))
                self.drivable.add(f"{key}_mask.png", mask_image(mask))

    def close(self) -> list[Path]:
        """Finish every output; returns the paths written."""
        closed = [output.close() for output in (self.class_maps, self.drivable) if output]
        return [path for path in closed if path is not None]


__all__ = ["FrameMaps", "MAP_FORMATS", "NpzFrames", "OVERLAY_FOURCC", "OverlayVideo",
           "PngFrames", "frame_key", "mask_image", "palette_image", "probability_image",
           "publish"]
