"""The host driver (asqhw/host): links (pseudo-terminal, TCP) and the protocol seen from the host.

A small protocol responder in Python (``respond``) stands in for the board here; the
simulated board in Verilator answers the same driver in tests/test_board_sim.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

import pytest

from asqhw.core.errors import UserError
from asqhw.host import protocol as P
from asqhw.host.driver import Board, BoardError
from asqhw.host.link import open_link, parse_tcp
from board_double import ID, REGS, ref_logits


def respond(read, write, *, stop, regs=None):
    """Answer protocol commands read with ``read(n)`` until ``stop`` is set or the link closes."""
    regs = {REGS["ID"]: ID} if regs is None else regs
    pending = None
    while not stop.is_set():
        cmd = read(1)
        if not cmd:
            return
        if cmd == b"W":
            arg = read(5)
            regs[arg[0]] = int.from_bytes(arg[1:], "little")
            write(b"W")
        elif cmd == b"R":
            write(b"R" + regs.get(read(1)[0], 0).to_bytes(4, "little"))
        elif cmd == b"I":
            n = int.from_bytes(read(2), "little")
            pending = [c - 256 if c > 127 else c for c in read(n)]
            write(b"I")
        elif cmd == b"L":
            values = ref_logits(pending)
            write(b"L" + b"".join((v & 0xFFFFFFFF).to_bytes(4, "little") + bytes([k == len(values) - 1])
                                  for k, v in enumerate(values)))
        elif cmd == b"S":
            write(b"S\x00" + bytes([P.VERSION]))
        else:
            write(b"?")


@pytest.fixture
def pty_board():
    """Path of a pseudo-terminal whose other end runs ``respond``."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    stop = threading.Event()

    def read(n):
        out = b""
        while len(out) < n:
            try:
                chunk = os.read(master, n - len(out))
            except OSError:
                return b""
            if not chunk:
                return b""
            out += chunk
        return out

    t = threading.Thread(target=respond, args=(read, lambda b: os.write(master, b)), kwargs={"stop": stop},
                         daemon=True)
    t.start()
    yield path
    stop.set()
    os.close(slave)
    os.close(master)


@pytest.fixture
def tcp_board():
    """tcp://127.0.0.1:PORT of a one-connection server that runs ``respond``."""
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    stop = threading.Event()

    def serve():
        try:
            conn, _ = srv.accept()
        except OSError:                     # closed before anyone connected
            return
        with conn:
            def read(n):
                out = b""
                while len(out) < n:
                    try:
                        chunk = conn.recv(n - len(out))
                    except OSError:
                        return b""
                    if not chunk:
                        return b""
                    out += chunk
                return out
            respond(read, conn.sendall, stop=stop)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield f"tcp://127.0.0.1:{port}"
    stop.set()
    srv.close()


def test_serial_link_classifies_through_a_pseudo_terminal(pty_board):
    with open_link(pty_board, baud=115200, timeout=5) as link:
        board = Board(link, REGS)
        assert board.status() == []
        assert board.read("ID") == ID
        codes = [3, -1, 100, -128, 127]
        assert board.classify(codes) == ref_logits(codes)


def test_socket_link_classifies(tcp_board):
    with open_link(tcp_board, timeout=5) as link:
        board = Board(link, REGS)
        board.write("SCRATCH", 0xFFFFFFFF)
        assert board.read("SCRATCH") == 0xFFFFFFFF
        assert board.classify([1] * 64) == ref_logits([1] * 64)
        assert board.bytes_sent == 6 + 2 + 3 + 64 + 1
        assert board.bytes_received == 1 + 5 + 1 + 1 + 10 * 5


def test_silence_ends_in_a_user_error_naming_the_reply():
    srv = socket.create_server(("127.0.0.1", 0))
    try:
        with open_link(f"tcp://127.0.0.1:{srv.getsockname()[1]}", timeout=0.3) as link:
            with pytest.raises(UserError, match="no status reply from the board within 0.3 s"):
                Board(link, REGS).status()
    finally:
        srv.close()


def test_a_foreign_device_is_named_as_such(tcp_board):
    with open_link(tcp_board, timeout=5) as link:
        board = Board(link, REGS)
        with pytest.raises(BoardError, match="refused"):
            board._send(b"Z") or board._expect(b"S", 2, "status reply")


def test_unknown_register_name_is_a_user_error(tcp_board):
    with open_link(tcp_board, timeout=5) as link:
        with pytest.raises(UserError, match="no register 'NOPE'"):
            Board(link, REGS).read("NOPE")


@pytest.mark.parametrize("port, words", [("tcp://127.0.0.1", "expected tcp://HOST:PORT"),
                                         ("tcp://127.0.0.1:0", "expected tcp://HOST:PORT"),
                                         ("/nonexistent/tty", "cannot open the serial port"),
                                         ("/dev/null", "is not a serial port")])
def test_bad_ports_are_user_errors(port, words):
    with pytest.raises(UserError, match=words):
        open_link(port)


def test_an_unoffered_baud_rate_is_a_user_error(pty_board):
    with pytest.raises(UserError, match="--baud 123"):
        open_link(pty_board, baud=123)


def test_connection_refused_is_a_user_error():
    s = socket.create_server(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(UserError, match="cannot connect"):
        open_link(f"tcp://127.0.0.1:{port}", timeout=1)


def test_tcp_address_parsing():
    assert parse_tcp("tcp://127.0.0.1:5000") == ("127.0.0.1", 5000)
    assert parse_tcp("/dev/ttyUSB1") is None


@pytest.mark.parametrize("bad", [[], [128], [-129], [0] * 65536])
def test_image_command_refuses_impossible_images(bad):
    with pytest.raises(ValueError):
        P.image_cmd(bad)


def test_protocol_bytes():
    assert P.write_cmd(5, 0x01020304) == b"W\x05\x04\x03\x02\x01"
    assert P.read_cmd(63) == b"R\x3f"
    assert P.image_cmd([-1, 2]) == b"I\x02\x00\xff\x02"
    assert P.parse_logit(b"\xfe\xff\xff\xff\x01") == (-2, True)


def test_host_package_needs_no_amaranth():
    code = ("import sys; import asqhw.host.driver, asqhw.host.link, asqhw.host.protocol; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('amaranth', 'torch', 'numba') "
            "or m.startswith(('asqhw.hdl', 'asqhw.sim', 'asqhw.golden', 'asqhw.cli'))]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
