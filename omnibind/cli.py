"""The `omnibind` command line (Typer + Rich): each command parses its options, calls one library
function and prints the result (omnibind/render.py). Library code raises; this module prints."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console

from omnibind import render
from omnibind.errors import InputError, OmnibindError
from omnibind.inputs import Text, from_argument
from omnibind.cli_options import HOME, CollectionOpt, DeviceOpt, Flag, HomeOpt, PrecisionOpt, SpaceOpt
from omnibind.spaceinfo import describe, load_space  # load_space imports torch on first call
from omnibind.cli_compose import compose_command  # `omnibind compose` (issue 17): its own module
from omnibind.cli_search import search_command  # `omnibind search`: options for filters, modes, rerank
from omnibind.cli_export import export_command  # `omnibind export`: Parquet or NumPy files of a collection
from omnibind.cli_serve import serve_command  # `omnibind serve`: its own module
from omnibind.cli_duplicates import duplicates_command  # `omnibind duplicates`: exact and near copies

app = typer.Typer(help="omnibind: text, images, audio and video in one embedding space, offline by default.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console()
err = Console(stderr=True)
app.command("compose")(compose_command)



@app.callback()
def setup(home: Optional[Path] = HomeOpt, device: Optional[str] = DeviceOpt, precision: Optional[str] = PrecisionOpt) -> None:
    """Set the global --home (--device and --precision set themselves); keep library chatter quiet."""
    HOME["home"] = home.expanduser().resolve() if home else None
    render.quiet_libraries(err)


def _home(home: Optional[Path]) -> Optional[Path]:  # the command's --home, else the global one, else the default
    return home.expanduser().resolve() if home else HOME["home"]


def _fail(exc: Exception) -> None:
    err.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
    raise typer.Exit(1)


@app.command()
def embed(
    items: list[str] = typer.Argument(None, help="Files or texts to embed (an existing path is a file)."),
    text: list[str] = typer.Option([], "--text", "-t", help="Text to embed even if it looks like a path (repeatable)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the vectors to this .npy file."),
    dim: Optional[int] = typer.Option(None, help="Keep only the first DIM dimensions (Matryoshka)."),
    batch_size: int = typer.Option(32, help="Inputs per batch."),
    skip_errors: bool = Flag("--skip-errors", help="Report bad inputs and embed the rest."),
    space: Optional[str] = SpaceOpt,
) -> None:
    """Embed files and texts into the shared space."""
    if not items and not text:
        _fail(ValueError("nothing to embed: give files or texts, or --text"))
    try:
        objs = [from_argument(x) for x in (items or [])] + [Text(t) for t in text]
        sp = load_space(space)
        result = sp.embed(objs, batch_size=batch_size, dim=dim, show_progress=len(objs) > 8, on_error="skip")
        if result.errors and not skip_errors:
            raise result.errors[0]
    except OmnibindError as exc:
        _fail(exc)
    console.print(render.embed_table(objs, result.indices, result.vectors, sp.name))
    for e in result.errors:
        err.print(f"[red]skipped[/] #{e.index} {e.source}: {e.reason}")
    if out is not None:
        np.save(out, result.vectors)
        console.print(f"wrote {out} ({result.vectors.shape[0]} x {result.vectors.shape[1]} float32)")
    if result.errors:
        raise typer.Exit(2)


@app.command()
def similarity(
    a: str = typer.Argument(..., help="File or text."),
    b: str = typer.Argument(..., help="File or text."),
    space: Optional[str] = SpaceOpt,
) -> None:
    """Cosine similarity of two inputs of any modality."""
    try:
        score = float(load_space(space).similarity([from_argument(a)], [from_argument(b)])[0, 0])
    except OmnibindError as exc:
        _fail(exc)
    console.print(f"{score:.4f}")


@app.command()
def info(
    space: Optional[str] = SpaceOpt,
    as_json: bool = Flag("--json", help="Print the full description as JSON."),
) -> None:
    """The space's towers, dimensions, and where each backbone's weights come from."""
    try:  # the table needs no backbone (omnibind/spaceinfo.py); --json describes the loaded ones
        details = (None if as_json else describe(space)) or load_space(space).info()
    except OmnibindError as exc:
        _fail(exc)
    console.print_json(json.dumps(details, default=str)) if as_json else render.print_info(console, details)


@app.command()
def demo(
    folder: Path = typer.Option(Path("examples/media"), help="Where the example media are (built from Debian packages "
                                "on first use)."),
    space: Optional[str] = SpaceOpt,
    collection: str = typer.Option("demo", "--collection", "-c", help="Collection the examples are ingested into."),
    k: int = typer.Option(5, "-k", help="Results per search."),
    matrix: bool = Flag("--matrix", help="Also print every caption against all media."),
    home: Optional[Path] = HomeOpt,
) -> None:
    """Ingest the example media into a collection, search it across modalities, rank captions."""
    from omnibind.demo import run_demo

    try:
        sp = load_space(space)
        with console.status(f"ingesting {folder} into collection {collection!r}"):
            run = run_demo(sp, folder, collection, k, _home(home))
    except OmnibindError as exc:
        _fail(exc)
    render.failures(err, run.ingest.failed)
    render.print_demo(console, run, folder, collection, matrix, sp.name)


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
    from omnibind.bind.trainer import BindConfig, bind_manifest

    try:
        config = BindConfig(
            tower=tower, head=head, loss=loss, teacher=None if teacher in (None, "none") else teacher,
            distill_weight=distill_weight, matryoshka=tuple(int(d) for d in matryoshka.split(",") if d.strip()),
            hard_negatives=hard_negatives, epochs=epochs, batch_size=batch_size, lr=lr,
            val_fraction=val_fraction, seed=seed,
        )
        sp = load_space(space)
        with render.progress_bar(err, "info") as bar:
            feats = bar.add_task("features", total=None, info="")
            train = bar.add_task("training", total=epochs, info=f"{nproc} processes" if nproc > 1 else "")
            result = bind_manifest(
                sp, pairs, config, replay, nproc=nproc, on_read=lambda n: bar.update(feats, total=n),
                on_features=lambda n: bar.advance(feats, n),
                on_epoch=lambda r: bar.update(train, advance=1, info=f"loss {r['loss']:.3f} "
                                               f"held-out R@1 {r.get('val_R@1', float('nan')):.1f}"),
            )
            bar.update(train, completed=len(result.history))
        result.space.save(out)
    except (OmnibindError, ValueError) as exc:
        _fail(exc)
    render.print_bind(console, err, result, tower, out)


@app.command()
def merge(
    a: str = typer.Argument(..., help="Space A: folder or name (alpha=0 gives A)."),
    b: str = typer.Argument(..., help="Space B: folder or name, same structure as A (alpha=1 gives B)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the merged space (and the sweep's JSON and PNG)."),
    alpha: Optional[float] = typer.Option(None, help="Weight of B: heads = (1 - alpha) * A + alpha * B, in [0, 1]."),
    alphas: Optional[str] = typer.Option(None, help="Sweep these comma-separated alphas (e.g. 0,0.25,0.5,0.75,1) "
                                         "instead; needs --eval-general and --eval-domain."),
    eval_general: Optional[str] = typer.Option(None, help="Task A is good at (sweep): any `omnibind eval` task, "
                                               "e.g. tux-images."),
    eval_domain: Optional[str] = typer.Option(None, help="Task B was tuned for (sweep), e.g. fashion-mnist."),
    limit: Optional[int] = typer.Option(None, help="First N items of each task (default: all, as omnibind eval)."),
    cache: Optional[Path] = typer.Option(None, help="Feature cache folder (default: $OMNIBIND_CACHE/features)."),
    name: Optional[str] = typer.Option(None, help="Name of the merged space."),
    pairs: Optional[Path] = typer.Option(None, help="Held-out pairs (a bind manifest) to refit calibration on."),
) -> None:
    """Merge two spaces of the same structure by weight interpolation (WiSE-FT), or sweep alpha."""
    from omnibind import merge as mg
    if alphas is None and alpha is None:
        _fail(ValueError("give --alpha, or --alphas with --eval-general and --eval-domain"))
    try:
        sweep_alphas = [float(x) for x in alphas.split(",") if x.strip()] if alphas is not None else []
        sa, sb = load_space(a), load_space(b)
        if alpha is not None:
            merged = mg.merge_spaces(sa, sb, alpha, name=name, pairs=pairs)
            merged.save(out)
            console.print(f"wrote {out}: space {merged.name}, {', '.join(merged.towers)} towers, "
                          f"alpha={merged.provenance['alpha']:g} (A {sa.name}, B {sb.name}); {merged.provenance['calibration']}")
        if alphas is None:
            return
        result = mg.sweep(sa, sb, sweep_alphas, eval_general or "", eval_domain or "", out, limit=limit,
                          cache_root=cache, refs=(a, b), progress=lambda row: err.print(f"[dim]alpha {row['alpha']:g} done[/]"))
    except (OmnibindError, ValueError) as exc:
        _fail(exc)
    console.print(render.sweep_table(result.rows, sa.name, sb.name))
    console.print(f"wrote {result.files['json']} and {result.files['png']}", soft_wrap=True)


@app.command()
def ingest(
    folder: str = typer.Argument(..., help="Folder (walked recursively), a single file, a glob, a .parquet (uri "
                                 "column) or .uris manifest, or s3://... URIs."),
    collection: str = CollectionOpt,
    space: Optional[str] = typer.Option(None, "--space", "-s", help="Space for a new collection (default: the "
                                        "collection's own, or the offline default)."),
    keep_missing: bool = Flag("--keep-missing", help="Keep items whose files under FOLDER are gone "
                                      "(default: removed and reported; moved files reported as renamed)."),
    reembed: bool = Flag("--reembed", help="Re-embed every item with --space (resumable)."),
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
    links: str = typer.Option("inside", help="Symbolic links: inside (followed if they stay in FOLDER), all, none."),
    views: Optional[str] = typer.Option(None, help="Views run on each item, e.g. speech,ocr,pages,chunks,windows; "
                                        "'default' or 'none' (default: the collection's; new: all)."),
    tag: list[str] = typer.Option([], "--tag", help="Tag every item under FOLDER (repeatable); a file's "
                                  "sidecar FILE.json can add its own: {\"tags\": [...], \"note\": \"...\"}."),
    home: Optional[Path] = HomeOpt,
) -> None:
    """Embed every file under FOLDER into a collection: incremental, resumable, bad files reported."""
    from omnibind.collection import Collection
    from omnibind.ingest import ingest as run_ingest

    try:
        coll = Collection.open(collection, space=space, reembed=reembed, index_dim=index_dim, home=_home(home))
        coll.writer.on_wait = lambda who: err.print(f"waiting for the other writer of {coll.name} ({who})")
        with render.progress_bar(err) as bar:
            redo = bar.add_task("re-embedding", total=len(coll), visible="pending_space" in coll.meta)
            task = bar.add_task("ingesting", total=None)
            report = run_ingest(coll, folder, engine=engine, batch_size=batch_size, prune=not keep_missing, log=log,
                                exclude=exclude, address=address, actors=actors, links=links, views=views, tags=tag,
                                progress=lambda done, total: bar.update(task, completed=done, total=total),
                                reembed_progress=lambda n: bar.advance(redo, n))
    except (OmnibindError, ValueError) as exc:
        _fail(exc)
    render.failures(err, report.failed)
    console.print(render.ingest_summary(coll.name, report.summary(), report.renamed))


@app.command()
def collections(
    drop: Optional[str] = typer.Option(None, "--drop", help="Delete this collection (asks first; --yes does not)."),
    yes: bool = Flag("--yes", "-y", help="Do not ask before deleting."),
    repair: Optional[str] = typer.Option(None, "--repair", help="Keep one row per item in this collection "
                                         "(tables written by concurrent ingests of omnibind < 0.2 hold rows twice)."),
    as_json: bool = Flag("--json", help="Print JSON."),
    home: Optional[Path] = HomeOpt,
) -> None:
    """List collections with their sizes and spaces, drop one, or repair one."""
    from omnibind.catalog import list_collections

    try:
        if drop and not yes and not typer.confirm(f"delete collection {drop} and every file in it?", err=True):
            raise typer.Exit(1)
        if drop or repair:
            from omnibind.collection import Collection
            done = Collection.drop(drop, home=_home(home)) if drop else \
                f"{repair}: {Collection.open(repair, create=False, home=_home(home)).repair()} duplicate rows removed"
            return console.print(f"dropped {done}" if drop else done)
        rows = list_collections(_home(home))  # cached stats: no LanceDB unless a table changed
    except (OmnibindError, ValueError) as exc:
        _fail(exc)
    print(json.dumps(rows, indent=2)) if as_json else console.print(render.collections_table(rows))


@app.command()
def classify(
    files: list[str] = typer.Argument(..., help="Files (any modality) or texts to classify."),
    labels: str = typer.Option(..., "--labels", "-l", help="Comma-separated labels, e.g. cat,dog,rain."),
    space: Optional[str] = SpaceOpt,
    top: int = typer.Option(3, help="Labels shown per input."),
    as_json: bool = Flag("--json", help="Print JSON."),
) -> None:
    """Zero-shot classification of any modality with prompt-template ensembles."""
    from omnibind.classify import classify as run_classify

    failed: list[InputError] = []
    try:
        results = run_classify(load_space(space), [from_argument(f) for f in files], labels.split(","), errors=failed)
    except (OmnibindError, ValueError) as exc:
        _fail(exc)
    for exc in failed:
        err.print(f"[red]failed[/] {exc}")
    if as_json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        console.print(render.classify_table(results, top))
    if failed:
        raise typer.Exit(1)


@app.command("eval")
def eval_(
    space: list[str] = typer.Option(["default"], "--space", "-s", help="Space name or folder; repeat to compare side by side."),
    task: str = typer.Option("all", help="all, or comma-separated: tux-images, tux-sounds, asterisk-speech, fashion-mnist, sts-b, ood-wallpapers, ood-opencv-photos, ood-scratch-backdrops, ood-sounds, ood-instruments, "
                      "pairs:MANIFEST (your pairs), folder:DIR (your labelled folder)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report folder (default: reports/<UTC date-time>/)."),
    limit: Optional[int] = typer.Option(None, help="Only the first N items of each set (a smoke run; not comparable)."),
    cache: Optional[Path] = typer.Option(None, help="Feature cache folder (default: $OMNIBIND_CACHE/features)."),
    readme: Optional[Path] = typer.Option(None, help="Also replace the results table between this file's "
                                          "'<!-- omnibind eval: begin/end -->' markers."),
) -> None:
    """Evaluate spaces on real held-out data: Markdown + JSON report with plots, spaces side by side."""
    import shlex

    from omnibind.evaluate import report as rep

    command = "omnibind eval " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["eval"] else None
    try:
        with console.status("evaluating") as status:
            report, paths = rep.evaluate(space, task, out, limit=limit, cache_root=cache, command=command, readme=readme,
                                         progress=lambda what: status.update(f"evaluating {what}"))
    except (OmnibindError, ValueError) as exc:
        _fail(exc)
    console.print(rep.results_table(report))
    console.print(f"report: {paths['markdown']} (+ report.json, {len(paths) - 2} plots) in {report['seconds']:.0f} s"
                  + (f"; table updated in {readme}" if readme else ""))


app.command("search")(search_command)  # after ingest, as a user meets them
app.command("duplicates")(duplicates_command)
app.command("export")(export_command)
app.command("serve")(serve_command)  # registered last: listed last in --help, as before
