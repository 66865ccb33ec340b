"""Videos and cameras: frame sources, the streaming loop, and a video's outputs.

    from pixelwise.inference import Segmenter
    from pixelwise.video import open_video, run_video, segment_frames

    segmenter = Segmenter.from_path("runs/camvid")
    for result in segment_frames(segmenter, open_video("drive.mp4")):
        result.prediction.class_map, result.prediction.timings_ms

Modules: ``sources`` (video files, cameras, the reader thread), ``loop`` (the stream of
results and the per-video run), ``writer`` (overlay MP4, class maps as .npz or PNGs),
``drawing`` (overlay, legend), ``timing`` (frames/s and latency), ``window`` (a live
window), ``opencv`` (the optional dependency, imported on first use: ``pip install
'pixelwise[video]'``).
"""

from pixelwise.video.drawing import annotated_overlay, draw_legend, legend_entries, overlay
from pixelwise.video.loop import FrameResult, VideoResult, output_paths, run_video, segment_frames
from pixelwise.video.opencv import EXTRA_HINT, opencv
from pixelwise.video.sources import (
    VIDEO_SUFFIXES,
    FrameSource,
    VideoInfo,
    camera_name,
    is_video,
    open_camera,
    open_video,
    prefetched,
)
from pixelwise.video.timing import STAGES, TimingLog, summary_line
from pixelwise.video.window import Window, open_window
from pixelwise.video.writer import MAP_FORMATS, FrameMaps, NpzFrames, OverlayVideo, PngFrames

__all__ = ["EXTRA_HINT", "FrameMaps", "FrameResult", "FrameSource", "MAP_FORMATS",
           "NpzFrames", "OverlayVideo", "PngFrames", "STAGES", "TimingLog", "VIDEO_SUFFIXES",
           "VideoInfo", "VideoResult", "Window", "annotated_overlay", "camera_name",
           "draw_legend", "is_video", "legend_entries", "open_camera", "open_video",
           "open_window", "opencv", "output_paths", "overlay", "prefetched", "run_video",
           "segment_frames", "summary_line"]
