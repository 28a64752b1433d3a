from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MemberRecord(_message.Message):
    __slots__ = ("node_id", "public_key", "address", "pow_nonce", "incarnation", "network_id", "capabilities", "timestamp_ms", "signature")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    POW_NONCE_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    NETWORK_ID_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    public_key: bytes
    address: str
    pow_nonce: int
    incarnation: int
    network_id: bytes
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    timestamp_ms: int
    signature: bytes
    def __init__(self, node_id: _Optional[bytes] = ..., public_key: _Optional[bytes] = ..., address: _Optional[str] = ..., pow_nonce: _Optional[int] = ..., incarnation: _Optional[int] = ..., network_id: _Optional[bytes] = ..., capabilities: _Optional[_Iterable[str]] = ..., timestamp_ms: _Optional[int] = ..., signature: _Optional[bytes] = ...) -> None: ...

class Statement(_message.Message):
    __slots__ = ("kind", "target_id", "incarnation", "reporter_id", "network_id", "timestamp_ms", "signature")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Statement.Kind]
        SUSPECT: _ClassVar[Statement.Kind]
        DEAD: _ClassVar[Statement.Kind]
        LEFT: _ClassVar[Statement.Kind]
    KIND_UNSPECIFIED: Statement.Kind
    SUSPECT: Statement.Kind
    DEAD: Statement.Kind
    LEFT: Statement.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    REPORTER_ID_FIELD_NUMBER: _ClassVar[int]
    NETWORK_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    kind: Statement.Kind
    target_id: bytes
    incarnation: int
    reporter_id: bytes
    network_id: bytes
    timestamp_ms: int
    signature: bytes
    def __init__(self, kind: _Optional[_Union[Statement.Kind, str]] = ..., target_id: _Optional[bytes] = ..., incarnation: _Optional[int] = ..., reporter_id: _Optional[bytes] = ..., network_id: _Optional[bytes] = ..., timestamp_ms: _Optional[int] = ..., signature: _Optional[bytes] = ...) -> None: ...

class Update(_message.Message):
    __slots__ = ("alive", "statement")
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    alive: MemberRecord
    statement: Statement
    def __init__(self, alive: _Optional[_Union[MemberRecord, _Mapping]] = ..., statement: _Optional[_Union[Statement, _Mapping]] = ...) -> None: ...

class MemberState(_message.Message):
    __slots__ = ("record", "statement")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    record: MemberRecord
    statement: Statement
    def __init__(self, record: _Optional[_Union[MemberRecord, _Mapping]] = ..., statement: _Optional[_Union[Statement, _Mapping]] = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ("seq", "target_id")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    seq: int
    target_id: bytes
    def __init__(self, seq: _Optional[int] = ..., target_id: _Optional[bytes] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("seq", "nack")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    NACK_FIELD_NUMBER: _ClassVar[int]
    seq: int
    nack: bool
    def __init__(self, seq: _Optional[int] = ..., nack: bool = ...) -> None: ...

class PingReq(_message.Message):
    __slots__ = ("seq", "target_id", "target_address", "timeout_ms")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    target_id: bytes
    target_address: str
    timeout_ms: int
    def __init__(self, seq: _Optional[int] = ..., target_id: _Optional[bytes] = ..., target_address: _Optional[str] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class Gossip(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PushPull(_message.Message):
    __slots__ = ("states", "join")
    STATES_FIELD_NUMBER: _ClassVar[int]
    JOIN_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedCompositeFieldContainer[MemberState]
    join: bool
    def __init__(self, states: _Optional[_Iterable[_Union[MemberState, _Mapping]]] = ..., join: bool = ...) -> None: ...

class Join(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GossipMessage(_message.Message):
    __slots__ = ("sender", "ping", "ack", "ping_req", "gossip", "push_pull", "join", "updates")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    PING_REQ_FIELD_NUMBER: _ClassVar[int]
    GOSSIP_FIELD_NUMBER: _ClassVar[int]
    PUSH_PULL_FIELD_NUMBER: _ClassVar[int]
    JOIN_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    sender: MemberRecord
    ping: Ping
    ack: Ack
    ping_req: PingReq
    gossip: Gossip
    push_pull: PushPull
    join: Join
    updates: _containers.RepeatedCompositeFieldContainer[Update]
    def __init__(self, sender: _Optional[_Union[MemberRecord, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., ping_req: _Optional[_Union[PingReq, _Mapping]] = ..., gossip: _Optional[_Union[Gossip, _Mapping]] = ..., push_pull: _Optional[_Union[PushPull, _Mapping]] = ..., join: _Optional[_Union[Join, _Mapping]] = ..., updates: _Optional[_Iterable[_Union[Update, _Mapping]]] = ...) -> None: ...
