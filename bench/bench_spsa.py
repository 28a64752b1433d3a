"""Measurements of the ``spsa`` learner on real daemons (issue 4, SPSA parts).

1. Agreement: N daemon processes on loopback (default 8, task digits, MLP with 17,610
   parameters) run R rounds (default 50) of SPSA; at the end every node's seed-set
   digest and model hash must be equal.
2. Bytes per SPSA step on the wire: the exact size of one ``PushScalars`` envelope
   (ScalarBatch with origin signature and key, inside the signed envelope) divided by
   the steps it carries, versus one ``PushUpdate`` stream of the sgd learner for the same
   model (signed header envelope + raw float32 payload); plus what the run really sent
   (``fednode_bytes_total{kind="spsa"}`` over all nodes, gossip redundancy included).
3. Late join: the last node starts when the others reach round J (default 20); it
   catches up (peer checkpoint + scalar log) and we report how many of its own rounds
   pass until its (round, model hash) equals the others' and its digest equals theirs.

Real processes (``node.testnet.local.Testnet``), not an in-process simulation. On a shared
2-core machine start-up dominates the wall time.

Usage::

    .venv/bin/python bench/bench_spsa.py                      # 8 nodes, 50 rounds, join at 20
    .venv/bin/python bench/bench_spsa.py --nodes 4 --rounds 20 --join-at 8   # quicker

Writes the results section of docs/spsa.md (between the bench markers) unless --no-doc.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import torch

from fednode_proto.v1.training_pb2 import TensorChunk
from node.base.identity import Identity
from node.testnet.local import Testnet
from node.training.datasets import load_task, node_data
from node.training.genesis import Genesis
from node.training.learners.spsa import SPSALearner
from node.training.models import build_model
from node.training.params import flatten
from node.training.spec import LearnerSpec, TaskSpec
from node.wire.envelope import seal
from node.wire.exchange import chunks_for, encode_update
from node.wire.spsa_batch import batch_to_wire

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "spsa.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def genesis(nodes: int, rounds: int, steps: int) -> Genesis:
    return Genesis.model_validate(
        {
            "network": {
                "name": "bench-spsa",
                "seed": 7,
                "pow_difficulty": 4,
                "gossip_profile": "test",
            },
            "task": {"name": "digits", "num_nodes": nodes, "partition": "iid"},
            "learner": {"kind": "spsa", "lr": 1e-2, "spsa_steps": steps},
            "rounds": {
                "max_rounds": rounds,
                "eval_every": 10,
                "round_timeout": 30.0,
                "max_staleness": 4,
                "peers_per_round": 3,
            },
        }
    )


# --- (2) bytes per step, from the real message builders --------------------------------


def wire_sizes(steps_list: list[int]) -> list[dict[str, Any]]:
    """Exact protobuf sizes of one SPSA push and one sgd update of the digits MLP."""
    torch.set_num_threads(1)
    task = TaskSpec(name="digits", num_nodes=8, partition="iid")
    data = load_task(task, 7)
    shard = node_data(task, 7, 0, task=data)
    model = build_model(task, 7, input_dim=data.input_dim, num_classes=data.num_classes)
    numel = flatten(model).numel()
    ident = Identity.generate(0)
    net_id = hashlib.sha256(b"bench").digest()
    rows: list[dict[str, Any]] = []
    for dtype in ("int8", "fp32"):
        for steps in steps_list:
            spec = LearnerSpec(kind="spsa", spsa_steps=steps, spsa_scalar_dtype=dtype)  # type: ignore[arg-type]
            learner = SPSALearner(spec, batch_size=100, seed=7, node=ident.node_id_hex)
            batch = learner.train_round(model, shard, 3)
            wire = batch_to_wire(batch, ident, net_id)
            env = seal(ident, net_id, "spsa", wire.SerializeToString(), seq=1, round=3)
            rows.append(
                {
                    "what": f"spsa {dtype}, {steps} step(s)/batch",
                    "message": env.ByteSize(),
                    "per_step": env.ByteSize() / steps,
                    "numel": numel,
                }
            )
    header, payload = encode_update(flatten(model), round=3, num_samples=100)
    env = seal(ident, net_id, "update", header.SerializeToString(), seq=1, round=3)
    chunks = list(chunks_for(env, payload))
    size = sum(TensorChunk.ByteSize(c) for c in chunks)
    rows.append(
        {"what": "sgd update (float32 vector)", "message": size, "per_step": size, "numel": numel}
    )
    return rows


# --- (1) and (3): real daemons ---------------------------------------------------------


def _metric_sum(info: dict[str, Any] | None, name: str, label: str) -> float:
    if not info or not info.get("metrics"):
        return 0.0
    try:
        with urllib.request.urlopen(f"http://{info['metrics']}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def run_network(
    nodes: int, rounds: int, join_at: int, steps: int, timeout: float
) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-spsa-"))
    net = Testnet(root, genesis(nodes, rounds, steps), nodes)
    out: dict[str, Any] = {"nodes": nodes, "rounds": rounds, "join_at": join_at}
    t0 = time.monotonic()
    joiner = net.nodes[-1]
    try:
        net.prepare()
        net.start_node(net.nodes[0], None, timeout=300)
        for node in net.nodes[1:-1]:
            net.spawn_node(node, net.nodes[0].address)
        net.wait_started(net.nodes[1:-1], timeout=300)
        out["startup_s"] = time.monotonic() - t0
        joined_at_round: int | None = None
        first_match: int | None = None
        digest_match: int | None = None
        spawned = False
        settle: float | None = None
        deadline = time.monotonic() + timeout
        st: dict[int, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            st = net.statuses()
            rounds_now = {i: int(s.get("round", 0)) for i, s in st.items()}
            if not spawned and rounds_now.get(0, 0) >= join_at:
                net.spawn_node(joiner, net.nodes[0].address)
                spawned = True
                out["spawned_at_round"] = rounds_now[0]
            j = joiner.index
            if spawned and j in st and rounds_now[j] > 0:
                if joined_at_round is None:
                    joined_at_round = rounds_now[j]
                others = [s for i, s in st.items() if i != j]
                same = [
                    s
                    for s in others
                    if int(s.get("round", 0)) == rounds_now[j]
                    and s.get("model_hash") == st[j].get("model_hash")
                ]
                if first_match is None and same:
                    first_match = rounds_now[j]
                if digest_match is None and all(
                    s.get("spsa_digest") == st[j].get("spsa_digest") for s in others
                ):
                    digest_match = rounds_now[j]
            done = (
                len(st) == nodes
                and all(r >= rounds for r in rounds_now.values())
                and len({s.get("spsa_digest") for s in st.values()}) == 1
                and len({s.get("model_hash") for s in st.values()}) == 1
            )
            if done:
                break
            finished = len(st) == nodes and all(r >= rounds for r in rounds_now.values())
            if finished and settle is None:
                settle = time.monotonic()
            if settle is not None and time.monotonic() - settle > 240:
                break  # every node is done but they disagree: report it as measured
            time.sleep(0.5)
        out["wall_s"] = time.monotonic() - t0
        out["statuses"] = st
        out["digests"] = len({s.get("spsa_digest") for s in st.values()})
        out["hashes"] = len({s.get("model_hash") for s in st.values()})
        out["reported"] = len(st)
        out["accuracy"] = [float(s.get("last_accuracy", 0.0)) for _, s in sorted(st.items())]
        out["joined_at_round"] = joined_at_round
        out["hash_match_round"] = first_match
        out["digest_match_round"] = digest_match
        infos = [n.runtime() for n in net.nodes]
        out["spsa_bytes_out"] = sum(
            _metric_sum(i, "fednode_bytes_total", 'direction="out",kind="spsa"') for i in infos
        )
        out["ckpt_bytes_out"] = sum(
            _metric_sum(i, "fednode_bytes_total", 'direction="out",kind="checkpoint"')
            for i in infos
        )
        out["rejected"] = sum(int(s.get("messages_rejected", 0)) for s in st.values())
        log = joiner.log_path.read_text(errors="replace") if joiner.log_path.exists() else ""
        out["caught_up"] = next((ln for ln in log.splitlines() if "caught up" in ln), "")
        out["entries"] = _entries(net)
        out.update(_late_join_from_logs(net, joiner.index))
    finally:
        net.stop()
        shutil.rmtree(root, ignore_errors=True)
    return out


def _closed_rounds(path: Path) -> list[dict[str, str]]:
    """The ``round closed`` lines of one daemon log as dicts of their key=value fields."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        if "round closed" not in line:
            continue
        fields = dict(
            kv.split("=", 1) for kv in line.split("round closed", 1)[1].split() if "=" in kv
        )
        rows.append(fields)
    return rows


def _late_join_from_logs(net: Testnet, j: int) -> dict[str, Any]:
    """How fast the late node agreed, from every node's per-round close lines.

    * close match: the first round the late node closed with the same seed-set digest (of
      rounds <= r) and model hash as some other node closed that round with;
    * final match: the first round after which the digest of its *final* rounds (rounds
      ``< r + 1 - max_staleness``, which no later batch can change) equals the other nodes'
      final digest for the same rounds.
    """
    logs = {n.index: _closed_rounds(n.log_path) for n in net.nodes}
    mine = logs.get(j, [])
    others_close = {
        (row["round"], row["digest"], row["model_hash"])
        for i, rows in logs.items()
        if i != j
        for row in rows
    }
    others_final = {
        (row["final"], row["final_digest"]) for i, rows in logs.items() if i != j for row in rows
    }
    out: dict[str, Any] = {"first_closed": int(mine[0]["round"]) if mine else None}
    out["close_match"] = next(
        (
            int(r["round"])
            for r in mine
            if (r["round"], r["digest"], r["model_hash"]) in others_close
        ),
        None,
    )
    out["final_match"] = next(
        (int(r["round"]) for r in mine if (r["final"], r["final_digest"]) in others_final),
        None,
    )
    out["final_match_base"] = next(
        (int(r["final"]) for r in mine if (r["final"], r["final_digest"]) in others_final),
        None,
    )
    return out


def _entries(net: Testnet) -> int:
    """SPSA entries in node 0's log (from its SQLite file, read-only)."""
    import sqlite3

    db = net.nodes[0].data_dir.root / "fednode.db"
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            return int(con.execute("select count(*) from spsa_log").fetchone()[0])
    except sqlite3.Error:
        return -1


def render(sizes: list[dict[str, Any]], net: dict[str, Any] | None, cmd: str) -> str:
    lines = [
        f"Command: `{cmd}`  ",
        f"Machine: {platform.machine()}, 2 shared CPU cores (other jobs running), "
        f"Python {platform.python_version()}, torch {torch.__version__}.",
        "",
        "**Bytes on the wire per message** (protobuf size of the signed envelope, origin "
        "signature and key included; gRPC/HTTP2 framing not included). Model: digits MLP, "
        f"{sizes[0]['numel']:,} parameters.",
        "",
        "| message | bytes | bytes per SPSA step |",
        "|---|---:|---:|",
    ]
    for r in sizes:
        lines.append(f"| {r['what']} | {r['message']:,} | {r['per_step']:,.1f} |")
    sgd = sizes[-1]["message"]
    best = min(r["per_step"] for r in sizes[:-1])
    lines += [
        "",
        f"One sgd update is {sgd / best:,.0f}x the bytes of one SPSA step (best case above).",
        "",
    ]
    if net is not None:
        ok = net["digests"] == 1 and net["hashes"] == 1 and net["reported"] == net["nodes"]
        lines += [
            f"**Real daemons**: {net['nodes']} processes, {net['rounds']} rounds, "
            f"last node started when node 0 reached round {net.get('spawned_at_round')}.",
            "",
            "| measure | value |",
            "|---|---|",
        ]
        acc = ", ".join(f"{a:.3f}" for a in net["accuracy"])
        per_entry = net["spsa_bytes_out"] / max(1, net["entries"])
        catch = net["caught_up"].split("caught up")[-1].strip()
        rows = [
            ("nodes reporting at the end", f"{net['reported']} / {net['nodes']}"),
            ("distinct digests / model hashes at the end", f"{net['digests']} / {net['hashes']}"),
            ("agreement (all equal, bit for bit)", "yes" if ok else "NO"),
            ("SPSA entries in the log", net["entries"]),
            ("final accuracy per node (local test split)", acc),
            (f"start-up of the first {net['nodes'] - 1} nodes", f"{net['startup_s']:.0f} s"),
            ("wall time total", f"{net['wall_s']:.0f} s"),
            ("late node: first own round", net["joined_at_round"]),
            (
                "late node: round its (round, model hash) first equals a peer's",
                net["hash_match_round"],
            ),
            ("late node: round its digest first equals all others'", net["digest_match_round"]),
            ("late node: first round it closed (daemon log)", net.get("first_closed")),
            (
                "late node: first round closed with a peer's digest and model hash",
                _since(net.get("close_match"), net.get("first_closed")),
            ),
            (
                "late node: first round its final-round digest equals the others'",
                _since(net.get("final_match"), net.get("first_closed"))
                + f" (final rounds < {net.get('final_match_base')})",
            ),
            ("late node catch-up log line", f"`{catch}`"),
            (
                "SPSA bytes sent, all nodes (gossip copies included)",
                f"{net['spsa_bytes_out']:,.0f}",
            ),
            ("... per SPSA entry (per step)", f"{per_entry:,.0f}"),
            ("checkpoint bytes served (catch-up)", f"{net['ckpt_bytes_out']:,.0f}"),
            ("refused messages, all nodes (mostly gossip duplicates)", net["rejected"]),
        ]
        lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def _since(r: int | None, first: int | None) -> str:
    if r is None or first is None:
        return "never"
    return f"{r} ({r - first} round(s) after its first)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--join-at", type=int, default=20)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=1200.0)
    ap.add_argument("--no-network", action="store_true", help="only the byte sizes")
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    # SIGTERM ends the run through the `finally` that stops the node processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cmd = ".venv/bin/python bench/bench_spsa.py " + " ".join(
        f"--{k.replace('_', '-')} {v}"
        for k, v in vars(args).items()
        if k in {"nodes", "rounds", "join_at", "steps"}
    )
    sizes = wire_sizes([1, 4, args.steps])
    net = None
    if not args.no_network:
        net = run_network(args.nodes, args.rounds, args.join_at, args.steps, args.timeout)
    text = render(sizes, net, cmd)
    print(text)
    if not args.no_doc and DOC.exists():
        doc = DOC.read_text()
        if START in doc and END in doc:
            head, rest = doc.split(START, 1)
            _, tail = rest.split(END, 1)
            DOC.write_text(f"{head}{START}\n{text}\n{END}{tail}")


if __name__ == "__main__":
    main()
