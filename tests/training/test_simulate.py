from __future__ import annotations

from node.sim.rounds import simulate
from node.training.datasets import load_task
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


def test_full_gossip_with_sample_weighting_is_fedavg(rules) -> None:  # type: ignore[no-untyped-def]
    """k = N-1 push-pull with weight_by_examples merges exactly FedAvg's weighted mean."""
    import torch

    from node.training.datasets import node_data
    from node.training.learners.sgd import SGDLearner
    from node.training.models import build_model
    from node.training.params import flatten, load_vector

    task = TaskSpec(name="digits", num_nodes=4, batch_size=16, alpha=0.5)
    data = load_task(task, 2)
    learner = LearnerSpec(lr=1e-2, local_steps=3)
    rounds = RoundSpec(peers_per_round=3, weight_by_examples=True, eval_every=3)
    res = simulate(
        task, learner, rounds, seed=2, num_rounds=3, task_data=data, rules=rules, jitter=0.5
    )
    model = build_model(task, 2, input_dim=data.input_dim, num_classes=data.num_classes)
    global_vec = flatten(model)
    shards = [node_data(task, 2, i, task=data) for i in range(4)]
    for r in range(3):
        results = []
        for i, shard in enumerate(shards):
            load_vector(model, global_vec)
            SGDLearner(learner, batch_size=16, seed=2, node=f"node-{i}").train_round(
                model, shard, r
            )
            results.append((flatten(model), shard.num_examples))
        total = sum(n for _, n in results)
        global_vec = sum((v * (n / total) for v, n in results), torch.zeros_like(global_vec))
    for v in res.final_vectors:
        assert torch.allclose(v, global_vec, atol=1e-5)
    assert len({s.num_examples for s in shards}) > 1  # the weighting mattered
