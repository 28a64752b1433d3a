from fednode_proto.v1 import envelope_pb2 as _envelope_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TensorHeader(_message.Message):
    __slots__ = ("format", "dtype", "shape", "total_bytes", "payload_sha256", "round", "base_round", "num_samples", "model_hash")
    class Format(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        FORMAT_UNSPECIFIED: _ClassVar[TensorHeader.Format]
        RAW_LE: _ClassVar[TensorHeader.Format]
        SAFETENSORS: _ClassVar[TensorHeader.Format]
    FORMAT_UNSPECIFIED: TensorHeader.Format
    RAW_LE: TensorHeader.Format
    SAFETENSORS: TensorHeader.Format
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SHA256_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    BASE_ROUND_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    format: TensorHeader.Format
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    total_bytes: int
    payload_sha256: bytes
    round: int
    base_round: int
    num_samples: int
    model_hash: str
    def __init__(self, format: _Optional[_Union[TensorHeader.Format, str]] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., total_bytes: _Optional[int] = ..., payload_sha256: _Optional[bytes] = ..., round: _Optional[int] = ..., base_round: _Optional[int] = ..., num_samples: _Optional[int] = ..., model_hash: _Optional[str] = ...) -> None: ...

class TensorChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: _envelope_pb2.Envelope
    data: bytes
    def __init__(self, header: _Optional[_Union[_envelope_pb2.Envelope, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ScalarEntry(_message.Message):
    __slots__ = ("seed_id", "round", "step", "q", "value")
    SEED_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    Q_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    seed_id: int
    round: int
    step: int
    q: int
    value: float
    def __init__(self, seed_id: _Optional[int] = ..., round: _Optional[int] = ..., step: _Optional[int] = ..., q: _Optional[int] = ..., value: _Optional[float] = ...) -> None: ...

class ScalarBatch(_message.Message):
    __slots__ = ("origin_id", "dtype", "scale", "entries", "origin_signature", "origin_public_key")
    ORIGIN_ID_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    origin_id: bytes
    dtype: str
    scale: float
    entries: _containers.RepeatedCompositeFieldContainer[ScalarEntry]
    origin_signature: bytes
    origin_public_key: bytes
    def __init__(self, origin_id: _Optional[bytes] = ..., dtype: _Optional[str] = ..., scale: _Optional[float] = ..., entries: _Optional[_Iterable[_Union[ScalarEntry, _Mapping]]] = ..., origin_signature: _Optional[bytes] = ..., origin_public_key: _Optional[bytes] = ...) -> None: ...

class PullRequest(_message.Message):
    __slots__ = ("what", "round", "since_round", "have", "until_round")
    class What(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        WHAT_UNSPECIFIED: _ClassVar[PullRequest.What]
        LATEST_UPDATE: _ClassVar[PullRequest.What]
        CHECKPOINT: _ClassVar[PullRequest.What]
        SCALARS_SINCE: _ClassVar[PullRequest.What]
    WHAT_UNSPECIFIED: PullRequest.What
    LATEST_UPDATE: PullRequest.What
    CHECKPOINT: PullRequest.What
    SCALARS_SINCE: PullRequest.What
    WHAT_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    SINCE_ROUND_FIELD_NUMBER: _ClassVar[int]
    HAVE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_ROUND_FIELD_NUMBER: _ClassVar[int]
    what: PullRequest.What
    round: int
    since_round: int
    have: _containers.RepeatedScalarFieldContainer[bytes]
    until_round: int
    def __init__(self, what: _Optional[_Union[PullRequest.What, str]] = ..., round: _Optional[int] = ..., since_round: _Optional[int] = ..., have: _Optional[_Iterable[bytes]] = ..., until_round: _Optional[int] = ...) -> None: ...

class HistoryReport(_message.Message):
    __slots__ = ("reporter_id", "reporter_public_key", "subject_id", "round", "vector", "reporter_signature", "hops")
    REPORTER_ID_FIELD_NUMBER: _ClassVar[int]
    REPORTER_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    REPORTER_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    reporter_id: bytes
    reporter_public_key: bytes
    subject_id: bytes
    round: int
    vector: bytes
    reporter_signature: bytes
    hops: int
    def __init__(self, reporter_id: _Optional[bytes] = ..., reporter_public_key: _Optional[bytes] = ..., subject_id: _Optional[bytes] = ..., round: _Optional[int] = ..., vector: _Optional[bytes] = ..., reporter_signature: _Optional[bytes] = ..., hops: _Optional[int] = ...) -> None: ...

class HistoryGossip(_message.Message):
    __slots__ = ("reports",)
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[HistoryReport]
    def __init__(self, reports: _Optional[_Iterable[_Union[HistoryReport, _Mapping]]] = ...) -> None: ...
