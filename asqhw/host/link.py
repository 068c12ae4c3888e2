"""Byte links to a board: a serial port (POSIX termios, raw 8N1) or a TCP socket on this machine.

``open_link("/dev/ttyUSB1", baud=115200)`` opens a real board's UART (or a pseudo-terminal);
``open_link("tcp://127.0.0.1:PORT")`` the simulated board (:mod:`asqhw.hdl.board.simboard`).
Both give :class:`Link` objects with the same ``write``/``read``/``close``; a read that does
not complete within the link's timeout raises :class:`asqhw.core.errors.UserError`.
"""

from __future__ import annotations

import os
import select
import socket
import time

from asqhw.core.errors import UserError

__all__ = ["Link", "open_link", "parse_tcp"]


class Link:
    """A byte link with a read timeout (seconds); subclasses move the bytes."""

    def __init__(self, name: str, timeout: float):
        self.name = name
        self.timeout = timeout

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def _read_some(self, n: int, wait: float) -> bytes:
        raise NotImplementedError

    def read(self, n: int, what: str = "reply") -> bytes:
        """Exactly ``n`` bytes; UserError naming ``what`` if they do not come within the timeout."""
        deadline = time.monotonic() + self.timeout
        out = bytearray()
        while len(out) < n:
            wait = deadline - time.monotonic()
            if wait <= 0:
                raise UserError(f"{self.name}: no {what} from the board within {self.timeout:g} s "
                                f"(got {len(out)} of {n} bytes)")
            out += self._read_some(n - len(out), wait)
        return bytes(out)

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SocketLink(Link):
    """A TCP connection (the simulated board)."""

    def __init__(self, host: str, port: int, timeout: float):
        super().__init__(f"tcp://{host}:{port}", timeout)
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise UserError(f"{self.name}: cannot connect ({e.strerror or e})") from None
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def write(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as e:
            raise UserError(f"{self.name}: cannot send ({e.strerror or e})") from None

    def _read_some(self, n, wait):
        self._sock.settimeout(wait)
        try:
            data = self._sock.recv(n)
        except TimeoutError:
            return b""
        except OSError as e:
            raise UserError(f"{self.name}: cannot receive ({e.strerror or e})") from None
        if not data:
            raise UserError(f"{self.name}: the board closed the connection")
        return data

    def close(self):
        self._sock.close()


class SerialLink(Link):
    """A serial device in raw mode, 8 data bits, no parity, one stop bit, no flow control."""

    def __init__(self, path: str, baud: int, timeout: float):
        super().__init__(path, timeout)
        try:
            import termios
        except ImportError:
            raise UserError(f"{path}: serial ports need a POSIX system (termios); "
                            "use tcp://HOST:PORT for the simulated board") from None
        speed = getattr(termios, f"B{baud}", None)
        if not isinstance(baud, int) or speed is None:
            raise UserError(f"--baud {baud} is not a rate this system's serial driver offers")
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as e:
            raise UserError(f"{path}: cannot open the serial port ({e.strerror})") from None
        try:
            attrs = termios.tcgetattr(self._fd)
        except termios.error:
            os.close(self._fd)
            raise UserError(f"{path}: is not a serial port (a terminal device)") from None
        iflag, oflag, cflag, lflag, _, _, cc = attrs
        iflag &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP | termios.INLCR
                   | termios.IGNCR | termios.ICRNL | termios.IXON | termios.IXOFF | termios.IXANY)
        oflag &= ~termios.OPOST
        lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
        cflag &= ~(termios.CSIZE | termios.PARENB | termios.CSTOPB | getattr(termios, "CRTSCTS", 0))
        cflag |= termios.CS8 | termios.CREAD | termios.CLOCAL
        cc[termios.VMIN], cc[termios.VTIME] = 0, 0
        termios.tcsetattr(self._fd, termios.TCSANOW, [iflag, oflag, cflag, lflag, speed, speed, cc])
        termios.tcflush(self._fd, termios.TCIOFLUSH)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + self.timeout
        while view:
            try:
                done = os.write(self._fd, view)
            except BlockingIOError:
                done = 0
            except OSError as e:
                raise UserError(f"{self.name}: cannot send ({e.strerror})") from None
            view = view[done:]
            if view:
                if time.monotonic() > deadline:
                    raise UserError(f"{self.name}: the port took no data for {self.timeout:g} s")
                select.select([], [self._fd], [], 0.05)

    def _read_some(self, n, wait):
        ready, _, _ = select.select([self._fd], [], [], wait)
        if not ready:
            return b""
        try:
            return os.read(self._fd, n)
        except BlockingIOError:
            return b""
        except OSError as e:
            raise UserError(f"{self.name}: cannot receive ({e.strerror})") from None

    def close(self):
        os.close(self._fd)


def parse_tcp(port: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``tcp://HOST:PORT``, None for anything else."""
    if not port.startswith("tcp://"):
        return None
    host, sep, num = port[len("tcp://"):].rpartition(":")
    if not sep or not host or not num.isdigit() or not 0 < int(num) < 65536:
        raise UserError(f"--port {port!r}: expected tcp://HOST:PORT with a port 1..65535")
    return host, int(num)


def open_link(port: str, *, baud: int = 115200, timeout: float = 10.0) -> Link:
    """A :class:`Link` to ``tcp://HOST:PORT`` or to the serial device at path ``port``."""
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise UserError(f"--timeout must be positive, not {timeout}")
    tcp = parse_tcp(port)
    if tcp is not None:
        return SocketLink(*tcp, timeout)
    return SerialLink(port, baud, timeout)
