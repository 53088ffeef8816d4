"""Data-parallel binding: N processes (gloo on CPU, nccl on GPU), one global contrastive batch.

On GPUs (nccl) each rank owns one device (`torch.cuda.set_device(local_rank)`), and the
collectives move their tensors to that device and back, so a rank whose head trains on the CPU
(cached features; a 384-d head is cheap) still talks nccl correctly. The GPU path has not yet
been run on a GPU machine (docs/scale.md); gloo on CPU is what the tests run.

Each process embeds its slice of every batch; `gather_with_grad` concatenates the slices of all
processes *with* their autograd history (open_clip's `gather_with_grad`), so every process
computes the loss over the global batch, negatives from every process included. The backward
pass of the all-gather sums each slice's gradient over processes; `average_gradients` then
averages parameter gradients over processes (what DDP's reducer does, done explicitly because
the binder accumulates several caption-disjoint sub-batches into one optimiser step, which DDP's
one-forward-one-backward bookkeeping does not allow). The result equals single-process training
on the same global batch, up to float summation order (tests/test_scale_ddp.py).

`bind(..., nproc=N)` (CLI: `omnibind bind --nproc N`) hands `launch` the function each worker
runs (the binder's, passed by reference: this module knows nothing of the binder, so the two do
not import each other); under `torchrun`, `init_from_env()` joins the process group instead.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


def active() -> bool:
    """Whether this process is one of several binding together."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def local_slice(idx: np.ndarray) -> np.ndarray:
    """This process's contiguous share of a batch (slices in rank order rebuild the batch)."""
    return np.array_split(np.asarray(idx), world())[rank()]


def gather_with_grad(local: torch.Tensor, total: int) -> torch.Tensor:
    """All processes' rows, in rank order, keeping autograd through every slice. Slices may differ
    in length by one (`np.array_split`); they are padded to equal size for the collective."""
    import warnings

    from torch.distributed.nn.functional import all_gather  # autograd-aware (deprecated name, same op)

    sizes = [len(part) for part in np.array_split(np.arange(total), world())]
    pad = max(sizes) - local.shape[0]
    padded = torch.cat([local, local.new_zeros((pad, *local.shape[1:]))]) if pad else local
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        parts = all_gather(padded.to(comm_device()))  # .to() keeps autograd: grads come back
    return torch.cat([p[:n].to(local.device) for p, n in zip(parts, sizes)])


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Mean of each parameter's gradient over processes (one all-reduce per tensor)."""
    n = world()
    for p in params:
        if p.grad is None:  # this process's slice did not reach p: it still joins the collective
            p.grad = torch.zeros_like(p)
        grad = p.grad.to(comm_device())
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        p.grad.copy_(grad / n)


def barrier() -> None:
    if active():
        dist.barrier()


def comm_device() -> torch.device:
    """Where collectives need their tensors: this rank's GPU under nccl, else the CPU."""
    if active() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def choose_backend(nproc: int) -> str:
    """nccl when binding runs on CUDA (omnibind.device) with a GPU per process, else gloo."""
    from omnibind.device import resolve_device

    on_gpu = resolve_device().startswith("cuda") and torch.cuda.device_count() >= nproc
    return "nccl" if on_gpu else "gloo"


def init_from_env(backend: str | None = None) -> None:
    """Join the process group torchrun (or `launch`) describes in the environment; under nccl,
    this process takes the GPU of its LOCAL_RANK."""
    if not dist.is_initialized():
        backend = backend or choose_backend(int(os.environ.get("WORLD_SIZE", "1")))
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(fn: Callable[..., None], args: Sequence[Any], nproc: int) -> None:
    """Run `fn(*args)` in `nproc` new processes joined in one process group (rank = process
    index), on this machine. `fn` must be a module-level function (it is pickled by reference),
    and whatever it produces it must save itself: nothing is returned."""
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(nproc, _free_port(), fn, tuple(args)), nprocs=nproc, join=True)


def _worker(local_rank: int, nproc: int, port: int, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(local_rank),
                      WORLD_SIZE=str(nproc), LOCAL_RANK=str(local_rank))
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # all processes are on this machine
    backend = choose_backend(nproc)
    if backend == "nccl":
        torch.cuda.set_device(local_rank)  # one GPU per rank; collectives move tensors there
    dist.init_process_group(backend, rank=local_rank, world_size=nproc)
    try:
        fn(*args)
    finally:
        dist.barrier()  # nobody tears gloo down while a peer still talks to it
        dist.destroy_process_group()
    exit_worker()


def exit_worker() -> None:
    """End a spawned worker whose work is saved, skipping C++ static destructors: at interpreter
    exit, gloo's threads sometimes abort the process ("terminate called without an active
    exception", ~1 run in 8 here), which torch.multiprocessing reports as a failed worker."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
