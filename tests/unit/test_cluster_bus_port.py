"""The local Redis Cluster's bus ports: outside Linux's ephemeral port range for a new
cluster, and those its nodes already know one another by for an existing one."""

from __future__ import annotations

from pathlib import Path

from services.stack.cluster import BUS_OFFSET, bus_port


def _ephemeral() -> range:
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    return range(low, high + 1)


def test_a_new_node_listens_for_its_bus_below_the_ephemeral_range(tmp_path: Path) -> None:
    ports = [bus_port(27000 + i, tmp_path / str(i)) for i in range(1, 7)]
    assert ports == [27000 + i + BUS_OFFSET for i in range(1, 7)]
    assert not any(p in _ephemeral() for p in ports)
    assert not set(ports) & set(range(27001, 27007))  # no node's data port


def test_an_existing_node_keeps_the_bus_port_its_peers_know(tmp_path: Path) -> None:
    """A ``nodes.conf`` line as Redis 7 writes it (id, ip:port@cport,hostname, flags, ...)."""
    (tmp_path / "nodes.conf").write_text(
        "b1 127.0.0.1:27001@37001, master - 0 1 1 connected 0-5460\n"
        "a2 127.0.0.1:27002@37002, myself,master - 0 0 2 connected 5461-10922\n"
        "vars currentEpoch 6 lastVoteEpoch 0\n"
    )
    assert bus_port(27002, tmp_path) == 37002


def test_a_node_that_never_joined_gets_the_new_bus_port(tmp_path: Path) -> None:
    """Started once but never in a cluster, a node records ``:0@0`` for itself."""
    (tmp_path / "nodes.conf").write_text("7d :0@0 myself,master - 0 0 0 connected\n")
    assert bus_port(27003, tmp_path) == 27003 + BUS_OFFSET
