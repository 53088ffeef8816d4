"""The OCR view: text found in an image or a video's frames, as segments the text tower embeds.

A photo of a sign, a poster or a screenshot is found by its words only if something reads them.
This view reads them with RapidOCR's PP-OCR detection and recognition ONNX models, which ship
inside the `rapidocr` wheel (loaded by explicit path: nothing is ever downloaded).

Most photos have no text, and the view must not slow their ingest much, so it works in stages:
1. a flat image (blank, gradient) stops at once;
2. a presence check runs only the detection model on the image shrunk to `check_side` px and stops
   when the probability map has no text-like region;
3. the full detection runs at <= `max_side` px (the check's map is reused when the image is that
   small already), at most `max_boxes` boxes are recognised (the largest), and a line is kept only
   when its score is >= `min_score` and it has >= `min_chars` letters or digits.
Kept lines become one segment per image (or video frame), joined in reading order: folded into the
item vector, that retrieved better than one segment per block or per line on the text-in-images
set (docs/views-ocr.md); `group="blocks"` / `"auto"` give reading-order blocks instead.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from omnibind.errors import InputError
from omnibind.views import Segment

if TYPE_CHECKING:
    from PIL import Image

    from omnibind.inputs import Input
    from omnibind.space import Space

MAX_SIDE = 960  # full detection: longest side of the image the detector sees
CHECK_SIDE = 480  # presence check: longest side
CHECK_MIN_AREA = 12  # presence check: a text region covers >= this many pixels of the map,
CHECK_MIN_MEAN = 0.6  # ... with a mean probability >= this,
CHECK_MAX_SHORT = 0.15  # ... a short side <= this fraction of the map's short side,
CHECK_MIN_RATIO = 3.0  # ... and a long side >= this many short sides (a line, not a blob)
MAX_REC_WIDTH = 800  # recognition budget per image, in line heights (sum of box width / height)
MIN_SCORE = 0.8  # recognition score a line needs
MIN_CHARS = 3  # letters or digits a line needs
MAX_BOXES = 200  # text boxes recognised per image (the largest): bounds time on a page of tiny print
VIDEO_FRAMES = 3
FLAT_STD = 2.0  # an image whose grey levels vary less than this has no text
MODELS = ("PP-OCRv6_det_small.onnx", "PP-OCRv6_rec_small.onnx")
GROUPINGS = ("auto", "blocks", "lines", "image")
AUTO_JOIN_CHARS = 400  # "auto": an image whose kept text is at most this long is one segment


@dataclass
class Line:
    """One recognised line: its text, recognition score and box (4 corners, image pixels)."""

    text: str
    score: float
    box: np.ndarray = field(repr=False)

    @property
    def top(self) -> float:
        return float(self.box[:, 1].min())

    @property
    def bottom(self) -> float:
        return float(self.box[:, 1].max())

    @property
    def left(self) -> float:
        return float(self.box[:, 0].min())

    @property
    def right(self) -> float:
        return float(self.box[:, 0].max())

    @property
    def height(self) -> float:
        return max(1.0, self.bottom - self.top)


def kept(text: str, score: float, min_score: float = MIN_SCORE, min_chars: int = MIN_CHARS) -> bool:
    """The confidence rule: score >= min_score and at least min_chars letters or digits."""
    return score >= min_score and sum(ch.isalnum() for ch in text) >= min_chars


class OcrView:
    """Text in images and video frames -> "ocr" segments (see `group_lines` for how lines are grouped)."""

    name = "ocr"
    modalities = ("image", "video")
    shapes_vector = True  # the words found are added to the image's vector

    def __init__(self, max_side: int = MAX_SIDE, check_side: int = CHECK_SIDE, min_score: float = MIN_SCORE,
                 min_chars: int = MIN_CHARS, max_boxes: int = MAX_BOXES, frames: int = VIDEO_FRAMES,
                 group: str = "image", threads: int | None = None) -> None:
        if group not in GROUPINGS:
            raise ValueError(f"group must be one of {', '.join(GROUPINGS)}, got {group!r}")
        self.max_side, self.check_side, self.max_boxes = max_side, check_side, max_boxes
        self.min_score, self.min_chars, self.frames, self.group = min_score, min_chars, frames, group
        self.threads = threads if threads is not None else int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        self._engine: _Engine | None = None
        self._lock = threading.Lock()

    def segments(self, item: "Input", space: "Space | None" = None) -> list[Segment]:
        """The item's text blocks; [] for a photo without text, or a modality this view does not read."""
        if item.modality == "image":
            return self._blocks(self.read(item.payload, item.source))
        if item.modality == "video":
            return self._video(item)
        return []

    def read(self, image: "Image.Image", source: str = "<image>") -> list[Line]:
        """Every kept line of an image (PIL, any mode; or a uint8 array), in reading order."""
        rgb = _rgb_image(image, source)
        if rgb.width < 8 or rgb.height < 8:
            return []
        full = min(self.max_side, max(rgb.size))
        side = full if full <= self.check_side * 1.25 else self.check_side  # small: the check is the full pass
        small = shrink(rgb, side)
        if float(small.std()) < FLAT_STD:  # blank, fog: no text, no model run
            return []
        return self.engine().read(rgb, small, full if side != full else None, self)

    def engine(self) -> "_Engine":
        with self._lock:
            if self._engine is None:
                self._engine = _Engine(self.threads)
            return self._engine

    def _blocks(self, lines: list[Line], start: float | None = None) -> list[Segment]:
        groups = group_lines(lines, self.group)
        return [Segment(kind="ocr", text=" ".join(ln.text for ln in g), start=start,
                        confidence=round(float(np.mean([ln.score for ln in g])), 4)) for g in groups]

    def _video(self, item: "Input") -> list[Segment]:
        """OCR of `frames` frames (centres of equal slices), each stamped with the time of the frame
        actually decoded; a block already seen is not repeated."""
        clip = item.payload
        frames = clip.frames(self.frames)
        duration = clip.duration
        out, seen = [], set()
        for i, frame in enumerate(frames):
            centre = (i + 0.5) * duration / len(frames) if duration else None
            start = frame.info.get("time", centre) if hasattr(frame, "info") else centre  # the frame's own time
            for seg in self._blocks(self.read(frame, item.source), start):
                key = _norm(seg.text or "")
                if key not in seen:
                    seen.add(key)
                    out.append(seg)
        return out


def _norm(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _rgb_image(image: Any, source: str) -> "Image.Image":
    """A PIL image in RGB (palette, grey, transparency on white) from a PIL image or a uint8 array."""
    from PIL import Image as PILImage

    from omnibind.decoders import to_rgb

    if isinstance(image, PILImage.Image):
        return to_rgb(image)
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise InputError(source, f"OCR needs an RGB image, got an array of shape {arr.shape} and type {arr.dtype}")
    return to_rgb(PILImage.fromarray(arr))


def shrink(image: "Image.Image", side: int) -> np.ndarray:
    """The image as float32 RGB, longest side `side` (never enlarged), both sides multiples of 32."""
    from PIL import Image as PILImage

    w, h = image.size
    ratio = min(1.0, side / max(h, w))
    size = (max(32, int(round(w * ratio / 32)) * 32), max(32, int(round(h * ratio / 32)) * 32))
    return np.asarray(image.resize(size, PILImage.Resampling.BILINEAR, reducing_gap=2.0), dtype=np.float32)


def group_lines(lines: list[Line], mode: str = "auto") -> list[list[Line]]:
    """Lines -> segments in reading order: one per line, one for the image, or blocks (a line joins
    the block above it when it starts within about a line height below it, overlaps it horizontally
    and has a similar height). "auto": one segment when the text is short (a sign), blocks otherwise
    (a screenshot: one long segment would be cut by the text tower's token limit)."""
    if mode == "auto":
        mode = "image" if sum(len(ln.text) + 1 for ln in lines) <= AUTO_JOIN_CHARS else "blocks"
    if mode == "lines":
        return [[ln] for ln in lines]
    if mode == "image":
        return [lines] if lines else []
    blocks: list[list[Line]] = []
    for line in sorted(lines, key=lambda ln: (round(ln.top / ln.height), ln.left)):
        home = next((b for b in blocks if _continues(b[-1], line)), None)
        if home is None:
            blocks.append([line])
        else:
            home.append(line)
    return blocks


def _continues(above: Line, line: Line) -> bool:
    gap = line.top - above.bottom
    overlap = min(above.right, line.right) - max(above.left, line.left)
    similar = max(above.height, line.height) / min(above.height, line.height) < 1.6
    return -0.5 * line.height < gap < 1.2 * line.height and overlap > 0 and similar


class _Engine:
    """RapidOCR's detector (run directly on ONNX Runtime) and recogniser, from the wheel's models."""

    def __init__(self, threads: int = 0) -> None:
        import logging

        import onnxruntime as ort
        import rapidocr
        from omegaconf import OmegaConf
        from rapidocr.ch_ppocr_det.utils import DBPostProcess
        from rapidocr.ch_ppocr_rec import TextRecognizer
        from rapidocr.main import DEFAULT_CFG_PATH
        from rapidocr.utils.parse_parameters import ParseParams

        logging.getLogger("RapidOCR").setLevel(logging.WARNING)
        root = Path(rapidocr.__file__).parent / "models"
        det_path, rec_path = (root / name for name in MODELS)
        for path in (det_path, rec_path):
            if not path.is_file():  # never let RapidOCR fetch a model: the wheel must ship it
                raise RuntimeError(f"RapidOCR model {path} is missing: reinstall the rapidocr wheel")
        options = ort.SessionOptions()
        options.log_severity_level = 4
        if threads > 0:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.det = ort.InferenceSession(str(det_path), options, providers=["CPUExecutionProvider"])
        self.post = DBPostProcess(thresh=0.3, box_thresh=0.5, max_candidates=1000, unclip_ratio=1.6,
                                  use_dilation=True)
        cfg = ParseParams.load(DEFAULT_CFG_PATH).Rec
        cfg = OmegaConf.merge(cfg, {"model_path": str(rec_path), "model_root_dir": str(root), "rec_keys_path": None,
                                   "font_path": None})
        engine = ParseParams.load(DEFAULT_CFG_PATH).EngineConfig.onnxruntime
        cfg.engine_cfg = OmegaConf.merge(engine, {"intra_op_num_threads": threads or -1, "inter_op_num_threads": 1})
        self.rec = TextRecognizer(cfg)
        self.lock = threading.Lock()  # ONNX Runtime sessions are thread-safe; the recogniser's state is not

    def probability(self, small: np.ndarray) -> np.ndarray:
        """The detector's text probability map [h, w] for a `shrink`-ed image."""
        x = (small[:, :, ::-1] * (2 / 255.0) - 1.0).transpose(2, 0, 1)[None]  # BGR, [-1, 1]
        return self.det.run(None, {self.det.get_inputs()[0].name: np.ascontiguousarray(x)})[0][0, 0]

    def read(self, image: "Image.Image", small: np.ndarray, full: int | None, view: OcrView) -> list[Line]:
        """Lines of `image`: the check on `small`, then (when `full` is set) detection at `full` px."""
        w, h = image.size
        prob = self.probability(small)
        if not has_text(prob):
            return []
        if full is not None:
            prob = self.probability(shrink(image, full))
        boxes = self.boxes(prob, h, w, view.max_boxes)
        if not len(boxes):
            return []
        texts, scores = self.recognise(np.asarray(image), boxes)
        return [Line(t.strip(), float(s), b.astype(np.float32)) for t, s, b in zip(texts, scores, boxes)
                if kept(t.strip(), float(s), view.min_score, view.min_chars)]

    def boxes(self, prob: np.ndarray, h: int, w: int, cap: int) -> np.ndarray:
        """Text boxes in image pixels, in reading order: the largest first up to `cap` boxes and
        MAX_REC_WIDTH line heights of recognition in all (what bounds time on a page of tiny print)."""
        from rapidocr.ch_ppocr_det import TextDetector

        boxes, _ = self.post(prob[None, None], (h, w))
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4, 2)
        if not len(boxes):
            return boxes
        side_a = np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=1)
        side_b = np.linalg.norm(boxes[:, 3] - boxes[:, 0], axis=1)
        lengths = np.maximum(side_a, side_b) / np.maximum(1.0, np.minimum(side_a, side_b))
        order = np.argsort(-(side_a * side_b), kind="stable")[:cap]
        order = order[np.cumsum(lengths[order]) <= MAX_REC_WIDTH] if lengths[order].sum() > MAX_REC_WIDTH else order
        return TextDetector.sorted_boxes(boxes[np.sort(order)]) if len(order) else boxes[:0]

    def recognise(self, rgb: np.ndarray, boxes: np.ndarray) -> tuple[list[str], list[float]]:
        from rapidocr.ch_ppocr_rec import TextRecInput
        from rapidocr.utils.process_img import get_rotate_crop_image

        crops = [np.ascontiguousarray(get_rotate_crop_image(rgb, box.copy())[:, :, ::-1]) for box in boxes]
        with self.lock:
            out = self.rec(TextRecInput(img=crops))
        return list(out.txts or []), [float(s) for s in (out.scores or [])]


def has_text(prob: np.ndarray, thresh: float = 0.3, min_area: int = CHECK_MIN_AREA, min_mean: float = CHECK_MIN_MEAN,
             max_short: float = CHECK_MAX_SHORT, min_ratio: float = CHECK_MIN_RATIO) -> bool:
    """Whether a probability map holds a text line: a region above `thresh` of >= `min_area` pixels,
    mean probability >= `min_mean`, thin (its short side <= `max_short` of the map's short side) and
    long (long side >= `min_ratio` x short side). At small scale the detector also marks whole
    objects (an apple, a penguin) as one round blob: the shape rule is what tells them from lines."""
    import cv2

    mask = (prob > thresh).astype(np.uint8)
    if int(mask.sum()) < min_area:
        return False
    contours = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[-2]
    limit = max_short * min(prob.shape)
    for contour in contours[:1000]:
        (_, _), (w, h), _ = cv2.minAreaRect(contour)
        short, long = min(w, h) + 1, max(w, h) + 1  # +1: a contour runs through pixel centres
        if short * long < min_area or short > limit or long < min_ratio * short:
            continue
        x, y, bw, bh = cv2.boundingRect(contour)
        if cv2.mean(prob[y:y + bh, x:x + bw], mask[y:y + bh, x:x + bw])[0] >= min_mean:
            return True
    return False
