"""Inputs: turn whatever a user hands us into a typed, decoded `Input`.

A file is read from disk once (`read_file`: one open, bytes or a read-only memory map); its
modality comes from the content (the modality table's sniffers: magic bytes, then a container's
streams), never from the file name alone, and the decoders work on that same buffer. Decoding is
lazy and streamed for audio and video. Every failure is an `InputError` naming the source and
the reason.
"""

from __future__ import annotations

import mmap
import re
import os
import stat
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from PIL import Image

from omnibind import modalities
from omnibind.decoders import (  # noqa: F401  (re-exported: the public decoding API lives here)
    DEFAULT_LIMITS, AudioClip, Data, Limits, VideoClip, audio_from_array, check_integrity, check_matroska_complete,
    check_ogg_complete, check_text, image_object, looks_like_bomless_utf16, looks_like_legacy_text, open_audio,
    open_video, sniff, to_rgb, video_from_frames,
)
from omnibind.errors import InputError, MislabelledInputWarning, PathLikeTextWarning

Payload = Union[str, Image.Image, AudioClip, VideoClip, Any]
MAP_THRESHOLD = 16 * 1024**2  # files larger than this are memory-mapped, not copied into memory


@dataclass
class Input:
    """One thing to embed: its modality, its decoded payload and where it came from."""

    modality: str
    payload: Payload
    source: str

    def __post_init__(self) -> None:
        if self.modality not in modalities.names():
            raise ValueError(f"unknown modality {self.modality!r}; expected one of {modalities.names()}")


@dataclass
class FileData:
    """A file read once: its bytes (or memory map) and the stat taken on the open descriptor."""

    path: Path
    data: Data
    size: int
    mtime: float


def read_file(path: str | Path, limits: Limits = DEFAULT_LIMITS, within: str | None = None) -> FileData:
    """Open a file once and read it whole (memory-mapped above MAP_THRESHOLD): every later
    step — hashing, sniffing, decoding, thumbnails — reads this buffer, never the file. With
    `within` (a resolved folder), the file actually opened must lie beneath it: a symbolic link
    swapped in after a folder was walked is refused, not read.

    The open never blocks (a FIFO without a writer) and the stat of the open descriptor decides
    before any byte is read: directories, pipes, sockets and devices are refused by name, a
    file over `max_file_bytes` by its size (a sparse 5 GiB file costs no reading)."""
    path = Path(path)
    source = str(path)
    try:
        fd = _open_fd(path)
    except FileNotFoundError:
        raise InputError(source, "file not found") from None
    except OSError as exc:
        raise InputError(source, _special_kind(path) or f"cannot read file: {exc.strerror or exc}") from None
    try:
        if within is not None:
            _check_within(fd, path, within, source)
        st = os.fstat(fd)
        _check_stat(st, source, limits)
        data = _read_all(fd, st.st_size, source)
    finally:
        os.close(fd)
    if not len(data):
        raise InputError(source, "empty file (0 bytes)")
    return FileData(path, data, len(data), st.st_mtime)


def _check_within(fd: int, path: Path, within: str, source: str) -> None:
    """The opened file's real path (the kernel's, race-free on Linux) must be beneath `within`."""
    proc = f"/proc/self/fd/{fd}"
    real = os.readlink(proc) if os.path.exists(proc) else os.path.realpath(path)
    if not beneath(real, within):
        raise InputError(source, f"resolves to {real}, outside {within}: not read")


def beneath(path: str, root: str) -> bool:
    """Whether a resolved path is `root` or inside it (by path components, not by string prefix:
    /data/inbox2 is not inside /data/inbox)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _open_fd(path: Path) -> int:
    """The one open of a file: read-only, non-blocking (a FIFO must not hang an ingest), never
    becoming a controlling terminal."""
    return os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))


def _read_all(fd: int, size: int, source: str) -> Data:
    """The file's bytes as of its stat: at most `size` (a file still growing is read up to there)."""
    try:
        if size > MAP_THRESHOLD:
            return mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        chunks, got = [], 0
        while got < size and (chunk := os.read(fd, size - got)):
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)
    except (OSError, ValueError) as exc:
        raise InputError(source, f"cannot read file: {getattr(exc, 'strerror', None) or exc}") from None


_KINDS = (
    (stat.S_ISDIR, "is a directory, not a file"),
    (stat.S_ISFIFO, "is a named pipe (FIFO), not a file"),
    (stat.S_ISSOCK, "is a socket, not a file"),
    (stat.S_ISCHR, "is a character device (like /dev/zero), not a file"),
    (stat.S_ISBLK, "is a block device (a disk), not a file"),
)


def _kind_reason(mode: int) -> str | None:
    return next((reason for test, reason in _KINDS if test(mode)), None)


def _special_kind(path: Path) -> str | None:
    """Why a path that could not be opened is no file (a socket cannot be opened), or None."""
    try:
        return _kind_reason(os.stat(path).st_mode)
    except OSError:
        return None


def _check_stat(st: os.stat_result, source: str, limits: Limits) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise InputError(source, _kind_reason(st.st_mode) or "not a regular file")
    if st.st_size == 0:
        raise InputError(source, "empty file (0 bytes)")
    if st.st_size > limits.max_file_bytes:
        raise InputError(source, f"file is {st.st_size} bytes, over the limit of {limits.max_file_bytes}")


class Text(str):
    """Text, said explicitly: never taken for a file path, never warned about."""


def File(path: str | os.PathLike[str]) -> Path:  # noqa: N802 - reads as the type it stands for
    """A file, said explicitly: `omnibind.File("photo.jpg")` is `pathlib.Path("photo.jpg")`, `~` expanded."""
    return Path(path).expanduser()


def looks_like_path(text: str) -> bool:
    """A one-line string naming a file: a media or document extension (`dog.ogg`, `notes.txt`)
    or a leading `/`, `./`, `../`, `~/`. Sentences ("a photo of a dog") never look like one."""
    s = text.strip()
    if not s or "\n" in s or len(s) > 4096:
        return False
    if re.match(r"(~|\.{1,2})?[/\\][^\s/\\]+", s):
        return True
    return " " not in s and modalities.by_extension(s) is not None


def from_argument(arg: str) -> Any:
    """A command-line argument: an existing path is that file, a missing one that looks like a path
    (`dgo.ogg`, `./x`) an `InputError` -- a typo must not be embedded as text -- else `Text`."""
    path = Path(arg).expanduser()
    if path.exists():
        return path
    if looks_like_path(arg):
        raise InputError(arg, "no such file (an argument that looks like a path is never taken as text; reword it)")
    return Text(arg)


def warn_path_like(objs: Sequence[Any], stacklevel: int = 3) -> None:
    """One `PathLikeTextWarning` for the plain strings among `objs` that look like file paths."""
    suspects = [o for o in objs if type(o) is str and looks_like_path(o)]
    if not suspects:
        return
    first = suspects[0]
    where = "a file on disk" if Path(first).expanduser().exists() else "no such file"
    count = f"{len(suspects)} strings look like file paths" if len(suspects) > 1 else "a string looks like a file path"
    warnings.warn(f"{count} (first: {first!r}, {where}) but a str is embedded as text: pass "
                  "pathlib.Path or omnibind.File(...) for files, omnibind.Text(...) for the words",
                  PathLikeTextWarning, stacklevel=stacklevel)


def to_input(obj: Any, limits: Limits = DEFAULT_LIMITS, warn_paths: bool = True) -> Input:
    """Turn a user object into an `Input`, following sentence-transformers' conventions.

    `str` is text, `pathlib.Path` is a file, `bytes` is file content, `PIL.Image.Image` is an
    image, `{"array": ndarray, "sampling_rate": int}` is audio, a list of images is a video.
    A plain `str` that looks like a file path is still text, with a `PathLikeTextWarning`
    (`warn_paths=False`: the caller warns once for a whole batch).
    """
    if isinstance(obj, Input):
        return obj
    if isinstance(obj, str):
        if warn_paths:
            warn_path_like([obj], stacklevel=3)
        return Input("text", check_text(str(obj), "<text>", limits), "<text>")
    if isinstance(obj, Path):
        return load_file(obj, limits)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return load_bytes(bytes(obj), "<bytes>", limits)
    if isinstance(obj, Image.Image):
        return Input("image", image_object(obj, "<PIL image>", limits), "<PIL image>")
    if isinstance(obj, dict) and "array" in obj:
        return Input("audio", audio_from_array(obj, "<audio array>", limits), "<audio array>")
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(x, Image.Image) for x in obj):
        return Input("video", video_from_frames(list(obj), "<frame list>", limits), "<frame list>")
    raise InputError(
        f"<{type(obj).__name__}>",
        "not an input omnibind understands: pass str (text), pathlib.Path (file), bytes, "
        "PIL.Image, {'array', 'sampling_rate'} (audio) or a list of PIL images (video)",
    )


def load_file(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> Input:
    """Decode a file by its content; warn when its extension says otherwise."""
    read = read_file(path, limits)
    return decode(read.data, str(read.path), limits, name=read.path)


def load_bytes(data: bytes, source: str = "<bytes>", limits: Limits = DEFAULT_LIMITS) -> Input:
    """Decode in-memory file content (an upload, say) by its content."""
    if not data:
        raise InputError(source, "empty input (0 bytes)")
    if len(data) > limits.max_file_bytes:
        raise InputError(source, f"input is {len(data)} bytes, over the limit of {limits.max_file_bytes}")
    return decode(data, source, limits)


def decode(data: Data, source: str, limits: Limits = DEFAULT_LIMITS, name: str | Path | None = None) -> Input:
    """File content -> Input: integrity checks of the container, the modality table's sniffers,
    then that modality's decoder. `name` (a file name) is only used to warn about a mislabel."""
    head = bytes(data[:4096])
    check_integrity(head, data, source)
    row = modalities.detect(head, data, source)
    if row is None:
        if looks_like_bomless_utf16(head):
            raise InputError(source, "UTF-16/32 text without a byte-order mark: re-save it as UTF-8 (or with a BOM)")
        if looks_like_legacy_text(head):
            try:
                head.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(source, f"not valid UTF-8 text (byte {exc.start}); re-save it as UTF-8") from None
        raise InputError(source, "unsupported or unrecognised format (not an image, audio, video or UTF-8 text)")
    if name is not None:
        _warn_if_mislabelled(Path(name), row.name, head, data, source)
    return Input(row.name, modalities.decode(row, data, source, limits), source)


def _warn_if_mislabelled(path: Path, kind: str, head: bytes, data: Data, source: str) -> None:
    """Warn when a file's name claims another modality than its content, unless the content also
    fits the claimed one (a 16-bit depth PNG registered as its own modality is still a PNG)."""
    claimed = modalities.by_extension(path)
    suffix = path.suffix.lower()
    av_container = suffix in modalities.get("video").extensions or suffix == ".ogg"
    if {claimed, kind} <= {"audio", "video"} and av_container:
        return  # MP4, Matroska, Ogg... hold video or sound alone: either is not a mislabel
    row = modalities.get(claimed) if claimed and claimed != kind else None
    if row is not None and not (row.sniff is not None and _claims(row, head, data, source)):
        warnings.warn(
            f"{path}: named like {claimed} ({path.suffix}) but the content is {kind}; decoding it as {kind}",
            MislabelledInputWarning,
            stacklevel=3,
        )


def _claims(row: modalities.Modality, head: bytes, data: Data, source: str) -> bool:
    try:
        return bool(row.sniff(head, data, source))
    except InputError:
        return False


def to_inputs(items: Sequence[Any], limits: Limits = DEFAULT_LIMITS) -> list[Input]:
    """`to_input` over a sequence, raising on the first bad item."""
    return [to_input(x, limits) for x in items]
