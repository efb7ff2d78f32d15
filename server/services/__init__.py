"""Use cases: validate input, apply domain rules, read and write through the models in one
transaction, and return records or raise typed domain errors. No gRPC here."""
