"""The data-parallel side of `xpgrad train` under `mpiexec -n K` with K > 1.

Every rank runs the whole command: the same settings, data and shuffling; rank 0's model is
broadcast (DataParallel) and each rank trains on its part of every global batch (`--batch-size`
is global). Only rank 0 prints and writes files. Dropout masks come from one stream per rank:
rank 0 keeps the stream of a one-process run, rank r > 0 draws from SeedSequence(seed,
spawn_key=(r,)) (with the epoch resumed at in the key when a checkpoint has no state for r).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from .common import UsageError


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: its rank and the number of ranks (1: a plain run)."""

    rank: int = 0
    world_size: int = 1
    backend: str = "none"

    @property
    def parallel(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def join() -> Ranks:
    """Join the other ranks when launched by MPI with K > 1 (first, so that any later failure can end
    every rank); a plain run gets Ranks()."""
    from ..distributed import init_process_group, launched_world_size

    if launched_world_size() == 1:
        return Ranks()
    group = init_process_group()
    return Ranks(group.rank, group.world_size, group.backend)


def check_batch(ranks: Ranks, batch_size: int) -> None:
    from ..distributed import IndivisibleBatchError, local_batch_size

    try:
        local_batch_size(batch_size, ranks.world_size, what="--batch-size")
    except IndivisibleBatchError as err:
        raise UsageError(str(err)) from None


def describe(ranks: Ranks, batch_size: int) -> str:
    if not ranks.parallel:
        return ""
    return (
        f"; data-parallel on {ranks.world_size} ranks ({ranks.backend}), "
        f"{batch_size // ranks.world_size} samples per rank per step"
    )


def seed_rank_stream(ranks: Ranks, seed: int, saved_rng: dict | None, start_epoch: int) -> None:
    """Give rank r > 0 its own dropout stream: the checkpoint's states for r (host and device
    generators), else one derived from the seed, r and the epoch training starts at (the module
    docstring)."""
    from .. import fns_cupy
    from ..creation import generator, manual_seed

    if ranks.rank == 0:
        return
    states = (saved_rng or {}).get("host_by_rank") or []
    saved = len(states) == ranks.world_size
    key = (ranks.rank,) if saved_rng is None or saved else (ranks.rank, start_epoch)
    manual_seed(np.random.SeedSequence(seed, spawn_key=key))
    if not saved:
        return
    # the saved host state in that generator of rank r's seed sequence (which keys its device
    # generator where the checkpoint has no device state), then the saved device states
    generator().bit_generator.state = states[ranks.rank]
    devices = saved_rng.get("device_by_rank") or []
    fns_cupy.set_device_random_states(devices[ranks.rank] if len(devices) == ranks.world_size else {})


def gather_rng(ranks: Ranks, rng_state: dict) -> dict:
    """`rng_state` (this rank's loader, host and device states) with every rank's host and device
    states added, for the checkpoint (a collective: every rank calls it)."""
    if not ranks.parallel:
        return rng_state
    from ..distributed import all_gather_bytes

    mine = json.dumps([rng_state["host"], rng_state.get("device", {})]).encode()
    states = [json.loads(b) for b in all_gather_bytes(mine)]
    return {**rng_state, "host_by_rank": [host for host, _ in states], "device_by_rank": [dev for _, dev in states]}
