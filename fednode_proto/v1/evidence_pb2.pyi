from fednode_proto.v1 import envelope_pb2 as _envelope_pb2
from fednode_proto.v1 import training_pb2 as _training_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Evidence(_message.Message):
    __slots__ = ("updates", "spsa_batches")
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    SPSA_BATCHES_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[_envelope_pb2.Envelope]
    spsa_batches: _containers.RepeatedCompositeFieldContainer[_training_pb2.ScalarBatch]
    def __init__(self, updates: _Optional[_Iterable[_Union[_envelope_pb2.Envelope, _Mapping]]] = ..., spsa_batches: _Optional[_Iterable[_Union[_training_pb2.ScalarBatch, _Mapping]]] = ...) -> None: ...
