"""Generated gRPC/protobuf stubs for fednode (do not edit)."""
