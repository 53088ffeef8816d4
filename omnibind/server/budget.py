"""What one request may cost, checked before the work: items, characters, labels, and the
pixels and seconds its uploads decode to.

Each upload is decoded with the space's limits tightened by the per-item caps and by what the
request has left (`Budget.limits`): the decoders check sizes and durations from the file's
header, before decoding, so an 8000x8000 PNG or a 1 Hz WAV that lasts an hour costs a header
read. A refusal is a 413 naming the limit (a `ServerSettings` field). After a request that
decoded a lot, `release_memory` gives the memory back to the system (gc + glibc malloc_trim).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
import time
from dataclasses import replace
from typing import Any

from omnibind.errors import InputError
from omnibind.inputs import Limits
from omnibind.server.errors import too_large
from omnibind.server.settings import ServerSettings

BIG_PIXELS, BIG_SECONDS, BIG_CHARS = 4_000_000, 30.0, 100_000  # past one of these: release_memory after
# (words of a decoder's reason, the Limits field, the per-item cap, the per-request budget): ServerSettings
# fields; None: no server setting for it (the decoder's own limit: a 422 as any other InputError)
LIMIT_WORDS = (("pixels", "max_image_pixels", "max_image_pixels", "max_request_pixels"),
               ("characters", "max_text_chars", "max_text_chars", "max_request_chars"),
               ("frames", "max_video_frames", None, None),
               ("audio", "max_audio_seconds", "max_media_seconds", "max_request_seconds"),
               ("video", "max_video_seconds", "max_media_seconds", "max_request_seconds"),
               ("bytes", "max_file_bytes", "max_upload_bytes", None))


class Budget:
    """One request's allowance, spent as its inputs are checked and decoded."""

    def __init__(self, settings: ServerSettings, base: Limits) -> None:
        self.settings, self.per_item = settings, settings.upload_limits(base)  # base: the space's limits
        self.items, self.chars = 0, 0
        self.pixels, self.seconds = 0, 0.0

    def count(self, n: int) -> None:
        self.items += n
        if self.items > self.settings.max_texts:
            raise too_large(f"at most {self.settings.max_texts} items (texts and files) per request",
                            "max_texts", self.settings.max_texts)

    def texts(self, texts: list[str], what: str = "text") -> list[str]:
        """Check the count and lengths of texts; return them."""
        self.count(len(texts))
        for i, text in enumerate(texts):
            self.text(text, f"{what} {i}")
        return texts

    def text(self, text: str, where: str = "text") -> str:
        s = self.settings
        if len(text) > s.max_text_chars:
            raise too_large(f"{where} has {len(text)} characters, over the limit of {s.max_text_chars}",
                            "max_text_chars", s.max_text_chars)
        self.chars += len(text)
        if self.chars > s.max_request_chars:
            raise too_large(f"the texts of this request have over {s.max_request_chars} characters together",
                            "max_request_chars", s.max_request_chars)
        return text

    def labels(self, labels: list[str]) -> list[str]:
        """Classification labels: at most `max_labels`, each at most `max_label_chars`."""
        s = self.settings
        if len(labels) > s.max_labels:
            raise too_large(f"{len(labels)} labels: at most {s.max_labels} per request", "max_labels", s.max_labels)
        for label in labels:
            if len(label) > s.max_label_chars:
                raise too_large(f"a label has {len(label)} characters, over the limit of {s.max_label_chars}",
                                "max_label_chars", s.max_label_chars)
        return labels

    def limits(self) -> Limits:
        """Decoding limits for the next upload: the per-item caps, and no more than what is left."""
        s, per_item = self.settings, self.per_item
        seconds_left = max(0.0, s.max_request_seconds - self.seconds)
        pixels_left = max(0, s.max_request_pixels - self.pixels)
        return replace(per_item, max_image_pixels=min(per_item.max_image_pixels, pixels_left),
                       max_text_chars=max(0, min(per_item.max_text_chars, s.max_request_chars - self.chars)),
                       max_audio_seconds=min(per_item.max_audio_seconds, seconds_left),
                       max_video_seconds=min(per_item.max_video_seconds, seconds_left))

    def spend(self, item: Any) -> None:
        """Count a decoded upload (an `Input`) against the request."""
        payload = item.payload
        if isinstance(payload, str):
            self.chars += len(payload)
        elif hasattr(payload, "size") and isinstance(payload.size, tuple):  # a PIL image
            self.pixels += payload.size[0] * payload.size[1]
        elif getattr(payload, "duration", None):
            self.seconds += float(payload.duration)

    def refused(self, exc: InputError, limits: Limits) -> Exception:
        """An upload's InputError (decoded with `limits`) as a 413 naming the limit it was over;
        any other InputError as it is (a 422)."""
        if "limit" not in exc.reason:
            return exc
        for words, field, item_cap, request_cap in LIMIT_WORDS:
            if words in exc.reason:
                tighter = request_cap is not None and getattr(limits, field) < getattr(self.per_item, field)
                name = request_cap if tighter else item_cap
                if name is None:
                    return exc
                return too_large(str(exc), name, getattr(self.settings, name), source=exc.source, reason=exc.reason)
        return exc

    @property
    def big(self) -> bool:
        """Whether this request decoded enough to be worth giving memory back afterwards."""
        return self.pixels > BIG_PIXELS or self.seconds > BIG_SECONDS or self.chars > BIG_CHARS


_trim_lock = threading.Lock()
_last_trim = [0.0]


def release_memory(min_interval: float = 1.0) -> bool:
    """Collect garbage and hand freed heap back to the system (glibc `malloc_trim`); at most
    once per `min_interval` seconds across threads. Whether it ran."""
    if not _trim_lock.acquire(blocking=False):
        return False
    try:
        if time.monotonic() - _last_trim[0] < min_interval:
            return False
        gc.collect(1)  # young generations only: decoded inputs die by refcount; a full gc stalls all threads (~0.4 s)
        trim = _malloc_trim()
        if trim is not None:
            trim(0)
        _last_trim[0] = time.monotonic()
        return True
    finally:
        _trim_lock.release()


def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return None
