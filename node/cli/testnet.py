"""``fednode testnet``: run a local network of real node processes."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.live import Live
from rich.table import Table

from node.cli.accuracy_plot import plot_accuracy_lines
from node.cli.options import comma_list
from node.cli.output import console, err_console, human_bytes
from node.cli.scenario import register as _register_scenarios
from node.cli.wide import print_wide
from node.dashboard import dashboard_url
from node.testnet.local import Testnet, TestnetError
from node.testnet.netns import NetnsError, NetnsTestnet
from node.training.genesis import Genesis, GenesisError, load_genesis, task_and_learner
from node.training.spec import TaskSpec

__all__ = ["testnet_app"]

testnet_app = typer.Typer(
    help="Run a local testnet: N real fednode processes on loopback.", no_args_is_help=True
)


def _one_line(exc: Exception) -> str:
    """One line naming the setting and the reason (pydantic's first line names neither)."""
    if isinstance(exc, ValidationError) and exc.errors():
        err = exc.errors()[0]
        where = ".".join(map(str, err["loc"]))
        return f"{where}: {err['msg']}" if where else str(err["msg"])
    return str(exc).splitlines()[0]


def _private(status: dict[str, Any]) -> bool:
    return bool((status.get("node_privacy") or {}).get("enabled"))


def _privacy_cell(status: dict[str, Any]) -> str:
    """Epsilon spent, and "stopped" once the node releases nothing (its peers skip it)."""
    spent = float(status.get("epsilon_spent", 0.0))
    releasing = bool(status.get("releasing", True))
    return f"{spent:.2f}" + ("" if releasing else " stopped")


def _progress_table(
    statuses: dict[int, dict[str, Any]], nodes: int, rounds: int, elapsed: float
) -> Table:
    table = Table(title=f"fednode testnet: {nodes} nodes, {elapsed:.0f} s")
    private = any(_private(s) for s in statuses.values())
    cols = ["node", "id", "round", "accuracy", "peers", "sent", "received", "rejected"]
    if private:
        cols.append("epsilon")
    for col in cols:
        table.add_column(col, justify="right" if col not in {"id"} else "left")
    for i in range(nodes):
        s = statuses.get(i)
        if s is None:
            table.add_row(str(i), "-", "-", "-", "-", "-", "-", "down", *(["-"] if private else []))
            continue
        acc = s.get("last_accuracy", 0.0)
        table.add_row(
            str(i),
            str(s.get("node_id", ""))[:12],
            f"{int(s.get('round', 0))}/{rounds}" if s.get("learner") else "-",
            f"{acc:.3f}" if s.get("learner") and int(s.get("round", 0)) > 0 else "-",
            str(s.get("peers_alive", 0)),
            human_bytes(int(s.get("bytes_sent", 0))),
            human_bytes(int(s.get("bytes_received", 0))),
            str(s.get("messages_rejected", 0)),
            *([_privacy_cell(s)] if private else []),
        )
    return table


def _dashboard_url(net: Testnet) -> str | None:
    """Node 0's dashboard URL with its token, or None when it serves no dashboard."""
    node = net.nodes[0]
    info = node.runtime() or {}
    base = info.get("dashboard")
    if not base:
        return None
    return dashboard_url(str(base), node.data_dir.admin_token(create=False))


def _check_data_columns(task: TaskSpec) -> None:
    """Fail before any node starts when a Hugging Face task's file lacks a named column.

    Every node would otherwise fail the same way while loading its shard, and the testnet
    would only time out.
    """
    if not task.is_hf or not task.data_path:
        return
    from node.training.hf.data import read_table

    columns = [task.text_column]
    if task.name == "text-classification":
        columns.append(task.label_column)
    try:
        read_table(task.data_path, columns)
    except Exception as exc:
        raise typer.BadParameter(_one_line(exc)) from None


def testnet_genesis(
    *,
    nodes: int,
    task: str = "mnist1d",
    model: str | None = None,
    learner: str = "sgd",
    flower_client: str | None = None,
    rounds: int = 20,
    rule: str = "mean",
    byzantine: int = 0,
    f: int | None = None,
    observed_f: bool = False,
    seed: int = 1,
    eval_every: int = 1,
    epsilon: float | None = None,
    noise: float = 6.5,
    clip: float = 1.0,
    sybil_weighting: bool = False,
    data: str | None = None,
    task_options: dict[str, Any] | None = None,
    learner_options: dict[str, Any] | None = None,
    gossip_rate: float | None = None,
    peers: int | None = None,
) -> Genesis:
    """The genesis ``fednode testnet up`` runs with these options (the compose testnet's
    ``deploy/genesis.toml`` is one of them; a test keeps the two equal).

    ``f`` is the rule's tolerated Byzantine count [default: ``byzantine``]; set apart from
    ``byzantine`` it measures what a rule configured for ``f`` costs with fewer attackers.
    ``gossip_rate`` set runs the asynchronous mode with it (pushes per second per node; the
    compute clock keeps its default) [default: None, rounds]. ``peers`` is
    ``rounds.peers_per_round``, at most ``nodes - 1`` [default: None, the genesis default 3].

    Raises
    ------
    pydantic.ValidationError
        If the combination is invalid (e.g. ``cnn`` outside mnist1d).
    """
    if not model and task == "mnist1d" and learner == "sgd":
        model = "cnn"  # the headline model: within a point of FedAvg (training.md)
    task_spec, learner_spec = task_and_learner(
        task,
        learner,
        model=model,
        data=data,
        task_options={"num_nodes": nodes, **(task_options or {})},
        learner_options={"flower_client": flower_client, **(learner_options or {})},
    )
    return Genesis.model_validate(
        {
            "network": {
                "name": f"testnet-{task}",
                "seed": seed,
                "pow_difficulty": 8,
                "gossip_profile": "local",
            },
            "task": task_spec,
            "learner": learner_spec,
            "aggregation": {
                "rule": rule,
                "f": byzantine if f is None else f,
                "observed_f": observed_f,
                "sybil_weighting": sybil_weighting,
            },
            "rounds": {
                "max_rounds": rounds,
                "eval_every": eval_every,
                **({"peers_per_round": min(peers, nodes - 1)} if peers is not None else {}),
                # Measured in docs/training.md: merging every reply of the round and
                # FedAvg's sample weighting close most of the gap to FedAvg. Weighting
                # trusts self-reported example counts, so only on an honest testnet, and
                # never under DP (an example count computed from the data is not sent).
                "await_replies": True,
                **(
                    {"asynchronous": {"gossip_rate": gossip_rate}}
                    if gossip_rate is not None
                    else {}
                ),
                "weight_by_examples": rule == "mean"
                and byzantine == 0
                and not sybil_weighting
                and epsilon is None,
            },
            "privacy": (
                {
                    "enabled": True,
                    "epsilon_budget": epsilon,
                    "noise_multiplier": noise,
                    "clip": clip,
                }
                if epsilon is not None
                else {}
            ),
        }
    )


def _list_attacks() -> None:
    """Print every attack ``--attack`` takes, one line each."""
    # Imported here (and below): the collusion harness loads torch (python -X importtime).
    from node.testnet.collusion import COLLUDING_ATTACKS

    console.print("colluding attackers (the default, --collude):")
    for name, doc in sorted(COLLUDING_ATTACKS.items()):
        console.print(f"  {name:14} {doc}", highlight=False, soft_wrap=True)
    console.print(
        "each attacker on its own (--no-collude): aggregation.ATTACKS (no dissensus; inf, nan)"
    )


@testnet_app.command("up")
def up(
    ctx: typer.Context,
    nodes: Annotated[
        int | None,
        typer.Option(
            "--nodes",
            "-n",
            help="Number of node processes.",
            show_default="3, or the genesis's task.num_nodes with --genesis",
        ),
    ] = None,
    genesis_file: Annotated[
        Path | None,
        typer.Option(
            "--genesis",
            "-g",
            help="Run this existing genesis file (task, learner and rounds flags are then "
            "ignored; node i trains shard i mod task.num_nodes).",
        ),
    ] = None,
    task: Annotated[
        str,
        typer.Option(
            help="mnist1d, digits, sentiment, text-classification, causal-lm (with --model "
            "and --data) or python (with --factory)."
        ),
    ] = "mnist1d",
    model: Annotated[
        str | None,
        typer.Option(
            help="mlp or cnn; a Hugging Face model folder for text-classification/causal-lm.",
            show_default="cnn for mnist1d with --learner sgd (0.91 in 20 rounds on 3 nodes), "
            "else the task's own",
        ),
    ] = None,
    data: Annotated[
        str | None, typer.Option(help="Data file of a Hugging Face or local task.")
    ] = None,
    factory: Annotated[
        str | None,
        typer.Option(help="python task: module:attribute of the factory (on PYTHONPATH)."),
    ] = None,
    local_steps: Annotated[
        int | None, typer.Option(help="sgd: local steps per round.", show_default="per task")
    ] = None,
    spsa_steps: Annotated[
        int | None, typer.Option(help="spsa: steps per node per round.", show_default="per task")
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate.", show_default="per task")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Minibatch size.", show_default="per task")
    ] = None,
    max_samples: Annotated[
        int | None,
        typer.Option(
            help="Subsample the labelled pool to this many rows.", show_default="per task"
        ),
    ] = None,
    max_length: Annotated[
        int | None, typer.Option(help="Token length of text inputs.", show_default="per task")
    ] = None,
    text_column: Annotated[
        str | None,
        typer.Option(help="Text column of a Hugging Face task's file.", show_default="text"),
    ] = None,
    label_column: Annotated[
        str | None,
        typer.Option(help="Label column of the data file.", show_default="label"),
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(
            help="text-classification: comma-separated label values to keep, in class order.",
            show_default="every value, sorted",
        ),
    ] = None,
    pooling: Annotated[
        str | None,
        typer.Option(
            help="text-classification: model (the Auto class's head) or mean (mask-averaged "
            "token states under a new head).",
            show_default="mean for a sentence-transformers folder, else model",
        ),
    ] = None,
    lora_rank: Annotated[
        int | None,
        typer.Option(help="LoRA rank; 0 trains only the classification head.", show_default="8"),
    ] = None,
    learner: Annotated[str, typer.Option(help="sgd, spsa or flower.")] = "sgd",
    flower_client: Annotated[
        str | None,
        typer.Option(
            help="With --learner flower: an unmodified Flower NumPyClient, client_fn or "
            "ClientApp as module:attribute, e.g. node.training.examples.digits_client:client_fn "
            "(its folder on PYTHONPATH)."
        ),
    ] = None,
    flower_initial: Annotated[
        str | None,
        typer.Option(help="Initial model of a Message-API ClientApp (module:attribute)."),
    ] = None,
    rounds: Annotated[int, typer.Option(help="Training rounds per node.")] = 20,
    rule: Annotated[str, typer.Option(help="Aggregation rule.")] = "mean",
    compare_rule: Annotated[
        str | None,
        typer.Option(
            help="Then run the same network (same seed, shards and attackers) with this rule "
            "and print both side by side, e.g. --rule mean --compare-rule median "
            "(each run writes its own plot: PLOT-RULE.png).",
        ),
    ] = None,
    byzantine: Annotated[int, typer.Option(help="How many nodes are malicious.")] = 0,
    slow_nodes: Annotated[
        int,
        typer.Option(
            "--slow-nodes",
            min=0,
            help="Make this many nodes stragglers (nodes 0, N/K, 2N/K, ...): once all nodes "
            "see each other, each is held by a Linux cgroup to its fair share of this machine's "
            "CPUs divided by --slowdown. Needs root (or a delegated cgroup).",
        ),
    ] = 0,
    slowdown: Annotated[
        float,
        typer.Option(
            "--slowdown",
            min=1.0,
            help="With --slow-nodes: how many times less CPU a straggler gets than a "
            "node's fair share (CPUs / nodes).",
        ),
    ] = 4.0,
    f: Annotated[
        int | None,
        typer.Option(
            "--f",
            min=0,
            help="Byzantine peers the rule tolerates, independent of --byzantine (f=2 with "
            "no attacker measures what the rule costs).",
            show_default="--byzantine",
        ),
    ] = None,
    observed_f: Annotated[
        bool,
        typer.Option(
            "--observed-f",
            help="Lower the rule's f per merge to the rows that look Byzantine (cheap robust "
            "default: no cost without an attacker).",
        ),
    ] = False,
    attack: Annotated[
        str,
        typer.Option(
            help="Attack of the malicious nodes, with parameters as name:key=value (e.g. "
            "ipm:eps=100); `--attack list` lists them.",
        ),
    ] = "sign_flip",
    collude: Annotated[
        bool,
        typer.Option(
            help="The Byzantine nodes pool what they receive through a rendezvous directory "
            "and attack together (node/testnet/collusion.py; adds the dissensus attack).",
        ),
    ] = True,
    asynchronous: Annotated[
        bool,
        typer.Option(
            "--asynchronous",
            help="No rounds: every node trains and pushes its model to one random peer on "
            "independent Poisson clocks and merges what arrives at once (docs/training.md, "
            "the asynchronous mode); --rounds then counts each node's local trainings.",
        ),
    ] = False,
    gossip_rate: Annotated[
        float,
        typer.Option(
            "--gossip-rate",
            min=0.01,
            help="With --asynchronous: pushes per second per node.",
        ),
    ] = 2.0,
    peers: Annotated[
        int | None,
        typer.Option(
            "--peers",
            min=1,
            help="Peers each node exchanges with per round (rounds.peers_per_round, at most "
            "nodes - 1). More peers mean more rows per merge: a robust rule configured for f "
            "then discards a smaller share of honest rows (docs/aggregation.md).",
            show_default="3",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Genesis seed.")] = 1,
    eval_every: Annotated[int, typer.Option(help="Evaluate every E rounds.")] = 1,
    epsilon: Annotated[
        float | None,
        typer.Option(help="Turn on node-level DP with this epsilon budget per node."),
    ] = None,
    noise: Annotated[float, typer.Option(help="DP noise multiplier (with --epsilon).")] = 6.5,
    clip: Annotated[float, typer.Option(help="DP clipping norm (with --epsilon).")] = 1.0,
    sybil_weighting: Annotated[
        bool, typer.Option(help="Drop peers with suspiciously similar update histories.")
    ] = False,
    workdir: Annotated[
        Path | None,
        typer.Option(
            help="Keep node state here.", show_default="a temporary directory, removed after"
        ),
    ] = None,
    plot: Annotated[Path, typer.Option(help="Where to write the accuracy plot (PNG).")] = Path(
        "testnet-accuracy.png"
    ),
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 1800.0,
    start_timeout: Annotated[
        float,
        typer.Option(help="Seconds every node process may take to start (loaded machines)."),
    ] = 90.0,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="text or json (final table).")
    ] = "text",
    netns: Annotated[
        bool,
        typer.Option(
            "--netns",
            help="Put each node in its own network namespace (10.213.0.x on a private "
            "bridge; needs root, ip and nft; see docs/faults.md).",
        ),
    ] = False,
) -> dict[str, Any] | None:
    """Start N real nodes on loopback from one genesis, train, print results, stop.

    Node 0 listens on a free port; the others bootstrap from it and find each other by
    gossip. Progress is shown live; at the end a table (per-node accuracy, bytes, wall
    time) is printed and a PNG of accuracy per round is written. Ctrl-C stops every node.

    Example: fednode testnet up --nodes 8 --task mnist1d --rounds 30
    """
    if fmt not in {"text", "json"}:
        raise typer.BadParameter("--format must be text or json")
    if compare_rule is not None:
        if genesis_file is not None:
            raise typer.BadParameter("--compare-rule sets the rule: not with --genesis")
        _compare_rules(ctx, rule, compare_rule, plot, fmt)
        return None
    if attack in {"list", "help", ""}:
        _list_attacks()
        raise typer.Exit(0)
    if genesis_file is not None:
        try:
            genesis = load_genesis(genesis_file)
        except GenesisError as exc:
            raise typer.BadParameter(str(exc)) from None
        nodes = nodes or genesis.task.num_nodes
        task, learner, rule = genesis.task.name, genesis.learner.kind, genesis.aggregation.rule
        rounds = genesis.rounds.max_rounds or rounds
    else:
        nodes = nodes or 3
    if byzantine >= nodes:
        raise typer.BadParameter("--byzantine must be smaller than --nodes")
    if slow_nodes > nodes:
        raise typer.BadParameter("--slow-nodes cannot exceed --nodes")
    slow = [i * nodes // slow_nodes for i in range(slow_nodes)] if slow_nodes else []
    slow_cpus = (os.cpu_count() or 1) / nodes / slowdown
    if byzantine and collude:
        from node.testnet.collusion import CollusionError, parse_colluding

        try:
            parse_colluding(attack)
        except CollusionError as exc:
            raise typer.BadParameter(str(exc)) from None
    elif byzantine:
        # Imported here: node.sim.byzantine loads torch (python -X importtime: tens of
        # seconds on a loaded 2-core machine), which only --byzantine needs.
        from node.sim.byzantine import ByzantineSimError, parse_attack

        try:
            parse_attack(attack)
        except ByzantineSimError as exc:
            raise typer.BadParameter(str(exc)) from None
    if genesis_file is None:
        try:
            genesis = testnet_genesis(
                nodes=nodes,
                task=task,
                model=model,
                learner=learner,
                flower_client=flower_client,
                rounds=rounds,
                rule=rule,
                byzantine=byzantine,
                f=f,
                observed_f=observed_f,
                seed=seed,
                eval_every=eval_every,
                epsilon=epsilon,
                noise=noise,
                clip=clip,
                sybil_weighting=sybil_weighting,
                data=data,
                gossip_rate=gossip_rate if asynchronous else None,
                peers=peers,
                task_options={
                    "factory": factory,
                    "batch_size": batch_size,
                    "max_samples": max_samples,
                    "max_length": max_length,
                    "text_column": text_column,
                    "label_column": label_column,
                    "labels": comma_list(labels or None),
                    "pooling": pooling,
                    "lora_rank": lora_rank,
                },
                learner_options={
                    "flower_initial": flower_initial,
                    "local_steps": local_steps,
                    "spsa_steps": spsa_steps,
                    "lr": lr,
                },
            )
        except Exception as exc:
            raise typer.BadParameter(_one_line(exc)) from None
    _check_data_columns(genesis.task)
    tmp = None
    root = workdir
    if root is None:
        tmp = tempfile.mkdtemp(prefix="fednode-testnet-")
        root = Path(tmp)
    node_args = {i: ["--attack", attack] for i in range(nodes - byzantine, nodes)}
    if byzantine and collude:
        # Only the attackers' command lines name the rendezvous: honest nodes never see it.
        rendezvous = root / "collusion"
        rendezvous.mkdir(parents=True, exist_ok=True)
        for args in node_args.values():
            args += ["--collude", str(rendezvous)]
    fabric: NetnsTestnet | None = None
    if netns:
        fabric = NetnsTestnet(root, genesis, nodes, node_args=node_args)
        net = fabric.net
    else:
        net = Testnet(root, genesis, nodes, node_args=node_args)
    history: dict[int, list[tuple[int, float]]] = {i: [] for i in range(nodes)}
    # Per node, (seconds since start, round, accuracy) whenever a poll saw them change.
    timeline: dict[int, list[tuple[float, int, float]]] = {}
    t0 = time.monotonic()
    interrupted = False

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    statuses: dict[int, dict[str, Any]] = {}
    view_s = float("nan")
    try:
        if fmt == "text":
            console.print(
                f"starting {nodes} nodes in {root} (network {genesis.network_id_hex}, "
                f"task {task}, learner {learner}, rule {rule}); accuracy plot: "
                f"{plot.resolve()}",
                highlight=False,
                soft_wrap=True,
            )
        (fabric or net).start(timeout=start_timeout)
        url = _dashboard_url(net)
        if url is not None:
            # To stderr with --format json, so stdout stays one JSON document.
            (console if fmt == "text" else err_console).print(
                f"dashboard of node 0: {url}", highlight=False, soft_wrap=True
            )
        view_s = net.wait_full_view(timeout=120)
        if fmt == "text":
            console.print(f"all {nodes} nodes see each other after {view_s:.1f} s (gossip)")
        if slow:
            # Once the network formed: start-up and the first view are not what is measured.
            net.limit_cpus(dict.fromkeys(slow, slow_cpus))
            if fmt == "text":
                console.print(
                    f"stragglers: nodes {', '.join(map(str, slow))} held to {slow_cpus:.3f} "
                    f"CPU each ({slowdown:g}x less than a fair share of {os.cpu_count()} CPUs)",
                    highlight=False,
                )
        with Live(console=console, refresh_per_second=2, transient=True) as live:
            while time.monotonic() - t0 < timeout:
                statuses = net.statuses()
                now_s = round(time.monotonic() - t0, 2)
                for i, s in statuses.items():
                    if "last_accuracy" in s and int(s.get("round", 0)) > 0:
                        seen = (int(s["round"]), float(s["last_accuracy"]))
                        if not timeline.get(i) or timeline[i][-1][1:] != seen:
                            timeline.setdefault(i, []).append((now_s, *seen))
                    history[i] = [
                        (int(h.get("round", 0)), float(h.get("accuracy", 0.0)))
                        for h in s.get("history", [])
                    ]
                if fmt == "text":
                    live.update(_progress_table(statuses, nodes, rounds, time.monotonic() - t0))
                training = any(s.get("learner") for s in statuses.values())
                if not training:
                    break
                if all(int(s.get("round", 0)) >= rounds for s in statuses.values()) and len(
                    statuses
                ) == len([n for n in net.nodes if n.alive()]):
                    break
                if not any(n.alive() for n in net.nodes):
                    break
                time.sleep(1.0)
    except KeyboardInterrupt:
        interrupted = True
        err_console.print("interrupted: stopping every node")
    except (TestnetError, NetnsError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        (fabric or net).stop()
        raise typer.Exit(1) from None
    finally:
        wall = time.monotonic() - t0
        if not interrupted:
            statuses = net.statuses() or statuses
        (fabric or net).stop()
        signal.signal(signal.SIGTERM, previous)
    honest = range(nodes - byzantine)
    rows: list[dict[str, Any]] = []
    for i in range(nodes):
        s = statuses.get(i, {})
        rows.append(
            {
                "node": i,
                "node_id": s.get("node_id", ""),
                "byzantine": i not in honest,
                "round": int(s.get("round", 0)),
                "accuracy": float(s.get("last_accuracy", 0.0)),
                "peers_alive": int(s.get("peers_alive", 0)),
                "bytes_sent": int(s.get("bytes_sent", 0)),
                "bytes_received": int(s.get("bytes_received", 0)),
                "bytes_sent_by_kind": {
                    k: int(v) for k, v in (s.get("bytes_sent_by_kind") or {}).items()
                },
                "rejected": int(s.get("messages_rejected", 0)),
                "epsilon_spent": float(s.get("epsilon_spent", 0.0)),
                "releasing": bool(s.get("releasing", True)),
                "private": _private(s),
                "slow": i in slow,
                **({"cpu_limit": slow_cpus} if i in slow else {}),
                **({"throttled_s": round(net.throttled_s[i], 2)} if i in net.throttled_s else {}),
            }
        )
    honest_acc = [r["accuracy"] for r in rows if not r["byzantine"] and r["round"] > 0]
    summary = {
        "nodes": nodes,
        "task": task,
        "learner": learner,
        "rule": rule,
        "byzantine": byzantine,
        "rounds": rounds,
        "wall_s": round(wall, 1),
        "full_view_s": round(view_s, 2),
        "honest_mean_accuracy": sum(honest_acc) / len(honest_acc) if honest_acc else None,
        "interrupted": interrupted,
        "per_node": rows,
        "timeline": {str(i): points for i, points in sorted(timeline.items())},
    }
    attackers = frozenset(range(nodes - byzantine, nodes))
    title = f"{task}, {nodes} nodes, {learner}, {rule}"
    if byzantine:
        title += f", {byzantine} Byzantine ({attack})"
    wrote_plot = plot_accuracy_lines(history, plot, title, attackers)
    summary["plot"] = str(plot) if wrote_plot else None
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    if fmt == "json":
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        table = Table(title="fednode testnet results")
        private = any(r["private"] for r in rows)
        cols = ["node", "id", "round", "accuracy", "peers", "sent", "received", "rejected"]
        for col in [*cols, *(["epsilon"] if private else [])]:
            table.add_column(col, justify="left" if col == "id" else "right")
        for row in rows:
            table.add_row(
                f"{row['node']}{' (byz)' if row['byzantine'] else ''}"
                f"{' (slow)' if row['slow'] else ''}",
                str(row["node_id"]),
                str(row["round"]),
                f"{row['accuracy']:.3f}" if row["round"] else "-",
                str(row["peers_alive"]),
                human_bytes(row["bytes_sent"]),
                human_bytes(row["bytes_received"]),
                str(row["rejected"]),
                *([_privacy_cell(row)] if private else []),
            )
        print_wide(console, table)
        kinds: dict[str, int] = {}
        for row in rows:
            for kind, n in row["bytes_sent_by_kind"].items():
                kinds[kind] = kinds.get(kind, 0) + n
        if kinds:
            # "sent" mixes membership gossip with training traffic; SPSA's few bytes per
            # step only show next to it.
            console.print(
                "sent by kind, all nodes: "
                + ", ".join(
                    f"{k} {human_bytes(n)}" for k, n in sorted(kinds.items(), key=lambda x: -x[1])
                ),
                highlight=False,
            )
        stopped = [r["node"] for r in rows if r["private"] and not r["releasing"]]
        if stopped:
            console.print(
                f"nodes {', '.join(map(str, stopped))} spent their privacy budget and stopped "
                "releasing updates (their peers stopped sampling them); their later rounds "
                "merged only what reached them"
            )
        mean = summary["honest_mean_accuracy"]
        console.print(
            f"wall time {wall:.1f} s; full gossip view after {view_s:.1f} s; "
            + (f"honest mean accuracy {mean:.3f}" if mean is not None else "no training ran")
            + (f"; plot: {plot}" if wrote_plot else "")
        )
    if interrupted:
        raise typer.Exit(130)
    return summary  # what --format json printed; --compare-rule puts two side by side


def _compare_rules(ctx: typer.Context, rule: str, other: str, plot: Path, fmt: str) -> None:
    """Run ``up`` once per rule with every other option equal; print them side by side."""
    summaries: list[dict[str, Any]] = []
    for i, r in enumerate((rule, other)):
        if fmt == "text":
            console.print(
                f"[bold]run {i + 1} of 2: rule {r}[/] (then {other})"
                if i == 0
                else f"[bold]run 2 of 2: rule {r}[/] (same network, seed and attackers)",
                highlight=False,
            )
        params = {
            **ctx.params,
            "rule": r,
            "compare_rule": None,
            "plot": plot.with_name(f"{plot.stem}-{r}{plot.suffix}"),
        }
        if fmt == "json":
            with contextlib.redirect_stdout(io.StringIO()):  # one JSON document at the end
                summary = up(ctx, **params)
        else:
            summary = up(ctx, **params)
        assert summary is not None
        summaries.append(summary)
    if fmt == "json":
        sys.stdout.write(json.dumps({"runs": summaries}, indent=2) + "\n")
        return
    table = Table(title="fednode testnet: rules side by side")
    for col in ("rule", "honest mean accuracy", "worst honest", "wall s", "plot"):
        table.add_column(col, justify="left" if col in {"rule", "plot"} else "right")
    for summary in summaries:
        honest = [
            r["accuracy"] for r in summary["per_node"] if not r["byzantine"] and r["round"] > 0
        ]
        mean = summary["honest_mean_accuracy"]
        table.add_row(
            summary["rule"],
            f"{mean:.3f}" if mean is not None else "-",
            f"{min(honest):.3f}" if honest else "-",
            f"{summary['wall_s']:.1f}",
            str(summary["plot"] or "-"),
        )
    print_wide(console, table)


_register_scenarios(testnet_app)
