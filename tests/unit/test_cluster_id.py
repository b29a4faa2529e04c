"""The KRaft cluster id the stack generates for `kafka-storage format`."""

from __future__ import annotations

import base64

from services.stack.kafka_broker import new_cluster_id


def test_cluster_ids_are_22_char_base64url_and_never_look_like_options() -> None:
    ids = [new_cluster_id() for _ in range(3000)]  # ~1 in 64 raw draws starts with "-"
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
    assert len(set(ids)) == len(ids)
