"""The main job (``fraud demo``): the handbook's test week through Kafka and the scorer."""
