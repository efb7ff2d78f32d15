"""Console scripts: billing-server, billing-keys, billing-stack."""
