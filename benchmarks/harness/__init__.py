"""The benchmarks' shared harness: servers and services, an HTTP client, load generators,
machine ceilings, interleaved rounds, and the results (table, JSON, chart). The scenarios
that use it are in ../scenarios/, one module each; ../run.py runs them."""
