"""Reading and writing the images and videos that the swap command takes and makes.

Images are decoded with OpenCV (any format it reads) and written as PNG or JPEG with a metadata
tag saying the content is synthetic (PNG text chunk ``Synthetic`` / JPEG comment + EXIF
ImageDescription). Videos are decoded and encoded as a stream with PyAV: frames are handed out one
at a time, audio packets are copied into the output as they are read, so memory does not grow with
the video's length. The output keeps the frame count and frame rate; its container carries the
synthetic tag in its ``comment`` metadata.

Every file is written under a temporary name next to its destination and renamed when complete, so
an interrupted run never leaves a file that looks finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator

import av
import numpy as np
from PIL import Image, PngImagePlugin

from faceswap_pl.errors import MediaError
from faceswap_pl.files import atomic_path

#: written into every output's metadata
SYNTHETIC_TAG = "synthetic: face-swapped by faceswap-pl (AI-generated content)"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"}


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def write_image(path: str | Path, rgb: np.ndarray, tag: str = SYNTHETIC_TAG) -> Path:
    """Write an RGB uint8 image as PNG or JPEG (by suffix) carrying the synthetic-content tag."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".jpg", ".jpeg"):
        raise MediaError(f"Output image {path} must end in .png, .jpg or .jpeg.")
    image = Image.fromarray(np.ascontiguousarray(rgb))
    with atomic_path(path, MediaError) as partial:
        if suffix == ".png":
            info = PngImagePlugin.PngInfo()
            info.add_text("Synthetic", tag)
            image.save(partial, format="PNG", pnginfo=info)
        else:
            exif = Image.Exif()
            exif[0x010E] = tag  # ImageDescription
            image.save(partial, format="JPEG", quality=95, exif=exif, comment=tag.encode())
    return path


def image_tag(path: str | Path) -> str | None:
    """The synthetic tag of an image written by :func:`write_image` (None when absent)."""
    with Image.open(path) as image:
        if image.format == "PNG":
            return image.text.get("Synthetic")
        return image.getexif().get(0x010E)


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    fps: Fraction
    frames: int  # as the container states it (0 when unknown)
    has_audio: bool
    audio_codec: str | None


def _open_input(path: Path):
    if not path.is_file():
        raise MediaError(f"The video {path} does not exist; check the path.")
    if path.stat().st_size == 0:
        raise MediaError(f"The video {path} is empty (0 bytes); pass a complete video file.")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as error:
        raise MediaError(f"The video {path} cannot be read ({error.strerror or type(error).__name__}); pass an "
                         f"MP4/MOV/MKV/WebM video file.") from None
    if not container.streams.video:
        container.close()
        raise MediaError(f"The file {path} has no video stream; pass a video file.")
    return container


def probe_video(path: str | Path) -> VideoInfo:
    """Frame size, rate, stated frame count and audio of a video (MediaError when it cannot be read)."""
    path = Path(path)
    container = _open_input(path)
    try:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        rate = video.average_rate or video.guessed_rate or Fraction(25)
        return VideoInfo(path, video.codec_context.width, video.codec_context.height, Fraction(rate),
                         int(video.frames or 0), audio is not None, audio.codec_context.name if audio else None)
    finally:
        container.close()


def video_tag(path: str | Path) -> str | None:
    with av.open(str(path)) as container:
        return container.metadata.get("comment")


def transcode(src: str | Path, dst: str | Path, process: Callable[[Iterator[np.ndarray]], Iterable[np.ndarray]],
              crf: int = 18, tag: str = SYNTHETIC_TAG, on_frame: Callable[[], None] | None = None) -> VideoInfo:
    """Decode ``src`` frame by frame, pass the RGB frames through ``process`` and encode what it yields to ``dst``.

    ``process`` takes an iterator of RGB uint8 frames and must yield exactly one frame of the same size for each,
    in order (it may hold a few back, e.g. for smoothing with look-ahead). Audio is copied packet by packet when
    the output container takes its codec, else re-encoded to AAC. The video is H.264 (yuv420p; yuv444p for odd sizes) at the source's average frame rate.
    Returns the information of the written file.
    """
    src, dst = Path(src), Path(dst)
    if dst.suffix.lower() not in (".mp4", ".mov", ".mkv"):
        raise MediaError(f"Output video {dst} must end in .mp4, .mov or .mkv.")
    info = probe_video(src)
    container = _open_input(src)
    counts = {"in": 0, "out": 0}
    try:
        with atomic_path(dst, MediaError) as partial:
            out = av.open(str(partial), mode="w")
            try:
                in_video = container.streams.video[0]
                in_audio = container.streams.audio[0] if container.streams.audio else None
                in_video.thread_type = "AUTO"
                out.metadata["comment"] = tag
                out_video = out.add_stream("libx264", rate=info.fps)
                out_video.width, out_video.height = info.width, info.height
                even = info.width % 2 == 0 and info.height % 2 == 0
                out_video.pix_fmt = "yuv420p" if even else "yuv444p"
                out_video.options = {"crf": str(crf), "preset": "veryfast"}
                out_audio, resampler = None, None
                if in_audio is not None:
                    out_audio, resampler = _audio_stream(out, in_audio, dst.suffix.lower())
                audio_samples = [0]

                def reencode(frame) -> None:
                    frames = [frame] if frame is None else resampler.resample(frame)
                    for piece in frames:
                        if piece is not None:
                            piece.pts, piece.time_base = audio_samples[0], Fraction(1, out_audio.rate)
                            audio_samples[0] += piece.samples
                        for packet in out_audio.encode(piece):
                            out.mux(packet)

                def frames() -> Iterator[np.ndarray]:
                    streams = [in_video] + ([in_audio] if in_audio is not None else [])
                    try:
                        for packet in container.demux(*streams):
                            if packet.stream.type == "audio":
                                if resampler is not None:
                                    for frame in packet.decode():
                                        reencode(frame)
                                elif out_audio is not None and packet.dts is not None:
                                    packet.stream = out_audio
                                    out.mux(packet)
                                continue
                            for frame in packet.decode():
                                counts["in"] += 1
                                yield frame.to_ndarray(format="rgb24")
                    except av.error.FFmpegError as error:
                        raise MediaError(f"The video {src} is damaged after frame {counts['in']} "
                                         f"({error.strerror or type(error).__name__}); re-encode or trim it.") from None

                for rgb in process(frames()):
                    if rgb.shape != (info.height, info.width, 3):
                        raise MediaError(f"A processed frame has shape {rgb.shape}, not "
                                         f"{(info.height, info.width, 3)}.")
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                    frame.pts = counts["out"]
                    frame.time_base = Fraction(1) / info.fps
                    counts["out"] += 1
                    for packet in out_video.encode(frame):
                        out.mux(packet)
                    if on_frame is not None:
                        on_frame()
                for packet in out_video.encode():
                    out.mux(packet)
                if resampler is not None:
                    reencode(None)
            finally:
                out.close()
            if counts["out"] != counts["in"]:
                raise MediaError(f"Wrote {counts['out']} frames for the {counts['in']} of {src}; nothing was kept.")
    finally:
        container.close()
    return probe_video(dst)


#: audio codecs each output container takes as they are (anything else is re-encoded to AAC)
COPYABLE_AUDIO = {
    ".mp4": {"aac", "mp3", "mp3float", "alac", "opus", "ac3", "eac3", "flac"},
    ".mov": {"aac", "mp3", "mp3float", "alac", "ac3", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_f32le"},
    ".mkv": None,  # Matroska holds every codec FFmpeg has
}


def _audio_stream(out, in_audio, suffix: str):
    """``(output stream, resampler)``: a packet-copy stream when the container takes the codec (resampler None),
    else an AAC stream fed through a resampler."""
    copyable = COPYABLE_AUDIO.get(suffix)
    if copyable is None or in_audio.codec_context.name in copyable:
        try:
            return out.add_stream_from_template(in_audio), None
        except (ValueError, av.error.FFmpegError):
            pass
    rate = in_audio.rate if in_audio.rate in (8000, 11025, 16000, 22050, 32000, 44100, 48000) else 48000
    layout = "mono" if in_audio.codec_context.channels == 1 else "stereo"
    stream = out.add_stream("aac", rate=rate, layout=layout)
    return stream, av.AudioResampler(format="fltp", layout=layout, rate=rate)


def count_frames(path: str | Path) -> int:
    """Frames of a video by decoding it (exact, unlike the container's count)."""
    container = _open_input(Path(path))
    try:
        return sum(1 for _ in container.decode(video=0))
    finally:
        container.close()


def read_frames(path: str | Path, limit: int | None = None) -> Iterator[np.ndarray]:
    """RGB frames of a video, one at a time."""
    container = _open_input(Path(path))
    try:
        for index, frame in enumerate(container.decode(video=0)):
            if limit is not None and index >= limit:
                break
            yield frame.to_ndarray(format="rgb24")
    finally:
        container.close()
