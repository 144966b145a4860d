"""LineFramer: line ends, bounded lines, partial lines, bad bytes."""
import random

import pytest

import io
import os

from runwatch.parse.framing import (FramedReader, LineFramer, count_decode_errors, file_range, has_long_line,
                                  stream_chunks)


def frame(chunks, max_line=64 * 1024, flush=True):
    f = LineFramer(max_line)
    out = b"".join(f.push(c) for c in chunks)
    if flush:
        out += f.flush()
    return out.split(b"\n")[:-1], f


def test_newline_crlf_and_lone_cr_end_lines():
    lines, _ = frame([b"a\nb\r\nc\rd\n"])
    assert lines == [b"a", b"b", b"c", b"d"]


def test_crlf_split_across_chunks_is_one_line_end():
    lines, _ = frame([b"a\r", b"\nb\n"])
    assert lines == [b"a", b"b"]


def test_cr_at_end_of_stream_ends_the_line():
    lines, _ = frame([b"45%|####\r"])
    assert lines == [b"45%|####"]


def test_partial_line_is_held_until_newline():
    f = LineFramer()
    assert f.push(b"Task 1/") == b""
    assert f.push(b"3: x") == b""
    assert f.push(b"\nnext") == b"Task 1/3: x\n"
    assert f.flush() == b"next\n"
    assert f.flush() == b""


@pytest.mark.parametrize("max_line", [64 * 1024, 50])      # 50: the 100-byte lines are cut
def test_any_chunking_gives_the_same_lines(max_line):
    pick = random.Random(3)
    data = b"".join(pick.choice([b"x" * n + end for n in (0, 1, 7, 100)
                                 for end in (b"\n", b"\r\n", b"\r")]) for _ in range(500))
    whole, f = frame([data], max_line)
    assert (f.lines_cut > 0) == (max_line == 50)
    rng = random.Random(5)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(data)), 20))
        parts = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)], strict=True)]
        assert frame(parts, max_line)[0] == whole


def test_a_cut_lines_crlf_split_across_chunks_is_one_line_end():
    lines, f = frame([b"y" * 20, b"yy\r", b"\nnext\n"], max_line=10)     # the "\r" while dropping the rest
    assert lines == [b"y" * 10, b"next"] and f.lines_cut == 1


def test_long_line_is_cut_and_counted_and_the_rest_dropped():
    lines, f = frame([b"short\n" + b"y" * 100 + b"\nafter\n"], max_line=10)
    assert lines == [b"short", b"y" * 10, b"after"]
    assert f.lines_cut == 1


def test_fifty_megabyte_line_without_newline_stays_bounded():
    f = LineFramer(64 * 1024)
    chunk = b"z" * (1 << 20)
    emitted = []
    for _ in range(50):
        emitted.append(f.push(chunk))
        assert len(f.carry) <= 64 * 1024 + 1      # never buffers more than one line
    emitted.append(f.push(b"tail\nnext line\n"))
    lines = b"".join(emitted).split(b"\n")[:-1]
    assert lines == [b"z" * (64 * 1024), b"next line"]
    assert f.lines_cut == 1


def test_nul_bytes_pass_through():
    lines, _ = frame([b"a\x00b\n"])
    assert lines == [b"a\x00b"]


def test_decode_errors_are_counted_not_fatal():
    assert count_decode_errors(b"plain ascii\n") == 0
    assert count_decode_errors("ünïcode ████\n".encode()) == 0
    assert count_decode_errors(b"bad \xff\xfe bytes \xc3\n") == 3
    assert count_decode_errors("ok \ufffd already\n".encode()) == 0   # a real U+FFFD is not an error


def test_has_long_line():
    assert not has_long_line(b"a" * 10 + b"\n" + b"b" * 10 + b"\n", 10)
    assert has_long_line(b"a" * 10 + b"\n" + b"b" * 11 + b"\n", 10)


def test_a_bar_ending_in_cr_is_emitted_at_once_and_a_late_lf_is_not_a_line():
    f = LineFramer()
    assert f.push(b" 30%|###   | 30/100\r") == b" 30%|###   | 30/100\n"
    assert f.push(b"\nnext\n") == b"next\n"          # the \n completing \r\n is not an empty line
    assert f.push(b"a\r") == b"a\n" and f.push(b"b\n") == b"b\n"


DATA = (b"ok\r\n" + b"x" * 40 + b"\n" + b"bad \xff\xfe\n" + "caf\u00e9\n".encode() + b"tail without newline")


def test_framed_reader_counts_lines_bad_bytes_and_cuts():
    r = FramedReader(max_line=16)
    out = b"".join(r.blocks(stream_chunks(io.BytesIO(DATA), size=7)))
    assert out.split(b"\n")[:-1] == [b"ok", b"x" * 16, b"bad \xff\xfe", "caf\u00e9".encode(), b"tail without new"]
    assert (r.lines, r.decode_errors, r.lines_cut) == (5, 2, 2)


def test_framed_reader_without_flush_holds_the_partial_last_line():
    r = FramedReader()
    out = b"".join(r.blocks([b"a\nb"], flush=False))
    assert out == b"a\n" and r.lines == 1 and r.framer.flush() == b"b\n"


def test_byte_ranges_of_a_file_read_together_equal_one_pass(tmp_path):
    p = tmp_path / "f.log"
    p.write_bytes(DATA * 50)
    fd = os.open(p, os.O_RDONLY)
    try:
        whole = FramedReader(16)
        one = b"".join(whole.blocks(file_range(fd, size=5)))
        cut = DATA.index(b"\n") + 1 + len(DATA) * 20        # just after a newline
        head, tail = FramedReader(16), FramedReader(16)
        two = (b"".join(head.blocks(file_range(fd, 0, cut, size=64), flush=False))
               + b"".join(tail.blocks(file_range(fd, cut, None, size=3))))
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0              # pread: the offset is not moved
    finally:
        os.close(fd)
    assert one == two and one.count(b"\n") == whole.lines == head.lines + tail.lines
    assert whole.decode_errors == head.decode_errors + tail.decode_errors == 100
    assert whole.lines_cut == head.lines_cut + tail.lines_cut
