from fednode_proto.v1 import envelope_pb2 as _envelope_pb2
from fednode_proto.v1 import training_pb2 as _training_pb2
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor
