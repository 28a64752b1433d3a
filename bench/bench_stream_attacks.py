"""Victim memory under hostile update streams: a table for docs/security.md.

Starts two real daemons (the victim trains digits; the attacker's daemon joins by gossip
and trains nothing), then, signing with the attacker's member key
(tests/adversary/malicious_peer.py), sends each stream attack ``--repeat`` times
concurrently and samples the victim's resident memory (VmRSS) every 50 ms. Prints one row
per attack: the refusal the attacker saw, the chunks gRPC pulled from its stream, the
victim's RSS before and at its peak.

    .venv/bin/python bench/bench_stream_attacks.py [--repeat 3]

To measure another checkout's daemon (e.g. before a fix), run from that checkout with it
first on the path: ``cd OTHER && PYTHONPATH=OTHER python /path/to/bench/bench_stream_attacks.py``
(the node processes are ``python -m node`` in the current directory).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "adversary"))

from malicious_peer import Adversary, CountingStream, raw_header

from node.base.identity import Identity
from node.testnet.local import Testnet
from node.training.genesis import Genesis
from node.training.trainer import make_trainer
from node.wire.envelope import SeqCounter

MiB = 1024 * 1024
GENESIS = {
    "network": {"name": "bench-streams", "seed": 3, "pow_difficulty": 4, "gossip_profile": "test"},
    "task": {"name": "digits", "num_nodes": 1},
    "rounds": {"peers_per_round": 1, "min_updates": 0, "round_timeout": 2.0, "max_rounds": 10_000},
}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def attacks(
    numel: int,
) -> dict[str, Callable[[Adversary], tuple[CountingStream, dict[str, object]]]]:
    honest = np.zeros(numel, dtype="<f4").tobytes()
    big = 48 * MiB // 4  # 12 Mi values, 48 MiB declared: under max_update_bytes (256 MiB)

    def over_declared(a: Adversary) -> tuple[CountingStream, dict[str, object]]:
        header = raw_header(b"", numel=big)
        return a.update_stream(header, b"", extra=(b"\x00" * MiB for _ in range(192))), {}

    def past_size(a: Adversary) -> tuple[CountingStream, dict[str, object]]:
        s = a.update_stream(raw_header(honest), honest, extra=(b"\x01" * MiB for _ in range(192)))
        return s, {}

    def tiny_chunks(a: Adversary) -> tuple[CountingStream, dict[str, object]]:
        return a.update_stream(raw_header(honest), honest, chunk_bytes=1), {}

    def gzip_bomb(a: Adversary) -> tuple[CountingStream, dict[str, object]]:
        header = raw_header(b"", numel=big)
        extra = (b"\x00" * (4 * MiB - 64) for _ in range(48))
        return a.update_stream(header, b"", extra=extra), {"compression": grpc.Compression.Gzip}

    return {
        "header declares 48 MiB (not the model's size), 192 MiB sent": over_declared,
        "stream past its declared size (+192 MiB)": past_size,
        "1-byte chunks": tiny_chunks,
        "gzip bomb: header declares 48 MiB, 192 MiB of zeros gzip-compressed": gzip_bomb,
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        net = Testnet(Path(tmp), Genesis.model_validate(GENESIS), 2, node_args={1: ["--no-train"]})
        with net.running():
            net.wait_full_view(timeout=60)
            time.sleep(5)  # the victim's first rounds: its working set is in place
            g = net.genesis
            numel = make_trainer(
                g.task, g.learner, seed=g.network.seed, node_index=0, node_id="00" * 32
            ).layout.numel
            key = Identity.load(net.nodes[1].data_dir.identity)
            seq = SeqCounter()
            proc = net.nodes[0].process
            assert proc is not None
            cols = "refusal | chunks pulled | RSS before | RSS peak"
            print(f"| attack (x{args.repeat} concurrent) | {cols} |")
            print("|---|---|---|---|---|")
            for name, make in attacks(int(numel)).items():
                base = peak = rss_mb(proc.pid)
                outcomes: list[str] = []
                pulled: list[int] = []

                def one(
                    make: Callable[..., tuple[CountingStream, dict[str, object]]] = make,
                    outcomes: list[str] = outcomes,
                    pulled: list[int] = pulled,
                ) -> None:
                    adv = Adversary(key, g.network_id, net.nodes[0].address)
                    adv.seq = seq  # one counter: concurrent streams never share a number
                    stream, kw = make(adv)
                    try:
                        r = adv.push(stream, timeout=120, **kw)  # type: ignore[arg-type]
                        outcomes.append(f"receipt: {r.reason.split(':')[0] or 'accepted'}")
                    except grpc.RpcError as exc:
                        outcomes.append(
                            f"{exc.code().name}: {(exc.details() or '').split(':')[0][:40]}"
                        )
                    finally:
                        pulled.append(stream.pulled)
                        adv.close()

                with concurrent.futures.ThreadPoolExecutor(args.repeat) as pool:
                    futs = [pool.submit(one) for _ in range(args.repeat)]
                    while not all(f.done() for f in futs):
                        peak = max(peak, rss_mb(proc.pid))
                        time.sleep(0.05)
                    for f in futs:
                        f.result()
                time.sleep(0.5)
                peak = max(peak, rss_mb(proc.pid))
                print(
                    f"| {name} | {', '.join(sorted(set(outcomes)))} | {max(pulled)} "
                    f"| {base:.0f} MB | {peak:.0f} MB |"
                )
            print(f"victim alive: {net.nodes[0].alive()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
