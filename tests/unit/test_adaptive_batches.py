"""The scorer's micro-batching: batches grow with the backlog, acks follow the work.

A stand-in for the three members of ``faust.Stream`` that :func:`adaptive_batches` uses
(``enable_acks``, ``events()``, ``ack()``), fed from a queue; expected batch sizes are worked
out by hand from what is queued when.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.scorer.batching import adaptive_batches


class FakeStream:
    def __init__(self) -> None:
        self.enable_acks = True
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.acked: list[int] = []

    async def events(self) -> AsyncIterator[Any]:
        while True:
            item = await self.queue.get()
            if isinstance(item, Exception):
                raise item
            if item is None:
                return
            yield item

    async def ack(self, event: int) -> bool:
        self.acked.append(event)
        return True


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout=10))


def test_a_backlog_goes_in_batches_up_to_the_maximum() -> None:
    async def scenario() -> list[list[int]]:
        stream = FakeStream()
        for i in range(250):
            stream.queue.put_nowait(i)
        stream.queue.put_nowait(None)
        return [batch async for batch in adaptive_batches(stream, max_size=100)]

    batches = run(scenario())
    assert [len(b) for b in batches] == [100, 100, 50]
    assert [e for b in batches for e in b] == list(range(250))


def test_what_arrives_during_a_batch_forms_the_next_one_whole() -> None:
    async def scenario() -> tuple[list[list[int]], list[list[int]], bool]:
        stream = FakeStream()
        stream.queue.put_nowait(0)
        seen, acked_during = [], []
        async for batch in adaptive_batches(stream, max_size=500):
            seen.append(batch)
            acked_during.append(list(stream.acked))
            if batch == [0]:  # 7 transactions arrive while the first is being decided
                for i in range(1, 8):
                    stream.queue.put_nowait(i)
                await asyncio.sleep(0.05)
                stream.queue.put_nowait(None)
        return seen, acked_during, stream.enable_acks

    seen, acked_during, auto_acks = run(scenario())
    assert seen == [[0], [1, 2, 3, 4, 5, 6, 7]]
    # an event is acknowledged only once the batch that held it is done
    assert acked_during == [[], [0]]
    assert auto_acks is False


def test_every_event_is_acknowledged_after_its_batch() -> None:
    async def scenario() -> list[int]:
        stream = FakeStream()
        for i in range(30):
            stream.queue.put_nowait(i)
        stream.queue.put_nowait(None)
        async for _ in adaptive_batches(stream, max_size=8):
            pass
        return stream.acked

    assert run(scenario()) == list(range(30))


@pytest.mark.parametrize(("linger_s", "first"), [(0.0, [0]), (0.3, [0, 1])])
def test_linger_waits_for_company_after_a_quiet_spell(linger_s: float, first: list[int]) -> None:
    async def scenario() -> list[int]:
        stream = FakeStream()

        async def later() -> None:
            stream.queue.put_nowait(0)
            await asyncio.sleep(0.05)  # well inside 0.3 s
            stream.queue.put_nowait(1)
            stream.queue.put_nowait(None)

        feeder = asyncio.ensure_future(later())
        batches = [b async for b in adaptive_batches(stream, max_size=10, linger_s=linger_s)]
        await feeder
        return batches[0]

    assert run(scenario()) == first


def test_a_failing_stream_raises_in_the_agent() -> None:
    async def scenario() -> list[list[int]]:
        stream = FakeStream()
        stream.queue.put_nowait(0)
        stream.queue.put_nowait(RuntimeError("fetch failed"))
        return [b async for b in adaptive_batches(stream, max_size=10)]

    with pytest.raises(RuntimeError, match="fetch failed"):
        run(scenario())
