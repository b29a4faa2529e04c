"""``free_ports``: the ports of a private Redis Cluster (data and bus) must all differ; chosen
one at a time, a bus port once took another node's data port and the node did not start."""

from __future__ import annotations

import socket

from services.stack.process import free_ports


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(64)
    assert len(set(ports)) == 64
    with socket.socket() as sock:  # released: each can be bound again
        sock.bind(("127.0.0.1", ports[0]))
