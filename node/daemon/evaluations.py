"""The node's evaluation history, kept in the store so that it survives restarts.

Each evaluation on the local test split is an ``evaluation`` event (round, accuracy, loss);
a restarted runtime reads them back, so ``fednode status`` and the dashboard show the
whole accuracy curve rather than only what came after the restart.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["EVENT_KIND", "MAX_HISTORY", "load_history", "record_evaluation"]

EVENT_KIND = "evaluation"
#: Evaluations kept in memory and reported (the newest ones).
MAX_HISTORY = 10_000


def record_evaluation(store: Any, round_idx: int, accuracy: float, loss: float) -> None:
    """Store one evaluation (blocking SQL: call from an executor).

    Parameters
    ----------
    store : node.storage.Store
        The node's store.
    round_idx : int
        Rounds completed when the model was evaluated.
    accuracy, loss : float
        The evaluation's results; a non-finite loss is stored as null.
    """
    store.log_event(
        EVENT_KIND,
        {
            "round": int(round_idx),
            "accuracy": float(accuracy),
            "loss": float(loss) if math.isfinite(loss) else None,
        },
    )


def load_history(store: Any) -> list[tuple[int, float, float, float]]:
    """Stored evaluations as ``(round, accuracy, loss, unix_time)``, oldest first.

    Rows that do not parse are skipped; at most :data:`MAX_HISTORY` (the newest) are kept.
    """
    out: list[tuple[int, float, float, float]] = []
    after = 0
    while True:
        batch = store.events(after_id=after, kind=EVENT_KIND, limit=1000)
        if not batch:
            break
        after = batch[-1].id
        for ev in batch:
            try:
                loss = ev.detail.get("loss")
                out.append(
                    (
                        int(ev.detail["round"]),
                        float(ev.detail["accuracy"]),
                        float("nan") if loss is None else float(loss),
                        float(ev.ts),
                    )
                )
            except (KeyError, TypeError, ValueError):
                continue
    return out[-MAX_HISTORY:]
