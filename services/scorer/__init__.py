"""The scoring worker (Faust) and the passthrough worker it is benchmarked against."""
