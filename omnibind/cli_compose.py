"""`omnibind compose`: one space from joint models that each bring their own text encoder (CLIP,
SigLIP, CLAP ...), connected through text onto an anchor space (omnibind/compose.py). Kept out of
cli.py, which registers it; everything heavy is imported inside the command (CLI start-up)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from omnibind import render
from omnibind.bind.connect import DEFAULT_METHOD, DEFAULT_NOISE
from omnibind.errors import OmnibindError

console = Console()
err = Console(stderr=True)
MAX_MEDIA = 2000  # unpaired files read per --media folder


def compose_command(
    out: Path = typer.Argument(..., help="Folder for the new space."),
    anchor: str = typer.Option("default", "--anchor", "-a", help="Space (name or folder) whose text tower anchors "
                               "the new one, or a text backbone: minilm, st:ID, hf:ID."),
    tower: list[str] = typer.Option([], "--tower", "-t", help="MODALITY=REF of a joint model with a text half "
                                    "(repeatable), e.g. image=hf:openai/clip-vit-base-patch32."),
    corpus: str = typer.Option("builtin", help="Texts the maps learn from: builtin, class-names, sound-bank, "
                               "sts-b, or a file (one text per line)."),
    method: str = typer.Option(DEFAULT_METHOD, help="gap (C-MCR noise + gap re-centring), pseudo (gap + pseudo-pairs "
                               "from --media), or ridge (plain regression)."),
    noise: float = typer.Option(DEFAULT_NOISE, help="Input noise of the gap-aware map (relative to a unit vector)."),
    media: list[str] = typer.Option([], "--media", "-m", help="MODALITY=FOLDER of unpaired files of that "
                                    "modality (repeatable): the map centres on them (default: generated probes)."),
    pairs: Optional[Path] = typer.Option(None, help="Held-out pairs (a bind manifest) to fit calibration on."),
    name: Optional[str] = typer.Option(None, help="Name of the new space."),
    drop_others: bool = typer.Option(False, "--drop-others", help="Keep only the anchor's text tower and the "
                                     "composed towers (default: keep the anchor's other towers too).", metavar=""),
) -> None:
    """Compose a space from joint models (CLIP, SigLIP, CLAP) connected through their text towers."""
    from omnibind.compose import compose

    try:
        folders = _media(media)
        with render.progress_bar(err) as bar:
            tasks: dict[str, int] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done, total=total)

            space = compose(anchor, tower, corpus=corpus, method=method, media=folders, pairs=pairs, noise=noise,
                            name=name, keep_anchor_towers=not drop_others, progress=progress)
        space.save(out)
    except (OmnibindError, ValueError) as exc:
        err.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(summary(space, out))


def _media(specs: list[str]) -> dict[str, list[Path]]:
    """{modality: files} from MODALITY=FOLDER options (every file under the folder, sorted)."""
    out: dict[str, list[Path]] = {}
    for spec in specs:
        modality, sep, folder = spec.partition("=")
        path = Path(folder).expanduser()
        if not sep or not path.is_dir():
            raise ValueError(f"--media {spec!r}: write MODALITY=FOLDER with an existing folder")
        files = sorted(p for p in path.rglob("*") if p.is_file())[:MAX_MEDIA]
        out.setdefault(modality.strip(), []).extend(files)
    return out


def summary(space: object, out: Path) -> Table:
    """What was written: one row per tower, with how it was connected."""
    provenance = getattr(space, "provenance", {})
    table = Table(title=f"wrote {out}: space {getattr(space, 'name', '?')}", title_justify="left")
    table.add_column("tower")
    table.add_column("what it is and how it was connected", overflow="fold")
    for modality in getattr(space, "towers", {}):
        table.add_row(modality, str(provenance.get(f"tower {modality}", "")))
    table.add_row("calibration", str(provenance.get("calibration", "")))
    return table
