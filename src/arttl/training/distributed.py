"""DDP under Hydra: make Lightning's re-launched rank processes join *this* job's folder."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import torch.distributed as dist
from omegaconf import open_dict, read_write


def _point_relaunch_at_this_job() -> None:
    """Lightning's subprocess launcher starts ranks 1..N-1 as ``python -m arttl.train
    <sys.argv[1:]> hydra.run.dir=<HydraConfig.run.dir>``. In a multirun that would re-run the
    whole sweep (``-m`` and comma lists are in sys.argv) into a fresh ``outputs/<now>`` folder:
    hand it this job's own overrides, RUN mode and this job's output folder instead."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return
    with read_write(hc), open_dict(hc):  # read by lightning's _hydra_subprocess_cmd
        hc.run.dir = hc.runtime.output_dir
    sys.argv = [sys.argv[0], *hc.overrides.task, "hydra.mode=RUN"]


@contextlib.contextmanager
def ddp_job(world_size: int) -> Iterator[None]:
    """One DDP training job, leaving the process as it found it for the next multirun job.

    Lightning sets LOCAL_RANK/WORLD_SIZE/MASTER_PORT in os.environ and keeps the process group
    alive; the next job of a sweep would then think its ranks were started externally and talk
    to the finished job's (dead) ranks. We restore argv and environment and destroy the group.
    """
    if world_size <= 1:
        yield
        return
    argv, environ = list(sys.argv), dict(os.environ)
    _point_relaunch_at_this_job()
    try:
        yield
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        sys.argv = argv
        os.environ.clear()
        os.environ.update(environ)
