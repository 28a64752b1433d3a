"""CPU limits for testnet nodes: a Linux cgroup per slow node, so stragglers are real.

A node given ``cpus = 0.25`` runs in its own cgroup whose CPU quota is a quarter of one
core (cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us``), whatever else the machine
does; the kernel throttles it, so its training, merging and gossip all run slower, as on
a weaker machine. Creating cgroups needs root (or a delegated cgroup subtree).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["CpuLimitError", "CpuLimiter"]

PERIOD_US = 100_000
"""The scheduler period the quotas are expressed in (the kernel's default, 100 ms)."""


class CpuLimitError(Exception):
    """CPU limits cannot be set here; ``str()`` says why in one line."""


def _cgroup_root() -> tuple[Path, int]:
    """The writable cgroup directory that holds CPU quotas, and its version (1 or 2)."""
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    v1 = v2 = None
    for line in mounts:
        parts = line.split()
        if len(parts) < 4:
            continue
        fstype, where, opts = parts[2], Path(parts[1]), parts[3].split(",")
        if fstype == "cgroup2" and v2 is None:
            v2 = where
        elif fstype == "cgroup" and "cpu" in opts and v1 is None:
            v1 = where
    if v2 is not None and "cpu" in (v2 / "cgroup.controllers").read_text().split():
        return v2, 2
    if v1 is not None:
        return v1, 1
    raise CpuLimitError("no cgroup with the cpu controller is mounted (see /proc/self/mounts)")


class CpuLimiter:
    """Create, fill and remove one cgroup per limited node.

    Parameters
    ----------
    tag
        Part of every cgroup's name (``fednode-<tag>-node-<i>``), so two testnets on one
        machine never share one.
    """

    def __init__(self, tag: str) -> None:
        self.root, self.version = _cgroup_root()
        self.tag = tag
        self.groups: dict[int, Path] = {}

    def limit(self, index: int, pid: int, cpus: float) -> Path:
        """Move process ``pid`` (all its threads) into node ``index``'s cgroup of ``cpus``.

        Raises
        ------
        CpuLimitError
            ``cpus`` out of range, or the cgroup cannot be made or written (not root?).
        """
        if not 0.001 <= cpus <= float(os.cpu_count() or 1):
            raise CpuLimitError(f"a node's CPU limit must be in [0.001, cpus], not {cpus}")
        group = self.root / f"fednode-{self.tag}-node-{index}"
        quota = max(1000, round(cpus * PERIOD_US))
        try:
            group.mkdir(exist_ok=True)
            if self.version == 2:
                (group / "cpu.max").write_text(f"{quota} {PERIOD_US}\n")
            else:
                (group / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
                (group / "cpu.cfs_quota_us").write_text(f"{quota}\n")
            (group / "cgroup.procs").write_text(f"{pid}\n")
        except OSError as exc:
            raise CpuLimitError(
                f"cannot limit node {index} to {cpus:g} CPU in {group} ({exc.strerror}); "
                "CPU limits need root or a delegated cgroup"
            ) from None
        self.groups[index] = group
        return group

    def throttled_us(self, index: int) -> int:
        """Microseconds node ``index``'s cgroup has been held back by its quota so far."""
        stat = (self.groups[index] / "cpu.stat").read_text().split()
        fields = dict(zip(stat[::2], stat[1::2], strict=False))
        if "throttled_usec" in fields:
            return int(fields["throttled_usec"])
        return int(fields.get("throttled_time", 0)) // 1000  # v1 reports nanoseconds

    def close(self) -> None:
        """Remove the cgroups (their processes must have exited)."""
        for group in self.groups.values():
            with contextlib.suppress(OSError):
                group.rmdir()
        self.groups.clear()
