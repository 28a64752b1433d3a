"""The genesis file: everything that defines one fednode network.

A network is fixed by a TOML file that every participant holds: its name and seed, the
task and model, the learner, the aggregation rule, the privacy parameters, the identity
proof-of-work difficulty and the first-contact addresses. The *network id* is the
SHA-256 of the validated genesis in canonical JSON (defaults filled in, keys sorted), so
comments and formatting do not change it but any setting does; every message carries the
id and a node refuses messages from another network.

Validation is done by pydantic; :func:`load_genesis` turns any problem into one
:class:`GenesisError` line naming the key and the reason.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import textwrap
import tomllib
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from aggregation.names import RULE_NAMES
from node.base.address import parse_host_port
from node.training.spec import LearnerSpec, RoundSpec, TaskSpec

__all__ = [
    "RULE_NAMES",
    "START_WAIT_CAP_S",
    "START_WAIT_PER_NODE_S",
    "AggregationSpec",
    "CatchupSpec",
    "Genesis",
    "GenesisError",
    "NetworkSpec",
    "PrivacySpec",
    "RoundSpec",
    "load_genesis",
    "parse_genesis",
    "record_mechanism",
    "render_genesis",
    "task_and_learner",
]


class GenesisError(Exception):
    """A genesis file that cannot be used; ``str()`` is one line naming the problem."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NetworkSpec(_Section):
    """Identity of the network: name, seed, identity cost, first contacts."""

    name: str = Field(
        "fednode-demo",
        min_length=1,
        max_length=64,
        description="Human-readable network name, shown in status output",
    )
    seed: int = Field(
        0,
        ge=0,
        lt=2**63,
        description="Genesis seed: model init, data partitions and SPSA seeds derive from it",
    )
    pow_difficulty: int = Field(
        16,
        ge=0,
        le=32,
        description=(
            "Identity proof-of-work bits; minting costs ~2^bits SHA-256 hashes "
            "(16: ~0.1 s, 20: ~1.5 s, 24: ~25 s on one core)"
        ),
    )
    bootstrap: list[str] = Field(
        default_factory=list,
        description="First-contact addresses host:port; after joining they are ordinary peers",
    )
    gossip_profile: Literal["lan", "wan", "local", "test"] = Field(
        "lan", description="Membership timing profile (see docs/gossip.md)"
    )

    @field_validator("bootstrap")
    @classmethod
    def _check_addresses(cls, value: list[str]) -> list[str]:
        for item in value:
            parse_host_port(item)
        return value


class AggregationSpec(_Section):
    """How a node merges the updates it receives (robust rule, hygiene)."""

    rule: str = Field(
        "mean",
        description="Robust rule from aggregation.RULES (mean, median, trimmed_mean, krum, ...)",
    )
    f: int = Field(0, ge=0, description="Number of Byzantine peers the rule must tolerate")
    observed_f: bool = Field(
        False,
        description="Per merge, run the rule with f lowered to the rows that look Byzantine "
        "(farther than 3 median distances from ours; node/training/robust_defaults.py)",
    )
    params: dict[str, float | int | str | bool] = Field(
        default_factory=dict, description="Extra keyword parameters passed to the rule"
    )
    variance_correction: bool = Field(
        False, description="Restore per-layer weight variance after averaging (Kiss et al.)"
    )
    max_update_norm: float = Field(
        1e4,
        gt=0,
        description="A peer vector farther than this (L2) from ours is rejected before the rule",
    )
    sybil_weighting: bool = Field(
        False,
        description=(
            "Drop peers whose accumulated update histories are suspiciously similar "
            "(FoolsGold/SybilWall) before the rule"
        ),
    )
    sybil_threshold: float = Field(
        0.5, ge=0, le=1, description="Sybil weight below which a peer's update is dropped"
    )

    @field_validator("rule")
    @classmethod
    def _known_rule(cls, value: str) -> str:
        if value not in RULE_NAMES:
            raise ValueError(f"unknown rule {value!r}; known: {', '.join(sorted(RULE_NAMES))}")
        return value


class CatchupSpec(_Section):
    """When a node that fell behind may adopt its peers' state (node/daemon/catchup.py).

    A node adopts remote state only from admitted members with standing, when at least
    ``quorum = max(1, 2 f)`` of them (``f = min(byzantine, (task.num_nodes - 1) // 2)``)
    signed updates beyond its window *and* they outnumber the standing members it heard
    from inside its window; their checkpoints and its own model then go through a robust
    rule that tolerates ``f`` of the ``2 f + 1`` rows (docs/faults.md, "Catch-up under
    attack").
    """

    byzantine: int = Field(
        1,
        ge=0,
        description="Lying vouchers (members with standing) a catch-up must tolerate",
    )
    min_standing_s: float = Field(
        5.0,
        ge=0,
        description="Seconds a member must have been in this node's view to vouch",
    )


class PrivacySpec(_Section):
    """Differential privacy: node-level on every release, record-level budget, both ledgers."""

    enabled: bool = Field(False, description="Clip and noise every update before it leaves")
    clip: float = Field(1.0, gt=0, description="L2 clipping norm C of one release")
    noise_multiplier: float = Field(
        6.5,
        ge=0,
        description=(
            "Gaussian noise std is noise_multiplier * clip; 6.5 allows ~100 releases "
            "within epsilon 8 at delta 1e-5 (RDP)"
        ),
    )
    epsilon_budget: float = Field(
        8.0, gt=0, description="Total epsilon a node may spend; releases stop beyond it"
    )
    delta: float = Field(
        1e-5, gt=0, lt=1, description="Target delta of the (epsilon, delta) budget"
    )
    sample_epsilon: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description=(
            "Record-level epsilon budget of the learner's DP mechanism (learner.dp_sgd or "
            "learner.dp_zo): local training stops for good when the next round would exceed "
            "it; unset: spent record-level epsilon is still recorded and shown"
        ),
    )
    sample_delta: float = Field(
        1e-5,
        gt=0,
        lt=1,
        description="Delta of the record-level guarantee (keep it below 1 / local examples)",
    )

    @model_validator(mode="after")
    def _noise_when_enabled(self) -> PrivacySpec:
        # Without noise no finite epsilon exists, so the ledger could never debit a release.
        if self.enabled and self.noise_multiplier == 0:
            raise ValueError(
                "noise_multiplier must be > 0 when privacy is enabled (no finite epsilon "
                "exists without noise); to bound updates without DP use "
                "aggregation.max_update_norm"
            )
        return self


_ENGINE_COPIES = frozenset(
    {"aggregation", "aggregation_f", "aggregation_params", "variance_correction"}
)


#: [rounds] keys added after networks existed: left out of the network id while unset.
_ADDED_ROUND_KEYS = ("start_wait", "sample_trainers", "sample_aggregators", "asynchronous")

#: Start-up allowance per declared node beyond the first (see :attr:`Genesis.start_wait_s`).
START_WAIT_PER_NODE_S = 20.0
#: The default start-up allowance never exceeds this (a larger network sets start_wait).
START_WAIT_CAP_S = 600.0


class Genesis(_Section):
    """A whole genesis file."""

    network: NetworkSpec = Field(default_factory=lambda: NetworkSpec())
    task: TaskSpec = Field(default_factory=lambda: TaskSpec())
    learner: LearnerSpec = Field(default_factory=lambda: LearnerSpec())
    aggregation: AggregationSpec = Field(default_factory=lambda: AggregationSpec())
    privacy: PrivacySpec = Field(default_factory=lambda: PrivacySpec())
    catchup: CatchupSpec = Field(default_factory=lambda: CatchupSpec())
    rounds: RoundSpec = Field(default_factory=lambda: RoundSpec())

    @model_validator(mode="after")
    def _rule_lives_in_aggregation(self) -> Genesis:
        # RoundSpec carries the rule for the sans-I/O engine, but the genesis has one place
        # for it: [aggregation]. A rule written under [rounds] would be silently ignored.
        misplaced = _ENGINE_COPIES & self.rounds.model_fields_set
        if misplaced:
            raise ValueError(
                f"rounds.{sorted(misplaced)[0]} is set from [aggregation] "
                "(rule, f, params, variance_correction); remove it from [rounds]"
            )
        self.round_spec()
        return self

    @model_validator(mode="after")
    def _asynchronous_needs_models(self) -> Genesis:
        if self.rounds.asynchronous is not None and self.learner.kind == "spsa":
            raise ValueError(
                "rounds.asynchronous cannot be used with learner 'spsa': SPSA nodes agree "
                "on every round's scalars, which needs rounds; use learner 'sgd' or "
                "'flower', or remove [rounds.asynchronous]"
            )
        return self

    @model_validator(mode="after")
    def _privacy_the_node_can_keep(self) -> Genesis:
        # Combinations the node could not protect are refused here, not at run time.
        learner, privacy = self.learner, self.privacy
        record = record_mechanism(learner)
        if privacy.sample_epsilon is not None:
            if learner.kind == "flower":
                raise ValueError(
                    "privacy.sample_epsilon cannot be kept with learner 'flower': the node "
                    "cannot see or account for what an opaque Flower client does with single "
                    "records (its own DP, e.g. a DP mod, is not verified); use node-level "
                    "privacy.enabled, or learner 'sgd' with dp_sgd"
                )
            if record is None:
                raise ValueError(
                    "privacy.sample_epsilon needs a record-level mechanism: learner.dp_sgd = "
                    "true (kind 'sgd') or learner.dp_zo = true (kind 'spsa')"
                )
            if record[1] == 0:
                raise ValueError(
                    f"privacy.sample_epsilon needs learner.{record[0]}_noise_multiplier > 0 "
                    "(without noise no finite record-level epsilon exists)"
                )
        if (privacy.enabled or record is not None) and self.rounds.weight_by_examples:
            raise ValueError(
                "rounds.weight_by_examples cannot be used with differential privacy: example "
                "counts are computed from private data and would be sent un-noised"
            )
        return self

    def round_spec(self) -> RoundSpec:
        """The engine's effective :class:`RoundSpec`: ``[rounds]`` plus the ``[aggregation]``
        rule, f, parameters and variance switch, validated together (so, e.g., sample
        weighting with a robust rule is refused when the genesis is read, not at start)."""
        agg = self.aggregation
        data = self.rounds.model_dump()
        data.update(
            aggregation=agg.rule,
            aggregation_f=agg.f,
            aggregation_params=dict(agg.params),
            variance_correction=agg.variance_correction,
        )
        return RoundSpec.model_validate(data)

    @property
    def start_wait_s(self) -> float:
        """Seconds a node waits for peers before round 0 before it trains alone.

        ``rounds.start_wait`` when set; otherwise a start-up allowance that grows with the
        declared network size, ``min(600, round_timeout + 20 * (task.num_nodes - 1))``:
        20 s is what one more node process may take to import torch, load its shard and
        be found by gossip on a loaded 2-core machine. One ``round_timeout`` alone (the old
        wait) let the first node of a testnet train its first rounds alone.
        """
        if self.rounds.start_wait is not None:
            return float(self.rounds.start_wait)
        grown = self.rounds.round_timeout + START_WAIT_PER_NODE_S * max(0, self.task.num_nodes - 1)
        return float(min(START_WAIT_CAP_S, grown))

    def canonical_json(self) -> bytes:
        """Canonical encoding whose hash is the network id."""
        data = self.model_dump(mode="json")
        for key in _ADDED_ROUND_KEYS:
            if data["rounds"].get(key) is None:
                # Added after networks existed: unset, it must not change their network id.
                del data["rounds"][key]
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @property
    def network_id(self) -> bytes:
        """32-byte network id: SHA-256 of :meth:`canonical_json`."""
        return hashlib.sha256(b"fednode-genesis-v1" + self.canonical_json()).digest()

    @property
    def network_id_hex(self) -> str:
        return self.network_id.hex()

    @classmethod
    def fresh(cls, **sections: Any) -> Genesis:
        """A genesis with a random seed; ``sections`` override whole tables as dicts."""
        data: dict[str, Any] = {"network": {"seed": secrets.randbits(62)}}
        for key, value in sections.items():
            merged = dict(data.get(key, {}))
            merged.update(value)
            data[key] = merged
        return cls.model_validate(data)


def record_mechanism(learner: LearnerSpec) -> tuple[str, float] | None:
    """``(kind, noise multiplier)`` of the learner's record-level DP mechanism, or None.

    ``kind`` is ``"dp_sgd"`` (learner ``sgd``) or ``"dp_zo"`` (learner ``spsa``).
    """
    if learner.dp_sgd:
        return "dp_sgd", learner.dp_sgd_noise_multiplier
    if learner.dp_zo:
        return "dp_zo", learner.dp_zo_noise_multiplier
    return None


def _location(value: str) -> str:
    """A path as every node on this machine reads it (absolute); ``pkg:`` names unchanged."""
    if value.startswith("pkg:"):
        return value
    return str(Path(value).expanduser().resolve())


def task_and_learner(
    task: str,
    learner: str,
    *,
    model: str | None = None,
    data: str | None = None,
    task_options: dict[str, Any] | None = None,
    learner_options: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``[task]`` and ``[learner]`` tables for a task/model/learner combination.

    Starts from :func:`~node.training.spec.recommended_settings`, then applies the
    options (None values are skipped). ``model`` is a Hugging Face folder for the
    Hugging Face tasks (its hash is computed here and written as ``model_sha256``) and
    ``mlp``/``cnn`` otherwise; ``data`` is the task's data file. Paths are made absolute.

    Raises
    ------
    ValueError
        A model folder that is incomplete (one line naming what is missing).
    """
    from node.training.hf.folder import folder_sha256, mean_pooled
    from node.training.spec import HF_TASKS, recommended_settings

    task_table, learner_table = recommended_settings(task, learner)
    task_table = {"name": task, **task_table}
    learner_table = {"kind": learner, **learner_table}
    hf = task in HF_TASKS or task == "sentiment"
    if model is not None:
        if hf:
            task_table["model_path"] = _location(model)
        else:
            task_table["model"] = model
    if data is not None:
        task_table["data_path"] = _location(data)
    task_table.update({k: v for k, v in (task_options or {}).items() if v is not None})
    learner_table.update({k: v for k, v in (learner_options or {}).items() if v is not None})
    if task in HF_TASKS and task_table.get("model_path") and "model_sha256" not in task_table:
        task_table["model_sha256"] = folder_sha256(str(task_table["model_path"]))
    if (
        task == "text-classification"
        and "pooling" not in task_table
        and task_table.get("model_path")
        and mean_pooled(str(task_table["model_path"]))
    ):
        task_table["pooling"] = "mean"
    return task_table, learner_table


def _format_error(source: str, exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    extra = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    value = err.get("input")
    shown = (
        ""
        if err["type"] in {"missing", "extra_forbidden"} or isinstance(value, dict)
        else (f" (got {value!r})")
    )
    return f"{source}: {loc}: {msg}{shown}{extra}"


def parse_genesis(text: str, *, source: str = "genesis") -> Genesis:
    """Parse and validate genesis TOML text; raise :class:`GenesisError` on any problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GenesisError(f"{source}: invalid TOML: {exc}") from None
    try:
        return Genesis.model_validate(data)
    except ValidationError as exc:
        raise GenesisError(_format_error(source, exc)) from None


def load_genesis(path: Path) -> Genesis:
    """Read and validate a genesis file; raise :class:`GenesisError` with one clear line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GenesisError(f"{path}: no such genesis file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GenesisError(f"{path}: cannot read: {exc}") from None
    return parse_genesis(text, source=str(path))


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        inner = ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    return tomli_w.dumps({"v": value}).strip().split(" = ", 1)[1]


def _render_section(model: BaseModel, skip: frozenset[str] = frozenset()) -> list[str]:
    lines: list[str] = []
    for name, field in type(model).model_fields.items():
        if name in skip:
            continue
        value = getattr(model, name)
        if field.description:
            text = field.description.rstrip(".") + "."
            lines.extend(textwrap.wrap(text, 88, initial_indent="# ", subsequent_indent="# "))
        if field.default_factory is not None:
            default: Any = field.default_factory()  # type: ignore[call-arg]
        else:
            default = field.default
        if value is None:
            lines.append(f"# {name} = (unset by default)")
            continue
        dumped = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
        if default is not None and dumped != default:
            lines.append(f"# default: {_toml_value(default)}")
        lines.append(f"{name} = {_toml_value(dumped)}")
    return lines


def render_genesis(genesis: Genesis) -> str:
    """TOML text for ``genesis`` with every setting's meaning and default as a comment."""
    out = [
        "# fednode genesis file: every node of one network uses this exact file.",
        "# Its hash (after validation, ignoring comments) is the network id:",
        f"#   {genesis.network_id_hex}",
        "# `fednode genesis show FILE` prints it. Change any value and you have a new network.",
        "",
    ]
    for name in type(genesis).model_fields:
        section = getattr(genesis, name)
        doc = (type(section).__doc__ or "").strip().splitlines()[0]
        out.append(f"[{name}]")
        out.append(f"# == {doc}")
        # The engine's copies of the rule are filled from [aggregation], never written.
        out.extend(_render_section(section, _ENGINE_COPIES if name == "rounds" else frozenset()))
        out.append("")
    return "\n".join(out)
