"""`python -m bench` (`make bench`): the real stack under closed-loop load from separate
processes, with the ceilings (trivial call direct and through Envoy, raw batched insert)
measured in the same run. See BENCHMARKS.md."""
