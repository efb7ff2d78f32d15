"""gRPC transport: servicers translate messages and call services; interceptors authenticate,
limit and map domain errors to statuses."""
