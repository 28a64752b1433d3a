"""``fednode simulate``: a whole network from a genesis file, in one process.

The nodes run the daemon's round engine, learners and aggregation rules
(:func:`node.sim.rounds.simulate` for ``sgd`` and ``flower``,
:func:`~node.sim.rounds.simulate_spsa` for ``spsa``) over an in-memory exchange on
a simulated clock: no gRPC, no sockets, deterministic from the seed. Node-level DP goes
through the daemon's :class:`~node.daemon.privacy_guard.ReleaseGuard` over one SQLite ledger per
node in a temporary directory.

This module imports no torch at load time: ``fednode`` imports it on every call.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from node.cli.accuracy_plot import plot_accuracy_band, plot_accuracy_lines
from node.cli.output import console, err_console, human_bytes
from node.training.genesis import Genesis, GenesisError, load_genesis, parse_genesis

if TYPE_CHECKING:
    import torch

    from node.sim.ray_hosts import RayHosts

__all__ = ["SimulateError", "SimulationRun", "prepare_genesis", "run_simulation", "simulate"]

DEFAULT_ROUNDS = 10
"""Rounds simulated when neither ``--rounds`` nor the genesis's ``rounds.max_rounds`` says."""


PER_NODE_PLOT_MAX = 12
"""Up to this many nodes the plot has a line per node (as ``testnet up``'s), else a band."""


class SimulateError(Exception):
    """A genesis or option the simulation cannot run faithfully; ``str()`` is one line."""


@dataclass
class SimulationRun:
    """What :func:`run_simulation` measured.

    ``history`` maps rounds completed (1-based) to each node's test accuracy on its local
    split; ``per_node`` has one dict per node (rounds, accuracy, bytes, rejected).
    """

    genesis: Genesis
    rounds: int
    wall_s: float
    history: dict[int, list[float]]
    per_node: list[dict[str, Any]]
    messages: int
    bytes_sent: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def final_accuracy(self) -> list[float]:
        """Each node's accuracy at the last evaluation."""
        return [float(row["accuracy"]) for row in self.per_node]

    @property
    def mean_accuracy(self) -> float:
        """Mean of :attr:`final_accuracy`."""
        accs = self.final_accuracy
        return sum(accs) / len(accs)


def prepare_genesis(
    gen: Genesis, *, nodes: int | None = None, seed: int | None = None, source: str = "genesis"
) -> Genesis:
    """``gen`` with ``task.num_nodes`` and ``network.seed`` replaced, validated again.

    The result is a different network (its id changes). Errors come from the genesis
    loader, as one line.

    Raises
    ------
    GenesisError
        When the changed genesis is invalid.
    SimulateError
        When it uses a mechanism that lives in the daemon's runtime and that the
        in-process simulation does not run (its results would not be the daemon's).
    """
    if nodes is not None or seed is not None:
        import tomli_w

        # Only what the file set: the engine's copies of [aggregation] under [rounds] are
        # refused when written, and defaults are filled in again.
        data = gen.model_dump(mode="json", exclude_unset=True)
        if nodes is not None:
            data.setdefault("task", {})["num_nodes"] = nodes
        if seed is not None:
            data.setdefault("network", {})["seed"] = seed
        gen = parse_genesis(tomli_w.dumps(data), source=source)
    agg, privacy = gen.aggregation, gen.privacy
    if agg.sybil_weighting:
        raise SimulateError(
            "aggregation.sybil_weighting is applied by the daemon's runtime, not the round "
            "engine, and is not simulated; run it with fednode testnet up --genesis"
        )
    if privacy.sample_epsilon is not None:
        raise SimulateError(
            "privacy.sample_epsilon (a record-level budget that stops training) is not "
            "simulated; remove it, or run fednode testnet up --genesis"
        )
    if privacy.enabled and gen.learner.kind == "spsa":
        raise SimulateError(
            "privacy.enabled with learner 'spsa' is not simulated (only vector learners "
            "release through the guard here); run fednode testnet up --genesis"
        )
    if gen.task.num_nodes < 2:
        raise SimulateError("a network needs at least 2 nodes (task.num_nodes or --nodes)")
    return gen


class _GuardedRelease:
    """The daemon's release step: each node's update through its own guard and ledger."""

    def __init__(self, gen: Genesis, root: Path) -> None:
        # Imported here, as below: the guard loads torch, which this module must not
        # load when `fednode` starts (see the module docstring).
        from node.daemon.privacy_guard import ReleaseGuard

        self.gen, self.root = gen, root
        self.guards: dict[int, ReleaseGuard] = {}

    def __call__(
        self, i: int, round_idx: int, vector: torch.Tensor, base: torch.Tensor
    ) -> torch.Tensor:
        from node.daemon.privacy_guard import ReleaseGuard, ReleaseRefused
        from node.storage import open_store

        if i not in self.guards:
            store = open_store(data_dir=self.root / f"node-{i}")
            self.guards[i] = ReleaseGuard(self.gen.privacy, store)
        try:
            return base + self.guards[i].release(vector - base)
        except ReleaseRefused as exc:
            # A daemon would go on without releasing; this engine always sends.
            raise SimulateError(
                f"node {i} may not release in round {round_idx + 1} ({exc}); the daemon "
                "would stop releasing there, which the simulation does not model: lower "
                "--rounds or raise privacy.epsilon_budget"
            ) from None

    def spent(self, n: int) -> list[float]:
        """Node-level epsilon each node spent."""
        return [float(self.guards[i].spent()) for i in range(n)]

    def close(self) -> None:
        for guard in self.guards.values():
            guard.store.close()


def run_simulation(
    gen: Genesis,
    *,
    rounds: int,
    on_round: Callable[[int, list[float], float], None] | None = None,
    ray: str | None = None,
    ray_actors: int | None = None,
) -> SimulationRun:
    """Simulate ``gen``'s network for ``rounds`` rounds in this process.

    Parameters
    ----------
    gen
        A genesis accepted by :func:`prepare_genesis`.
    rounds
        Rounds per node (overrides ``rounds.max_rounds``).
    on_round
        Default None. Called with (rounds completed, each node's accuracy, wall seconds
        so far) at every round where every node evaluated.
    ray
        Default None: every node in this process. Otherwise the nodes' models and data
        live in Ray actors (:class:`~node.sim.ray_hosts.RayHosts`) on the cluster at this
        address, or on a Ray instance started here with ``"local"``; the results are the
        same bit for bit. Learners ``sgd`` and ``flower`` only.
    ray_actors
        Default None: one actor per CPU of the Ray cluster. How many actors hold the
        nodes (at most this many train at once).

    Raises
    ------
    SimulateError
        A privacy budget that runs out before the last round; ``ray`` with the ``spsa``
        learner, or a Ray cluster that cannot be started or reached.
    """
    import torch

    from node.sim.rounds import simulate as simulate_vectors
    from node.sim.rounds import simulate_spsa

    privacy = gen.privacy
    if privacy.enabled:
        from privacy.accounting import epsilon

        # Each round is one release of each node (sample rate 1, one step), as the guard
        # debits it; refusing here saves a run that would stop at the budget.
        need = epsilon(privacy.noise_multiplier, 1.0, rounds, privacy.delta)
        if need > privacy.epsilon_budget:
            raise SimulateError(
                f"{rounds} rounds spend epsilon {need:.3f} per node at noise_multiplier "
                f"{privacy.noise_multiplier:g}, above privacy.epsilon_budget "
                f"{privacy.epsilon_budget:g}; the daemon would stop releasing there, which the "
                "simulation does not model: lower --rounds, or raise the budget or the noise"
            )
    torch.set_num_threads(1)  # as a daemon on a shared machine; results do not depend on it
    t0 = time.monotonic()

    def progress(r: int, accs: list[float]) -> None:
        if on_round is not None:
            on_round(r + 1, accs, time.monotonic() - t0)

    n, seed = gen.task.num_nodes, gen.network.seed
    if ray is not None and gen.learner.kind == "spsa":
        raise SimulateError(
            "--ray runs the vector learners (sgd, flower); spsa nodes exchange a few bytes "
            "per round and simulate in this process: drop --ray"
        )
    if gen.learner.kind == "spsa":
        rule = gen.aggregation.rule
        shared = rule if rule in {"median", "trimmed_mean"} else "mean"  # as spsa_runtime
        spsa = simulate_spsa(
            gen.task,
            gen.learner,
            seed=seed,
            num_rounds=rounds,
            eval_every=gen.rounds.eval_every,
            shared_rule=shared,
            shared_trim=gen.aggregation.f if shared == "trimmed_mean" else 0,
            on_round=progress,
        )
        total = sum(spsa.bytes_sent_by_node)
        per_node: list[dict[str, Any]] = [
            {
                "node": i,
                "rounds": rounds,
                "accuracy": spsa.final_accuracy[i],
                "bytes_sent": spsa.bytes_sent_by_node[i],
                "bytes_received": total - spsa.bytes_sent_by_node[i],
                "rejected": 0,
            }
            for i in range(n)
        ]
        return SimulationRun(
            gen,
            rounds,
            time.monotonic() - t0,
            {r + 1: accs for r, accs in spsa.history.items()},
            per_node,
            messages=n * (n - 1) * rounds,
            bytes_sent=spsa.bytes_sent,
            extra={"models_agree": len(set(spsa.model_hashes)) == 1, "entries": spsa.entries},
        )
    extra: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="fednode-simulate-") as tmp:
        release = _GuardedRelease(gen, Path(tmp)) if gen.privacy.enabled else None
        hosts = _ray_hosts(gen, ray, ray_actors) if ray is not None else None
        try:
            res = simulate_vectors(
                gen.task,
                gen.learner,
                gen.round_spec(),
                seed=seed,
                num_rounds=rounds,
                on_round=progress,
                release=release,
                hosts=hosts,
            )
            spent = release.spent(n) if release is not None else None
            if hosts is not None:
                rss = hosts.actor_rss_bytes()
                extra["ray"] = {
                    "actors": hosts.actors,
                    "actor_rss_bytes": rss,
                    "nodes_per_actor": -(-n // hosts.actors),
                }
        finally:
            if release is not None:
                release.close()
            if hosts is not None:
                hosts.close()
    per_node = [
        {
            "node": i,
            "rounds": int(res.stats[i].get("rounds", 0)),
            "accuracy": res.final_accuracy[i],
            "bytes_sent": res.bytes_sent_by_node[i],
            "bytes_received": res.bytes_received_by_node[i],
            "rejected": sum(v for k, v in res.stats[i].items() if k.startswith("rejected_")),
            # Mostly "done"/"stale": replies that arrive after the node aggregated the round.
            "rejected_by_reason": {
                k.removeprefix("rejected_"): v
                for k, v in sorted(res.stats[i].items())
                if k.startswith("rejected_") and v
            },
            **({"epsilon_spent": spent[i]} if spent is not None else {}),
        }
        for i in range(n)
    ]
    return SimulationRun(
        gen,
        rounds,
        time.monotonic() - t0,
        {r + 1: accs for r, accs in res.history.items()},
        per_node,
        messages=res.messages,
        bytes_sent=res.bytes_sent,
        extra={"sim_time_s": res.sim_time, **extra},
    )


def _ray_hosts(gen: Genesis, address: str, actors: int | None) -> RayHosts:
    from node.sim.ray_hosts import RayHosts, RayUnavailable, connect

    try:
        resources = connect(address)
    except RayUnavailable as exc:
        raise SimulateError(str(exc)) from None
    cpus = max(1.0, float(resources.get("CPU", 1)))
    count = actors if actors is not None else int(cpus)
    # Actors waiting for CPUs that never free up would hang the run: share them instead.
    return RayHosts(
        gen.task,
        gen.learner,
        seed=gen.network.seed,
        actors=count,
        cpus_per_actor=min(1.0, cpus / count),
    )


def _error(exc: Exception) -> None:
    # Messages name TOML tables ("[rounds]"), which rich would take for markup.
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)


def _summary(run: SimulationRun, source: Path, plot: Path | None) -> dict[str, Any]:
    gen = run.genesis
    return {
        "genesis": str(source),
        "network_id": gen.network_id_hex,
        "nodes": gen.task.num_nodes,
        "task": gen.task.name,
        "learner": gen.learner.kind,
        "rule": gen.aggregation.rule,
        "seed": gen.network.seed,
        "rounds": run.rounds,
        "wall_s": round(run.wall_s, 2),
        "mean_accuracy": run.mean_accuracy,
        "messages": run.messages,
        "bytes_sent": run.bytes_sent,
        "history": {str(r): accs for r, accs in run.history.items()},
        "per_node": run.per_node,
        "plot": None if plot is None else str(plot),
        **run.extra,
    }


def simulate(
    genesis_file: Annotated[
        Path, typer.Argument(metavar="GENESIS.toml", help="The network's genesis file.")
    ],
    rounds: Annotated[
        int | None,
        typer.Option(
            "--rounds",
            "-r",
            min=1,
            help="Rounds per node.",
            show_default=f"the genesis's rounds.max_rounds, else {DEFAULT_ROUNDS}",
        ),
    ] = None,
    nodes: Annotated[
        int | None,
        typer.Option(
            "--nodes",
            "-n",
            min=2,
            help="Number of nodes; each gets one shard, so this also re-partitions the data "
            "(a different network id).",
            show_default="the genesis's task.num_nodes",
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Folder for simulate-accuracy.png and simulate-results.json (created).",
        ),
    ] = Path("."),
    seed: Annotated[
        int | None,
        typer.Option(
            help="Genesis seed (model init, data partition, peer sampling, SPSA seeds).",
            show_default="the genesis's network.seed",
        ),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="text, or json (the summary on stdout).")
    ] = "text",
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="Spread the nodes' models and data over Ray actors: 'local' starts Ray on "
            "this machine; an address such as 10.0.0.5:6379 (what 'ray start --head' "
            "prints) or 'auto' joins a running cluster. Same results as without it. "
            "Learners sgd and flower.",
            show_default="every node in this process",
        ),
    ] = None,
    ray_actors: Annotated[
        int | None,
        typer.Option(
            "--ray-actors",
            min=1,
            help="With --ray: how many actors hold the nodes (node i lives in actor i mod "
            "this); at most this many nodes train at once.",
            show_default="one per CPU of the Ray cluster",
        ),
    ] = None,
) -> None:
    """Simulate a whole network from a genesis file, in this process: no daemons, no gRPC.

    Every node runs the daemon's round engine, learner and aggregation rule over an
    in-memory exchange on a simulated clock (learners sgd and flower: peers sampled each
    round, push-pull; spsa: every scalar batch reaches every node), so the same genesis
    and seed give the same accuracies on every run. Node-level DP debits one ledger per
    node through the daemon's release guard. Prints one line per evaluated round, then a
    table per node, and writes an accuracy plot and a JSON summary to --out.

    Not simulated (refused with a message): aggregation.sybil_weighting,
    privacy.sample_epsilon, and privacy with learner spsa.

    With --ray the nodes' models, data and training live in a bounded pool of Ray
    actors (on this machine with --ray local, or a cluster), never one process per node;
    the round engines stay in this process.

    Example: fednode simulate net.toml --rounds 20 --nodes 16 --out sim/
    """
    if fmt not in {"text", "json"}:
        raise typer.BadParameter("--format must be text or json")
    if ray_actors is not None and ray is None:
        raise typer.BadParameter("--ray-actors needs --ray")
    try:
        gen = prepare_genesis(
            load_genesis(genesis_file),
            nodes=nodes,
            seed=seed,
            source=f"{genesis_file}" + (f" with --nodes {nodes}" if nodes is not None else ""),
        )
    except (GenesisError, SimulateError) as exc:
        _error(exc)
        raise typer.Exit(1) from None
    num_rounds = rounds or gen.rounds.max_rounds or DEFAULT_ROUNDS
    n = gen.task.num_nodes
    say = console if fmt == "text" else err_console  # json: stdout stays one document
    say.print(
        f"simulating {n} nodes of network {gen.network.name} ({gen.network_id_hex[:16]}), "
        f"task {gen.task.name}, learner {gen.learner.kind}, rule {gen.aggregation.rule}, "
        f"seed {gen.network.seed}, {num_rounds} rounds"
        + (f", nodes on Ray ({ray})" if ray is not None else ""),
        highlight=False,
        soft_wrap=True,
    )

    def line(r: int, accs: list[float], elapsed: float) -> None:
        say.print(
            f"round {r:>4}/{num_rounds}  accuracy mean {sum(accs) / len(accs):.3f}  "
            f"min {min(accs):.3f}  max {max(accs):.3f}  {elapsed:7.1f} s",
            highlight=False,
        )

    try:
        run = run_simulation(gen, rounds=num_rounds, on_round=line, ray=ray, ray_actors=ray_actors)
    except SimulateError as exc:
        _error(exc)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(130) from None
    out.mkdir(parents=True, exist_ok=True)
    plot = out / "simulate-accuracy.png"
    title = f"{gen.task.name}, {n} nodes, {gen.learner.kind}, {gen.aggregation.rule} (simulated)"
    if n <= PER_NODE_PLOT_MAX and len(run.history) > 1:
        per_node = {i: [(r, accs[i]) for r, accs in sorted(run.history.items())] for i in range(n)}
        wrote = plot_accuracy_lines(per_node, plot, title)
    else:
        wrote = plot_accuracy_band(run.history, plot, title)
    summary = _summary(run, genesis_file, plot if wrote else None)
    (out / "simulate-results.json").write_text(json.dumps(summary, indent=2) + "\n")
    if fmt == "json":
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    private = any("epsilon_spent" in row for row in run.per_node)
    table = Table(title="fednode simulate results")
    for col in ["node", "round", "accuracy", "sent", "received", "rejected"] + (
        ["epsilon"] if private else []
    ):
        table.add_column(col, justify="right")
    for row in run.per_node:
        table.add_row(
            str(row["node"]),
            str(row["rounds"]),
            f"{row['accuracy']:.3f}",
            human_bytes(row["bytes_sent"]),
            human_bytes(row["bytes_received"]),
            str(row["rejected"]),
            *([f"{row['epsilon_spent']:.2f}"] if private else []),
        )
    console.print(table)
    if "ray" in run.extra:
        info = run.extra["ray"]
        console.print(
            f"Ray: {info['actors']} actors, up to {info['nodes_per_actor']} nodes each, "
            f"resident memory per actor {human_bytes(max(info['actor_rss_bytes']))} at most",
            highlight=False,
        )
    console.print(
        f"wall time {run.wall_s:.1f} s; {run.messages} messages, {human_bytes(run.bytes_sent)} of "
        f"updates; mean accuracy {run.mean_accuracy:.3f}"
        + (f"; plot: {plot}" if wrote else "")
        + f"; summary: {out / 'simulate-results.json'}",
        highlight=False,
        soft_wrap=True,
    )
