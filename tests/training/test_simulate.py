from __future__ import annotations

from node.training.datasets import load_task
from node.training.simulate import simulate
from node.training.spec import LearnerSpec, RoundSpec, TaskSpec


def test_decentralized_digits_learns_and_is_deterministic(rules) -> None:  # type: ignore[no-untyped-def]
    task = TaskSpec(name="digits", num_nodes=4, batch_size=32, alpha=0.5)
    data = load_task(task, 1)
    learner = LearnerSpec(lr=1e-2, local_steps=10)
    rounds = RoundSpec(peers_per_round=2, eval_every=3)
    kw = dict(seed=1, num_rounds=6, task_data=data, rules=rules, jitter=0.5)
    res = simulate(task, learner, rounds, **kw)  # type: ignore[arg-type]
    first = res.history[min(res.history)]
    assert res.mean_accuracy > 0.6  # chance is 0.1
    assert res.mean_accuracy > sum(first) / len(first)
    assert res.messages > 0 and res.bytes_sent > 0
    assert all(s["rounds"] == 6 for s in res.stats)
    again = simulate(task, learner, rounds, **kw)  # type: ignore[arg-type]
    assert again.final_accuracy == res.final_accuracy and again.messages == res.messages
