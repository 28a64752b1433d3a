"""Collusion harness for testnet Byzantine nodes: attack tooling, never part of an honest node.

The omniscient attackers of the robustness literature see every honest vector of the round.
On real daemons a Byzantine node sees only what its peers push to it. ``fednode testnet up``
gives its Byzantine processes (and only them) a shared directory, the *rendezvous*: each
writes the honest vectors it receives there, and each builds its round's vector from the
union of what all colluders hold. Honest processes never get the directory and never
import this module: ``fednode start --attack NAME --collude DIR`` (hidden options) builds a
:class:`ColludingAttacker` and hands it to the daemon, whose training runtime calls it at two
points (an update received, the round's vector to send).

One vector per round and attacker: sending different vectors to different peers is
equivocation, which honest nodes prove and quarantine (``node/equivocation.py``), so an
attack "aimed at the peers that sampled" an attacker is aimed through the rows it centres on
(:func:`colluding_vector`), not through per-peer messages. Every vector is scaled to pass the
receivers' norm check (``aggregation.max_update_norm``): a rejected vector bites nobody.
Against a network with ``aggregation.observed_f`` the attackers also stay under its outlier
threshold (the defence is public, so the attack adapts to it).

Attacks (:data:`COLLUDING_ATTACKS`): every name in ``aggregation.ATTACKS`` run on the pooled
honest rows, plus ``dissensus``, the attack of ClippedGossip (He, Karimireddy, Jaggi,
"Byzantine-robust decentralized learning via ClippedGossip", 2022): instead of dragging the
mean, it pushes the attacker's receivers away from the honest consensus, along their own
deviation from it, so honest neighbours drift apart.

Without a ``z``/``eps`` parameter, ``alie`` and ``ipm`` take the strongest strength the norm
check lets through (``ipm``) or ByzFL's ``z = 1.5`` (``alie``); ``optimal_*`` search the
strength that hurts the network's own rule most (the genesis, hence the rule, is public).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from node.training.robust_defaults import OUTLIER_FACTOR

log = logging.getLogger("fednode.testnet.collusion")

__all__ = [
    "COLLUDING_ATTACKS",
    "LOOKBACK",
    "ColludingAttacker",
    "Collusion",
    "CollusionError",
    "collude_round",
    "colluding_vector",
    "fit_norm",
    "parse_colluding",
]

#: Attacks a colluding testnet attacker plays (beside ``aggregation.ATTACKS``).
EXTRA_ATTACKS = {
    "dissensus": "Dissensus (He, Karimireddy, Jaggi, ClippedGossip 2022): pushes the "
    "attackers' receivers away from the honest consensus",
}
#: Safety margin under the receivers' norm limit (their models move between our read and
#: their check).
NORM_MARGIN = 0.8
#: Earlier rounds whose pooled rows stand in when the current round has fewer than two
#: (an attacker that lags its receivers finds the current round's folder empty).
LOOKBACK = 3
#: Default ALIE deviation when colluding (ByzFL's default; the paper's z_max is ~0.2 here).
ALIE_Z = 1.5


def _attacks() -> dict[str, str]:
    from aggregation import ATTACKS

    out = {name: (fn.__doc__ or "").strip().splitlines()[0] for name, fn in ATTACKS.items()}
    out.pop("inf", None)  # non-finite vectors: hygiene drops them, no collusion needed
    out.pop("nan", None)
    out.update(EXTRA_ATTACKS)
    return out


COLLUDING_ATTACKS: Mapping[str, str] = _attacks()


class CollusionError(ValueError):
    """A rendezvous directory or attack that the harness cannot use."""


def parse_colluding(text: str) -> tuple[str, dict[str, float]]:
    """Parse ``name`` or ``name:key=value,...`` with ``name`` in :data:`COLLUDING_ATTACKS`.

    Raises
    ------
    CollusionError
        Unknown name or a parameter that is not ``key=<number>``.
    """
    name, _, rest = text.strip().partition(":")
    if name not in COLLUDING_ATTACKS:
        raise CollusionError(f"unknown attack {name!r}; known: {sorted(COLLUDING_ATTACKS)}")
    params: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        try:
            if not eq or not key.strip():
                raise ValueError
            params[key.strip()] = float(value)
        except ValueError:
            raise CollusionError(
                f"attack {text!r}: parameter {item!r} is not key=<number>"
            ) from None
    return name, params


def fit_norm(
    center: torch.Tensor,
    direction: torch.Tensor,
    rows: torch.Tensor,
    limit: float | torch.Tensor,
) -> torch.Tensor:
    """``center + t * direction`` with the largest ``t <= 1`` within ``limit`` of every row.

    Parameters
    ----------
    center : torch.Tensor
        (d,) starting point, normally within ``limit`` of every row.
    direction : torch.Tensor
        (d,) the malicious displacement.
    rows : torch.Tensor
        (n, d) vectors the receivers hold (their models), whose norm check must pass.
    limit : float or torch.Tensor
        The receivers' ``max_update_norm`` (already with any margin), or (n,) one limit
        per row.

    Returns
    -------
    torch.Tensor
        The scaled vector; ``center`` itself if even it is out of range.
    """

    bound = torch.as_tensor(limit, dtype=torch.float64)

    def worst(t: float) -> float:
        dist = torch.linalg.vector_norm(rows - (center + t * direction), dim=1)
        return float((dist.to(torch.float64) / bound).max())

    if worst(1.0) <= 1.0:
        return center + direction
    at_centre = worst(0.0)
    if at_centre > 1.0:
        log.info(
            "colluding attacker: the honest centre is out of some receiver's norm range",
            extra={"fields": {"worst": round(at_centre, 3)}},
        )
        return center.clone()
    lo, hi = 0.0, 1.0
    for _ in range(40):  # bisection: each distance is convex in t
        mid = (lo + hi) / 2
        if worst(mid) <= 1.0:
            lo = mid
        else:
            hi = mid
    return center + lo * direction


def colluding_vector(
    attack: str,
    params: Mapping[str, float],
    *,
    honest: torch.Tensor,
    targets: torch.Tensor,
    base: torch.Tensor,
    f: int,
    rule: str,
    rule_f: int,
    rule_params: Mapping[str, Any],
    max_norm: float,
    stealth: float | None = None,
) -> torch.Tensor:
    """The vector a colluding attacker sends this round.

    Parameters
    ----------
    attack : str
        Name in :data:`COLLUDING_ATTACKS`.
    params : Mapping[str, float]
        The attack's parameters (``eps`` of ``ipm``/``dissensus``, ``z`` of ``alie``, ...).
    honest : torch.Tensor
        (h, d) every honest vector of the round the colluders hold (model payloads).
    targets : torch.Tensor
        (t, d) the honest vectors of the peers this attacker exchanges with (they merge its
        vector); ``dissensus`` pushes them, the others ignore it.
    base : torch.Tensor
        (d,) the model the honest updates started from (the attacker's own base): the
        attacks of ``aggregation.ATTACKS`` are defined on updates ``honest - base``.
    f : int
        Colluding attackers.
    rule, rule_f, rule_params
        The network's rule, its ``f`` and parameters (``optimal_*`` search against them).
    max_norm : float
        The receivers' ``aggregation.max_update_norm``.
    stealth : float, optional
        The receivers flag rows farther than ``stealth`` median distances from their own
        (``aggregation.observed_f``): stay at 95 % of that from every honest row, whose
        median distance to the other honest rows stands for the receiver's median.

    Returns
    -------
    torch.Tensor
        (d,) finite, within ``NORM_MARGIN * max_norm`` of every honest row.
    """
    from aggregation import ATTACKS, PreconditionError

    if attack not in COLLUDING_ATTACKS:
        raise CollusionError(f"unknown attack {attack!r}; known: {sorted(COLLUDING_ATTACKS)}")
    honest = honest.to(torch.float32)
    center = honest.mean(dim=0)
    limit: float | torch.Tensor = NORM_MARGIN * max_norm
    if stealth is not None and honest.shape[0] > 2:
        gaps = torch.cdist(honest.to(torch.float64), honest.to(torch.float64))
        # Each row's median distance to the others (its own zero left out).
        med = gaps.sort(dim=1).values[:, 1:].median(dim=1).values
        limit = torch.clamp(0.95 * float(stealth) * med, max=NORM_MARGIN * max_norm)
    kw: dict[str, Any] = dict(params)
    if attack == "dissensus":
        # Away from the honest consensus along the receivers' own deviation from it.
        eps = float(kw.get("eps", 1.0))
        aim = targets.mean(dim=0) if targets.numel() else center
        return fit_norm(aim, eps * (aim - center), honest, limit)
    deltas = honest - base
    if attack == "ipm" and "eps" not in kw:
        # The strongest IPM the norm check lets through: scaled below.
        kw["eps"] = 1e6
    if attack == "alie" and "z" not in kw:
        kw["z"] = ALIE_Z
    if attack.startswith("optimal_"):
        kw.update(rule=rule, rule_params=dict(rule_params))
    try:
        bad = ATTACKS[attack](
            deltas, f=max(1, rule_f if attack.startswith("optimal_") else f), **kw
        )
    except PreconditionError:
        # Too few rows for the rule's f in the line search: fall back to the plain attack.
        fallback = attack.removeprefix("optimal_")
        bad = ATTACKS[fallback](deltas, f=max(1, f), **dict(params))
    malicious = base + bad[0]
    if not bool(torch.isfinite(malicious).all()):
        malicious = center.clone()
    return fit_norm(center, malicious - center, honest, limit)


class Collusion:
    """One Byzantine node's end of the rendezvous directory.

    Layout: ``members/<node id>`` names every colluder (their vectors are not honest rows);
    ``r<round>/<sender>.safetensors`` holds the honest vector of ``sender`` in ``round``
    (written atomically, once per sender and round whoever received it).

    Parameters
    ----------
    directory : Path
        The rendezvous directory the testnet created; must exist.
    node_id : str
        This attacker's node id (hex).
    """

    def __init__(self, directory: Path, node_id: str) -> None:
        if not directory.is_dir():
            raise CollusionError(f"collusion directory {directory} does not exist")
        self.directory = directory
        self.node_id = node_id
        (directory / "members").mkdir(exist_ok=True)
        (directory / "members" / node_id).touch()
        self.received: dict[int, dict[str, torch.Tensor]] = {}

    def colluders(self) -> set[str]:
        """Node ids of every attacker that joined the rendezvous."""
        return {p.name for p in (self.directory / "members").iterdir()}

    def share(self, round_idx: int, sender: str, vector: torch.Tensor) -> None:
        """Record an update this attacker received (in memory and for its colluders)."""
        self.received.setdefault(round_idx, {})[sender] = vector
        for old in [r for r in self.received if r < round_idx - 3]:
            del self.received[old]
        folder = self.directory / f"r{round_idx}"
        folder.mkdir(exist_ok=True)
        path = folder / f"{sender}.safetensors"
        if path.exists():
            return
        tmp = folder / f".{sender}.{self.node_id[:8]}.tmp"
        save_file({"v": vector.detach().to(torch.float32).contiguous()}, str(tmp))
        os.replace(tmp, path)

    def pool(self, round_idx: int) -> dict[str, torch.Tensor]:
        """Every honest vector of ``round_idx`` any colluder received, by sender."""
        folder = self.directory / f"r{round_idx}"
        out: dict[str, torch.Tensor] = {}
        if folder.is_dir():
            byzantine = self.colluders()
            for path in folder.glob("*.safetensors"):
                sender = path.name.removesuffix(".safetensors")
                if sender in byzantine:
                    continue
                with contextlib.suppress(OSError, ValueError, KeyError):
                    out[sender] = load_file(str(path))["v"]
        return out

    def targets(self, round_idx: int) -> list[torch.Tensor]:
        """Honest vectors this attacker itself received in ``round_idx`` (its receivers)."""
        byzantine = self.colluders()
        got = self.received.get(round_idx, {})
        return [v for s, v in got.items() if s not in byzantine]

    def wait_pool(
        self,
        round_idx: int,
        want: int,
        timeout: float,
        sleep: float = 0.1,
        settle: float = 0.5,
    ) -> dict[str, torch.Tensor]:
        """The round's pool once it holds ``want`` honest rows, or has stopped growing.

        Stopped growing: at least two rows and none new for ``settle`` seconds. Waiting for
        ``want`` rows that never come (fewer honest peers sampled the colluders this round)
        would make every attacker a round late, and late vectors are refused as stale.
        Blocking: call it in an executor.

        Parameters
        ----------
        round_idx : int
            The round whose rows are pooled.
        want : int
            Rows after which there is nothing more to wait for.
        timeout : float
            Seconds after which the pool is returned whatever it holds.
        sleep : float, optional
            Polling period in seconds (default 0.1).
        settle : float, optional
            Seconds without a new row after which two or more rows are enough (default 0.5).
        """
        start = time.monotonic()
        deadline = start + timeout
        seen, last_growth = 0, start
        while True:
            got = self.pool(round_idx)
            now = time.monotonic()
            if len(got) > seen:
                seen, last_growth = len(got), now
            if len(got) >= want or now >= deadline:
                return got
            if len(got) >= 2 and now - last_growth >= settle:
                return got
            time.sleep(sleep)


def collude_round(
    collusion: Collusion,
    attack: str,
    genesis: Any,
    round_idx: int,
    *,
    base: torch.Tensor,
    own: torch.Tensor,
) -> torch.Tensor:
    """The attacker's vector of ``round_idx``: pool the colluders' rows, then attack.

    Waits (blocking, at most a fifth of the round timeout and 5 s) for ``k + 1`` honest rows
    of the round, or until the pool stops growing; with fewer than two it adds the rows of
    up to :data:`LOOKBACK` earlier rounds (the newest first), and with none it sends its own
    honest vector (there is nothing to attack with yet).

    Parameters
    ----------
    collusion : Collusion
        This attacker's end of the rendezvous.
    attack : str
        ``name`` or ``name:key=value,...`` in :data:`COLLUDING_ATTACKS`.
    genesis : node.genesis.Genesis
        The network (rule, f, parameters, norm limit, rounds).
    round_idx : int
        The round being sent.
    base, own : torch.Tensor
        The attacker's model before this round's training, and after it.
    """
    name, params = parse_colluding(attack)
    rounds = genesis.rounds
    wait = min(5.0, 0.2 * float(rounds.round_timeout))
    pool = collusion.wait_pool(round_idx, want=rounds.peers_per_round + 1, timeout=wait)
    for back in range(1, LOOKBACK + 1):
        if len(pool) >= 2:
            break
        pool = {**collusion.pool(round_idx - back), **pool}
    if not pool:
        log.info(
            "colluding attacker has no honest rows yet: sends its own vector",
            extra={"fields": {"round": round_idx}},
        )
        return own
    targets = next(
        (t for back in range(LOOKBACK + 1) if (t := collusion.targets(round_idx - back))),
        [],
    )
    honest = torch.stack(list(pool.values()))
    agg = genesis.aggregation
    out = colluding_vector(
        name,
        params,
        honest=honest,
        targets=torch.stack(targets) if targets else honest[:0],
        base=base,
        f=max(1, len(collusion.colluders())),
        rule=agg.rule,
        rule_f=agg.f,
        rule_params=agg.params,
        max_norm=agg.max_update_norm,
        stealth=OUTLIER_FACTOR if getattr(agg, "observed_f", False) else None,
    )
    log.info(
        "colluding vector",
        extra={
            "fields": {
                "round": round_idx,
                "pool": len(pool),
                "targets": len(targets),
                "from_centre": round(float(torch.linalg.vector_norm(out - honest.mean(0))), 4),
                "from_own": round(float(torch.linalg.vector_norm(out - own)), 4),
            }
        },
    )
    return out


class ColludingAttacker:
    """The side channel as the daemon's training runtime sees it (built by the CLI).

    Parameters
    ----------
    directory : Path
        The rendezvous directory the testnet created.
    attack : str
        ``name`` or ``name:key=value,...`` in :data:`COLLUDING_ATTACKS`.
    genesis : node.training.genesis.Genesis
        The network (rule, f, norm limit, rounds).

    Raises
    ------
    CollusionError
        Unknown attack, malformed parameter or missing directory.
    """

    def __init__(self, directory: Path, attack: str, genesis: Any) -> None:
        parse_colluding(attack)
        if not directory.is_dir():
            raise CollusionError(f"collusion directory {directory} does not exist")
        self.directory = directory
        self.attack = attack
        self.genesis = genesis
        self._end: Collusion | None = None

    def join(self, node_id: str) -> None:
        """Register this attacker (its node id) with its colluders."""
        self._end = Collusion(self.directory, node_id)

    def observe(self, round_idx: int, sender: str, vector: torch.Tensor) -> None:
        """An update this attacker received and accepted (shared with the colluders)."""
        if self._end is not None:
            self._end.share(round_idx, sender, vector)

    def vector(self, round_idx: int, *, base: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        """The round's vector (blocking: waits for the colluders' rows; run in an executor)."""
        if self._end is None:
            return own
        return collude_round(self._end, self.attack, self.genesis, round_idx, base=base, own=own)
