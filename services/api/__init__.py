"""The admin API (FastAPI): decisions, explanations, review queue, labels, models, policy."""
