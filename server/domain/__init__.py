"""Pure business rules: no gRPC, no SQL, time passed in. Unit-tested without a server."""
