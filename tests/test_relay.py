"""The relay process passes output through first and hands it to the parser behind it:
byte for byte on both sides, the writer never waits for a slow parser, nothing is lost
when memory is bounded, and stop() ends it early with what it read still delivered."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading

from support.waits import wait_for
from runwatch.sources.command import Relay

WRITER = ("import os, sys\n"
          "data = open(sys.argv[1], 'rb').read()\n"
          "for i in range(0, len(data), 7919):\n"
          "    os.write(1, data[i:i + 7919])\n")


class Sink:
    def __init__(self, gate: threading.Event | None = None):
        self.parts: list[bytes] = []
        self.ended = []
        self.gate = gate

    def data(self, stream, chunk):
        if self.gate is not None:
            self.gate.wait(60)
        self.parts.append(chunk)

    def end(self, stream):
        self.ended.append(stream)


def _payload(n: int) -> bytes:
    """About n lines of log-ish bytes: \r, escapes, invalid UTF-8, a partial last line."""
    rnd = __import__("random").Random(n)
    alphabet = b"abcXYZ \t\r\x1b[0m\xff\n"
    table = bytes(alphabet[i % len(alphabet)] if i % 7 else 10 for i in range(256))
    return rnd.randbytes(n * 150).translate(table) + b"partial, no newline"


def _writer(tmp_path, data: bytes, **kw) -> subprocess.Popen:
    src = tmp_path / "data.bin"
    src.write_bytes(data)
    return subprocess.Popen([sys.executable, "-c", WRITER, str(src)], stdout=subprocess.PIPE, **kw)


def _terminal():
    """The "terminal" a relay passes through to: (its write end, what arrived, the reading thread)."""
    out_r, out_w = os.pipe()
    got: list[bytes] = []

    def drain():
        while chunk := os.read(out_r, 1 << 16):
            got.append(chunk)
    t = threading.Thread(target=drain, daemon=True)
    t.start()
    return out_w, got, t


def _relayed(tmp_path, data: bytes, sink: Sink, **relay_kw):
    out_w, got, t = _terminal()
    proc = _writer(tmp_path, data)
    relay = Relay(proc.stdout.fileno(), out_w, **relay_kw)
    os.close(out_w)
    return proc, relay, got, t


def test_both_sides_get_the_output_byte_for_byte(tmp_path):
    data = _payload(20000)
    sink = Sink()
    proc, relay, got, t = _relayed(tmp_path, data, sink)
    # the parser starts once everything has passed through, so how it is cut into blocks does not
    # depend on how fast this machine runs the writer (a slow one spreads its writes over many
    # gathering windows)
    wait_for(lambda: proc.poll() is not None, 60, what="the writer exits")
    wait_for(lambda: len(b"".join(got)) == len(data), 60, what="all of it passed through")
    relay.pump(sink, 3)
    proc.stdout.close()
    t.join(30)
    assert b"".join(got) == data
    assert b"".join(sink.parts) == data and sink.ended == [3]
    assert len(sink.parts) < 200                     # blocks, not one call per write (380 writes)
    assert relay.wait() == 0


def test_the_writer_finishes_while_the_parser_is_stuck(tmp_path):
    data = _payload(30000)                           # several MiB: more than any pipe holds
    assert len(data) > 4 << 20
    gate = threading.Event()
    sink = Sink(gate)
    proc, relay, got, t = _relayed(tmp_path, data, sink)
    pump = threading.Thread(target=relay.pump, args=(sink,), daemon=True)
    pump.start()
    wait_for(lambda: proc.poll() is not None, 60, what="the writer exits with the parser stuck")
    wait_for(lambda: len(b"".join(got)) == len(data), 60, what="all of it passed through")
    assert relay.input_ended(timeout=60)
    gate.set()
    pump.join(60)
    assert b"".join(sink.parts) == data
    proc.stdout.close()


def test_bounded_memory_loses_nothing(tmp_path):
    data = _payload(12000)
    gate = threading.Event()
    sink = Sink(gate)
    proc, relay, got, t = _relayed(tmp_path, data, sink, max_bytes=1 << 16)
    pump = threading.Thread(target=relay.pump, args=(sink,), daemon=True)
    pump.start()
    gate.set()
    pump.join(120)
    proc.wait()
    assert b"".join(sink.parts) == data and b"".join(got) == data
    proc.stdout.close()


def test_stop_ends_a_relay_whose_input_stays_open(tmp_path):
    r, w = os.pipe()
    sink = Sink()
    relay = Relay(r, None)
    os.write(w, b"one\ntwo\n")
    pump = threading.Thread(target=relay.pump, args=(sink,), daemon=True)
    pump.start()
    wait_for(lambda: b"".join(sink.parts) == b"one\ntwo\n", 30, what="the first lines parsed")
    assert not relay.input_ended(timeout=0)          # the writer (w) is still open
    relay.stop()
    pump.join(30)
    assert not pump.is_alive() and sink.ended == [0] and relay.wait() == 0
    os.close(w)
    os.close(r)


def test_the_relay_ignores_the_terminals_ctrl_c_and_holds_none_of_our_sockets(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    r, w = os.pipe()
    sink = Sink()
    relay = Relay(r, None)
    pump = threading.Thread(target=relay.pump, args=(sink,), daemon=True)
    pump.start()
    try:
        os.write(w, b"first\n")
        wait_for(lambda: sink.parts, 30, what="the relay at work")
        targets = {os.readlink(f"/proc/{relay.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{relay.pid}/fd")}
        assert not any(t.startswith("socket:") for t in targets), targets
        os.kill(relay.pid, signal.SIGINT)
        os.write(w, b"still here\n")
        os.close(w)
        pump.join(30)
        assert b"".join(sink.parts) == b"first\nstill here\n" and relay.wait() == 0
    finally:
        listener.close()
        os.close(r)


def test_a_non_blocking_terminal_still_gets_everything(tmp_path):
    data = _payload(8000)
    sink = Sink()
    out_r, out_w = os.pipe()
    os.set_blocking(out_w, False)          # a parent left runwatch's stdout non-blocking
    got: list[bytes] = []
    gate = threading.Event()

    def drain():                           # a slow terminal: nothing read until the relay had to wait
        gate.wait(60)
        while chunk := os.read(out_r, 1 << 16):
            got.append(chunk)
    t = threading.Thread(target=drain, daemon=True)
    t.start()
    proc = _writer(tmp_path, data)
    relay = Relay(proc.stdout.fileno(), out_w)
    os.close(out_w)
    pump = threading.Thread(target=relay.pump, args=(sink,), daemon=True)
    pump.start()
    gate.set()
    pump.join(60)
    proc.wait()
    t.join(60)
    assert b"".join(got) == data and b"".join(sink.parts) == data
    proc.stdout.close()


def test_a_pty_is_relayed_byte_for_byte_to_its_end():
    """What the child writes into a raw pty comes out of the master unchanged on both sides,
    and the relay ends (EIO) when the last writer closes the slave."""
    import pty
    import tty
    master, slave = pty.openpty()
    tty.setraw(slave)                       # no line discipline rewriting (\n to \r\n): raw bytes
    data = _payload(3000).replace(b"\x04", b"")
    sink = Sink()
    out_w, got, t = _terminal()
    relay = Relay(master, out_w)
    os.close(out_w)
    pump = threading.Thread(target=relay.pump, args=(sink,), daemon=True)
    pump.start()
    for i in range(0, len(data), 5000):
        os.write(slave, data[i:i + 5000])
    wait_for(lambda: len(b"".join(sink.parts)) == len(data), 60, what="all of it relayed")
    os.close(slave)
    pump.join(60)
    t.join(60)
    assert b"".join(sink.parts) == data and b"".join(got) == data and sink.ended == [0]
    os.close(master)


class Broken(Sink):
    def data(self, stream, chunk):
        raise RuntimeError("a parser bug")


def test_the_pass_through_goes_on_when_the_parser_dies(tmp_path):
    """A parser that raises must not leave the command blocked on a full pipe."""
    data = _payload(20000)
    proc, relay, got, t = _relayed(tmp_path, data, Broken())
    try:
        relay.pump(Broken())
    except RuntimeError:
        pass
    proc.wait(60)
    t.join(60)
    assert b"".join(got) == data
    proc.stdout.close()


def test_waiting_for_the_end_while_the_parser_finishes_is_safe():
    """The main thread waits for the input's end while the parser thread reaps the relay:
    neither closes what the other still uses (a closed fd's number is soon someone else's)."""
    for _ in range(30):
        r, w = os.pipe()
        os.write(w, b"a line\n")
        os.close(w)
        sink = Sink()
        relay = Relay(r, None)
        os.close(r)
        pump = threading.Thread(target=relay.pump, args=(sink,), daemon=True)
        pump.start()
        assert relay.input_ended(timeout=30)
        relay.stop()                       # late: harmless
        pump.join(30)
        relay.close()
        assert sink.parts == [b"a line\n"] and sink.ended == [0]
