"""Producers: replay of transaction files and a seeded simulator, into Kafka (kafka-python)."""
