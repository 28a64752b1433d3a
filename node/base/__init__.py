"""Primitives that import nothing else of ``node``.

Identity and proof of work, host:port addresses, the data directory, secret files, logs,
metrics, rate limits, the node's settings file, the encoder of signed payloads, the base
of reason-coded errors, and :func:`~node.base.lazy_face.lazy_face` for the faces of the
layers above. Every other layer may import these; this face loads them all (standard
library, ``cryptography`` and ``pydantic`` only).
"""

from node.base.address import format_host_port, parse_host_port
from node.base.datadir import DataDir, DataDirLocked, default_data_dir
from node.base.errors import ReasonError, UndeclaredReason, fault_reasons
from node.base.identity import (
    Identity,
    IdentityError,
    estimate_hash_rate,
    node_id_for,
    pow_check,
    pow_solve,
    verify_signature,
)
from node.base.lazy_face import lazy_face
from node.base.logs import LOGGER_NAME, configure_logging, log
from node.base.metrics import OPERATOR_REJECT_REASONS, Metrics
from node.base.ratelimit import RateLimiter
from node.base.secret_file import write_secret
from node.base.settings import ConfigError, NodeSettings, load_settings
from node.base.signing import SigningEncoder, lp

__all__ = [
    "LOGGER_NAME",
    "OPERATOR_REJECT_REASONS",
    "ConfigError",
    "DataDir",
    "DataDirLocked",
    "Identity",
    "IdentityError",
    "Metrics",
    "NodeSettings",
    "RateLimiter",
    "ReasonError",
    "SigningEncoder",
    "UndeclaredReason",
    "configure_logging",
    "default_data_dir",
    "estimate_hash_rate",
    "fault_reasons",
    "format_host_port",
    "lazy_face",
    "load_settings",
    "log",
    "lp",
    "node_id_for",
    "parse_host_port",
    "pow_check",
    "pow_solve",
    "verify_signature",
    "write_secret",
]
