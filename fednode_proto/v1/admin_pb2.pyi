from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("node_id", "network_id", "network_name", "listen", "version", "uptime_s", "round", "peers_alive", "peers_suspect", "peers_dead", "model_hash", "last_accuracy", "epsilon_spent", "epsilon_budget", "releasing", "state", "bytes_sent", "bytes_received", "messages_rejected", "spsa_digest", "pid", "learner", "task", "history", "node_privacy", "record_privacy", "metrics", "dashboard", "bytes_sent_by_kind", "bytes_received_by_kind", "learner_state")
    class BytesSentByKindEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class BytesReceivedByKindEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NETWORK_ID_FIELD_NUMBER: _ClassVar[int]
    NETWORK_NAME_FIELD_NUMBER: _ClassVar[int]
    LISTEN_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PEERS_ALIVE_FIELD_NUMBER: _ClassVar[int]
    PEERS_SUSPECT_FIELD_NUMBER: _ClassVar[int]
    PEERS_DEAD_FIELD_NUMBER: _ClassVar[int]
    MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    LAST_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    EPSILON_BUDGET_FIELD_NUMBER: _ClassVar[int]
    RELEASING_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_REJECTED_FIELD_NUMBER: _ClassVar[int]
    SPSA_DIGEST_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    LEARNER_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    NODE_PRIVACY_FIELD_NUMBER: _ClassVar[int]
    RECORD_PRIVACY_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    DASHBOARD_FIELD_NUMBER: _ClassVar[int]
    BYTES_SENT_BY_KIND_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_BY_KIND_FIELD_NUMBER: _ClassVar[int]
    LEARNER_STATE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    network_id: str
    network_name: str
    listen: str
    version: str
    uptime_s: float
    round: int
    peers_alive: int
    peers_suspect: int
    peers_dead: int
    model_hash: str
    last_accuracy: float
    epsilon_spent: float
    epsilon_budget: float
    releasing: bool
    state: str
    bytes_sent: int
    bytes_received: int
    messages_rejected: int
    spsa_digest: str
    pid: int
    learner: str
    task: str
    history: _containers.RepeatedCompositeFieldContainer[Evaluation]
    node_privacy: PrivacyLevel
    record_privacy: PrivacyLevel
    metrics: str
    dashboard: str
    bytes_sent_by_kind: _containers.ScalarMap[str, int]
    bytes_received_by_kind: _containers.ScalarMap[str, int]
    learner_state: str
    def __init__(self, node_id: _Optional[str] = ..., network_id: _Optional[str] = ..., network_name: _Optional[str] = ..., listen: _Optional[str] = ..., version: _Optional[str] = ..., uptime_s: _Optional[float] = ..., round: _Optional[int] = ..., peers_alive: _Optional[int] = ..., peers_suspect: _Optional[int] = ..., peers_dead: _Optional[int] = ..., model_hash: _Optional[str] = ..., last_accuracy: _Optional[float] = ..., epsilon_spent: _Optional[float] = ..., epsilon_budget: _Optional[float] = ..., releasing: bool = ..., state: _Optional[str] = ..., bytes_sent: _Optional[int] = ..., bytes_received: _Optional[int] = ..., messages_rejected: _Optional[int] = ..., spsa_digest: _Optional[str] = ..., pid: _Optional[int] = ..., learner: _Optional[str] = ..., task: _Optional[str] = ..., history: _Optional[_Iterable[_Union[Evaluation, _Mapping]]] = ..., node_privacy: _Optional[_Union[PrivacyLevel, _Mapping]] = ..., record_privacy: _Optional[_Union[PrivacyLevel, _Mapping]] = ..., metrics: _Optional[str] = ..., dashboard: _Optional[str] = ..., bytes_sent_by_kind: _Optional[_Mapping[str, int]] = ..., bytes_received_by_kind: _Optional[_Mapping[str, int]] = ..., learner_state: _Optional[str] = ...) -> None: ...

class PrivacyLevel(_message.Message):
    __slots__ = ("level", "enabled", "mechanism", "epsilon_spent", "epsilon_budget", "epsilon_remaining", "delta", "has_budget", "active", "reason", "steps", "releases")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    EPSILON_BUDGET_FIELD_NUMBER: _ClassVar[int]
    EPSILON_REMAINING_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    HAS_BUDGET_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    RELEASES_FIELD_NUMBER: _ClassVar[int]
    level: str
    enabled: bool
    mechanism: str
    epsilon_spent: float
    epsilon_budget: float
    epsilon_remaining: float
    delta: float
    has_budget: bool
    active: bool
    reason: str
    steps: int
    releases: int
    def __init__(self, level: _Optional[str] = ..., enabled: bool = ..., mechanism: _Optional[str] = ..., epsilon_spent: _Optional[float] = ..., epsilon_budget: _Optional[float] = ..., epsilon_remaining: _Optional[float] = ..., delta: _Optional[float] = ..., has_budget: bool = ..., active: bool = ..., reason: _Optional[str] = ..., steps: _Optional[int] = ..., releases: _Optional[int] = ...) -> None: ...

class Evaluation(_message.Message):
    __slots__ = ("round", "accuracy", "loss", "unix_time")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    UNIX_TIME_FIELD_NUMBER: _ClassVar[int]
    round: int
    accuracy: float
    loss: float
    unix_time: float
    def __init__(self, round: _Optional[int] = ..., accuracy: _Optional[float] = ..., loss: _Optional[float] = ..., unix_time: _Optional[float] = ...) -> None: ...

class PeersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PeerInfo(_message.Message):
    __slots__ = ("node_id", "address", "state", "incarnation", "last_seen_s", "rtt_ms", "banned", "reputation", "no_release")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_S_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    BANNED_FIELD_NUMBER: _ClassVar[int]
    REPUTATION_FIELD_NUMBER: _ClassVar[int]
    NO_RELEASE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    address: str
    state: str
    incarnation: int
    last_seen_s: float
    rtt_ms: float
    banned: bool
    reputation: float
    no_release: bool
    def __init__(self, node_id: _Optional[str] = ..., address: _Optional[str] = ..., state: _Optional[str] = ..., incarnation: _Optional[int] = ..., last_seen_s: _Optional[float] = ..., rtt_ms: _Optional[float] = ..., banned: bool = ..., reputation: _Optional[float] = ..., no_release: bool = ...) -> None: ...

class PeersReply(_message.Message):
    __slots__ = ("peers",)
    PEERS_FIELD_NUMBER: _ClassVar[int]
    peers: _containers.RepeatedCompositeFieldContainer[PeerInfo]
    def __init__(self, peers: _Optional[_Iterable[_Union[PeerInfo, _Mapping]]] = ...) -> None: ...

class BanRequest(_message.Message):
    __slots__ = ("node_id", "unban")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    UNBAN_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    unban: bool
    def __init__(self, node_id: _Optional[str] = ..., unban: bool = ...) -> None: ...

class BanReply(_message.Message):
    __slots__ = ("node_id", "banned")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    BANNED_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    banned: bool
    def __init__(self, node_id: _Optional[str] = ..., banned: bool = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExportReply(_message.Message):
    __slots__ = ("model_safetensors", "round", "model_hash")
    MODEL_SAFETENSORS_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    model_safetensors: bytes
    round: int
    model_hash: str
    def __init__(self, model_safetensors: _Optional[bytes] = ..., round: _Optional[int] = ..., model_hash: _Optional[str] = ...) -> None: ...

class StopRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StopReply(_message.Message):
    __slots__ = ("stopping",)
    STOPPING_FIELD_NUMBER: _ClassVar[int]
    stopping: bool
    def __init__(self, stopping: bool = ...) -> None: ...

class PrivacyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Release(_message.Message):
    __slots__ = ("seq", "created_at", "kind", "noise_multiplier", "sample_rate", "steps", "epsilon_after", "scope")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    EPSILON_AFTER_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    created_at: float
    kind: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    epsilon_after: float
    scope: str
    def __init__(self, seq: _Optional[int] = ..., created_at: _Optional[float] = ..., kind: _Optional[str] = ..., noise_multiplier: _Optional[float] = ..., sample_rate: _Optional[float] = ..., steps: _Optional[int] = ..., epsilon_after: _Optional[float] = ..., scope: _Optional[str] = ...) -> None: ...

class PrivacyReply(_message.Message):
    __slots__ = ("epsilon_spent", "epsilon_budget", "delta", "releasing", "reason", "releases", "node", "record")
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    EPSILON_BUDGET_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    RELEASING_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RELEASES_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    epsilon_spent: float
    epsilon_budget: float
    delta: float
    releasing: bool
    reason: str
    releases: _containers.RepeatedCompositeFieldContainer[Release]
    node: PrivacyLevel
    record: PrivacyLevel
    def __init__(self, epsilon_spent: _Optional[float] = ..., epsilon_budget: _Optional[float] = ..., delta: _Optional[float] = ..., releasing: bool = ..., reason: _Optional[str] = ..., releases: _Optional[_Iterable[_Union[Release, _Mapping]]] = ..., node: _Optional[_Union[PrivacyLevel, _Mapping]] = ..., record: _Optional[_Union[PrivacyLevel, _Mapping]] = ...) -> None: ...
