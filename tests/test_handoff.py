"""The reader hands output to a parser thread: order kept per stream and across
streams, memory bounded by max_bytes (the reader waits, nothing is dropped),
and close() feeds everything queued before it returns."""
from __future__ import annotations

import threading

from support.waits import wait_for
from runwatch.sources.command import Handoff


class Recorder:
    def __init__(self, gate: threading.Event | None = None):
        self.calls: list[tuple] = []
        self.gate = gate

    def data(self, stream, chunk):
        if self.gate is not None:
            self.gate.wait(30)
        self.calls.append(("data", stream, chunk))

    def end(self, stream):
        self.calls.append(("end", stream))


def joined(calls, stream):
    return b"".join(c[2] for c in calls if c[0] == "data" and c[1] == stream)


def test_order_per_stream_and_ends_after_their_data():
    rec = Recorder()
    h = Handoff(rec)
    for i in range(1000):
        h.data(i % 2, b"%d\n" % i)
        if i == 500:
            h.end(0)                       # stream 0 ends; later stream-0 data is a new life of it
    h.end(1)
    h.close()
    assert joined(rec.calls, 1) == b"".join(b"%d\n" % i for i in range(1, 1000, 2))
    i_end0 = rec.calls.index(("end", 0))
    before = b"".join(c[2] for c in rec.calls[:i_end0] if c[0] == "data" and c[1] == 0)
    assert before == b"".join(b"%d\n" % i for i in range(0, 501, 2))
    assert rec.calls[-1] == ("end", 1)


def test_chunks_queued_while_the_parser_works_arrive_as_one_block():
    gate = threading.Event()
    rec = Recorder(gate)
    h = Handoff(rec)
    h.data(0, b"first\n")
    wait_for(lambda: h._bytes == 6 and not h._items, 10, what="the parser to take the first chunk")
    for i in range(100):                   # the parser is busy (gated): these queue up
        h.data(0, b"x%d\n" % i)
    gate.set()
    h.close()
    blocks = [c[2] for c in rec.calls if c[0] == "data"]
    assert blocks == [b"first\n", b"".join(b"x%d\n" % i for i in range(100))]


def test_a_reader_far_ahead_waits_instead_of_growing_memory():
    gate = threading.Event()
    rec = Recorder(gate)
    h = Handoff(rec, max_bytes=1000)
    done = threading.Event()

    def reader():
        for _ in range(50):
            h.data(0, b"y" * 100)
        done.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    wait_for(lambda: h._bytes >= 1000, 10, what="the queue to reach its bound")
    assert not done.is_set() and h._bytes <= 1100          # the reader is held at the bound
    gate.set()
    wait_for(done.is_set, 30, what="the reader to finish once the parser moves")
    h.close()
    assert joined(rec.calls, 0) == b"y" * 5000             # nothing dropped


def test_output_after_close_is_still_fed_in_order():
    rec = Recorder()
    h = Handoff(rec)
    h.data(0, b"a\n")
    h.close()
    h.data(0, b"b\n")                                      # a grandchild still writing after the child exited
    h.end(0)
    assert joined(rec.calls, 0) == b"a\nb\n" and rec.calls[-1] == ("end", 0)
