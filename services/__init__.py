"""fraud-detection services: the scoring worker, the admin API, the producer and the local stack."""
