"""Locust load on the admin API's read endpoints.

Run against a stack that holds decisions (after ``make run``)::

    KEY=$(fraud api-key create --role viewer --name locust --quiet)
    FRAUD_API_KEY=$KEY locust -f load_tests/api_reads.py --host http://127.0.0.1:8000 \\
        --headless -u 20 -r 20 -t 60s --csv var/reports/locust

Transaction ids and cards are sampled from the chapter 3 test week (2018-08-08..08-14),
whose decisions ``make run`` stores.
"""

from __future__ import annotations

import os
import random

from locust import HttpUser, between, task

FIRST_ID, LAST_ID = 1_240_000, 1_300_000  # inside the replayed week
CARDS = 5000


class AnalystReads(HttpUser):
    """An analyst's screen: mostly single decisions, some card histories and explanations."""

    wait_time = between(0.01, 0.05)

    def on_start(self) -> None:
        self.client.headers["X-API-Key"] = os.environ["FRAUD_API_KEY"]

    @task(10)
    def decision(self) -> None:
        tx = random.randint(FIRST_ID, LAST_ID)
        self.client.get(f"/v1/decisions/{tx}", name="/v1/decisions/{id}")

    @task(3)
    def card_history(self) -> None:
        card = random.randrange(CARDS)
        self.client.get(
            f"/v1/customers/{card}/decisions?limit=20", name="/v1/customers/{id}/decisions"
        )

    @task(2)
    def explanation(self) -> None:
        tx = random.randint(FIRST_ID, LAST_ID)
        self.client.get(f"/v1/decisions/{tx}/explanation", name="/v1/decisions/{id}/explanation")

    @task(1)
    def review_queue(self) -> None:
        self.client.get("/v1/decisions?outcome=review&limit=50", name="/v1/decisions?outcome")
