"""`testnet up --epsilon E` builds a valid genesis (issue 15: it failed with "1 validation
error for Genesis", because the testnet also asked for example weighting, which DP refuses)."""

from __future__ import annotations

from node.cli.testnet import testnet_genesis as make_genesis  # not collected as a test


def _genesis(epsilon: float | None) -> object:
    return make_genesis(
        nodes=4,
        task="digits",
        model=None,
        learner="sgd",
        flower_client=None,
        rounds=5,
        rule="mean",
        byzantine=0,
        seed=1,
        eval_every=1,
        epsilon=epsilon,
        noise=6.5,
        clip=1.0,
        sybil_weighting=False,
        data=None,
    )


def test_dp_testnet_genesis_is_valid_and_does_not_weight_by_example_counts() -> None:
    g = _genesis(2.0)
    assert g.privacy.enabled and g.privacy.epsilon_budget == 2.0  # type: ignore[attr-defined]
    assert g.rounds.weight_by_examples is False  # type: ignore[attr-defined]


def test_honest_testnet_without_dp_keeps_fedavg_weighting() -> None:
    assert _genesis(None).rounds.weight_by_examples is True  # type: ignore[attr-defined]
