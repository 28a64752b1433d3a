"""Pure learning, no I/O: genesis, tasks and datasets, models, learners, the round engine.

Nothing here opens a socket, a database or a task: the daemon (``node.daemon``) and
the simulations (``node.sim``) drive these parts, which is why a simulation and a
daemon given the same inputs reach the same decisions.

- :mod:`~node.training.genesis`: the network's definition (TOML, validated, hashed) and
  :func:`task_and_learner`, the task presets; torch-free, so the CLI can read it.
- :mod:`~node.training.spec`: the task, learner and round settings.
- :mod:`~node.training.datasets`, :mod:`~node.training.models`,
  :mod:`~node.training.tasks`, :mod:`~node.training.trainer`: data, models, local training.
- :mod:`~node.training.engine`: the sans-I/O round engine.
- :mod:`~node.training.participation` and :mod:`~node.training.sampled`: sampled
  participation (who trains and aggregates each round; its round engine).
- :mod:`~node.training.params`: flat parameter vectors, layouts and checkpoints.
- sub-packages :mod:`~node.training.learners` (sgd, spsa, flower) and
  :mod:`~node.training.hf` (Hugging Face folders with LoRA).

The face is lazy (:func:`node.base.lazy_face.lazy_face`): ``from node.training import
Genesis`` loads the genesis module only, not torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from node.base.lazy_face import lazy_face

if TYPE_CHECKING:
    from node.training.datasets import (
        DatasetError,
        NodeData,
        TaskData,
        load_task,
        node_data,
        partition,
    )
    from node.training.engine import (
        Aggregate,
        Evaluate,
        Received,
        RejectUpdate,
        RoundEngine,
        SamplePeers,
        aggregate_round,
    )
    from node.training.genesis import (
        Genesis,
        GenesisError,
        PrivacySpec,
        load_genesis,
        parse_genesis,
        record_mechanism,
        render_genesis,
        task_and_learner,
    )
    from node.training.models import build_model
    from node.training.params import (
        ParamError,
        ParamLayout,
        checkpoint_tensors,
        decode_checkpoint,
        encode_state,
        flatten,
        layout_of,
        load_vector,
        model_hash,
        vector_hash,
    )
    from node.training.participation import RoundSample, sample_round
    from node.training.sampled import DrawSample, SampledRoundEngine, make_engine
    from node.training.seeding import derive_seed
    from node.training.spec import LearnerSpec, RoundSpec, TaskSpec
    from node.training.tasks import build_local_task, spsa_learner
    from node.training.trainer import FlowerTrainer, ModelTrainer, make_trainer
    from node.training.usercode import TaskSetupError, UserCodeError

__all__ = [
    "Aggregate",
    "DatasetError",
    "DrawSample",
    "Evaluate",
    "FlowerTrainer",
    "Genesis",
    "GenesisError",
    "LearnerSpec",
    "ModelTrainer",
    "NodeData",
    "ParamError",
    "ParamLayout",
    "PrivacySpec",
    "Received",
    "RejectUpdate",
    "RoundEngine",
    "RoundSample",
    "RoundSpec",
    "SamplePeers",
    "SampledRoundEngine",
    "TaskData",
    "TaskSetupError",
    "TaskSpec",
    "UserCodeError",
    "aggregate_round",
    "build_local_task",
    "build_model",
    "checkpoint_tensors",
    "decode_checkpoint",
    "derive_seed",
    "encode_state",
    "flatten",
    "layout_of",
    "load_genesis",
    "load_task",
    "load_vector",
    "make_engine",
    "make_trainer",
    "model_hash",
    "node_data",
    "parse_genesis",
    "partition",
    "record_mechanism",
    "render_genesis",
    "sample_round",
    "spsa_learner",
    "task_and_learner",
    "vector_hash",
]

__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "node.training.datasets": (
            "DatasetError",
            "NodeData",
            "TaskData",
            "load_task",
            "node_data",
            "partition",
        ),
        "node.training.engine": (
            "Aggregate",
            "Evaluate",
            "Received",
            "RejectUpdate",
            "RoundEngine",
            "SamplePeers",
            "aggregate_round",
        ),
        "node.training.genesis": (
            "Genesis",
            "GenesisError",
            "PrivacySpec",
            "load_genesis",
            "parse_genesis",
            "record_mechanism",
            "render_genesis",
            "task_and_learner",
        ),
        "node.training.models": ("build_model",),
        "node.training.params": (
            "ParamError",
            "ParamLayout",
            "checkpoint_tensors",
            "decode_checkpoint",
            "encode_state",
            "flatten",
            "layout_of",
            "load_vector",
            "model_hash",
            "vector_hash",
        ),
        "node.training.participation": ("RoundSample", "sample_round"),
        "node.training.sampled": ("DrawSample", "SampledRoundEngine", "make_engine"),
        "node.training.seeding": ("derive_seed",),
        "node.training.spec": ("LearnerSpec", "RoundSpec", "TaskSpec"),
        "node.training.tasks": ("build_local_task", "spsa_learner"),
        "node.training.trainer": ("FlowerTrainer", "ModelTrainer", "make_trainer"),
        "node.training.usercode": ("TaskSetupError", "UserCodeError"),
    },
)
