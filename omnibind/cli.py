"""The `omnibind` command line (Typer + Rich). Library code raises; this module prints."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from omnibind.errors import InputError, MislabelledInputWarning, OmnibindError

app = typer.Typer(
    help="omnibind: text, images, audio and video in one embedding space, offline by default.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

SpaceOpt = typer.Option(None, "--space", "-s", help="Space folder or name (default: the offline default space).")


def _quiet_libraries() -> None:
    """Keep third-party chatter (progress bars, tracer warnings) off the user's terminal."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except Exception:
        pass
    warnings.simplefilter("default", MislabelledInputWarning)
    warnings.showwarning = lambda message, category, *a, **k: err.print(f"[yellow]warning:[/] {message}")


def _load(space: Optional[str]):
    from omnibind.space import load_space

    _quiet_libraries()
    return load_space(space)


def _as_item(arg: str, force_text: bool = False) -> Any:
    """A CLI argument is a file if such a path exists, text otherwise."""
    if not force_text and Path(arg).expanduser().exists():
        return Path(arg).expanduser()
    return arg


def _fail(exc: Exception) -> None:
    err.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(1)


CollectionOpt = typer.Option("default", "--collection", "-c",
                             help="Collection name (under $OMNIBIND_HOME/collections) or folder path.")
HomeOpt = typer.Option(None, "--home", help="Data folder (default: $OMNIBIND_HOME or the user data dir).")


@app.command()
def embed(
    items: list[str] = typer.Argument(None, help="Files or texts to embed (an existing path is a file)."),
    text: list[str] = typer.Option([], "--text", "-t", help="Text to embed even if it looks like a path (repeatable)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the vectors to this .npy file."),
    dim: Optional[int] = typer.Option(None, help="Keep only the first DIM dimensions (Matryoshka)."),
    batch_size: int = typer.Option(32, help="Inputs per batch."),
    skip_errors: bool = typer.Option(False, "--skip-errors", help="Report bad inputs and embed the rest."),
    space: Optional[str] = SpaceOpt,
) -> None:
    """Embed files and texts into the shared space."""
    objs = [_as_item(x) for x in (items or [])] + list(text)
    if not objs:
        _fail(ValueError("nothing to embed: give files or texts, or --text"))
    try:
        sp = _load(space)
        result = sp.embed(objs, batch_size=batch_size, dim=dim, show_progress=len(objs) > 8,
                          on_error="skip" if skip_errors else "raise")
    except OmnibindError as exc:
        _fail(exc)
    if skip_errors:
        vectors, indices, errors = result.vectors, result.indices, result.errors
    else:
        vectors, indices, errors = result, list(range(len(objs))), []
    table = Table(title=f"{len(indices)} vectors, {vectors.shape[1]} dims, space {sp.name}")
    for col in ("#", "input", "modality", "first dims"):
        table.add_column(col)
    from omnibind.inputs import to_input

    for row, i in enumerate(indices):
        name = str(objs[i])
        modality = _modality_of(objs[i], to_input)
        table.add_row(str(i), name if len(name) < 60 else name[:57] + "...", modality,
                      " ".join(f"{v:+.3f}" for v in vectors[row, :4]) + " ...")
    console.print(table)
    for e in errors:
        err.print(f"[red]skipped[/] #{e.index} {e.source}: {e.reason}")
    if out is not None:
        np.save(out, vectors)
        console.print(f"wrote {out} ({vectors.shape[0]} x {vectors.shape[1]} float32)")
    if errors:
        raise typer.Exit(2)


def _modality_of(obj: Any, to_input) -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return to_input(obj).modality
    except InputError:
        return "?"


@app.command()
def similarity(
    a: str = typer.Argument(..., help="File or text."),
    b: str = typer.Argument(..., help="File or text."),
    space: Optional[str] = SpaceOpt,
) -> None:
    """Cosine similarity of two inputs of any modality."""
    try:
        sp = _load(space)
        score = float(sp.similarity([_as_item(a)], [_as_item(b)])[0, 0])
    except OmnibindError as exc:
        _fail(exc)
    console.print(f"{score:.4f}")


@app.command()
def info(
    space: Optional[str] = SpaceOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the full description as JSON."),
) -> None:
    """The space's towers, dimensions, and where each backbone's weights come from."""
    try:
        details = _load(space).info()
    except OmnibindError as exc:
        _fail(exc)
    if as_json:
        console.print_json(json.dumps(details, default=str))
        return
    console.print(f"[bold]space[/] {details['name']}  dim={details['dim']}  anchor={details['anchor']}  "
                  f"format={details['format_version']}  omnibind={details['omnibind_version']}")
    table = Table()
    for col in ("modality", "backbone", "head", "weights"):
        table.add_column(col, overflow="fold")
    for modality, tower in details["towers"].items():
        head = tower["head"]
        head_text = f"{head['kind']} {head['in_dim']}->{head['out_dim']} ({head['input_key']})"
        table.add_row(modality, tower["backbone"], head_text, str(tower["weights"].get("weights", "")))
    video = details["video"]
    table.add_row("video", "image + audio towers", f"{video['frames']} frames, weights {video['image_weight']}/{video['audio_weight']}", "-")
    console.print(table)
    for key, value in details.get("provenance", {}).items():
        console.print(f"[dim]{key}:[/] {value}")


@app.command()
def demo(
    folder: Path = typer.Option(Path("examples/media"), help="Where the example media are (built from Debian packages "
                                "on first use)."),
    space: Optional[str] = SpaceOpt,
    collection: str = typer.Option("demo", "--collection", "-c", help="Collection the examples are ingested into."),
    k: int = typer.Option(5, "-k", help="Results per search."),
    matrix: bool = typer.Option(False, "--matrix", help="Also print every caption against all media."),
    home: Optional[Path] = HomeOpt,
) -> None:
    """Ingest the example media into a collection, search it across modalities, rank captions."""
    import os as _os

    from omnibind.collection import Collection
    from omnibind.demo import CAPTIONS, demo_searches, load_examples, rank_report, write_notes
    from omnibind.ingest import ingest as run_ingest

    _set_home(home)
    _quiet_libraries()
    try:
        sp = _load(space)
        examples = load_examples(folder)
        write_notes(folder)
        coll = Collection.open(collection, space=sp, reembed=True)
        if "pending_space" in coll.meta:
            coll.reembed()
        with console.status(f"ingesting {folder} into collection {coll.name!r}"):
            ingested = run_ingest(coll, folder, exclude=[CAPTIONS])
        s = ingested.summary()
        console.print(f"collection [bold]{coll.name}[/] ({coll.path}): {len(coll)} items; this run {s['added']} added, "
                      f"{s['updated']} updated, {s['unchanged']} unchanged, {s['failed']} failed, {s['seconds']:.1f} s")
        for path, reason in ingested.failed:
            err.print(f"[red]failed[/] {path}: {reason}")
        searches = demo_searches(coll, folder, k)
        rows = {r["id"]: r["vector"] for r in coll.get([_os.path.abspath(ex.path) for ex in examples], ["id", "vector"])}
        media = np.stack([rows[_os.path.abspath(ex.path)] for ex in examples]) if len(rows) == len(examples) else None
        report = rank_report(sp, examples, media)
    except OmnibindError as exc:
        _fail(exc)
    root = _os.path.abspath(folder)
    for label, hits in searches:
        table = Table(title=f"search {label}", title_justify="left", box=None, pad_edge=False)
        for col, justify in (("#", "right"), ("modality", "left"), ("item", "left"), ("score", "right"), ("cosine", "right")):
            table.add_column(col, justify=justify)
        for rank, h in enumerate(hits, 1):
            name = _os.path.relpath(h.source, root) if h.source else h.id
            table.add_row(str(rank), h.modality, name, f"{h.score:.2f}", f"{h.cosine:.3f}")
        console.print(table)
    kinds = {h.kind for _, hits in searches for h in hits}
    console.print("[dim]score: " + "; ".join(SCORE_KINDS[k] for k in sorted(kinds)) + "[/]")
    if matrix:
        _print_caption_matrix(examples, report, sp.name)
    counts = {m: sum(ex.modality == m for ex in examples) for m in report.by_modality}
    for modality, (overall, within) in report.by_modality.items():
        console.print(f"{modality:>6}: {overall}/{counts[modality]} captions rank their own media first among all "
                      f"{len(examples)}; {within}/{counts[modality]} among the {counts[modality]} {modality} items")
    console.print(f"[bold]total: {report.hits}/{len(examples)} captions rank their own media first among all "
                  f"{len(examples)} (chance: {report.chance:.0f})[/]")
    console.print(f"[dim]try: omnibind search -c {collection} \"rain on a roof\"   ·   omnibind search -c {collection} "
                  f"--file {folder / 'orange.jpg'}[/]")


SCORE_KINDS = {
    "cosine": "raw cosine (too few items of some modality to calibrate; calibration starts at 20 per modality)",
    "z": "standard deviations above the query's typical item of that modality",
    "probability": "estimated probability of a match (the space's per-modality-pair calibration)",
}


def _print_caption_matrix(examples, report, space_name: str) -> None:
    table = Table(title=f"Each caption against all {len(examples)} media — space {space_name}")
    for col, justify in (("caption", "left"), ("its media", "left"), ("rank", "right"), ("score", "right"),
                         ("best match", "left"), ("score", "right")):
        table.add_column(col, justify=justify, overflow="fold")
    for i, ex in enumerate(examples):
        row = report.sims[i]
        best = int(np.argmax(row))
        rank = int((row > row[i]).sum()) + 1
        mark = "[bold green]1[/]" if rank == 1 else str(rank)
        table.add_row(ex.caption, f"{ex.modality} {ex.path.name}", mark, f"{row[i]:.3f}",
                      f"{examples[best].modality} {examples[best].path.name}", f"{row[best]:.3f}")
    console.print(table)


@app.command()
def bind(
    pairs: Path = typer.Argument(..., help="Pairs manifest (.jsonl/.csv/.tsv; columns a, b, optional weight, group)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the new space."),
    space: Optional[str] = SpaceOpt,
    tower: str = typer.Option("image", help="Which tower to train (the text anchor stays locked)."),
    head: str = typer.Option("residual", help="residual (bridge + zero-initialised correction), linear or mlp."),
    loss: str = typer.Option("infonce", help="infonce or siglip."),
    teacher: Optional[str] = typer.Option("bridge", help="Distil toward 'bridge' (the current head), a space, or 'none'."),
    distill_weight: float = typer.Option(0.5, help="Weight of the distillation loss."),
    matryoshka: str = typer.Option("", help="Prefix dims trained to work alone, e.g. 32,64,128,256,384."),
    hard_negatives: int = typer.Option(0, "--hard-negatives", help="Hard negatives per query, mined each epoch."),
    epochs: int = typer.Option(40, help="Maximum epochs (early stopping on held-out Recall@1)."),
    batch_size: int = typer.Option(256, help="Pairs per batch (no caption twice in a batch)."),
    lr: float = typer.Option(1e-3, help="AdamW learning rate."),
    val_fraction: float = typer.Option(0.2, help="Share of pair groups held out for early stopping."),
    seed: int = typer.Option(0, help="Seed: same seed, same result."),
    replay: Optional[Path] = typer.Option(None, help="Second manifest of pairs always trained on, never held out: "
                                          "general pairs mixed into a narrow bind so the space keeps what it knew."),
    nproc: int = typer.Option(1, "--nproc", min=1, help="Train in N processes on one global batch (torch.distributed: "
                              "gloo on CPU, nccl on GPUs); same result as 1 process."),
) -> None:
    """Bind a tower into the space from paired examples (LiT: the text anchor stays locked)."""
    import hashlib

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from omnibind.bind.pairs import read_manifest
    from omnibind.bind.trainer import BindConfig
    from omnibind.bind.trainer import bind as run_bind

    try:
        sp = _load(space)
        rows, bad = read_manifest(pairs)
        replay_rows, replay_bad = read_manifest(replay) if replay else ([], [])
        config = BindConfig(
            tower=tower, head=head, loss=loss, teacher=None if teacher in (None, "none") else teacher,
            distill_weight=distill_weight, matryoshka=tuple(int(d) for d in matryoshka.split(",") if d.strip()),
            hard_negatives=hard_negatives, epochs=epochs, batch_size=batch_size, lr=lr,
            val_fraction=val_fraction, seed=seed,
        )
        digest = hashlib.sha256(pairs.read_bytes() + (replay.read_bytes() if replay else b"")).hexdigest()
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=err) as bar:
            feats = bar.add_task("features", total=len(rows) + len(replay_rows), info="")
            train = bar.add_task("training", total=epochs, info="")
            if nproc > 1:
                bar.update(train, info=f"{nproc} processes (progress shown when they finish)")
            result = run_bind(
                sp, rows, config, manifest_hash=digest, replay=replay_rows, nproc=nproc,
                on_features=lambda n: bar.advance(feats, n),
                on_epoch=lambda r: bar.update(train, advance=1, info=f"loss {r['loss']:.3f} "
                                               f"held-out R@1 {r.get('val_R@1', float('nan')):.1f}"),
            )
            if nproc > 1:
                bar.update(train, completed=len(result.history))
        result.space.save(out)
    except (OmnibindError, ValueError) as exc:
        _fail(exc)
    for row in bad + result.skipped:  # result.skipped holds bad rows of both manifests, by line
        err.print(f"[yellow]skipped[/] {pairs}:{row}")
    for row in replay_bad:
        err.print(f"[yellow]skipped[/] {replay}:{row}")
    m = result.metrics
    console.print(f"bound {tower} on {m['train']} pairs ({m['replay']} replay, {m['held_out']} held out, "
                  f"{m['skipped'] + len(bad) + len(replay_bad)} skipped), "
                  f"best epoch {m['best_epoch']}")
    if m["held_out_trained"]:
        table = Table(title="held-out pairs (never trained on)")
        table.add_column("metric")
        table.add_column("before", justify="right")
        table.add_column("after", justify="right")
        for key in m["held_out_trained"]:
            table.add_row(key.removeprefix("val_"), f"{m['held_out_bridge'][key]:.1f}", f"{m['held_out_trained'][key]:.1f}")
        console.print(table)
    console.print(f"wrote {out}")


@app.command()
def merge(
    a: str = typer.Argument(..., help="Space A: folder or name (alpha=0 gives A)."),
    b: str = typer.Argument(..., help="Space B: folder or name, same structure as A (alpha=1 gives B)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the merged space (and the sweep's JSON and PNG)."),
    alpha: Optional[float] = typer.Option(None, help="Weight of B: heads = (1 - alpha) * A + alpha * B, in [0, 1]."),
    alphas: Optional[str] = typer.Option(None, help="Sweep these comma-separated alphas (e.g. 0,0.25,0.5,0.75,1) "
                                         "instead; needs --eval-general and --eval-domain."),
    eval_general: Optional[str] = typer.Option(None, help="Evaluation set A is good at (sweep), e.g. tux-test."),
    eval_domain: Optional[str] = typer.Option(None, help="Evaluation set B was tuned for (sweep), e.g. fashion-mnist-test."),
    limit: Optional[int] = typer.Option(None, help="First N items of each evaluation set (default: each set's own; "
                                        "Fashion-MNIST 2000)."),
    name: Optional[str] = typer.Option(None, help="Name of the merged space."),
) -> None:
    """Merge two spaces of the same structure by weight interpolation (WiSE-FT), or sweep alpha."""
    import time

    from omnibind import merge as mg

    if alphas is None and alpha is None:
        _fail(ValueError("give --alpha, or --alphas with --eval-general and --eval-domain"))
    sweep_alphas: list[float] = []
    if alphas is not None:
        try:
            sweep_alphas = [float(x) for x in alphas.split(",") if x.strip()]
        except ValueError:
            _fail(ValueError(f"--alphas must be comma-separated numbers, got {alphas!r}"))
        if not sweep_alphas or not eval_general or not eval_domain:
            _fail(ValueError("--alphas needs at least one alpha, --eval-general and --eval-domain"))
        for e in (eval_general, eval_domain):
            if e not in mg.EVALS:
                _fail(ValueError(f"unknown evaluation set {e!r}; known: {', '.join(mg.EVALS)}"))
    try:
        sa, sb = _load(a), _load(b)
        if alpha is not None:
            merged = mg.merge_spaces(sa, sb, alpha, name=name)
            merged.save(out)
            console.print(f"wrote {out}: space {merged.name}, {', '.join(merged.towers)} towers, "
                          f"alpha={merged.provenance['alpha']:g} (A {sa.name}, B {sb.name})")
        if not sweep_alphas:
            return
        kwargs = {} if limit is None else {"limit": limit}
        sets = {"general": eval_general, "domain": eval_domain}

        def evaluate(space) -> dict[str, float]:
            metrics: dict[str, float] = {}
            for set_name in dict.fromkeys(sets.values()):
                metrics.update({f"{set_name}/{k}": v for k, v in mg.EVALS[set_name](space, **kwargs).items()})
            return metrics

        def report(row: dict[str, float]) -> None:  # the headline (first) metric of each set
            heads = {k.split("/", 1)[0]: (k, v) for k, v in reversed(row.items()) if k != "alpha"}
            err.print(f"[dim]alpha {row['alpha']:g}: " + ", ".join(f"{k} {v:.2f}" for k, v in reversed(heads.values())))

        t0 = time.perf_counter()
        rows = mg.sweep(sa, sb, sweep_alphas, evaluate, progress=report)
    except (OmnibindError, ValueError) as exc:
        _fail(exc)
    # Each evaluator lists its headline metric first: domain on x, general on y (as in WiSE-FT).
    x_metric = next(k for k in rows[0] if k.startswith(f"{eval_domain}/"))
    y_metric = next(k for k in rows[0] if k.startswith(f"{eval_general}/"))
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "a": {"space": a, "name": sa.name, "heads_sha256": mg.heads_sha256(sa)},
        "b": {"space": b, "name": sb.name, "heads_sha256": mg.heads_sha256(sb)},
        "general": eval_general, "domain": eval_domain, "limit": limit,
        "x_metric": x_metric, "y_metric": y_metric, "rows": rows,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (out / "merge_sweep.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    png = mg.plot_tradeoff(rows, x_metric, y_metric, out / "merge_tradeoff.png",
                           f"Merging {sa.name} (α=0) into {sb.name} (α=1)",
                           x_label=f"domain: {x_metric}", y_label=f"general: {y_metric}")
    table = Table(title=f"merge sweep: {sa.name} (alpha=0) -> {sb.name} (alpha=1)")
    for col in rows[0]:
        table.add_column(col.replace("/", "\n"), justify="right")
    for row in rows:
        table.add_row(*(f"{v:g}" if k == "alpha" else f"{v:.2f}" for k, v in row.items()))
    console.print(table)
    console.print(f"wrote {out / 'merge_sweep.json'} and {png}")


def _set_home(home: Optional[Path]) -> None:
    if home is not None:
        os.environ["OMNIBIND_HOME"] = str(home.expanduser().resolve())


@app.command()
def ingest(
    folder: str = typer.Argument(..., help="Folder (walked recursively) or a single file; with --engine ray also "
                                 "a glob, a .parquet (uri column) or .uris manifest, or s3://... URIs."),
    collection: str = CollectionOpt,
    space: Optional[str] = typer.Option(None, "--space", "-s", help="Space for a new collection (default: the "
                                        "collection's own, or the offline default)."),
    prune: bool = typer.Option(False, "--prune", help="Remove items whose files under FOLDER are gone."),
    reembed: bool = typer.Option(False, "--reembed", help="Re-embed every item with --space (resumable)."),
    batch_size: int = typer.Option(32, help="Files per batch (one commit per batch)."),
    index_dim: Optional[int] = typer.Option(None, help="New collection: index Matryoshka prefixes of this many "
                                            "dims (results are re-scored with full vectors)."),
    log: Optional[Path] = typer.Option(None, help="Failure log (default: <collection>/logs/ingest-TIME.log)."),
    exclude: list[str] = typer.Option([], "--exclude", "-x", help="Skip files matching this glob, by name or by "
                                      "path under FOLDER (repeatable), e.g. -x '*.tsv' -x 'drafts/*'."),
    engine: str = typer.Option("local", help="local, or ray: decode + embed on a Ray cluster's actors."),
    address: Optional[str] = typer.Option(None, help="Ray cluster: auto (a running one), ray://HOST:10001; "
                                          "default: a running cluster if any, else a local one."),
    actors: int = typer.Option(2, help="Ray actors (one space loaded per actor)."),
    home: Optional[Path] = HomeOpt,
) -> None:
    """Embed every file under FOLDER into a collection: incremental, resumable, bad files reported."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from omnibind.collection import Collection
    from omnibind.ingest import ingest as run_ingest

    _set_home(home)
    _quiet_libraries()
    try:
        coll = Collection.open(collection, space=space, reembed=reembed, index_dim=index_dim)
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                      console=err) as bar:
            if reembed and "pending_space" in coll.meta:
                task = bar.add_task("re-embedding", total=len(coll), rate="")
                coll.reembed(progress=lambda n: bar.advance(task, n),
                             on_error=lambda src, why: err.print(f"[red]dropped[/] {src}: {why}"))
            task = bar.add_task("ingesting", total=None, rate="")
            started = __import__("time").perf_counter()

            def tick(done: int, total: int) -> None:
                rate = done / max(__import__("time").perf_counter() - started, 1e-9)
                bar.update(task, completed=done, total=total, rate=f"{rate:.1f} files/s")

            report = run_ingest(coll, folder, engine=engine, batch_size=batch_size, prune=prune, progress=tick, log=log,
                                exclude=exclude, address=address, actors=actors)
    except (OmnibindError, ValueError) as exc:
        _fail(exc)
    for path, reason in report.failed:
        err.print(f"[red]failed[/] {path}: {reason}")
    s = report.summary()
    console.print(f"{coll.name}: {s['added']} added, {s['updated']} updated, {s['unchanged']} unchanged, "
                  f"{s['removed']} removed, {s['failed']} failed of {s['seen']} files in {s['seconds']:.1f} s"
                  + (f"; failures logged to {s['log']}" if s["log"] else ""))


@app.command()
def search(
    query: Optional[str] = typer.Argument(None, help="Text query (or use --file)."),
    file: Optional[Path] = typer.Option(None, "--file", "-f", help="Query by a file of any modality."),
    collection: str = CollectionOpt,
    k: int = typer.Option(10, "-k", help="Number of results."),
    modality: Optional[str] = typer.Option(None, help="Only these item modalities, e.g. image,audio."),
    where: Optional[str] = typer.Option(None, help="SQL filter on items, e.g. \"size > 10000\"."),
    raw: bool = typer.Option(False, "--raw", help="Rank by raw cosine instead of calibrated scores."),
    exact: bool = typer.Option(False, "--exact", help="Flat scan even when an ANN index exists."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of results, best first."),
    home: Optional[Path] = HomeOpt,
) -> None:
    """Search a collection with text or a file: any modality finds any modality."""
    from omnibind.collection import Collection
    from omnibind.search import search as run_search

    _set_home(home)
    if (query is None) == (file is None):
        _fail(ValueError("give a text QUERY or --file, not both"))
    _quiet_libraries()
    try:
        coll = Collection.open(collection, create=False)
        hits = run_search(coll, file.expanduser() if file else query, k=k, modality=modality, where=where,
                          calibrated=not raw, exact=True if exact else None)
    except (OmnibindError, ValueError) as exc:
        _fail(exc)
    if as_json:
        print(json.dumps([h.to_dict() for h in hits], indent=2))
        return
    table = Table(title=f"{coll.name}: {query if query is not None else file}")
    for col, justify in (("#", "right"), ("score", "right"), ("cosine", "right"), ("modality", "left"), ("source", "left")):
        table.add_column(col, justify=justify)
    for n, h in enumerate(hits, 1):
        shown = h.source or h.id
        if h.modality == "text" and h.fields.get("text"):
            shown = f"{shown}: {h.fields['text'][:60]!r}" if h.source and not h.source.startswith("<") else repr(h.fields["text"][:80])
        table.add_row(str(n), f"{h.score:.3f}" if h.kind == "probability" else f"{h.score:.2f}", f"{h.cosine:.3f}", h.modality, shown)
    console.print(table)
    if hits:
        console.print(f"[dim]score: {SCORE_KINDS[hits[0].kind]}[/]")


@app.command()
def collections(
    drop: Optional[str] = typer.Option(None, "--drop", help="Delete this collection."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    home: Optional[Path] = HomeOpt,
) -> None:
    """List collections with their sizes and spaces, or drop one."""
    from omnibind.collection import Collection

    _set_home(home)
    try:
        if drop:
            console.print(f"dropped {Collection.drop(drop)}")
            return
        rows = Collection.list()
    except (OmnibindError, ValueError) as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="collections")
    for col in ("name", "items", "modalities", "space", "index", "path"):
        table.add_column(col)
    for r in rows:
        mods = ", ".join(f"{m} {n}" for m, n in r.get("modalities", {}).items())
        table.add_row(r["name"], str(r.get("items", "?")), mods or r.get("error", ""), str(r.get("space", "")),
                      str(r.get("index") or "exact"), r["path"])
    console.print(table)


@app.command()
def classify(
    files: list[str] = typer.Argument(..., help="Files (any modality) or texts to classify."),
    labels: str = typer.Option(..., "--labels", "-l", help="Comma-separated labels, e.g. cat,dog,rain."),
    space: Optional[str] = SpaceOpt,
    top: int = typer.Option(3, help="Labels shown per input."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Zero-shot classification of any modality with prompt-template ensembles."""
    from omnibind.classify import classify as run_classify
    from omnibind.inputs import to_input

    try:
        sp = _load(space)
        names = [x.strip() for x in labels.split(",")]
        good, failed = [], []
        for arg in files:
            try:
                good.append(to_input(_as_item(arg), sp.limits))
            except InputError as exc:
                failed.append(exc)
        results = run_classify(sp, good, names) if good else []
    except (OmnibindError, ValueError) as exc:
        _fail(exc)
    for exc in failed:
        err.print(f"[red]failed[/] {exc}")
    if as_json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        table = Table(title="zero-shot classification")
        for col in ("input", "modality", "label", "top labels"):
            table.add_column(col)
        for r in results:
            table.add_row(r.source, r.modality, r.label, ", ".join(f"{name} {p:.2f}" for name, p in r.ranked()[:top]))
        console.print(table)
    if failed:
        raise typer.Exit(1)


@app.command("eval")
def eval_(
    space: list[str] = typer.Option(["default"], "--space", "-s", help="Space name or folder; repeat to compare side by side."),
    task: str = typer.Option("all", help="all, or comma-separated: tux-images, tux-sounds, asterisk-speech, fashion-mnist, sts-b, "
                      "pairs:MANIFEST (your pairs), folder:DIR (your labelled folder)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report folder (default: reports/<UTC date-time>/)."),
    limit: Optional[int] = typer.Option(None, help="Only the first N items of each set (a smoke run; not comparable)."),
    cache: Optional[Path] = typer.Option(None, help="Feature cache folder (default: $OMNIBIND_CACHE/features)."),
    readme: Optional[Path] = typer.Option(None, help="Also replace the results table between this file's "
                                          "'<!-- omnibind eval: begin/end -->' markers."),
) -> None:
    """Evaluate spaces on real held-out data: Markdown + JSON report with plots, spaces side by side."""
    import datetime as dt
    import shlex

    from omnibind.evaluate import report as rep
    from omnibind.evaluate.suite import task_names

    _quiet_libraries()
    folder = out or Path("reports") / dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
    command = "omnibind eval " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 1 and sys.argv[1] == "eval" else None
    try:
        names = task_names(task)
        with console.status("evaluating") as status:
            report = rep.run(space, names, limit=limit, cache_root=cache, command=command,
                             progress=lambda what: status.update(f"evaluating {what}"))
        paths = rep.write(report, folder)
        if readme:
            rep.update_readme(readme, report, folder)
    except (OmnibindError, ValueError) as exc:
        _fail(exc)
    console.print(rep.results_table(report))
    console.print(f"report: {paths['markdown']} (+ report.json, {len(paths) - 2} plots) in {report['seconds']:.0f} s"
                  + (f"; table updated in {readme}" if readme else ""))


@app.command()
def serve(
    collection: str = CollectionOpt,
    host: str = typer.Option("127.0.0.1", help="Interface to bind (127.0.0.1: this machine only)."),
    port: int = typer.Option(8000, help="TCP port."),
    space: Optional[str] = typer.Option(None, "--space", "-s", help="Space for a new collection."),
    root: list[Path] = typer.Option([], "--root", help="Folder the ingest endpoint may read (repeatable); "
                                    "none: ingest over HTTP is disabled."),
    max_upload_mb: int = typer.Option(50, help="Largest request body, in MiB."),
    home: Optional[Path] = HomeOpt,
) -> None:
    """Serve the HTTP API and the search page for a collection (write endpoints need the token)."""
    import uvicorn

    from omnibind.server import ServerSettings, create_app, load_token

    _set_home(home)
    _quiet_libraries()
    settings = ServerSettings(collection=collection, space=space, roots=list(root),
                              max_upload_bytes=max_upload_mb * 1024 * 1024)
    try:
        token, created = load_token()
        app_ = create_app(settings, token)
    except (OmnibindError, ValueError) as exc:
        _fail(exc)
    if created:
        err.print(f"[bold]write token (new, saved for next time):[/] {token}")
    else:
        err.print("write token: $OMNIBIND_TOKEN or the saved one (omnibind_home()/server-token)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]listening on {host}: anyone who can reach it can search; writes still need the token[/]")
    err.print(f"omnibind: collection {app_.state.collection.name!r} ({len(app_.state.collection)} items) on "
              f"http://{host}:{port}/  (API docs: /docs)")
    uvicorn.run(app_, host=host, port=port, log_level="warning")


def main() -> None:  # pragma: no cover - entry point
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
