"""Training, evaluation and the model registry (XGBoost boosters with their metadata)."""
