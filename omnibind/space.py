"""Space: the towers of one shared embedding space, anchored on text.

A space is saved as a folder: `space.json` (towers, backbone references, head configs, dim,
video fusion, format and omnibind versions, provenance) and `heads.safetensors` (head weights).
Backbone weights are referenced by name, never copied.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from omnibind.device import machine
from omnibind.errors import InputError, SpaceError
from omnibind.heads import build_head
from omnibind.inputs import DEFAULT_LIMITS, Input, Limits, to_input, warn_path_like
from omnibind.tower import Tower, refuse_non_finite
from omnibind.version import __version__
from omnibind.video import VideoFusion, embed_videos

FORMAT_VERSION = 1
SPACE_FILE, HEADS_FILE = "space.json", "heads.safetensors"
NAMED_SPACES = {"default": "default", "bridge": "bridge", "multilingual": "multilingual"}  # name -> folder under omnibind/data/spaces
VARIANTS = {"fast": ("default", {"text": "minilm-l2-distil"})}  # name -> (named space, modality -> backbone): see variant()
# Views that fold into vectors unless a space says otherwise, and the weight of the words they
# find (speech, ocr) against the tower's own vector: measured in docs/views.md.
DEFAULT_VIEWS: dict[str, Any] = {"default": ["chunks", "pages", "speech", "ocr"],
                                 "weights": {"speech": 2.0, "ocr": 1.5}}


@dataclass
class EmbedResult:
    """What `embed(..., on_error="skip")` returns: no row ever silently shifts.

    `vectors[j]` is the embedding of input `indices[j]`; `errors` lists the inputs that failed,
    each an InputError with `.index`, `.source` and `.reason`.
    """

    vectors: np.ndarray
    indices: list[int]
    errors: list[InputError] = field(default_factory=list)


class Space:
    def __init__(
        self,
        towers: dict[str, Tower],
        name: str = "custom",
        anchor: str = "text",
        video: VideoFusion | None = None,
        temperature: float = 0.05,
        provenance: dict[str, Any] | None = None,
        limits: Limits = DEFAULT_LIMITS,
        calibration: dict[str, list[float]] | None = None,
        views: dict[str, Any] | None = None,
    ) -> None:
        if anchor not in towers:
            raise SpaceError(f"anchor modality {anchor!r} has no tower")
        dims = {m: t.dim for m, t in towers.items()}
        if len(set(dims.values())) != 1:
            raise SpaceError(f"towers disagree on the space dimension: {dims}")
        self.towers, self.name, self.anchor = towers, name, anchor
        self.video = video or VideoFusion()
        self.temperature, self.provenance, self.limits = temperature, provenance or {}, limits
        # "text->image": [a, b]: P(match) = sigmoid(a * z + b), z = a cosine standardised against the
        # query's cosines to items of that modality (omnibind/search.py; fit by scripts/fit_calibration.py).
        # Not part of the fingerprint: it changes scores, never vectors.
        self.calibration = dict(calibration or {})
        # Which views shape an item's own vector by default, and how much the words they find
        # weigh (omnibind/views/embed.py). Part of the fingerprint: they change vectors.
        views = {**DEFAULT_VIEWS, **(views or {})}
        self.views: tuple[str, ...] = tuple(views["default"])
        self.view_weights: dict[str, float] = {k: float(v) for k, v in views["weights"].items()}

    @property
    def dim(self) -> int:
        return next(iter(self.towers.values())).dim

    @property
    def modalities(self) -> list[str]:
        video = ["video"] if "image" in self.towers else []
        document = ["document"] if self.anchor == "text" else []  # read as pages of text (views)
        return list(self.towers) + video + document

    # -- embedding ----------------------------------------------------------------------------

    def embed(
        self,
        inputs: Any,
        batch_size: int = 32,
        dim: int | None = None,
        show_progress: bool = False,
        on_error: Literal["raise", "skip"] = "raise",
        progress: Callable[[int], None] | None = None,
        views: Iterable[str] | None = None,
    ) -> Any:
        """L2-normalised float32 vectors, one row per input, in input order.

        Mixed modalities may share one call. `dim` keeps the first `dim` coordinates and
        renormalises (Matryoshka). With `on_error="raise"` (default) the first bad input raises
        `InputError` and an ndarray is returned; with `"skip"` an `EmbedResult` says which
        inputs failed and why.
        """
        if on_error not in ("raise", "skip"):
            raise ValueError("on_error must be 'raise' or 'skip'")
        items = [inputs] if _is_single(inputs) else list(inputs)
        dim = self._check_dim(dim)
        chosen = self.views if views is None else tuple(views)
        out = np.full((len(items), self.dim), np.nan, dtype=np.float32)
        errors: dict[int, InputError] = {}
        decoded: dict[str, list[tuple[int, Input]]] = {}
        warn_path_like(items)
        for i, obj in enumerate(items):
            try:
                item = to_input(obj, self.limits, warn_paths=False)
                if item.modality not in self.modalities:
                    raise InputError(item.source, f"this space has no {item.modality} tower (it has {', '.join(self.modalities)})")
            except InputError as exc:
                if on_error == "raise":
                    raise exc.with_index(i) from None
                errors[i] = exc.with_index(i)
                continue
            decoded.setdefault(item.modality, []).append((i, item))
        with _progress_bar(len(items), show_progress, progress) as tick:
            if errors:
                tick(len(errors))
            for modality, pairs in decoded.items():
                positions = [i for i, _ in pairs]
                vectors, failed = self._embed_modality(modality, [x for _, x in pairs], batch_size, tick, chosen)
                refuse_non_finite(vectors, [x.source for _, x in pairs], failed)
                if failed and on_error == "raise":
                    j = min(failed)
                    raise failed[j].with_index(positions[j])
                out[positions] = vectors
                errors.update({positions[j]: e.with_index(positions[j]) for j, e in failed.items()})
        out = _truncate(out, dim)
        if on_error == "raise":
            return out
        ok = [i for i in range(len(items)) if i not in errors]
        return EmbedResult(out[ok], ok, [errors[i] for i in sorted(errors)])

    def encode(self, sentences: Any, **kwargs: Any) -> Any:
        """`SentenceTransformer.encode`'s signature and return types (omnibind/encode.py)."""
        from omnibind.encode import encode

        return encode(self, sentences, _is_single(sentences), **kwargs)

    encode_query = encode_document = encode  # no query/document prompts in an omnibind space

    def _embed_modality(self, modality: str, items: list[Input], batch_size: int, tick: Callable[[int], None],
                        views: tuple[str, ...] = ()) -> tuple[np.ndarray, dict[int, InputError]]:
        from omnibind.views.embed import applicable, embed_with_views, shapes_vector

        chosen = applicable([v for v in views if shapes_vector(v)] or (["pages"] if modality == "document" else []),
                            modality)  # a document has no vector but its pages
        if not chosen:
            return self._tower_vectors(modality, items, batch_size, tick)
        with ThreadPoolExecutor(1, thread_name_prefix="omnibind-views") as pool:
            ahead = pool.submit(_find_all, self, items, chosen)  # OCR / ASR run while the tower does
            base, failed = self._tower_vectors(modality, items, batch_size, None)
            found = ahead.result()
        done, errors = embed_with_views(self, items, base, chosen, batch_size, keep_segments=False,
                                        find=lambda item: _replay(found[id(item)]))
        tick(len(items))
        out = np.full((len(items), self.dim), np.nan, dtype=np.float32)
        for j, got in enumerate(done):
            if got is not None and j not in failed:
                out[j] = got.vector
                for note in got.notes:  # a cap applied or a view that failed: said, never silent
                    warnings.warn(f"{items[j].source}: {note}", stacklevel=3)
        return out, {**errors, **failed}

    def _tower_vectors(self, modality: str, items: list[Input], batch_size: int,
                       tick: Callable[[int], None] | None) -> tuple[np.ndarray | None, dict[int, InputError]]:
        """The towers' own vectors (None for a document: it has no tower, only its pages)."""
        if modality == "document":
            return None, {}
        if modality == "video":
            return embed_videos(items, self.towers["image"], self.towers.get("audio"), self.video, batch_size, tick)
        return self.towers[modality].embed(items, batch_size, tick)

    def segments(self, inputs: Any, views: Iterable[str] | None = None, batch_size: int = 32) -> list[Any]:
        """Every segment of each input with its location and vector: one `ItemEmbedding` per input
        (omnibind/views/embed.py), whose `vector` is what `embed` returns with the same views.
        `views` defaults to all views (time windows included); raises on the first bad input."""
        items = [to_input(x, self.limits) for x in ([inputs] if _is_single(inputs) else list(inputs))]
        done, errors = self.embed_items(items, views, batch_size)
        if errors:
            raise errors[min(errors)]
        return done

    def embed_items(self, items: list[Input], views: Iterable[str] | None = None,
                    batch_size: int = 32) -> tuple[list[Any], dict[int, InputError]]:
        """Decoded inputs -> (one `ItemEmbedding` or None per input, errors by position): what
        ingest stores, an item row and its segment rows. Never raises for one bad input."""
        from omnibind import views as view_registry
        from omnibind.views.embed import applicable, embed_with_views

        chosen = view_registry.DEFAULT if views is None else tuple(views)
        out: list[Any] = [None] * len(items)
        errors: dict[int, InputError] = {}
        for modality in dict.fromkeys(x.modality for x in items):
            where = [i for i, x in enumerate(items) if x.modality == modality]
            part = [items[i] for i in where]
            if modality not in self.modalities:
                errors.update({i: InputError(items[i].source, f"this space has no {modality} tower").with_index(i)
                               for i in where})
                continue
            base, failed = self._tower_vectors(modality, part, batch_size, None)
            done, bad = embed_with_views(self, part, base, applicable(chosen, modality), batch_size)
            for j, i in enumerate(where):
                if j in failed or j in bad:
                    errors[i] = (failed.get(j) or bad[j]).with_index(i)
                else:
                    out[i] = done[j]
        return out, errors

    def _check_dim(self, dim: int | None) -> int | None:
        if dim is not None and not 1 <= dim <= self.dim:
            raise ValueError(f"dim must be between 1 and {self.dim}, got {dim}")
        return dim

    def similarity(self, a: Any, b: Any, dim: int | None = None) -> np.ndarray:
        """Cosine similarity matrix between two sets of inputs or vectors."""
        va, vb = (self._vectors(x, dim) for x in (a, b))
        return va @ vb.T

    def _vectors(self, x: Any, dim: int | None) -> np.ndarray:
        if isinstance(x, np.ndarray) and x.dtype.kind == "f":
            x = x[None] if x.ndim == 1 else x
            return _truncate(x.astype(np.float32), dim)
        return self.embed(x, dim=dim)

    # -- persistence --------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "omnibind_version": __version__,
            "name": self.name,
            "dim": self.dim,
            "anchor": self.anchor,
            "temperature": self.temperature,
            "towers": {m: {"backbone": t.backbone_ref, "head": t.head.config()} for m, t in self.towers.items()},
            "video": self.video.config(),
            "views": self.views_config(),
            "provenance": self.provenance,
            **({"calibration": self.calibration} if self.calibration else {}),
        }

    def save(self, path: str | Path) -> Path:
        """Write the space folder atomically (a crash never leaves a half-written space)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        tensors = {f"{m}.{k}": v.detach().cpu().contiguous() for m, t in self.towers.items() for k, v in t.head.state_dict().items()}
        save_file(tensors, str(tmp / HEADS_FILE))
        (tmp / SPACE_FILE).write_text(json.dumps(self.config(), indent=2) + "\n", encoding="utf-8")
        for file in (tmp / HEADS_FILE, tmp / SPACE_FILE):
            os.chmod(file, 0o644)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            _rmtree(old)
        else:
            os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Space":
        path = Path(path)
        config = _read_config(path)
        try:
            tensors = load_file(str(path / HEADS_FILE))
        except Exception as exc:
            raise SpaceError(f"{path / HEADS_FILE}: cannot read head weights: {exc}") from exc
        towers = {}
        for modality, spec in config["towers"].items():
            head = build_head(spec["head"])
            state = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.split(".", 1)[0] == modality}
            try:
                head.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise SpaceError(f"{path}: head weights for {modality} do not match its config: {exc}") from exc
            towers[modality] = Tower(modality, spec["backbone"], head.eval())
        return cls(
            towers,
            name=config.get("name", path.name),
            anchor=config.get("anchor", "text"),
            video=VideoFusion(**config.get("video", {})),
            temperature=float(config.get("temperature", 0.05)),
            provenance=config.get("provenance", {}),
            calibration=config.get("calibration"),
            views=config.get("views"),
        )

    def fingerprint(self) -> str:
        """sha256 of what decides a vector: each tower's backbone and head config and weights,
        the video fusion. Not the name or provenance: a renamed copy makes the same vectors."""
        config = {m: {"backbone": t.backbone_ref, "head": t.head.config()} for m, t in sorted(self.towers.items())}
        text = json.dumps({"towers": config, "video": self.video.config(), "dim": self.dim,
                           "views": self.views_config()}, sort_keys=True)
        return hashlib.sha256(f"{text}|{heads_sha256(self)}".encode()).hexdigest()

    def views_config(self) -> dict[str, Any]:
        return {"default": list(self.views), "weights": dict(sorted(self.view_weights.items()))}

    def info(self) -> dict[str, Any]:
        """Towers, dims and where each backbone's weights come from (loads the backbones)."""
        return {
            **{k: v for k, v in self.config().items() if k != "towers"},
            "towers": {m: {**t.config(), "weights": t.backbone.describe()} for m, t in self.towers.items()},
            "runtime": machine(),  # device and precision the backbones were loaded for
        }


def heads_sha256(space: Space) -> str:
    """A sha256 of the space's head state: every tensor's name, dtype, shape and bytes, in order.

    Independent of file serialisation: equal head weights give equal digests.
    """
    h = hashlib.sha256()
    for modality in sorted(space.towers):
        state = space.towers[modality].head.state_dict()
        for key in sorted(state):
            t = state[key].detach().cpu().contiguous()
            h.update(f"{modality}.{key}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _find_all(space: Space, items: list[Input], views: list[str]) -> dict[int, Any]:
    """Each item's view segments (or the exception finding them raised), by the item's id()."""
    from omnibind.views.embed import find_segments

    found: dict[int, Any] = {}
    for item in items:
        try:
            found[id(item)] = find_segments(space, item, views)
        except Exception as exc:  # noqa: BLE001 - raised again, in order, by _replay
            found[id(item)] = exc
    return found


def _replay(result: Any) -> Any:
    if isinstance(result, Exception):
        raise result
    return result


def load_space(path_or_name: str | Path | None = None) -> Space:
    """Load a space folder, or a named space shipped with omnibind (default: "default")."""
    key = str(path_or_name) if path_or_name is not None else "default"
    if key in VARIANTS:
        return variant(key)
    if key in NAMED_SPACES:
        folder = resources.files("omnibind.data").joinpath("spaces", NAMED_SPACES[key])
        return Space.load(Path(str(folder)))
    path = Path(key).expanduser()
    if not (path / SPACE_FILE).exists():
        raise SpaceError(f"no space at {path} (expected {SPACE_FILE}); named spaces: "
                         f"{', '.join([*NAMED_SPACES, *VARIANTS])}")
    return Space.load(path)


def variant(name: str) -> Space:
    """A named space that is a shipped one with other backbones under the same heads (`fast`: the
    default space read by a cheaper text student that reproduces the anchor's features), so
    no head weights are shipped twice."""
    base, backbones = VARIANTS[name]
    space = load_space(base)
    for modality, ref in backbones.items():
        space.towers[modality] = Tower(modality, ref, space.towers[modality].head)
    space.name = name
    space.provenance = {**space.provenance, "variant_of": base, "backbones": dict(backbones)}
    return space


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads((path / SPACE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpaceError(f"no space at {path} (missing {SPACE_FILE})") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise SpaceError(f"{path / SPACE_FILE}: unreadable: {exc}") from exc
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise SpaceError(
            f"{path / SPACE_FILE}: format version {version!r} is not supported by this omnibind (reads {FORMAT_VERSION})"
        )
    if not isinstance(config.get("towers"), dict) or not config["towers"]:
        raise SpaceError(f"{path / SPACE_FILE}: no towers")
    return config


def _is_single(x: Any) -> bool:
    return isinstance(x, (str, Path, bytes, bytearray, memoryview, Input, dict)) or not isinstance(x, Iterable) or _is_image(x)


def _is_image(x: Any) -> bool:
    from PIL import Image

    return isinstance(x, Image.Image)


def _truncate(vectors: np.ndarray, dim: int | None) -> np.ndarray:
    if dim is None or dim >= vectors.shape[1]:
        return vectors
    part = vectors[:, :dim]
    norms = np.linalg.norm(part, axis=1, keepdims=True)
    return (part / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _progress_bar(total: int, show: bool, callback: Callable[[int], None] | None):
    """A context giving `tick(n)`: feeds the caller's callback and, if asked, a Rich bar."""
    if not show:
        return nullcontext(callback or (lambda n: None))
    from omnibind.progress import rich_bar

    return rich_bar(total, "embedding", callback)

