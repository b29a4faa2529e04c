"""Feature definitions: one implementation per definition, for batch and for streaming.

The window arithmetic lives in :mod:`services.features.windows` and is the only place where a
window is computed. :mod:`services.features.batch` applies it to a whole transaction history at
once (training, ``fraud features``); :mod:`services.features.incremental` applies it to one
customer's or terminal's recent events (the scorer). Knows nothing of Kafka, Redis or Feast.
"""
