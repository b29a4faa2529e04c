"""Load generators: open-loop Kafka load (:mod:`load_tests.kafka_load`, used by ``fraud
bench``) and API load (``api_reads.py``, a Locust file run by path).

Not shipped in the runtime image.
"""
