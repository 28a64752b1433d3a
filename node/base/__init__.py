"""Primitives that import nothing else of ``node``.

Identity and proof of work, host:port addresses, the data directory, secret files, logs,
metrics, rate limits, the node's settings file, the encoder of signed payloads and the
base of reason-coded errors. Every other layer may import these.
"""

from node.base.address import format_host_port, parse_host_port
from node.base.datadir import DataDir, DataDirLocked, default_data_dir
from node.base.errors import ReasonError, UndeclaredReason, fault_reasons
from node.base.logs import LOGGER_NAME, configure_logging, log
from node.base.metrics import Metrics
from node.base.ratelimit import RateLimiter
from node.base.secret_file import write_secret
from node.base.settings import ConfigError, NodeSettings, load_settings
from node.base.signing import SigningEncoder, lp

__all__ = [
    "LOGGER_NAME",
    "ConfigError",
    "DataDir",
    "DataDirLocked",
    "Metrics",
    "NodeSettings",
    "RateLimiter",
    "ReasonError",
    "SigningEncoder",
    "UndeclaredReason",
    "configure_logging",
    "default_data_dir",
    "fault_reasons",
    "format_host_port",
    "load_settings",
    "log",
    "lp",
    "parse_host_port",
    "write_secret",
]
