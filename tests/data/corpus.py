"""Loads the hostile event corpus (hostile_transactions.jsonl) as (name, bytes, reason)."""

from __future__ import annotations

import json
from pathlib import Path

CORPUS = Path(__file__).with_name("hostile_transactions.jsonl")


def hostile_events() -> list[tuple[str, bytes, str]]:
    """Every corpus entry: its name, the payload bytes, the expected reason prefix."""
    out = []
    for line in CORPUS.read_text().splitlines():
        row = json.loads(line)
        payload = (
            bytes.fromhex(row["payload_hex"]) if "payload_hex" in row else row["payload"].encode()
        )
        if "pad_to" in row:
            payload += b"x" * max(row["pad_to"] - len(payload), 0)
        out.append((row["name"], payload, row["reason"]))
    return out
