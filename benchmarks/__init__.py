"""Benchmarks of the sync against the local sandbox servers (issue 6): `python -m benchmarks.run [--quick]
[--only NAME ...]`. One module per benchmark, each with `run(sandbox, quick=...)` for the runner, `measure(...)`
for any size (the test suite calls it with tiny ones) and `markdown(result)` for RESULTS.md."""
