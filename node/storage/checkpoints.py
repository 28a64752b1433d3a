"""Model checkpoints: safetensors files in the data dir, sha256 and position in SQL."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from node.storage.core import StoreCore, check_hex
from node.storage.errors import CheckpointCorrupted, StorageError
from node.storage.files import atomic_write
from node.storage.models import CheckpointRow
from node.storage.records import CheckpointInfo

if TYPE_CHECKING:
    import torch

__all__ = ["CheckpointStore"]


class CheckpointStore(StoreCore):
    """Checkpoint files and their rows."""

    @staticmethod
    def _checkpoint_info(row: CheckpointRow, base: Path) -> CheckpointInfo:
        return CheckpointInfo(
            id=row.id,
            round=row.round,
            model_sha256=row.model_sha256,
            file_sha256=row.file_sha256,
            path=base / row.path,
            size=row.size,
            created_at=row.created_at,
            applied_seed_digest=row.applied_seed_digest,
            spsa_seq=row.spsa_seq,
        )

    def save_checkpoint(
        self,
        round: int,
        tensors: Mapping[str, torch.Tensor],
        *,
        model_sha256: str | None = None,
        applied_seed_digest: str | None = None,
        spsa_seq: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> CheckpointInfo:
        """Write ``tensors`` as a safetensors checkpoint and record it.

        The file is written to a temporary name, fsynced and renamed into
        ``<data_dir>/checkpoints/`` before the SQL row commits.

        Parameters
        ----------
        round : int
            Round the model state belongs to.
        tensors : mapping of str to torch.Tensor
            Model (or trainable-parameter) state; copied to contiguous CPU tensors.
        model_sha256 : str or None, default None
            The caller's canonical model hash; defaults to the file's sha256.
        applied_seed_digest : str or None, default None
            SPSA digest of the seed ids folded into this state.
        spsa_seq : int or None, default None
            Highest SPSA log position folded into this state; catch-up replays
            ``spsa_since(after_seq=spsa_seq)`` on top of it.
        metadata : mapping of str to str or None, default None
            Stored in the safetensors header.
        """
        import safetensors.torch

        prepared = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
        data = safetensors.torch.save(prepared, metadata=dict(metadata) if metadata else None)
        return self._save_checkpoint_file(round, data, model_sha256, applied_seed_digest, spsa_seq)

    def save_checkpoint_bytes(
        self,
        round: int,
        data: bytes,
        *,
        expected_sha256: str | None = None,
        model_sha256: str | None = None,
        applied_seed_digest: str | None = None,
        spsa_seq: int | None = None,
    ) -> CheckpointInfo:
        """Store a safetensors checkpoint received as bytes (e.g. from a peer for catch-up).

        The bytes are checked against ``expected_sha256`` and parsed as safetensors (never
        unpickled) before anything is written.

        Raises
        ------
        CheckpointCorrupted
            When the hash does not match or the bytes are not a valid safetensors file.
        """
        import safetensors

        sha = hashlib.sha256(data).hexdigest()
        if expected_sha256 is not None and sha != expected_sha256:
            raise CheckpointCorrupted(f"checkpoint bytes hash to {sha}, expected {expected_sha256}")
        try:
            # Full header and offset validation by the safetensors parser, without torch.
            safetensors.deserialize(bytes(data))
        except Exception as exc:
            raise CheckpointCorrupted(f"checkpoint bytes are not valid safetensors: {exc}") from exc
        return self._save_checkpoint_file(
            round, bytes(data), model_sha256, applied_seed_digest, spsa_seq
        )

    def _save_checkpoint_file(
        self,
        round: int,
        data: bytes,
        model_sha256: str | None,
        applied_seed_digest: str | None,
        spsa_seq: int | None,
    ) -> CheckpointInfo:
        base = self._require_data_dir("saving a checkpoint")
        if round < 0:
            raise ValueError(f"checkpoint round must be >= 0, got {round}")
        sha = hashlib.sha256(data).hexdigest()
        if model_sha256 is not None:
            check_hex("model_sha256", model_sha256)
        if applied_seed_digest is not None:
            check_hex("applied_seed_digest", applied_seed_digest)
        rel = f"checkpoints/round-{round:09d}-{sha[:16]}.safetensors"
        atomic_write(base / rel, data)

        def work(s: Session) -> CheckpointInfo:
            row = CheckpointRow(
                round=round,
                model_sha256=model_sha256 or sha,
                file_sha256=sha,
                path=rel,
                size=len(data),
                created_at=time.time(),
                applied_seed_digest=applied_seed_digest,
                spsa_seq=spsa_seq,
            )
            s.add(row)
            s.flush()
            return self._checkpoint_info(row, base)

        return self._write(work)

    def list_checkpoints(self) -> list[CheckpointInfo]:
        """Every recorded checkpoint, oldest first (by round, then id)."""
        base = self._data_dir or Path(".")
        with self._read() as s:
            rows = s.scalars(select(CheckpointRow).order_by(CheckpointRow.round, CheckpointRow.id))
            return [self._checkpoint_info(r, base) for r in rows]

    def latest_checkpoint(self) -> CheckpointInfo | None:
        """The checkpoint of the highest round (newest on ties), or None."""
        base = self._data_dir or Path(".")
        with self._read() as s:
            row = s.scalars(
                select(CheckpointRow)
                .order_by(CheckpointRow.round.desc(), CheckpointRow.id.desc())
                .limit(1)
            ).first()
            return None if row is None else self._checkpoint_info(row, base)

    def checkpoint_bytes(self, checkpoint: CheckpointInfo) -> bytes:
        """The checkpoint file's bytes after verifying them against the stored sha256.

        Raises
        ------
        CheckpointCorrupted
            When the file is missing, unreadable or altered.
        """
        try:
            data = checkpoint.path.read_bytes()
        except OSError as exc:
            raise CheckpointCorrupted(
                f"checkpoint {checkpoint.id} (round {checkpoint.round}) file unreadable: {exc}"
            ) from exc
        if hashlib.sha256(data).hexdigest() != checkpoint.file_sha256:
            raise CheckpointCorrupted(
                f"checkpoint {checkpoint.id} (round {checkpoint.round}): {checkpoint.path} "
                "does not match the sha256 recorded in the database"
            )
        return data

    def load_checkpoint(
        self, checkpoint: CheckpointInfo | None = None
    ) -> tuple[CheckpointInfo, dict[str, torch.Tensor]]:
        """Load a checkpoint's tensors (default: the latest), verified by sha256.

        Raises
        ------
        StorageError
            When no checkpoint exists.
        CheckpointCorrupted
            When the file does not verify or does not parse.
        """
        import safetensors.torch

        info = checkpoint if checkpoint is not None else self.latest_checkpoint()
        if info is None:
            raise StorageError("no checkpoint has been saved")
        data = self.checkpoint_bytes(info)
        try:
            tensors = safetensors.torch.load(data)
        except Exception as exc:
            raise CheckpointCorrupted(f"checkpoint {info.id} does not parse: {exc}") from exc
        return info, tensors

    def prune_checkpoints(self, keep: int = 3) -> int:
        """Delete all but the newest ``keep`` checkpoints (rows, then files).

        Returns the number of checkpoints removed.
        """
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")

        def work(s: Session) -> list[str]:
            rows = list(
                s.scalars(
                    select(CheckpointRow).order_by(
                        CheckpointRow.round.desc(), CheckpointRow.id.desc()
                    )
                )
            )
            doomed = rows[keep:]
            kept_paths = {r.path for r in rows[:keep]}
            for r in doomed:
                s.delete(r)
            return [r.path for r in doomed if r.path not in kept_paths]

        paths = self._write(work)
        if self._data_dir is not None:
            for rel in paths:
                (self._data_dir / rel).unlink(missing_ok=True)
        return len(paths)
