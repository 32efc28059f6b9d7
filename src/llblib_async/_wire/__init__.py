"""The wire layer: bytes on sockets and in gRPC messages, under the client and the session."""
