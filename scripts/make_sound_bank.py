"""Regenerate omnibind/data/sound_bank.tsv: captioned real sounds from installed Debian packages.

Issue 15 asks for an audio vocabulary of thousands of sounds instead of 55. No package ships
captions, but many game and education packages name their sound files by what they are
(`wolf-growl-2.ogg`, `animals/sheep_01.ogg`). This script walks the installed packages, cleans
each file name to a base stem (numbering and take suffixes removed: near-duplicates share it and
so share a *group*), and turns the stem into a caption by a per-package hand-written map first,
then a generic "<noun>-<verb>" rule ("dog_bark_02" -> "a dog barking"). A file whose stem neither
the map nor the rule understands is DROPPED (music, UI blips, 'click3'): no caption is invented.
The General MIDI notes of fluid-soundfont-gm are listed as render specs (program, pitch).

Excluded by rule (they are evaluation data): sound-theme-freedesktop, timgm6mb-soundfont and every
Tux Paint stamp sound (tuxpaint-stamps-default is not scanned; its train sounds join the bridge's
exemplars in code, omnibind.bind.sound_bank.tux_train_exemplars).

Run: python scripts/make_sound_bank.py [--out omnibind/data/sound_bank.tsv]
(needs: apt-get install --no-install-recommends wesnoth-1.16-data widelands-data supertux-data
 hedgewars-data freeciv-data tuxpaint-data gcompris-qt-data fluid-soundfont-gm)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sound_bank_maps import (  # noqa: E402
    DRUM_NOTES, GM_PITCHES, GM_PROGRAMS, LICENCES, MAPS, SOURCES, VERB_ING,
)

EXCLUDED_PACKAGES = frozenset({"sound-theme-freedesktop", "timgm6mb-soundfont", "tuxpaint-stamps-default"})
AUDIO = (".ogg", ".wav", ".oga", ".flac")
OUT = Path(__file__).resolve().parents[1] / "omnibind" / "data" / "sound_bank.tsv"
HEADER = ("package", "path", "caption", "group", "licence")


def base_stem(name: str) -> str:
    """File name -> base stem: lower case, extension, take numbers and recording suffixes removed.

    'dog_bark_02.ogg' -> 'dog_bark'; 'LRBark_3_LA_cut.ogg' -> 'bark'; 'horse-hit-1' -> 'horse_hit'.
    """
    stem = re.sub(r"\.(ogg|oga|wav|flac|mp3)$", "", name.rsplit("/", 1)[-1], flags=re.I)
    stem = re.sub(r"^LR(?=[A-Z])", "", stem)  # GCompris memory-sound recordings 'LR...'
    stem = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", stem).lower()
    stem = re.sub(r"[-\s.]+", "_", stem)
    for _ in range(4):
        stem = re.sub(r"(_?\d+|_lacut|_la|_cut|_short)$", "", stem)
    return stem.strip("_")


def caption_for(stem: str, mapping: dict[str, str | None]) -> str | None:
    """Caption of a base stem: the package map first (None there means drop), then the
    '<noun>_<verb>' rule, else None (dropped: the name says nothing)."""
    if stem in mapping:
        return mapping[stem]
    words = stem.split("_")
    if len(words) >= 2 and words[-1] in VERB_ING and all(w.isalpha() for w in words):
        noun = " ".join(words[:-1])
        return f"{_article(noun)} {noun} {VERB_ING[words[-1]]}"
    return None


def _article(noun: str) -> str:
    return "an" if noun[:1] in "aeiou" else "a"


def package_rows(package: str) -> list[tuple[str, str, str, str, str]]:
    """Rows of one installed package's files (plain files or files inside GCompris .rcc archives)."""
    from omnibind.bind.sound_bank import rcc_members

    rows = []
    mapping, licence = MAPS.get(package, {}), LICENCES[package]
    for root, pattern in SOURCES[package]:
        for path in sorted(Path(root).glob(pattern)):
            names = [f"{path}#{m}" for m in rcc_members(path) if m.lower().endswith(AUDIO)] if path.suffix == ".rcc" \
                else [str(path)] if path.suffix.lower() in AUDIO else []
            for name in names:
                stem = base_stem(name)
                caption = caption_for(stem, mapping)
                if caption:
                    rows.append((package, name, caption, f"{package}:{stem}", licence))
    return rows


def gm_rows() -> list[tuple[str, str, str, str, str]]:
    """Render specs of fluid-soundfont-gm: every GM program at GM_PITCHES, every GM drum once."""
    pkg, licence, sf2 = "fluid-soundfont-gm", LICENCES["fluid-soundfont-gm"], "/usr/share/sounds/sf2/FluidR3_GM.sf2"
    rows = []
    for program, (name, caption) in enumerate(GM_PROGRAMS):
        for pitch in GM_PITCHES:
            rows.append((pkg, f"{sf2}#gm:{program:03d}:{pitch}", caption, f"{pkg}:program-{program:03d}", licence))
    for note, caption in DRUM_NOTES.items():
        rows.append((pkg, f"{sf2}#drum:{note:03d}", caption, f"{pkg}:drum-{note:03d}", licence))
    return rows


def audible(gm: list[tuple[str, str, str, str, str]]) -> list[tuple[str, str, str, str, str]]:
    """The GM rows whose note the soundfont actually sounds (renders them into the cache)."""
    from omnibind.bind.sound_bank import BankSound, render_gm

    rendered = render_gm([BankSound(*r) for r in gm], skip_silent=True)
    if len(rendered) < len(gm):
        print(f"fluid-soundfont-gm: {len(gm) - len(rendered)} notes render silent, left out", file=sys.stderr)
    return [r for r in gm if r[1] in rendered]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    rows = []
    for package in SOURCES:
        if package in EXCLUDED_PACKAGES:
            raise SystemExit(f"{package} is evaluation data and may not be in the bank")
        got = package_rows(package)
        if not got:
            raise SystemExit(f"no sounds from {package}: apt-get install --no-install-recommends {package}")
        print(f"{package}: {len(got)} sounds, {len({r[3] for r in got})} groups", file=sys.stderr)
        rows += got
    rows += audible(gm_rows())
    lines = ["\t".join(HEADER)] + ["\t".join(r) for r in rows]
    args.out.write_text("# captioned sound bank: written by scripts/make_sound_bank.py, do not edit by hand\n"
                        + "\n".join(lines) + "\n", "utf-8")
    print(f"wrote {len(rows)} rows, {len({r[3] for r in rows})} groups to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
