"""The scoring worker (Faust). Its benchmark baseline, the passthrough worker, is a tool
(:mod:`tools.bench.passthrough`)."""
