"""Fault scenarios: a TOML script of faults run against a namespace testnet, and its report.

A scenario file names the network (nodes, task, rounds, gossip profile) and a list of
``[[event]]`` tables, each fired at ``at`` seconds after the nodes formed a full view, or
when the median round of the live honest nodes reaches ``round``::

    name = "partition-and-heal"
    nodes = 8
    duration = 150            # hard limit in seconds (the run ends earlier when done)
    task = "digits"
    rounds = 12
    gossip_profile = "local"

    [[event]]
    at = 15
    action = "partition"
    groups = [[0, 1, 2, 3], [4, 5, 6, 7]]
    duration = 20             # heal after 20 s

Actions: ``partition`` (groups, duration), ``heal``, ``kill`` (nodes; SIGKILL;
``duration`` restarts them after that many seconds), ``restart`` (nodes), ``latency``
(delay_ms, jitter_ms, nodes, duration), ``loss`` (percent, nodes, duration),
``byzantine`` (count, attack: extra nodes started with ``--attack``).

The runner measures what an operator would ask after the fact, using only the admin API
and the data dirs: honest accuracy over time (status ``history``), how long peers took to
mark a killed node suspect and dead, how long partitioned views took to re-merge after
healing, bytes, and whether a restarted node resumed from its stored state (checkpoint
round and model hash read from its database after the kill, compared with what the
restarted daemon reports; the privacy ledger tip likewise when DP is on).
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import statistics
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from node.base.identity import Identity

# Imported here, not when a node is killed: importing the storage package (SQLAlchemy,
# Alembic) takes seconds on a loaded machine and would stall the scenario's clock.
from node.storage import DB_FILENAME
from node.testnet.netns import NetnsTestnet
from node.training.genesis import Genesis
from node.wire.admin_client import AdminUnavailable

__all__ = [
    "Scenario",
    "ScenarioError",
    "ScenarioEvent",
    "ScenarioRunner",
    "load_scenario",
    "parse_scenario",
    "run_scenario",
]

Action = Literal["partition", "heal", "kill", "restart", "latency", "loss", "byzantine"]
TICK_S = 0.5


class ScenarioError(ValueError):
    """A scenario file that cannot be run; ``str()`` is one line naming the key."""


class ScenarioEvent(BaseModel):
    """One scripted fault.

    Attributes
    ----------
    at : float or None
        Seconds after the network formed (exactly one of ``at`` and ``round``).
    round : int or None
        Fire when the median round of the live honest nodes reaches this.
    action : str
        partition, heal, kill, restart, latency, loss or byzantine.
    nodes : list of int, default []
        Targets of kill, restart, latency and loss ([] means every node for the last two).
    groups : list of list of int, default []
        Partition groups; nodes in no group form one more group.
    duration : float or None, default None
        Undo after this many seconds (heal, restart, remove latency or loss).
    delay_ms, jitter_ms : float, default 0
        Latency added in each direction, and its uniform jitter.
    percent : float, default 0
        Packet loss in percent.
    count : int, default 1
        Byzantine nodes to add.
    attack : str, default "sign_flip"
        Their attack (``aggregation.ATTACKS``).
    """

    model_config = ConfigDict(extra="forbid")

    at: float | None = Field(None, ge=0)
    round: int | None = Field(None, ge=1)
    action: Action
    nodes: list[int] = Field(default_factory=list)
    groups: list[list[int]] = Field(default_factory=list)
    duration: float | None = Field(None, gt=0)
    delay_ms: float = Field(0.0, ge=0, le=10_000)
    jitter_ms: float = Field(0.0, ge=0, le=10_000)
    percent: float = Field(0.0, ge=0, le=100)
    count: int = Field(1, ge=1, le=32)
    attack: str = "sign_flip"

    @model_validator(mode="after")
    def _check(self) -> ScenarioEvent:
        if (self.at is None) == (self.round is None):
            raise ValueError("give exactly one of `at` (seconds) and `round`")
        if self.action == "partition" and not self.groups:
            raise ValueError("a partition needs `groups`")
        if self.action in {"kill", "restart"} and not self.nodes:
            raise ValueError(f"{self.action} needs `nodes`")
        if self.jitter_ms > self.delay_ms:
            raise ValueError("jitter_ms must not exceed delay_ms")
        return self

    @property
    def label(self) -> str:
        when = f"t={self.at:g}s" if self.at is not None else f"round {self.round}"
        return f"{self.action} @ {when}"


class Scenario(BaseModel):
    """A scenario file (see the module docstring for the format).

    Attributes
    ----------
    name : str
    description : str, default ""
    nodes : int, default 8
    duration : float, default 300
        Hard limit in seconds after the network formed.
    task, learner, rule : str, default "digits", "sgd", "mean"
    f : int, default 0
        Byzantine peers the rule tolerates.
    rounds : int, default 10
    eval_every : int, default 1
    round_timeout : float, default 10
        Seconds a node waits for peer updates before aggregating anyway.
    peers_per_round : int, default 3
    gossip_profile : str, default "local"
    train : bool, default True
        False runs membership-only nodes (``--no-train``).
    privacy_epsilon : float or None, default None
        Turn on node-level DP with this budget (the ledger is then checked on restart).
    seed : int, default 1
    pow_difficulty : int, default 8
    events : list of ScenarioEvent (``[[event]]`` in TOML)
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=80)
    description: str = ""
    nodes: int = Field(8, ge=2, le=64)
    duration: float = Field(300.0, gt=0, le=7200)
    task: str = "digits"
    learner: str = "sgd"
    rule: str = "mean"
    f: int = Field(0, ge=0)
    rounds: int = Field(10, ge=1)
    eval_every: int = Field(1, ge=1)
    round_timeout: float = Field(10.0, gt=0)
    peers_per_round: int = Field(3, ge=1)
    gossip_profile: Literal["lan", "wan", "local", "test"] = "local"
    train: bool = True
    privacy_epsilon: float | None = Field(None, gt=0)
    seed: int = Field(1, ge=0)
    pow_difficulty: int = Field(8, ge=0, le=24)
    events: list[ScenarioEvent] = Field(default_factory=list, alias="event")

    @model_validator(mode="after")
    def _check_nodes(self) -> Scenario:
        total = self.nodes + sum(e.count for e in self.events if e.action == "byzantine")
        for k, event in enumerate(self.events):
            named = list(event.nodes) + [i for g in event.groups for i in g]
            for i in named:
                if not 0 <= i < total:
                    raise ValueError(
                        f"event {k} ({event.action}) names node {i}; nodes are 0..{total - 1}"
                    )
        return self

    def genesis(self) -> Genesis:
        """The genesis of this scenario's network."""
        return Genesis.model_validate(
            {
                "network": {
                    "name": f"scenario-{self.name}"[:64],
                    "seed": self.seed,
                    "pow_difficulty": self.pow_difficulty,
                    "gossip_profile": self.gossip_profile,
                },
                "task": {"name": self.task, "num_nodes": self.nodes},
                "learner": {"kind": self.learner},
                "aggregation": {"rule": self.rule, "f": self.f},
                "rounds": {
                    "max_rounds": self.rounds,
                    "eval_every": self.eval_every,
                    "round_timeout": self.round_timeout,
                    "peers_per_round": min(self.peers_per_round, self.nodes - 1),
                },
                "privacy": (
                    {"enabled": True, "epsilon_budget": self.privacy_epsilon}
                    if self.privacy_epsilon is not None
                    else {}
                ),
            }
        )

    @property
    def needs_delay_proxy(self) -> bool:
        return any(e.action == "latency" for e in self.events)

    def without_faults(self) -> Scenario:
        """The same network with no events (the fault-free baseline)."""
        return self.model_copy(update={"events": [], "name": f"{self.name}-baseline"})


def _one_line(source: str, exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
    return f"{source}: {loc}: {msg}"


def parse_scenario(text: str, *, source: str = "scenario") -> Scenario:
    """Parse and validate scenario TOML; raise :class:`ScenarioError` (one line)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: invalid TOML: {exc}") from None
    try:
        scenario = Scenario.model_validate(data)
        scenario.genesis()
    except ValidationError as exc:
        raise ScenarioError(_one_line(source, exc)) from None
    return scenario


def load_scenario(path: Path) -> Scenario:
    """Read a scenario file; raise :class:`ScenarioError` naming what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from None
    return parse_scenario(text, source=str(path))


# --- trackers ------------------------------------------------------------------------------


@dataclass
class _Detection:
    node: int
    node_id: str
    killed_at: float
    observers: set[int]
    first_suspect: dict[int, float] = field(default_factory=dict)
    first_dead: dict[int, float] = field(default_factory=dict)
    restarted_at: float | None = None

    def done(self, live: set[int]) -> bool:
        watching = self.observers & live
        return self.restarted_at is not None or all(o in self.first_dead for o in watching)

    def report(self) -> dict[str, Any]:
        suspects = sorted(self.first_suspect.values())
        deads = sorted(self.first_dead.values())
        return {
            "node": self.node,
            "killed_at_s": round(self.killed_at, 2),
            "observers": len(self.observers),
            "first_suspect_s": round(suspects[0], 2) if suspects else None,
            "median_suspect_s": round(statistics.median(suspects), 2) if suspects else None,
            "first_dead_s": round(deads[0], 2) if deads else None,
            "all_dead_s": round(deads[-1], 2)
            if deads and len(deads) >= len(self.observers)
            else None,
            "marked_dead_by": len(deads),
            "restarted_before_all_detected": self.restarted_at is not None
            and len(deads) < len(self.observers),
        }


@dataclass
class _Partition:
    groups: list[list[int]]
    at: float
    healed_at: float | None = None
    split_s: float | None = None
    remerge_s: float | None = None
    excluded: set[int] = field(default_factory=set)
    """Nodes killed before the views re-merged: they take no part in the re-merge."""

    def report(self) -> dict[str, Any]:
        return {
            "groups": self.groups,
            "at_s": round(self.at, 2),
            "healed_at_s": None if self.healed_at is None else round(self.healed_at, 2),
            "views_split_s": None if self.split_s is None else round(self.split_s, 2),
            "remerge_s": None if self.remerge_s is None else round(self.remerge_s, 2),
        }


@dataclass
class _Restart:
    node: int
    killed_at: float
    stored: dict[str, Any]
    restarted_at: float | None = None
    log_offset: int = 0
    after: dict[str, Any] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        s, a = self.stored, self.after
        resumed: bool | None = None
        hash_checked = False
        if s.get("round") is not None and a.get("start_round") is not None:
            resumed = a["start_round"] == s["round"]
            if resumed and a.get("first_round") == s["round"] and s.get("model_hash"):
                hash_checked = True
                resumed = a.get("first_model_hash") == s["model_hash"]
        ledger_ok: bool | None = None
        if s.get("ledger_seq") is not None:
            ledger_ok = (
                a.get("ledger_seq", -1) >= s["ledger_seq"]
                and a.get("epsilon_spent", -1.0) >= s.get("epsilon_after", 0.0) - 1e-9
            )
        return {
            "node": self.node,
            "killed_at_s": round(self.killed_at, 2),
            "restarted_at_s": None if self.restarted_at is None else round(self.restarted_at, 2),
            "stored_round": s.get("round"),
            "stored_model_hash": (s.get("model_hash") or "")[:16] or None,
            "start_round": a.get("start_round"),
            "first_status_round": a.get("first_round"),
            "first_status_model_hash": (a.get("first_model_hash") or "")[:16] or None,
            "model_hash_checked": hash_checked,
            "same_identity": a.get("node_id") == s.get("node_id") if a.get("node_id") else None,
            "stored_ledger_seq": s.get("ledger_seq"),
            "ledger_seq_after": a.get("ledger_seq"),
            "ledger_continuous": ledger_ok,
            "resumed": resumed,
            "rejoined_s": a.get("rejoined_s"),
            "caught_up_rounds": a.get("caught_up"),
            "caught_up_s": a.get("caught_up_s"),
        }


_START_ROUND = re.compile(r"training ready.*?start_round=(\d+)")
_CAUGHT_UP = re.compile(r"caught up from_round=(\d+) to_round=(\d+)")


def _stored_state(net: NetnsTestnet, index: int) -> dict[str, Any]:
    """Checkpoint round/hash and ledger tip in a stopped node's SQLite database.

    Plain ``sqlite3`` queries, not the store: opening the store runs migrations, which
    takes seconds on a loaded machine and would delay the scenario's clock.
    """
    dd = net.net.nodes[index].data_dir
    out: dict[str, Any] = {}
    with contextlib.suppress(Exception):  # the report shows what it could not read
        out["node_id"] = Identity.load(dd.identity).node_id_hex
    db = dd.root / DB_FILENAME
    if not db.exists():
        return out
    try:
        con = sqlite3.connect(str(db), timeout=5.0)
    except sqlite3.Error as exc:
        out["error"] = f"cannot open {db}: {exc}"
        return out
    try:
        row = con.execute("SELECT value FROM node_state WHERE key = 'training.round'").fetchone()
        value = row[0] if row else 0
        out["round"] = int((json.loads(value) if isinstance(value, str) else value) or 0)
        row = con.execute(
            "SELECT round, model_sha256 FROM checkpoints ORDER BY round DESC, id DESC LIMIT 1"
        ).fetchone()
        out["checkpoint_round"] = None if row is None else int(row[0])
        out["model_hash"] = None if row is None else str(row[1])
        row = con.execute("SELECT MAX(seq) FROM privacy_ledger").fetchone()
        if row is not None and row[0] is not None:
            out["ledger_seq"] = int(row[0])
            # The node-level spend (status's epsilon_spent); record rows have their own.
            node = con.execute(
                "SELECT epsilon_after FROM privacy_ledger WHERE scope = 'node' "
                "ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            out["epsilon_after"] = 0.0 if node is None else float(node[0])
    except (sqlite3.Error, ValueError, TypeError) as exc:
        out["error"] = f"cannot read {db}: {exc}"
    finally:
        con.close()
    return out


# --- runner --------------------------------------------------------------------------------


class ScenarioRunner:
    """Run one :class:`Scenario` on a fresh namespace testnet and build its report.

    Parameters
    ----------
    scenario : Scenario
    root : Path, optional
        Work directory [default: a new temporary directory].
    progress : callable, optional
        Called with one line of text per event (for a live log).
    """

    def __init__(
        self,
        scenario: Scenario,
        root: Path | None = None,
        *,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.scenario = scenario
        self.root = root or Path(tempfile.mkdtemp(prefix="fednode-scenario-"))
        self.progress = progress or (lambda line: None)
        args = [] if scenario.train else ["--no-train"]
        self.tn = NetnsTestnet(
            self.root,
            scenario.genesis(),
            scenario.nodes,
            node_args={i: list(args) for i in range(scenario.nodes)},
            delay_proxy=scenario.needs_delay_proxy,
        )
        self.byzantine: set[int] = set()
        self.node_ids: dict[int, str] = {}
        self.t0 = 0.0
        self.t0_wall = 0.0
        self.fired: list[dict[str, Any]] = []
        self.undo: list[tuple[float, str, Callable[[], None]]] = []
        self.detections: list[_Detection] = []
        self.partitions: list[_Partition] = []
        self.restarts: dict[int, _Restart] = {}
        self.finished_restarts: list[_Restart] = []
        self.history: dict[int, dict[int, tuple[float, float]]] = {}
        self.last_status: dict[int, dict[str, Any]] = {}
        self.bytes: dict[tuple[int, int], tuple[int, int]] = {}
        self.rejected: dict[tuple[int, int], int] = {}
        self.max_suspect = 0
        self.loss_percent = 0.0
        self.delay_ms = 0.0
        self.ticks: list[float] = []

    # --- helpers -------------------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic() - self.t0

    def live(self) -> set[int]:
        return {n.index for n in self.tn.net.nodes if n.alive()}

    def honest(self) -> set[int]:
        return {n.index for n in self.tn.net.nodes} - self.byzantine

    def _log(self, text: str) -> None:
        self.progress(f"[{self.now():7.1f} s] {text}")

    def _peer_states(self, index: int) -> dict[str, str] | None:
        node = self.tn.net.nodes[index]
        try:
            with node.client(timeout=2.0) as client:
                reply = client.peers()
        except AdminUnavailable:
            return None
        return {p.node_id: p.state for p in reply.peers}

    def _median_round(self) -> float:
        rounds = [
            int(s.get("round", 0))
            for i, s in self.last_status.items()
            if i in self.honest() and i in self.live()
        ]
        return statistics.median(rounds) if rounds else 0.0

    # --- events --------------------------------------------------------------------------

    def _fire(self, event: ScenarioEvent) -> None:
        t = self.now()
        detail: dict[str, Any] = {"t_s": round(t, 2), "action": event.action}
        tn = self.tn
        if event.action == "partition":
            tn.fabric.partition(event.groups)
            part = _Partition([list(g) for g in event.groups], t)
            self.partitions.append(part)
            detail["groups"] = event.groups
            if event.duration:
                self.undo.append((t + event.duration, "heal", self._heal))
        elif event.action == "heal":
            self._heal()
        elif event.action == "kill":
            for i in event.nodes:
                self._kill(i)
            detail["nodes"] = event.nodes
            if event.duration:
                nodes = list(event.nodes)
                self.undo.append(
                    (t + event.duration, f"restart {nodes}", lambda: self._restart(nodes))
                )
        elif event.action == "restart":
            self._restart(event.nodes)
            detail["nodes"] = event.nodes
        elif event.action == "latency":
            targets = event.nodes or None
            tn.set_delay(event.delay_ms / 1000.0, event.jitter_ms / 1000.0, targets)
            self.delay_ms = event.delay_ms
            detail.update(delay_ms=event.delay_ms, jitter_ms=event.jitter_ms)
            if event.duration:
                self.undo.append(
                    (t + event.duration, "latency off", lambda: tn.set_delay(0.0, 0.0, targets))
                )
        elif event.action == "loss":
            lossy = event.nodes or None
            tn.fabric.set_loss(event.percent, lossy)
            self.loss_percent = event.percent
            detail["percent"] = event.percent
            if event.duration:
                self.undo.append(
                    (t + event.duration, "loss off", lambda: tn.fabric.set_loss(0.0, lossy))
                )
        elif event.action == "byzantine":
            added = []
            for _ in range(event.count):
                extra = ["--attack", event.attack]
                if not self.scenario.train:
                    extra.append("--no-train")
                node = tn.add_node(extra)
                self.byzantine.add(node.index)
                added.append(node.index)
            detail.update(nodes=added, attack=event.attack)
        self.fired.append(detail)
        self._log(f"{event.label}: {detail}")

    def _heal(self) -> None:
        self.tn.fabric.heal()
        for part in self.partitions:
            if part.healed_at is None:
                part.healed_at = self.now()
        self._log("healed every partition")

    def _kill(self, index: int) -> None:
        node = self.tn.net.nodes[index]
        if not node.alive():
            return
        t = self.now()
        self.tn.kill(index)
        for part in self.partitions:
            if part.remerge_s is None:
                part.excluded.add(index)
        observers = self.live() - {index}
        node_id = self.node_ids.get(index, "")
        if node_id:
            self.detections.append(_Detection(index, node_id, t, observers))
        # The process is gone: what it made durable is what a restart may resume from.
        self.restarts[index] = _Restart(index, t, _stored_state(self.tn, index))

    def _restart(self, nodes: list[int]) -> None:
        for i in nodes:
            node = self.tn.net.nodes[i]
            if node.alive():
                continue
            t = self.now()
            rec = self.restarts.get(i) or _Restart(i, t, _stored_state(self.tn, i))
            rec.restarted_at = t
            try:
                rec.log_offset = node.log_path.stat().st_size
            except OSError:
                rec.log_offset = 0
            self.restarts[i] = rec
            for det in self.detections:
                if det.node == i and det.restarted_at is None:
                    det.restarted_at = t
            self.tn.restart(i)
            self._log(f"restarted node {i}")

    # --- observation ---------------------------------------------------------------------

    def _observe(self) -> None:
        statuses = self.tn.net.statuses()
        now = self.now()
        for i, s in statuses.items():
            self.last_status[i] = s
            if s.get("node_id"):
                self.node_ids.setdefault(i, s["node_id"])
            pid = int(s.get("pid", 0))
            self.bytes[(i, pid)] = (int(s.get("bytes_sent", 0)), int(s.get("bytes_received", 0)))
            self.rejected[(i, pid)] = int(s.get("messages_rejected", 0))
            hist = self.history.setdefault(i, {})
            for h in s.get("history", []):
                hist[int(h.get("round", 0))] = (
                    float(h.get("unix_time", 0.0)) - self.t0_wall,
                    float(h.get("accuracy", 0.0)),
                )
            if not self.detections and not self.partitions:
                # Suspicion while no node is down or cut off is a false positive (loss,
                # latency or overload), the cost a bad network imposes on membership.
                self.max_suspect = max(self.max_suspect, int(s.get("peers_suspect", 0)))
        self._observe_restarts(statuses, now)
        if self._views_needed():
            views = {i: self._peer_states(i) for i in self.live()}
            self._observe_detections(views, now)
            self._observe_partitions(views, now)

    def _views_needed(self) -> bool:
        live = self.live()
        return any(not d.done(live) for d in self.detections) or any(
            p.split_s is None or p.remerge_s is None for p in self.partitions
        )

    def _observe_detections(self, views: dict[int, dict[str, str] | None], now: float) -> None:
        for det in self.detections:
            if det.restarted_at is not None:
                continue
            for obs in det.observers:
                view = views.get(obs)
                if not view:
                    continue
                state = view.get(det.node_id, "dead")
                if state in {"suspect", "dead", "left"}:
                    det.first_suspect.setdefault(obs, now - det.killed_at)
                if state in {"dead", "left"}:
                    det.first_dead.setdefault(obs, now - det.killed_at)

    def _observe_partitions(self, views: dict[int, dict[str, str] | None], now: float) -> None:
        live = self.live()
        ids = {i: self.node_ids.get(i, "") for i in live}
        for part in self.partitions:
            group_of = {i: g for g, group in enumerate(part.groups) for i in group}
            if part.split_s is None and part.healed_at is None:
                split = True
                for i in live:
                    view = views.get(i)
                    if view is None:
                        split = False
                        break
                    for j in live - {i}:
                        if group_of.get(j, -1) != group_of.get(i, -1) and (
                            view.get(ids[j]) == "alive"
                        ):
                            split = False
                if split:
                    part.split_s = now - part.at
            if part.healed_at is not None and part.remerge_s is None:
                members = live - part.excluded
                merged = all(
                    (view := views.get(i)) is not None
                    and all(view.get(ids[j]) == "alive" for j in members - {i})
                    for i in members
                )
                if merged:
                    part.remerge_s = now - part.healed_at

    def _observe_restarts(self, statuses: dict[int, dict[str, Any]], now: float) -> None:
        for i, rec in list(self.restarts.items()):
            if rec.restarted_at is None:
                continue
            s = statuses.get(i)
            if s is None:
                continue
            after = rec.after
            after.setdefault("node_id", s.get("node_id"))
            if s.get("learner") and "first_round" not in after:
                after["first_round"] = int(s.get("round", 0))
                after["first_model_hash"] = s.get("model_hash", "")
            if "start_round" not in after:
                try:
                    with open(self.tn.net.nodes[i].log_path, "rb") as fh:
                        fh.seek(rec.log_offset)
                        m = _START_ROUND.search(fh.read().decode(errors="replace"))
                    if m:
                        after["start_round"] = int(m.group(1))
                except OSError:
                    pass
            if "ledger_seq" not in after and rec.stored.get("ledger_seq") is not None:
                try:
                    with self.tn.net.nodes[i].client(timeout=2.0) as client:
                        priv = client.privacy()
                    after["ledger_seq"] = max((r.seq for r in priv.releases), default=0)
                    after["epsilon_spent"] = priv.epsilon_spent
                except AdminUnavailable:
                    pass
            if "rejoined_s" not in after and int(s.get("peers_alive", 0)) >= len(self.live()) - 1:
                after["rejoined_s"] = round(now - (rec.restarted_at or now), 2)
            if s.get("learner") and "caught_up" not in after:
                # A node restarted far behind adopts its peers' checkpoints
                # (node/daemon/catchup.py).
                try:
                    with open(self.tn.net.nodes[i].log_path, "rb") as fh:
                        fh.seek(rec.log_offset)
                        m = _CAUGHT_UP.search(fh.read().decode(errors="replace"))
                    if m:
                        after["caught_up"] = [int(m.group(1)), int(m.group(2))]
                        after["caught_up_s"] = round(now - (rec.restarted_at or now), 2)
                except OSError:
                    pass

    def _training_done(self) -> bool:
        if not self.scenario.train:
            return True
        honest_live = self.honest() & self.live()
        return bool(honest_live) and all(
            int(self.last_status.get(i, {}).get("round", 0)) >= self.scenario.rounds
            for i in honest_live
        )

    # --- run -----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Start the testnet, run every event, observe, always tear down; the report."""
        sc = self.scenario
        started = time.monotonic()
        interrupted = False
        # Network conditions at t=0 hold from the first packet on, not from when the
        # nodes happen to have formed a full view.
        initial = [e for e in sc.events if e.at == 0 and e.action in {"latency", "loss"}]
        self.t0 = started

        def apply_initial() -> None:
            for event in initial:
                self._fire(event)

        self.tn.before_nodes = apply_initial
        with self.tn:
            self.t0 = time.monotonic()
            startup_s = self.t0 - started
            full_view_s = self.tn.net.wait_full_view(timeout=180)
            self.t0 = time.monotonic()
            self.t0_wall = time.time()
            self._log(f"{sc.nodes} nodes formed a full view; running {len(sc.events)} events")
            pending = sorted(
                (e for e in sc.events if e not in initial),
                key=lambda e: (e.at if e.at is not None else float("inf"), e.round or 0),
            )
            try:
                while self.now() < sc.duration:
                    tick = time.monotonic()
                    self._observe()
                    self.ticks.append(time.monotonic() - tick)
                    now = self.now()
                    for due, what, fn in sorted(self.undo, key=lambda u: u[0]):
                        if due <= now:
                            self.undo.remove((due, what, fn))
                            fn()
                            self.fired.append({"t_s": round(now, 2), "action": what})
                    median = self._median_round()
                    for event in list(pending):
                        ready = (event.at is not None and event.at <= now) or (
                            event.round is not None and median >= event.round
                        )
                        if ready:
                            pending.remove(event)
                            self._fire(event)
                    if (
                        not pending
                        and not self.undo
                        and not self._views_needed()
                        and self._training_done()
                        and all(
                            "rejoined_s" in r.after
                            for r in self.restarts.values()
                            if r.restarted_at is not None
                        )
                    ):
                        break
                    time.sleep(TICK_S)
                self._observe()
            except KeyboardInterrupt:
                interrupted = True
                self._log("interrupted: tearing the testnet down")
        return self._report(startup_s, full_view_s, time.monotonic() - started, interrupted)

    def _report(
        self, startup_s: float, full_view_s: float, wall_s: float, interrupted: bool
    ) -> dict[str, Any]:
        sc = self.scenario
        honest = sorted(self.honest())
        final = {i: self.history[i][max(self.history[i])][1] for i in honest if self.history.get(i)}
        timeline: list[list[float]] = []
        horizon = max((t for h in self.history.values() for t, _ in h.values()), default=0.0)
        step = 10.0
        t = 0.0
        while t <= horizon + step:
            latest = []
            for i in honest:
                points = [(tt, acc) for tt, acc in self.history.get(i, {}).values() if tt <= t]
                if points:
                    latest.append(max(points)[1])
            if latest:
                timeline.append([round(t, 1), round(sum(latest) / len(latest), 4), len(latest)])
            t += step
        sent = sum(v[0] for (i, _), v in self.bytes.items() if i in self.honest())
        received = sum(v[1] for (i, _), v in self.bytes.items() if i in self.honest())
        return {
            "scenario": sc.name,
            "nodes": sc.nodes,
            "byzantine": sorted(self.byzantine),
            "task": sc.task if sc.train else None,
            "rounds": sc.rounds if sc.train else None,
            "gossip_profile": sc.gossip_profile,
            "wall_s": round(wall_s, 1),
            "startup_s": round(startup_s, 1),
            "full_view_s": round(full_view_s, 2),
            "interrupted": interrupted,
            "events": self.fired,
            "honest_accuracy_final": round(sum(final.values()) / len(final), 4) if final else None,
            "honest_accuracy_per_node": {str(i): round(a, 4) for i, a in final.items()},
            "honest_accuracy_timeline": timeline,
            "rounds_reached": {
                str(i): int(s.get("round", 0)) for i, s in sorted(self.last_status.items())
            },
            "detections": [d.report() for d in self.detections],
            "partitions": [p.report() for p in self.partitions],
            "restarts": [r.report() for r in self.restarts.values()],
            "bytes_sent": sent,
            "bytes_received": received,
            "messages_rejected": sum(self.rejected.values()),
            "max_false_suspects": self.max_suspect,
            "observe_tick_s": round(statistics.mean(self.ticks), 3) if self.ticks else None,
            "loss_percent": self.loss_percent,
            "delay_ms": self.delay_ms,
            "workdir": str(self.root),
        }


def run_scenario(
    scenario: Scenario,
    root: Path | None = None,
    *,
    nodes: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run ``scenario`` (optionally with another node count) and return its report."""
    if nodes is not None and nodes != scenario.nodes:
        try:
            scenario = Scenario.model_validate(
                {**scenario.model_dump(by_alias=True), "nodes": nodes}
            )
        except ValidationError as exc:
            raise ScenarioError(_one_line(f"--nodes {nodes}", exc)) from None
    return ScenarioRunner(scenario, root, progress=progress).run()
