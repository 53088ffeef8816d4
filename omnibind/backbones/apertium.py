"""`apertium:<reader>`: a text machine-translated into English by Apertium, read by `<reader>`.

Apertium (GPL; Debian packages `apertium`, `apertium-eng-spa`, `apertium-fr-es`, `apertium-cat-ita`,
`apertium-eng-cat`) is a rule-based
translator that runs offline in milliseconds. Each text is translated along every chain below,
whatever its language; the multilingual text head (`GatedMapHead`) keeps the translation that
agrees best with the text's meaning as USE read it, and only for texts the anchor cannot read,
so no language identification is needed (short captions defeat it: py3langid named the language
of 71–77% of English, Spanish and French Tux Paint captions). A chain whose Apertium modes are
not installed gives zero rows, which the head ignores: the space still works, untranslated.
"""

from __future__ import annotations

import shutil
import subprocess
import warnings
from collections.abc import Iterator
from typing import Any

import torch

from omnibind.backbones.base import Backbone, Features
from omnibind.backbones.registry import load_backbone, register
from omnibind.inputs import Input

# output name -> Apertium modes applied in turn. Debian has no French-English or Italian-English
# pair: French goes through Spanish, Italian through Catalan.
CHAINS: dict[str, tuple[str, ...]] = {"spa-eng": ("spa-eng",), "fra-eng": ("fr-es", "spa-eng"),
                                      "ita-eng": ("ita-cat", "cat-eng")}
PACKAGES = "apertium apertium-eng-spa apertium-fr-es apertium-cat-ita apertium-eng-cat"
MAX_CHARS = 1_000  # a query or a caption; long texts reach the anchor through the chunks view
TIMEOUT_S = 60.0


def installed_modes() -> set[str]:
    """The Apertium modes this machine can run (empty without the `apertium` command)."""
    if shutil.which("apertium") is None:
        return set()
    try:
        out = subprocess.run(["apertium", "-l"], capture_output=True, text=True, timeout=TIMEOUT_S).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    return {line.strip() for line in out.splitlines() if line.strip()}


def translate(texts: list[str], modes: tuple[str, ...]) -> list[str] | None:
    """`texts` through the modes in turn, one process per mode for the whole batch; None when a
    mode fails or the line count changes (the caller then treats the batch as untranslated)."""
    lines = "\n".join(" ".join(t.split()) or "." for t in texts) + "\n"
    for mode in modes:
        try:
            done = subprocess.run(["apertium", "-u", mode], input=lines, capture_output=True, text=True,
                                  timeout=TIMEOUT_S)
        except (OSError, subprocess.SubprocessError):
            return None
        if done.returncode != 0:
            return None
        lines = done.stdout
    out = lines.rstrip("\n").split("\n")
    return out if len(out) == len(texts) else None


class ApertiumBackbone(Backbone):
    """English translations of a text along each chain, as `reader` features (zero rows where a
    chain is not installed or failed)."""

    modality = "text"
    min_batch = 256  # one pipeline start (0.2-1 s) per 256 texts instead of per 32

    def __init__(self, reader: str) -> None:
        self.reader = load_backbone(reader, "text")
        self.ref = f"apertium:{reader}"
        width = next(iter(self.reader.outputs.values()))
        self.outputs = {name: width for name in CHAINS}
        modes = installed_modes()
        self.chains = {name: chain for name, chain in CHAINS.items() if set(chain) <= modes}
        if len(self.chains) < len(CHAINS):
            warnings.warn(f"Apertium modes missing ({', '.join(sorted(set(CHAINS) - set(self.chains)))}): those "
                          f"queries are not translated (apt-get install {PACKAGES})", stacklevel=2)

    def segments(self, item: Input) -> Iterator[Any]:
        yield item.payload[:MAX_CHARS]

    def collate(self, segments: list[Any]) -> list[str]:
        return list(segments)

    def features(self, batch: list[str]) -> Features:
        """The chains run side by side (each Apertium pipeline costs 0.2-1 s to start, whatever
        the batch), then the reader reads every translation in one batch."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max(1, len(self.chains))) as pool:
            done = dict(zip(self.chains, pool.map(lambda chain: translate(batch, chain), self.chains.values())))
        ok = [name for name in CHAINS if done.get(name) is not None]
        out: Features = {name: torch.zeros(len(batch), self.outputs[name]) for name in CHAINS if name not in ok}
        if ok:
            key = next(iter(self.reader.outputs))
            segs = [next(self.reader.segments(Input("text", t, "translation"))) for name in ok for t in done[name]]
            read = self.reader.features(self.reader.collate(segs))[key].float()
            out.update({name: read[i * len(batch):(i + 1) * len(batch)] for i, name in enumerate(ok)})
        return {name: out[name] for name in CHAINS}

    def preprocess_config(self) -> dict[str, Any]:
        return {"chains": {n: list(c) for n, c in self.chains.items()}, "max_chars": MAX_CHARS,
                "reader": self.reader.preprocess_config()}

    def describe(self) -> dict[str, Any]:
        chains = ", ".join(self.chains) or "none installed"
        return {**super().describe(), "weights": f"Apertium ({chains}) read by {self.reader.ref}"}


@register("apertium:")
def _apertium(reader: str, modality: str) -> Backbone:
    return ApertiumBackbone(reader or "minilm")
