"""Attacks by a correctly signing, lying peer against real daemons (issue 12, wire side).

Each test names the attack, asserts the refusal's reason code (in the gRPC status or the
receipt) and the victim's metric for it; the last tests check that honest training went on
unharmed and that the victim's memory stayed bounded. Order matters only at the end: the
member attacker is quarantined by the last test.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from conftest import ADVERSARY_GENESIS, VICTIM, AdversaryNet, run_accuracy, wait_rounds
from malicious_peer import Adversary, raw_header

from fednode_proto.v1.training_pb2 import (
    HistoryGossip,
    HistoryReport,
    ScalarBatch,
    ScalarEntry,
    TensorChunk,
)
from node.base.identity import Identity
from node.testnet.local import Testnet

pytestmark = pytest.mark.slow

MiB = 1024 * 1024


def _refusal(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value


def _zeros(numel: int) -> bytes:
    return np.zeros(numel, dtype="<f4").tobytes()


@pytest.fixture
def free_key(advnet: AdversaryNet) -> Iterator[Adversary]:
    """A fresh Ed25519 key with no proof of work that never joined (free for an attacker)."""
    adv = Adversary(Identity.generate(0), advnet.network_id, advnet.victim_address)
    yield adv
    adv.close()


@pytest.fixture
def member(advnet: AdversaryNet) -> Iterator[Adversary]:
    """The attacker's member identity (joined by gossip with a valid proof of work)."""
    adv = Adversary(advnet.member_key, advnet.network_id, advnet.victim_address)
    yield adv
    adv.close()


# --- free keys: admission ---------------------------------------------------------------------


def test_free_key_update_pushes_are_refused_not_member(advnet: AdversaryNet) -> None:
    before = advnet.metric(
        "fednode_admission_refused_total", 'reason="not_member"', 'kind="update"'
    )
    received = advnet.metric("fednode_messages_received_total", 'kind="update"')
    rnd = int(advnet.status(VICTIM)["round"])  # type: ignore[call-overload]
    payload = _zeros(advnet.numel)  # under `mean`, enough of these pull the model to zero
    for _ in range(20):
        adv = Adversary(Identity.generate(0), advnet.network_id, advnet.victim_address)
        try:
            err = _refusal(
                lambda a=adv: a.push(a.update_stream(raw_header(payload, round=rnd), payload))
            )
        finally:
            adv.close()
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        assert err.details().startswith("not_member")
    after = advnet.metric("fednode_admission_refused_total", 'reason="not_member"', 'kind="update"')
    assert after - before == 20
    # Refused before it was counted as received, so it cannot count toward a round's wait.
    assert advnet.metric("fednode_messages_received_total", 'kind="update"') - received < 20


def test_free_key_checkpoint_pull_is_refused(advnet: AdversaryNet, free_key: Adversary) -> None:
    before = advnet.metric(
        "fednode_admission_refused_total", 'reason="not_member"', 'kind="request"'
    )
    err = _refusal(free_key.pull_checkpoint)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.details().startswith("not_member")
    after = advnet.metric(
        "fednode_admission_refused_total", 'reason="not_member"', 'kind="request"'
    )
    assert after == before + 1


def test_member_checkpoint_pull_is_served(advnet: AdversaryNet, member: Adversary) -> None:
    # The same request from a member is served: the refusal above is admission, not a bug.
    chunks = member.pull_checkpoint()
    assert chunks and chunks[0].HasField("header")


def test_free_key_spsa_batch_is_refused(advnet: AdversaryNet, free_key: Adversary) -> None:
    batch = ScalarBatch(
        origin_id=free_key.identity.node_id,
        dtype="float32",
        entries=[ScalarEntry(round=1, value=1e6)],
    )
    before = advnet.metric("fednode_admission_refused_total", 'reason="not_member"', 'kind="spsa"')
    err = _refusal(lambda: free_key.push_scalars(batch, round=1))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and err.details().startswith(
        "not_member"
    )
    assert (
        advnet.metric("fednode_admission_refused_total", 'reason="not_member"', 'kind="spsa"')
        == before + 1
    )


def test_free_key_history_report_is_refused(advnet: AdversaryNet, free_key: Adversary) -> None:
    batch = HistoryGossip(reports=[HistoryReport()])
    before = advnet.metric(
        "fednode_admission_refused_total", 'reason="not_member"', 'kind="history"'
    )
    err = _refusal(lambda: free_key.push_history(batch))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and err.details().startswith(
        "not_member"
    )
    assert (
        advnet.metric("fednode_admission_refused_total", 'reason="not_member"', 'kind="history"')
        == before + 1
    )


def test_free_key_faults_write_no_reputation_rows(advnet: AdversaryNet) -> None:
    # A non-member's authenticated nonsense (a malformed gossip body) is refused and not
    # charged: only members get reputation rows, so a flood of keys cannot grow the table.
    import sqlite3

    db = advnet.net.nodes[VICTIM].data_dir.root / "fednode.db"
    for _ in range(30):
        adv = Adversary(Identity.generate(0), advnet.network_id, advnet.victim_address)
        try:
            _refusal(lambda a=adv: a.stub.Gossip(a.seal("gossip", b"\xff\x00garbage"), timeout=5))
        finally:
            adv.close()
    time.sleep(0.5)  # reputation writes run in the daemon's executor
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT COUNT(*) FROM reputation").fetchone()[0]
    finally:
        conn.close()
    assert rows <= 2  # at most the two real peers


# --- undecodable bytes --------------------------------------------------------------------


@pytest.mark.parametrize("method", ["PushScalars", "PushHistory", "Gossip"])
def test_garbage_bytes_are_invalid_argument_with_a_reason(
    advnet: AdversaryNet, free_key: Adversary, method: str
) -> None:
    before = advnet.metric("fednode_messages_rejected_total", 'reason="undecodable"')
    # Wire type 7 does not exist: no protobuf parser accepts these bytes.
    err = _refusal(lambda: free_key.raw(method, b"\xff" * 64))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("undecodable")
    assert advnet.metric("fednode_messages_rejected_total", 'reason="undecodable"') == before + 1


# --- members: bounded work per request --------------------------------------------------------


def test_over_declared_shape_is_refused_before_the_body(
    advnet: AdversaryNet, member: Adversary
) -> None:
    # The header declares 1000 times the model; 64 chunks of 1 MiB follow if anyone reads.
    payload = b"\x00" * MiB
    header = raw_header(payload, numel=advnet.numel * 1000)
    stream = member.update_stream(header, payload, extra=(b"\x00" * MiB for _ in range(64)))
    err = _refusal(lambda: member.push(stream))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith("bad_shape")
    assert stream.pulled < 16, f"the client streamed {stream.pulled} chunks before the refusal"


def test_wrong_dtype_is_refused_before_the_body(advnet: AdversaryNet, member: Adversary) -> None:
    payload = np.zeros(advnet.numel, dtype="<f8").tobytes()
    header = raw_header(payload, numel=advnet.numel, dtype="float64")
    header.total_bytes = len(payload)
    err = _refusal(lambda: member.push(member.update_stream(header, payload)))
    assert err.details().startswith("bad_dtype")


def test_stream_is_refused_at_the_first_byte_past_its_size(
    advnet: AdversaryNet, member: Adversary
) -> None:
    payload = _zeros(advnet.numel)
    before = advnet.metric("fednode_messages_rejected_total", 'reason="size_mismatch"')
    stream = member.update_stream(
        raw_header(payload), payload, extra=(b"\x01" * MiB for _ in range(64))
    )
    err = _refusal(lambda: member.push(stream))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("size_mismatch")
    assert stream.pulled < 16
    assert advnet.metric("fednode_messages_rejected_total", 'reason="size_mismatch"') == before + 1


def test_too_many_chunks_are_refused(advnet: AdversaryNet, member: Adversary) -> None:
    payload = _zeros(advnet.numel)
    # Four bytes per chunk: every one within the declared size, far too many of them.
    stream = member.update_stream(raw_header(payload), payload, chunk_bytes=4)
    err = _refusal(lambda: member.push(stream))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details().startswith("too_many_chunks")
    assert stream.pulled < advnet.numel // 4
    assert advnet.metric("fednode_messages_rejected_total", 'reason="too_many_chunks"') >= 1


def test_compressed_bomb_is_never_inflated(advnet: AdversaryNet, member: Adversary) -> None:
    # 4 MiB of zeros per chunk compresses about 1000:1; the daemon accepts no compression.
    before = advnet.metric("fednode_messages_rejected_total", 'reason="compressed"')
    payload = _zeros(advnet.numel)
    stream = member.update_stream(
        raw_header(payload), payload, extra=(b"\x00" * (4 * MiB - 64) for _ in range(48))
    )
    err = _refusal(lambda: member.push(stream, compression=grpc.Compression.Gzip))
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED
    assert err.details().startswith("compressed"), err.details()
    assert stream.pulled < 16
    # fednode refused it (not the gRPC library before the service ran), so it is counted.
    assert advnet.metric("fednode_messages_rejected_total", 'reason="compressed"') == before + 1


@pytest.mark.parametrize("compression", [grpc.Compression.Gzip, grpc.Compression.Deflate])
@pytest.mark.parametrize("method", ["Gossip", "PushScalars", "Pull"])
def test_compressed_requests_are_refused_with_a_reason(
    advnet: AdversaryNet, member: Adversary, method: str, compression: grpc.Compression
) -> None:
    # Correctly signed requests, compressed. gRPC sends a message uncompressed when
    # compressing does not make it smaller, so every body here is long and repetitive.
    kind, body = {
        "Gossip": ("gossip", b"\x00" * 4096),
        "PushScalars": (
            "spsa",
            ScalarBatch(
                origin_id=member.identity.node_id,
                dtype="float32",
                entries=[ScalarEntry(round=1, value=0.0)] * 512,
            ).SerializeToString(),
        ),
        "Pull": ("request", b"\x00" * 4096),
    }[method]
    request = member.seal(kind, body).SerializeToString()
    before = advnet.metric("fednode_messages_rejected_total", 'reason="compressed"')
    err = _refusal(lambda: member.raw(method, request, compression=compression))
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED
    assert err.details().startswith("compressed"), err.details()
    assert advnet.metric("fednode_messages_rejected_total", 'reason="compressed"') == before + 1


def test_stream_attacks_keep_memory_bounded(advnet: AdversaryNet, member: Adversary) -> None:
    """Every stream attack three times, concurrently with training: RSS grows < 100 MB."""
    import concurrent.futures

    base = advnet.rss_mb()
    payload = _zeros(advnet.numel)

    def over_declared() -> None:
        header = raw_header(b"", numel=advnet.numel * 1000)
        s = member.update_stream(header, b"\x00" * MiB, extra=(b"\x00" * MiB for _ in range(200)))
        _refusal(lambda: member.push(s))

    def past_size() -> None:
        s = member.update_stream(
            raw_header(payload), payload, extra=(b"\x01" * MiB for _ in range(200))
        )
        _refusal(lambda: member.push(s))

    def bomb() -> None:
        s = member.update_stream(
            raw_header(payload), payload, extra=(b"\x00" * (4 * MiB - 64) for _ in range(64))
        )
        _refusal(lambda: member.push(s, compression=grpc.Compression.Gzip))

    peak = base
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(f) for f in (over_declared, past_size, bomb) * 2]
        while not all(f.done() for f in futures):
            peak = max(peak, advnet.rss_mb())
            time.sleep(0.05)
        for f in futures:
            f.result()
    peak = max(peak, advnet.rss_mb())
    assert peak - base < 100, f"victim RSS grew from {base:.0f} MB to {peak:.0f} MB"
    assert advnet.net.nodes[VICTIM].alive()


# --- honest state ------------------------------------------------------------------------------


def test_honest_training_went_on_unharmed(advnet: AdversaryNet, clean_baseline: Testnet) -> None:
    """The honest nodes under attack end within 2 points of the same network run clean."""
    rounds = int(ADVERSARY_GENESIS["rounds"]["max_rounds"])  # type: ignore[index]
    attacked = run_accuracy(wait_rounds(advnet.net, rounds, timeout=240))
    clean = run_accuracy(wait_rounds(clean_baseline, rounds, timeout=240))
    assert attacked >= clean - 0.02, (
        f"honest accuracy {attacked:.4f} under attack, {clean:.4f} clean"
    )
    assert clean > 0.85, f"the clean baseline itself did not learn: {clean:.4f}"  # chance 0.10
    # Honest updates were admitted all along (the victim merged its peer's pushes).
    assert advnet.metric("fednode_messages_received_total", 'kind="update"') >= 10


def test_served_checkpoint_is_unchanged_by_refused_attacks(
    advnet: AdversaryNet, member: Adversary
) -> None:
    """After training ended, pushes that are refused leave the model hash as it was."""
    h0 = advnet.status(VICTIM)["model_hash"]
    payload = _zeros(advnet.numel)
    for _ in range(5):
        adv = Adversary(Identity.generate(0), advnet.network_id, advnet.victim_address)
        try:
            _refusal(lambda a=adv: a.push(a.update_stream(raw_header(payload, round=40), payload)))
        finally:
            adv.close()
    assert advnet.status(VICTIM)["model_hash"] == h0
    chunks = member.pull_checkpoint()
    body = b"".join(c.data for c in chunks)
    assert hashlib.sha256(body).digest() == _header_sha(chunks[0])


def _header_sha(first: TensorChunk) -> bytes:
    from fednode_proto.v1.training_pb2 import TensorHeader

    header = TensorHeader()
    header.ParseFromString(first.header.body)
    return bytes(header.payload_sha256)


# --- last: the member attacker ends up quarantined -------------------------------------------


def test_a_member_that_keeps_lying_is_quarantined(advnet: AdversaryNet, member: Adversary) -> None:
    payload = b"\x00" * 64
    reasons = []
    for _ in range(25):
        header = raw_header(payload, numel=advnet.numel + 1)
        try:
            member.push(member.update_stream(header, payload))
        except grpc.RpcError as exc:
            reasons.append(exc.details().split(":", 1)[0])
    assert "bad_shape" in reasons and reasons[-1] == "quarantined"
    assert advnet.metric("fednode_admission_refused_total", 'reason="quarantined"') >= 1
    # Quarantined means every path: its checkpoint pulls are refused too.
    err = _refusal(member.pull_checkpoint)
    assert err.details().startswith("quarantined")
