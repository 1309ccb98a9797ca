"""Where this process stands in a multi-process launch (``torchrun``, ``accelerate launch``).

Both launchers start one process per replica and tell each one its place through environment
variables: ``RANK`` (0 .. ``WORLD_SIZE`` - 1 over all machines), ``WORLD_SIZE`` and ``LOCAL_RANK``
(the index on its machine, which picks its GPU). :func:`launch_position` reads them, once, for the
data-parallel backend (which joins the process group) and for the command line (where only rank 0
writes outputs). Without a launcher the process is rank 0 of 1.

This module reads environment variables only: it knows nothing about torch, process groups or what
the replicas compute.
"""

from __future__ import annotations

import os
from typing import Mapping, NamedTuple

from exposure_env.errors import ConfigError

LAUNCH_VARIABLES: tuple[str, ...] = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class LaunchPosition(NamedTuple):
    """This process's place among the processes of one launch."""

    rank: int
    """Global index of this process, 0 .. world_size - 1 (0 without a launcher)."""
    world_size: int
    """Number of processes of the launch (1 without a launcher)."""
    local_rank: int
    """Index of this process on its machine (picks its GPU; 0 without a launcher)."""

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that decides, logs and writes."""
        return self.rank == 0

    @property
    def launched(self) -> bool:
        """More than one process: the replicas must take part in every collective step together."""
        return self.world_size > 1


def launch_position(environ: Mapping[str, str] | None = None) -> LaunchPosition:
    """This process's :class:`LaunchPosition` from ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``
    (``environ`` defaults to ``os.environ``). Malformed values raise :class:`ConfigError`."""
    environ = os.environ if environ is None else environ
    values = {}
    for name, default in zip(LAUNCH_VARIABLES, (0, 1, 0)):
        text = environ.get(name, "")
        try:
            values[name] = int(text) if text.strip() else default
        except ValueError:
            raise ConfigError(f"environment variable {name}", "an integer set by torchrun or accelerate",
                              text) from None
    rank, world, local = values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"]
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ConfigError("RANK / WORLD_SIZE / LOCAL_RANK", "0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0",
                          (rank, world, local))
    return LaunchPosition(rank, world, local)
