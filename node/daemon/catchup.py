"""Catch-up of a node that fell many rounds behind its peers (learners ``sgd``/``flower``).

The round engine only admits updates within ``[round - max_staleness, round + max_future]``.
A node restarted (or cut off) many rounds behind therefore refuses every peer update as
"future" while the peers refuse its own as "stale": it would keep training alone. The
runtime feeds every signed update it verified (accepted or refused, with its round) into
:class:`LagEvidence`; once enough standing members vouch for a round far enough ahead it
pulls their checkpoints (``Pull``, ``CHECKPOINT``), decodes them strictly, merges them
with its own model through the robust rule (:func:`adopt_checkpoints`) and restarts its
engine at their round.

Byzantine bounds (docs/faults.md, "Catch-up under attack")
----------------------------------------------------------
Keys are cheap, so a claim counts only when its signer is an admitted member with
standing (:class:`VoucherPolicy`: live in our view for ``min_standing_s``, not banned,
not quarantined). With ``f`` tolerated lying vouchers:

* The node is *behind by its own evidence* only when at least ``quorum = max(1, 2 f)``
  standing members **and** a strict majority of the standing members it heard from
  recently (inside its window or beyond) signed updates beyond ``round + max_future``: a
  node in step with its peers keeps hearing them, so liars must also outvote them.
* The jump target is the largest round that many members reached: liars that are not a
  majority cannot move it beyond what an honest member signed. It is capped at
  ``max_rounds - 1``.
* A served checkpoint is accepted only if it is signed by the peer asked, within the byte
  limit, hash-checked, exactly one finite float32 vector of our layout
  (:func:`~node.training.params.decode_checkpoint`, never unpickled), of a round in
  ``(our round + max_future, claim + slack]`` (``claim``: that member's own signed round)
  and within ``max_update_norm`` of our own
  model; the engine restarts at most at ``target + slack``.
* Exactly ``quorum`` checkpoints are used (the vouchers whose claims are closest to the
  target first); they and the node's own model (``2 f + 1`` rows, at most ``f`` of them
  forged) go through the network's robust rule (the median
  when the network's rule is the plain mean, which no row count makes robust): the
  result stays within what the honest rows span, it never *is* a forged checkpoint.

Privacy: a checkpoint is post-processing of released (noised) vectors: the node merges its
released vector, and once a budget is spent it stops training rather than keep un-noised
work (node/daemon/privacy_guard.py). Catching up releases nothing: the ledger is per release,
and the skipped rounds are never trained, so nothing is released for them.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import grpc
import torch
from google.protobuf.message import DecodeError

from fednode_proto.v1 import training_pb2 as pb
from node.base.logs import log
from node.training import engine as eng
from node.training.params import ParamError, ParamLayout, decode_checkpoint
from node.wire.envelope import EnvelopeError, check_envelope, seal
from node.wire.exchange import chunks_for

if TYPE_CHECKING:
    from fednode_proto.v1.envelope_pb2 import Envelope
    from node.base.identity import Identity
    from node.base.metrics import Metrics
    from node.storage import Store
    from node.wire.envelope import SeqCounter
    from node.wire.peer_channels import PeerChannels

__all__ = [
    "LagEvidence",
    "PulledCheckpoint",
    "StandingView",
    "VoucherPolicy",
    "adopt_checkpoints",
    "catchup_quorum",
    "combine_checkpoints",
    "pull_checkpoint",
    "serve_checkpoint",
]


class StandingView(Protocol):
    """What catch-up needs of membership (``node.daemon.membership.DaemonMembership`` has it)."""

    def is_member(self, node_id: bytes) -> bool:
        """Whether ``node_id`` is a live member of this node's view."""
        ...

    def standing_s(self, node_id: bytes) -> float | None:
        """Seconds since ``node_id`` entered this node's view (None: not a live member)."""
        ...


class VoucherPolicy:
    """Who may vouch that this node is behind, or serve it a checkpoint.

    Parameters
    ----------
    view : StandingView
        Membership as this node sees it.
    min_standing_s : float
        Seconds a member must have been in the view (a fresh identity has none).
    excluded : callable
        ``excluded(node_id) -> bool``: banned or quarantined ids (never vouch).
    """

    def __init__(
        self,
        view: StandingView,
        *,
        min_standing_s: float,
        excluded: Callable[[bytes], bool],
    ) -> None:
        self.view = view
        self.min_standing_s = min_standing_s
        self.excluded = excluded

    def refusal(self, node_id_hex: str) -> str | None:
        """None when ``node_id_hex`` may vouch, else a reason code."""
        try:
            node_id = bytes.fromhex(node_id_hex)
        except ValueError:
            return "catchup_bad_id"
        if not self.view.is_member(node_id):
            return "catchup_not_member"
        if self.excluded(node_id):
            return "catchup_excluded"
        standing = self.view.standing_s(node_id)
        if standing is None or standing < self.min_standing_s:
            return "catchup_no_standing"
        return None

    def __call__(self, node_id_hex: str) -> bool:
        return self.refusal(node_id_hex) is None


def catchup_quorum(byzantine: int, num_nodes: int) -> tuple[int, int]:
    """``(f, quorum)`` for a network of ``num_nodes`` that tolerates ``byzantine`` liars.

    ``f`` is capped at ``(num_nodes - 1) // 2``: a node's ``num_nodes - 1`` peers must be
    able to reach ``2 f`` vouchers. ``quorum = max(1, 2 f)``, so the ``2 f`` checkpoints
    plus the node's own model give the robust rule ``2 f + 1`` rows of which at most ``f``
    are forged.
    """
    f = max(0, min(byzantine, (num_nodes - 1) // 2))
    return f, max(1, 2 * f)


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
    max_senders : int, default 1024
        Most senders remembered; the stalest claim is evicted first.

    Every signed update the node verified is observed, inside its window or beyond it: a
    round is a target only when the standing senders ahead outnumber those heard inside
    the window (see :meth:`target`).
    """

    def __init__(
        self,
        max_future: int,
        *,
        quorum: int = 2,
        max_rounds: int | None = None,
        window_s: float = 60.0,
        max_senders: int = 1024,
    ) -> None:
        if quorum < 1:
            raise ValueError(f"quorum must be >= 1, got {quorum}")
        if max_future < 0:
            raise ValueError(f"max_future must be >= 0, got {max_future}")
        self.max_future = max_future
        self.quorum = quorum
        self.max_rounds = max_rounds
        self.window_s = window_s
        self.max_senders = max_senders
        self._claims: dict[str, tuple[int, float]] = {}

    def observe(self, sender: str, round_idx: int, now: float) -> None:
        """Record that ``sender`` signed a message of ``round_idx`` at time ``now``."""
        if round_idx < 0:
            return
        old = self._claims.get(sender)
        if old is None and len(self._claims) >= self.max_senders:
            self._fresh(now)
            if len(self._claims) >= self.max_senders:
                stalest = min(self._claims, key=lambda s: self._claims[s][1])
                del self._claims[stalest]
        if old is None or round_idx >= old[0]:
            self._claims[sender] = (round_idx, now)
        else:
            self._claims[sender] = (old[0], now)  # still alive, still at least that far

    def _fresh(self, now: float, admit: Callable[[str], bool] | None = None) -> dict[str, int]:
        self._claims = {s: (r, t) for s, (r, t) in self._claims.items() if now - t <= self.window_s}
        return {s: r for s, (r, _) in self._claims.items() if admit is None or admit(s)}

    def target(
        self, current: int, now: float, admit: Callable[[str], bool] | None = None
    ) -> int | None:
        """Round to jump to, or None when this node is not provably behind.

        Only senders for which ``admit`` holds count (all when None); each counts with its
        latest round, whether inside our window or beyond it. The target is the largest
        round that at least ``quorum`` of them *and* a strict majority of them have
        reached (so liars that are not the majority of the standing members we hear
        cannot lift it above an honest round), capped at ``max_rounds - 1``; None unless
        it lies beyond ``current + max_future``.
        """
        claims = sorted(self._fresh(now, admit).values(), reverse=True)
        need = max(self.quorum, len(claims) // 2 + 1)
        if len(claims) < need:
            return None
        target = claims[need - 1]
        if self.max_rounds is not None:
            target = min(target, self.max_rounds - 1)
        return target if target > current + self.max_future else None

    def vouchers(
        self, target: int, now: float, admit: Callable[[str], bool] | None = None
    ) -> list[str]:
        """Senders whose latest claim is at or beyond ``target``, closest to it first.

        Honest members claim rounds near the target; a liar's inflated claim sorts last,
        so the checkpoints pulled come from the likeliest honest vouchers first.
        """
        fresh = self._fresh(now, admit)
        return sorted((s for s, r in fresh.items() if r >= target), key=lambda s: fresh[s])

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


@dataclass(frozen=True)
class Adoption:
    """What :func:`adopt_checkpoints` made of the pulled checkpoints."""

    vector: torch.Tensor
    rule: str
    rows: int
    refused: tuple[tuple[str, str], ...]
    """``(sender, reason)`` of checkpoints left out by the hygiene checks."""


def adopt_checkpoints(
    own: torch.Tensor,
    checkpoints: list[PulledCheckpoint],
    *,
    rule: str,
    f: int,
    params: Mapping[str, Any],
    max_norm: float,
    min_rows: int,
) -> Adoption | str:
    """Merge checkpoints with our own model as the round engine merges updates.

    Each checkpoint must be finite and within ``max_norm`` (L2) of ``own``; the survivors
    (at least ``min_rows`` of them) and ``own`` go through ``rule`` with ``f`` (lowered as
    far as the rule's precondition needs, as in a round with few updates). The plain
    ``mean`` is replaced by the coordinate-wise ``median``: a mean lets one forged row move
    the result anywhere. Returns the :class:`Adoption`, or why nothing is adopted.
    """
    kept: list[PulledCheckpoint] = []
    refused: list[tuple[str, str]] = []
    for c in checkpoints:
        vec = c.vector.reshape(-1).to(torch.float32)
        if vec.numel() != own.numel() or not bool(torch.isfinite(vec).all()):
            refused.append((c.sender, "nonfinite or wrong size"))
            continue
        distance = float(torch.linalg.vector_norm(vec - own))
        if not distance <= max_norm:
            refused.append((c.sender, f"{distance:.3g} from our model, limit {max_norm:g}"))
            continue
        kept.append(c)
    if len(kept) < min_rows:
        return f"{len(kept)} usable checkpoints, {min_rows} needed"
    name = "median" if rule == "mean" else rule
    received = tuple(eng.Received(c.sender, c.round, c.vector.reshape(-1), 1.0) for c in kept)
    merged: torch.Tensor | None = None
    from aggregation import PreconditionError

    g = f
    while merged is None:
        action = eng.Aggregate(0, own, received, name, g, params if name == rule else {}, "model")
        try:
            merged = eng.aggregate_round(action)
        except PreconditionError:
            if g > 1:
                g -= 1
                continue
            if name == "median":
                return f"rule median refused {1 + len(kept)} rows"
            name, g = "median", f  # the configured rule cannot take this few rows
    if not bool(torch.isfinite(merged).all()):
        return f"rule {name} returned a non-finite model"
    return Adoption(merged, name, 1 + len(kept), tuple(refused))
