"""The scheduler sidecar: jobs as plain functions of `now` (jobs.py), a leader lock so that only
one scheduler runs a job at a time (leader.py), and the clock that triggers them (cli.py)."""
