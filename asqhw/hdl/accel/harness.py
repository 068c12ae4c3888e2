"""The Verilator testbench of the accelerator: images in over ``s_in``, logits out of ``m_out``.

Unlike the open-loop harness of ``hdl.cosim_harness`` it answers the streams' handshakes.
Stimulus file (little-endian uint32): ``n_images, n_in, stall, seed, max_cycles, manual_start``,
then ``n_images * n_in`` codes (int32). Per cycle, with the clock low:

- ``s_in``: the next code with ``last`` on an image's final code; with ``stall`` its ``valid``
  is low in about one cycle of four (a xorshift generator seeded by ``seed``);
- ``m_out.ready``: high, or with ``stall`` low in about one cycle of three;
- with ``manual_start`` the harness writes ``CTRL = 0`` (AUTO off) first and ``CTRL.START``
  8 cycles after each image's last code;
- after each image's last logit it reads ``CYCLES_LO``, ``CYCLES_HI``, ``IMAGES``, ``STATUS``.

Outputs: the record file (``uint32 cycle`` and every output port, as in ``hdl.cosim_harness``)
for each cycle in which a trigger output is high, and an event file of text lines
``I cycle image`` (an image's first code accepted), ``L cycle image`` (its last code),
``O cycle value last`` (a logit transferred) and ``C image addr value`` (a register read).
With a fourth argument the run is traced to that FST or VCD file (a build with ``--trace-fst``
or ``--trace``).
"""

from __future__ import annotations

from ..cosim_harness import cxx_name, output_ports, words

__all__ = ["harness_cpp", "TRIGGERS", "REG_READS"]

TRIGGERS = ("dbg_mark", "dbg_wr_valid", "dbg_act_valid", "dbg_s_valid", "dbg_p_valid", "dbg_h_valid",
            "dbg_mn_valid", "dbg_ad_done")
REG_READS = ("CYCLES_LO", "CYCLES_HI", "IMAGES", "STATUS")

_TEMPLATE = r"""// asq-hw accelerator testbench for module @TOP@ (generated; do not edit).
#include <cstdint>
#include <cstdio>
#include <vector>
#include "verilated.h"
#include "V@TOP@.h"
@TRACE_INCLUDE@
static uint32_t rng_state = 1;
static uint32_t rnd() { rng_state ^= rng_state << 13; rng_state ^= rng_state >> 17; rng_state ^= rng_state << 5; return rng_state; }

int main(int argc, char** argv) {
    if (argc < 4) { std::fprintf(stderr, "usage: %s STIMULUS RECORDS EVENTS [TRACE.fst]\n", argv[0]); return 2; }
    FILE* fin = std::fopen(argv[1], "rb");
    if (!fin) { std::perror(argv[1]); return 2; }
    uint32_t hdr[6];
    if (std::fread(hdr, 4, 6, fin) != 6) { std::fprintf(stderr, "short stimulus\n"); return 2; }
    uint32_t n_img = hdr[0], n_in = hdr[1], stall = hdr[2], max_cycles = hdr[4], manual = hdr[5];
    rng_state = hdr[3] ? hdr[3] : 1;
    std::vector<int32_t> codes((size_t)n_img * n_in);
    if (!codes.empty() && std::fread(codes.data(), 4, codes.size(), fin) != codes.size()) {
        std::fprintf(stderr, "short stimulus\n"); return 2;
    }
    std::fclose(fin);
    FILE* frec = std::fopen(argv[2], "wb");
    FILE* fev = std::fopen(argv[3], "w");
    if (!frec || !fev) { std::perror("output"); return 2; }
    VerilatedContext* ctx = new VerilatedContext;
    V@TOP@* top = new V@TOP@{ctx};
@TRACE_OPEN@
    uint64_t t = 0;
    auto tick = [&]() {
        top->clk = 1; top->eval();
@TRACE_DUMP1@
        top->clk = 0; top->eval();
@TRACE_DUMP0@
        t++;
    };
    top->rst = 1; top->clk = 0; top->eval();
    tick(); tick();
    top->rst = 0;
    std::vector<uint32_t> out((size_t)@OUT_WORDS@ + 1);
    uint32_t img = 0, idx = 0, logits_done = 0, start_at = 0xFFFFFFFFu;
    int csr_step = -1; uint32_t csr_img = 0;
    const uint32_t regs[4] = {@REG_ADDRS@};
    bool pending_read = false; uint32_t pending_addr = 0;
    uint32_t c = 0;
    if (manual) { top->csr_w_en = 1; top->csr_addr = @CTRL@; top->csr_w_data = 0; top->eval(); tick(); top->csr_w_en = 0; }
    for (c = 0; c < max_cycles; c++) {
        // drive inputs (clock low)
        bool v = img < n_img && (!stall || (rnd() & 3) != 0);
        top->s_in___05Fvalid = v;
        if (img < n_img) {
            top->s_in___05Fpayload = (uint32_t)(codes[(size_t)img * n_in + idx] & 0xFF) | ((idx == n_in - 1) ? 0x100u : 0u);
        }
        top->m_out___05Fready = !stall || (rnd() % 3) != 0;
        top->csr_w_en = 0; top->csr_r_en = 0;
        if (manual && c == start_at) { top->csr_w_en = 1; top->csr_addr = @CTRL@; top->csr_w_data = 1; }
        else if (csr_step >= 0 && csr_step < 4 && !pending_read) {
            top->csr_r_en = 1; top->csr_addr = regs[csr_step]; pending_read = true; pending_addr = regs[csr_step];
        }
        top->eval();
        if (v && top->s_in___05Fready) {
            if (idx == 0) std::fprintf(fev, "I %u %u\n", c, img);
            if (idx == n_in - 1) { std::fprintf(fev, "L %u %u\n", c, img); idx = 0; img++; if (manual) start_at = c + 8; }
            else idx++;
        }
        if (top->m_out___05Fvalid && top->m_out___05Fready) {
            uint64_t p = (uint64_t)top->m_out___05Fpayload;
            int32_t val = (int32_t)(uint32_t)(p & 0xFFFFFFFFull);
            int last = (int)((p >> 32) & 1);
            std::fprintf(fev, "O %u %d %d\n", c, val, last);
            if (last) { logits_done++; csr_step = 0; csr_img = logits_done - 1; }
        }
        if (@ANY_VALID@) {
            uint32_t* o = &out[1];
            out[0] = c;
@GET_OUTPUTS@
            std::fwrite(out.data(), 4, out.size(), frec);
        }
        bool was_read = top->csr_r_en;
        tick();
        if (was_read) {
            top->eval();
            std::fprintf(fev, "C %u %u %u\n", csr_img, pending_addr, (uint32_t)top->csr_r_data);
            pending_read = false; csr_step++;
            if (csr_step == 4) csr_step = -1;
        }
        if (logits_done == n_img && csr_step < 0 && !pending_read) { c++; break; }
    }
    std::fprintf(fev, "E %u\n", c);
@TRACE_CLOSE@
    top->final();
    std::fclose(frec); std::fclose(fev);
    delete top; delete ctx;
    return logits_done == n_img ? 0 : 3;
}
"""


def _get(name, width, off):
    name = cxx_name(name)
    if width <= 32:
        return f"            o[{off}] = (uint32_t)top->{name};"
    return (f"            o[{off}] = (uint32_t)top->{name};\n"
            f"            o[{off + 1}] = (uint32_t)(top->{name} >> 32);")


def harness_cpp(top: str, ports: list[dict], reg_addrs: dict, trace: str | None = None) -> str:
    """C++ source of the testbench for module ``top`` (``reg_addrs``: register name -> word address;
    ``trace``: ``"fst"`` or ``"vcd"`` for a build that can dump a waveform)."""
    outs = output_ports(ports)
    get_lines, off = [], 0
    for p in outs:
        if p["width"] > 64:
            raise ValueError(f"output {p['name']} is wider than 64 bits")
        get_lines.append(_get(p["name"], p["width"], off))
        off += words(p["width"])
    names = {p["name"] for p in ports}
    missing = [n for n in TRIGGERS if n not in names]
    if missing:
        raise ValueError(f"module {top} lacks the trigger output {missing[0]}")
    text = (_TEMPLATE.replace("@TOP@", top).replace("@OUT_WORDS@", str(off))
            .replace("@GET_OUTPUTS@", "\n".join(get_lines))
            .replace("@ANY_VALID@", " || ".join(f"top->{cxx_name(v)}" for v in TRIGGERS))
            .replace("@REG_ADDRS@", ", ".join(str(reg_addrs[r]) for r in REG_READS))
            .replace("@CTRL@", str(reg_addrs["CTRL"])))
    if trace:
        cls, header = {"fst": ("VerilatedFstC", "verilated_fst_c.h"), "vcd": ("VerilatedVcdC", "verilated_vcd_c.h")}[trace]
        text = (text.replace("@TRACE_INCLUDE@", f'#include "{header}"')
                .replace("@TRACE_OPEN@", f"    {cls}* tfp = nullptr;\n"
                         f"    if (argc > 4) {{ ctx->traceEverOn(true); tfp = new {cls}; "
                         "top->trace(tfp, 99); tfp->open(argv[4]); }")
                .replace("@TRACE_DUMP1@", "        if (tfp) tfp->dump(2 * t + 1);")
                .replace("@TRACE_DUMP0@", "        if (tfp) tfp->dump(2 * t + 2);")
                .replace("@TRACE_CLOSE@", "    if (tfp) { tfp->close(); delete tfp; }"))
    else:
        for key in ("@TRACE_INCLUDE@", "@TRACE_OPEN@", "@TRACE_DUMP1@", "@TRACE_DUMP0@", "@TRACE_CLOSE@"):
            text = text.replace(key, "")
    return text
