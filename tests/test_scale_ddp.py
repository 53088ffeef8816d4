"""Data-parallel binding: 2 CPU processes (gloo) give the loss, gradients and trained head of
1 process on the same global batch."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from omnibind.bind import losses as L
from omnibind.bind.pairs import Pair
from omnibind.bind.trainer import BindConfig, bind
from omnibind.scale import ddp

DIM, IN, N = 16, 12, 10  # N = 10 over 2 processes, and 7 (uneven slices) below


def _problem(n: int):
    torch.manual_seed(0)
    head = torch.nn.Linear(IN, DIM)
    x = torch.randn(n, IN)
    texts = torch.nn.functional.normalize(torch.randn(n, DIM), dim=-1)
    return head, x, texts


def _loss_and_grads(head, x, texts, embed):
    loss_fn = L.InfoNCE(init_temperature=0.07)
    media = embed(head, x)
    loss = loss_fn(L.BatchOutputs(media=media, texts=texts))
    loss.backward()
    return float(loss.detach()), {k: v.grad.clone() for k, v in head.named_parameters()}


def _worker(rank: int, rendezvous: str, n: int, out: str) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    try:
        head, x, texts = _problem(n)

        def embed(h, xs):
            idx = ddp.local_slice(np.arange(n))
            local = torch.nn.functional.normalize(h(xs[idx]), dim=-1)
            return ddp.gather_with_grad(local, n)

        loss, _ = _loss_and_grads(head, x, texts, embed)
        ddp.average_gradients(list(head.parameters()))
        torch.save({"loss": loss, "grads": {k: v.grad for k, v in head.named_parameters()}}, f"{out}.{rank}")
    finally:
        dist.barrier()  # nobody tears gloo down while a peer still talks to it
        dist.destroy_process_group()
    ddp.exit_worker()


@pytest.mark.parametrize("n", [N, 7])
def test_two_process_loss_and_gradients_equal_one_process(tmp_path, n):
    head, x, texts = _problem(n)
    loss1, grads1 = _loss_and_grads(head, x, texts, lambda h, xs: torch.nn.functional.normalize(h(xs), dim=-1))
    mp.spawn(_worker, args=(str(tmp_path / "rendezvous"), n, str(tmp_path / "r")), nprocs=2, join=True)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"r.{rank}")
        assert got["loss"] == pytest.approx(loss1, abs=1e-6)
        for k, g in grads1.items():
            torch.testing.assert_close(got["grads"][k], g, atol=1e-6, rtol=1e-5)
    assert any(g.abs().sum() > 0 for g in grads1.values())  # the check compares real gradients


class Spread(L.BindLoss):
    """A user-defined term (module level: the worker processes unpickle it by reference)."""

    name = "spread"

    def forward(self, batch: L.BatchOutputs) -> torch.Tensor:
        media = torch.nn.functional.normalize(batch.media, dim=-1)
        return (media @ media.T).pow(2).mean()


def test_bind_with_two_processes_equals_one(tmp_path):
    """The real binder end to end, with the config's loss terms and a user-defined one: same
    held-out split, same batches, same trained head."""
    from PIL import Image

    from omnibind.space import load_space

    space = load_space("bridge")  # fresh: the worker processes load it fresh from disk too
    colours = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"]
    pairs = []
    for i, c in enumerate(colours):
        for j in range(3):
            path = tmp_path / f"{c}{j}.png"
            Image.new("RGB", (40 + 8 * j, 40), c).save(path)
            pairs.append(Pair(f"a {c} square", path, group=f"{c}"))
    config = BindConfig(head="linear", teacher=None, epochs=3, batch_size=8, val_fraction=0.25, seed=3)
    losses = [*config.default_losses(space.dim), Spread(weight=0.1)]
    one = bind(space, pairs, config, cache_root=tmp_path / "cache", losses=losses)
    two = bind(space, pairs, config, cache_root=tmp_path / "cache", nproc=2, losses=losses)
    assert two.metrics["train"] == one.metrics["train"] and two.metrics["held_out"] == one.metrics["held_out"]
    for key in ("loss", "loss_infonce", "loss_spread"):
        assert [round(h[key], 5) for h in two.history] == [round(h[key], 5) for h in one.history]
    s1, s2 = one.space.towers["image"].head.state_dict(), two.space.towers["image"].head.state_dict()
    for k in s1:
        torch.testing.assert_close(s2[k], s1[k], atol=5e-5, rtol=1e-3)  # AdamW magnifies summation-order noise
    assert len(one.history) == 3 and one.history[-1]["loss"] < one.history[0]["loss"]  # it did train


def _square_pairs(folder: Path) -> Path:
    """pairs.jsonl: six coloured squares with their captions, then a pair whose image is empty (line 7)."""
    import json

    from PIL import Image

    lines = []
    for i, c in enumerate(["red", "green", "blue", "yellow", "purple", "orange"]):
        Image.new("RGB", (48, 48), c).save(folder / f"{i}.png")
        lines.append(json.dumps({"a": f"a {c} square", "b": f"{i}.png"}))
    (folder / "bad.png").write_bytes(b"")
    lines.append(json.dumps({"a": "broken", "b": "bad.png"}))
    (folder / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "pairs.jsonl"


def test_cli_bind_nproc(tmp_path):
    import json

    from typer.testing import CliRunner

    from omnibind.cli import app

    _square_pairs(tmp_path)
    out = tmp_path / "bound"
    result = CliRunner().invoke(app, ["bind", str(tmp_path / "pairs.jsonl"), "--space", "bridge", "--out", str(out),
                                      "--head", "linear", "--teacher", "none", "--epochs", "2", "--val-fraction", "0",
                                      "--nproc", "2"])
    assert result.exit_code == 0, result.output
    assert "bound image on 6 pairs" in result.output and "1 skipped" in result.output and "bad.png" in result.output
    assert json.loads((out / "space.json").read_text())["name"] == "bridge+bind-image"


def test_ddp_does_not_import_the_binder():
    """The launcher runs a function it is handed: scale/ddp.py imports no omnibind module but the
    leaf omnibind.device (imports inside functions included), so binder and launcher do not import
    each other."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(ddp))
    imported = [n.module if isinstance(n, ast.ImportFrom) else a.name
                for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in n.names]
    assert not [m for m in imported if m and m.startswith("omnibind") and m != "omnibind.device"], imported


def test_bind_manifest_with_two_processes_names_the_manifest_of_skipped_rows(tmp_path):
    from omnibind.bind.pairs import manifest_sha256
    from omnibind.bind.trainer import bind_manifest
    from omnibind.space import load_space

    _square_pairs(tmp_path)
    config = BindConfig(head="linear", teacher=None, epochs=2, val_fraction=0.0)
    result = bind_manifest(load_space("bridge"), tmp_path / "pairs.jsonl", config, cache_root=tmp_path / "cache",
                           nproc=2)
    assert [(b.line, b.manifest) for b in result.skipped] == [(7, str(tmp_path / "pairs.jsonl"))]
    assert result.space.provenance["bind_image"]["manifest_sha256"] == manifest_sha256(tmp_path / "pairs.jsonl")
    assert result.metrics["train"] == 6 and len(result.history) == 2
