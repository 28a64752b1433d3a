"""Catch-up of a node that fell many rounds behind its peers (learners ``sgd``/``flower``).

The round engine only admits updates within ``[round - max_staleness, round + max_future]``.
A node restarted (or cut off) many rounds behind therefore refuses every peer update as
"future" while the peers refuse its own as "stale": it would keep training alone. The
runtime feeds every "future" refusal (a signed envelope: the sender and its round are
authentic) into :class:`LagEvidence`; once enough distinct peers vouch for a round far
enough ahead it pulls their checkpoints (``Pull``, ``CHECKPOINT``), decodes them strictly,
combines them, and restarts its engine at their round.

Byzantine bounds
----------------
* The jump target is the ``quorum``-th largest round claimed by distinct peers
  (``quorum = max(2, f + 1)``): ``f`` colluding peers claiming a huge round cannot move it.
  It is capped at ``max_rounds - 1`` when the network has a last round.
* A served checkpoint is accepted only if it is signed by the peer asked, within the byte
  limit, hash-checked, exactly one finite float32 vector of our layout
  (:func:`~node.training.params.decode_checkpoint`, never unpickled), and of a round in
  ``(our round + max_future, claim + slack]`` (``claim``: that peer's own signed round),
  and the engine restarts at most at ``target + slack``.
* Several checkpoints are combined coordinate-wise by the median (one of three may lie).

Privacy: a checkpoint is post-processing of released (noised) vectors: the node merges its
released vector, and once a budget is spent it stops training rather than keep un-noised
work (node/privacy_guard.py). Catching up releases nothing: the ledger is per release,
and the skipped rounds are never trained, so nothing is released for them.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import torch
from google.protobuf.message import DecodeError

from fednode_proto.v1 import training_pb2 as pb

from .envelope import EnvelopeError, check_envelope, seal
from .exchange import chunks_for
from .logs import log
from .training.params import ParamError, ParamLayout, decode_checkpoint

if TYPE_CHECKING:
    from fednode_proto.v1.envelope_pb2 import Envelope

    from .envelope import SeqCounter
    from .identity import Identity
    from .metrics import Metrics
    from .peer_channels import PeerChannels
    from .storage import Store

__all__ = [
    "LagEvidence",
    "PulledCheckpoint",
    "combine_checkpoints",
    "pull_checkpoint",
    "serve_checkpoint",
]

#: Prometheus counter of completed catch-ups (registered in the daemon's registry).


class LagEvidence:
    """Rounds that peers proved to be in (sans-I/O: no clock, no sockets).

    Parameters
    ----------
    max_future : int
        The engine's window ahead: claims up to ``round + max_future`` are normal.
    quorum : int, default 2
        Distinct peers that must claim a round before it becomes a target (>= 1).
    max_rounds : int or None, default None
        The network's last round count; targets are capped at ``max_rounds - 1``.
    window_s : float, default 60.0
        Claims older than this many seconds are forgotten.
    """

    def __init__(
        self,
        max_future: int,
        *,
        quorum: int = 2,
        max_rounds: int | None = None,
        window_s: float = 60.0,
    ) -> None:
        if quorum < 1:
            raise ValueError(f"quorum must be >= 1, got {quorum}")
        if max_future < 0:
            raise ValueError(f"max_future must be >= 0, got {max_future}")
        self.max_future = max_future
        self.quorum = quorum
        self.max_rounds = max_rounds
        self.window_s = window_s
        self._claims: dict[str, tuple[int, float]] = {}

    def observe(self, sender: str, round_idx: int, now: float) -> None:
        """Record that ``sender`` signed a message of ``round_idx`` at time ``now``."""
        if round_idx < 0:
            return
        old = self._claims.get(sender)
        if old is None or round_idx >= old[0]:
            self._claims[sender] = (round_idx, now)

    def _fresh(self, now: float) -> dict[str, int]:
        self._claims = {s: (r, t) for s, (r, t) in self._claims.items() if now - t <= self.window_s}
        return {s: r for s, (r, _) in self._claims.items()}

    def target(self, current: int, now: float) -> int | None:
        """Round to jump to, or None when fewer than ``quorum`` peers are far enough ahead.

        The ``quorum``-th largest claim (so at least ``quorum`` distinct peers are at or
        beyond it), capped at ``max_rounds - 1``; only when beyond ``current + max_future``.
        """
        claims = sorted(self._fresh(now).values(), reverse=True)
        if len(claims) < self.quorum:
            return None
        target = claims[self.quorum - 1]
        if self.max_rounds is not None:
            target = min(target, self.max_rounds - 1)
        return target if target > current + self.max_future else None

    def vouchers(self, target: int, now: float) -> list[str]:
        """Peers whose latest claim is at or beyond ``target``, highest claim first."""
        fresh = self._fresh(now)
        return sorted((s for s, r in fresh.items() if r >= target), key=lambda s: -fresh[s])

    def claim(self, sender: str) -> int | None:
        """``sender``'s highest recorded round (None if unknown or forgotten)."""
        got = self._claims.get(sender)
        return None if got is None else got[0]

    def forget(self, sender: str) -> None:
        """Drop ``sender``'s claims (it served a bad checkpoint)."""
        self._claims.pop(sender, None)


@dataclass(frozen=True, eq=False)
class PulledCheckpoint:
    """A peer's checkpoint that passed every check."""

    sender: str
    round: int
    vector: torch.Tensor
    model_hash: str
    data: bytes = b""
    """The checkpoint file as received (safetensors), for callers that store it as is."""


async def serve_checkpoint(
    store: Store,
    layout: ParamLayout,
    identity: Identity,
    network_id: bytes,
    seq: SeqCounter,
    metrics: Metrics,
) -> AsyncIterator[pb.TensorChunk]:
    """Stream our latest checkpoint as signed chunks (nothing when there is none).

    Blocking store reads run in the default executor.
    """
    loop = asyncio.get_running_loop()
    ckpt = await loop.run_in_executor(None, store.latest_checkpoint)
    if ckpt is None:
        return
    try:
        data = await loop.run_in_executor(None, store.checkpoint_bytes, ckpt)
    except Exception:  # a corrupt file: serve nothing rather than garbage
        log.warning("cannot serve checkpoint", exc_info=True)
        return
    header = pb.TensorHeader(
        format=pb.TensorHeader.SAFETENSORS,
        dtype="float32",
        shape=[int(layout.numel)],
        total_bytes=len(data),
        payload_sha256=hashlib.sha256(data).digest(),
        round=ckpt.round,
        base_round=ckpt.round,
        model_hash=ckpt.model_sha256 or "",
    )
    env = seal(
        identity,
        network_id,
        "checkpoint",
        header.SerializeToString(),
        seq=seq.next("checkpoint"),
        round=ckpt.round,
    )
    metrics.bytes.labels(direction="out", kind="checkpoint").inc(env.ByteSize() + len(data))
    for chunk in chunks_for(env, data):
        yield chunk


async def pull_checkpoint(
    channels: PeerChannels,
    address: str,
    *,
    expect_sender: str | None,
    request: Envelope,
    network_id: bytes,
    layout: ParamLayout,
    max_bytes: int,
    metrics: Metrics,
    timeout: float = 60.0,
) -> PulledCheckpoint | str:
    """Pull and check one peer's checkpoint; returns it, or why it was refused.

    ``request`` is our signed ``request`` envelope carrying a ``PullRequest`` for
    ``CHECKPOINT``; ``expect_sender`` the hex node id of the peer at ``address`` (None:
    whoever signed it, recorded as the sender).
    """
    stub = channels.stub(address)
    parts: list[bytes] = []
    header = pb.TensorHeader()
    size = 0
    first = True
    try:
        async for chunk in stub.Pull(request, timeout=timeout):
            if first:
                first = False
                verified = check_envelope(
                    chunk.header, network_id, replay=None, kinds=frozenset({"checkpoint"})
                )
                signer = verified.sender_id.hex()
                if expect_sender is not None and signer != expect_sender:
                    return "checkpoint signed by another node than the one asked"
                header.ParseFromString(verified.body)
                if header.round != verified.round:
                    return "header round differs from the signed envelope round"
                if header.total_bytes > max_bytes:
                    return f"checkpoint of {header.total_bytes} bytes exceeds {max_bytes}"
            size += len(chunk.data)
            if size > header.total_bytes:
                return "more checkpoint bytes than declared"
            parts.append(chunk.data)
    except grpc.aio.AioRpcError as exc:
        return f"pull failed: {exc.code().name}"
    except (EnvelopeError, DecodeError, ValueError) as exc:
        return f"bad checkpoint envelope: {exc}"
    if first:
        return "peer has no checkpoint to serve"
    data = b"".join(parts)
    metrics.bytes.labels(direction="in", kind="checkpoint").inc(len(data))
    if len(data) != header.total_bytes:
        return "checkpoint shorter than declared"
    if hashlib.sha256(data).digest() != header.payload_sha256:
        return "checkpoint bytes do not match the signed hash"
    try:
        # safetensors only, never unpickled: one finite float32 vector of our layout.
        vector = decode_checkpoint(data, layout)
    except ParamError as exc:
        return f"checkpoint refused: {exc}"
    return PulledCheckpoint(signer, int(header.round), vector, header.model_hash, data)


def combine_checkpoints(vectors: list[torch.Tensor]) -> torch.Tensor:
    """Coordinate-wise median of checkpoint vectors (mean of two; one as is).

    Raises
    ------
    ValueError
        If ``vectors`` is empty or their lengths differ.
    """
    if not vectors:
        raise ValueError("no checkpoint to combine")
    if len({v.numel() for v in vectors}) != 1:
        raise ValueError("checkpoints of different lengths")
    if len(vectors) == 1:
        return vectors[0].clone()
    stack = torch.stack([v.reshape(-1).to(torch.float32) for v in vectors])
    if len(vectors) == 2:
        return stack.mean(dim=0)
    # torch.median picks the lower middle for even counts; the average of the two middles
    # is the textbook median and is symmetric in the inputs.
    sorted_stack = stack.sort(dim=0).values
    n = len(vectors)
    if n % 2:
        return sorted_stack[n // 2].clone()
    return (sorted_stack[n // 2 - 1] + sorted_stack[n // 2]) / 2
