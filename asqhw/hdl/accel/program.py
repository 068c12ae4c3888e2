"""Host side of the network accelerator: a ``Network`` becomes steps, descriptors and memory images.

docs/accelerator.md describes the machine. In short: every stored tensor (the input codes, the
wide codes of every conv2d/linear/add/pool node, the codes of a ``quant`` whose consumer is not
a layer) has a region of the tensor memory ``tmem`` (16-bit words, ``[c][h][w]`` order),
allocated by liveness. A ``quant`` read by layers only is never stored: it is applied while the
layer's activation buffer is loaded. The steps are:

- ``LAYER``: load an engine (channel words from its ROM, per-sample ``M_n`` from the ``mn`` RAM
  when ``beta_from``; activations from ``tmem`` through the vector unit, zero-padded in the
  engine's layout; the terms stay in the engine's term ROM, addressed from ``t_base``), start
  it, drain its outputs into ``tmem``;
- ``VEC``: the vector unit over ``tmem``: max/avg pool, residual add, or a stored ``quant``;
- ``ADAPTER``: load the adapter unit's parameters, run its pass (the pool was taken while the
  producing step wrote the tensor: the *tap*), keep ``beta_q``, ``R``, ``sh`` in the adapter's
  slot and its ``M_n`` in the ``mn`` RAM.

Every descriptor is one word of :data:`DESC_FIELDS`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np

from asqhw.core.errors import UserError
from asqhw.core.network import WIDE_SIGNED, WIDE_UNSIGNED, Network

from ..engine.adapter_unit import pack_q
from ..engine.params import EngineConfig
from ..engine.program import LayerShape, build_program, pack_layer

__all__ = ["AccelProgram", "EngineSlot", "Step", "build", "DESC_FIELDS", "OPS", "VOPS",
           "pack_desc", "desc_bits", "act_layout_index"]

OPS = {"LAYER": 0, "VEC": 1, "ADAPTER": 2}
VOPS = {"COPY": 0, "MAX": 1, "SUM": 2, "ADD": 3}

#: Descriptor fields, in bit order from bit 0: (name, width, signed).
DESC_FIELDS = (
    ("op", 2, False), ("last", 1, False),
    # LAYER
    ("engine", 3, False), ("t_base", 16, False), ("t_count", 16, False), ("p_base", 12, False),
    ("p_count", 12, False), ("beta", 1, False), ("mn_base", 12, False), ("n_acc2", 1, False),
    ("out_words", 16, False), ("is_output", 1, False), ("layer", 128, False),
    # shared by LAYER and VEC: the destination in tmem and the adapter tap
    ("dst", 16, False), ("tap", 1, False), ("tap_hw", 16, False),
    # VEC (and a LAYER's activation load)
    ("vop", 2, False), ("sink", 1, False), ("src_a", 16, False), ("src_b", 16, False),
    ("c", 12, False), ("h", 12, False), ("w", 12, False), ("ho", 12, False), ("ph", 4, False),
    ("q", 12, False), ("kh", 4, False), ("kw", 4, False), ("sy", 4, False), ("sx", 4, False),
    ("pad", 4, False), ("hw", 24, False), ("syw", 16, False), ("padw", 16, False),
    ("m0", 16, False), ("m1", 16, False), ("b", 48, True), ("sh", 6, False),
    ("use_slot", 1, False), ("slot", 4, False), ("lo", 17, True), ("hi", 17, True),
    # ADAPTER
    ("aw_base", 16, False), ("aw_count", 16, False), ("aq_base", 8, False), ("aq_count", 8, False),
    ("am_base", 12, False), ("am_count", 12, False), ("channels", 9, False), ("hidden", 9, False),
    ("g", 5, False),
)


def desc_bits() -> int:
    """Width of one descriptor word."""
    return sum(w for _, w, _ in DESC_FIELDS)


def pack_desc(fields: dict) -> int:
    """One descriptor word from a field dict (absent fields are 0); UserError if a value does not fit."""
    word, off = 0, 0
    known = {n for n, _, _ in DESC_FIELDS}
    extra = set(fields) - known
    if extra:
        raise ValueError(f"unknown descriptor field {sorted(extra)[0]!r}")
    for name, width, signed in DESC_FIELDS:
        v = int(fields.get(name, 0))
        lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
        if not lo <= v <= hi:
            raise UserError(f"descriptor field {name} = {v} does not fit {width} bits "
                            f"({'signed' if signed else 'unsigned'})")
        word |= (v & ((1 << width) - 1)) << off
        off += width
    return word


@dataclass
class EngineSlot:
    """One engine instance: its build and the ROM images of the layers it runs."""

    ecfg: EngineConfig
    layers: list = field(default_factory=list)
    terms: list = field(default_factory=list)      # term ROM image
    params: list = field(default_factory=list)     # channel-word ROM image


@dataclass
class Step:
    """One step of the program: what it does, for which node, and its descriptor fields."""

    op: str
    node: str
    fields: dict
    counts: list = field(default_factory=list)     # LAYER: entries per output channel
    shape: LayerShape | None = None                # LAYER: the layer as the engine walks it
    act_words: int = 0                             # LAYER/VEC: elements the vector unit reads
    outputs: int = 0                               # elements the step writes
    reads: list = field(default_factory=list)      # stored tensors the step reads


@dataclass
class AccelProgram:
    """Everything a :class:`hdl.accel.top.NetworkAccelerator` build holds for one network."""

    net: Network
    lanes: int
    engines: list
    steps: list
    regions: dict               # tensor name -> (base, words) in tmem
    tmem_depth: int
    adapters: list              # adapter node names, slot order
    ad_w: list                  # adapter weight ROM (8-bit two's complement patterns)
    ad_q: list                  # adapter requantiser words (pack_q)
    ad_m: list                  # static multipliers of the beta_from layers
    ad_cfg: dict                # build sizes of the adapter unit
    n_in: int
    classes: int
    vec_acc_bits: int

    @property
    def has_add(self) -> bool:
        """Whether a step adds two tensors (the vector unit's requantiser then has two inputs)."""
        return any(s.op == "VEC" and s.fields.get("vop") == VOPS["ADD"] for s in self.steps)

    @property
    def descriptors(self) -> list[int]:
        return [pack_desc(s.fields) for s in self.steps]

    def digest(self) -> str:
        """SHA-256 of every memory image and the descriptors: names one program."""
        h = hashlib.sha256()
        for e in self.engines:
            h.update(repr((e.ecfg.tag(), e.terms, e.params)).encode())
        h.update(repr((self.descriptors, self.ad_w, self.ad_q, self.ad_m, self.tmem_depth,
                       self.lanes, self.vec_acc_bits, sorted(self.ad_cfg.items()))).encode())
        return h.hexdigest()

    def input_region(self) -> tuple[int, int]:
        return self.regions["input"]


def _bitlen(v: int) -> int:
    return max(int(v).bit_length(), 1)


def _schedule(dp) -> str:
    return "grouped" if dp.arch in ("shift", "split") else "any"


def _layer_shape(net: Network, nd: dict) -> LayerShape:
    src = net.tensors[nd["inputs"][0]].shape
    if nd["op"] == "linear":
        return LayerShape("linear", nd["in_features"], nd["out_features"], n=1)
    kh, kw = nd["kernel"]
    return LayerShape("conv2d", nd["in_channels"], nd["out_channels"], h=src[1], w=src[2], kh=kh, kw=kw,
                      stride=nd["stride"], pad=nd["padding"], groups=nd["groups"], n=1)


def _chw(shape) -> tuple[int, int, int]:
    shape = tuple(shape)
    if len(shape) == 3:
        return shape
    return (int(np.prod(shape)), 1, 1)


def act_layout_index(shape: LayerShape, src_shape) -> np.ndarray:
    """For each word of the engine's activation image (``[c][y][phase][q]``, one image), the flat
    ``[c][h][w]`` index of the source element it holds, or -1 for a padding word."""
    c, h, w = _chw(src_shape)
    if shape.kind == "linear":
        return np.arange(c * h * w)
    g = shape.engine_geometry
    p, st, wq = shape.pad, g["stride"], g["wq"]
    out = []
    for ci in range(c):
        for y in range(g["hp"]):
            for ph in range(st):
                for q in range(wq):
                    iy, ix = y - p, q * st + ph - p
                    out.append((ci * h + iy) * w + ix if 0 <= iy < h and 0 <= ix < w else -1)
    return np.array(out, dtype=np.int64)


def _engine_key(nd: dict, dp, fan: int):
    out = nd["output"]
    rng = (out["lo"], out["hi"])
    if rng not in (WIDE_UNSIGNED, WIDE_SIGNED):
        raise UserError(f"node {nd['name']!r}: output range {list(rng)} is not a wide-code range "
                        f"{list(WIDE_UNSIGNED)} or {list(WIDE_SIGNED)} (spec section 10)")
    bits = nd["accumulator"]["bits"]
    wraps = bits < dp.natural_acc_bits(fan)
    return (dp, rng == WIDE_SIGNED, bits if wraps else None)


def _allocate(order: list[tuple[str, int, list]], fixed: dict) -> tuple[dict, int]:
    """First-fit allocation of tensor regions by liveness.

    ``order``: per step, ``(dst, words, srcs)``; a source is freed after its last reading step,
    a destination is allocated before the step's sources are freed (so they never overlap).
    """
    last_use: dict = {}
    for i, (_dst, _n, srcs) in enumerate(order):
        for s in srcs:
            last_use[s] = i
    free = []          # sorted (base, size) of free gaps below `top`
    top = 0
    regions = dict(fixed)
    for base, size in fixed.values():
        top = max(top, base + size)

    def alloc(n):
        nonlocal top
        for k, (b, sz) in enumerate(free):
            if sz >= n:
                if sz == n:
                    free.pop(k)
                else:
                    free[k] = (b + n, sz - n)
                return b
        b = top
        top += n
        return b

    def release(name):
        b, sz = regions[name]
        free.append((b, sz))
        free.sort()
        merged = []
        for fb, fs in free:
            if merged and merged[-1][0] + merged[-1][1] == fb:
                merged[-1] = (merged[-1][0], merged[-1][1] + fs)
            else:
                merged.append((fb, fs))
        free[:] = merged

    for i, (dst, n, srcs) in enumerate(order):
        if dst is not None and dst not in regions:
            regions[dst] = (alloc(n), n)
        for s in dict.fromkeys(srcs):
            if last_use.get(s) == i and s in regions:
                release(s)
    return regions, max(top, 1)


def build(net: Network, lanes: int = 8) -> AccelProgram:
    """The accelerator program of ``net`` (see the module docstring); UserError if it cannot run."""
    nodes = {nd["name"]: nd for nd in net.nodes}
    T = net.tensors
    consumers: dict = {}
    for nd in net.nodes:
        for s in nd["inputs"]:
            consumers.setdefault(s, []).append(nd)
    stored_quant = {nd["name"] for nd in net.nodes if nd["op"] == "quant"
                    and any(c["op"] not in ("conv2d", "linear") for c in consumers.get(nd["name"], []))}
    adapters = [nd["name"] for nd in net.nodes if nd["op"] == "adapter"]
    slot_of = {a: i for i, a in enumerate(adapters)}
    if len(adapters) > 16:
        raise UserError(f"{net.name}: {len(adapters)} adapters; the accelerator holds at most 16")

    # --- adapter ROMs and the mn layout --------------------------------------------------
    ad_w, ad_q, ad_m = [], [], []
    ad_info, mn_of = {}, {}
    for a in adapters:
        nd = nodes[a]
        p = {k.split("/", 1)[1]: v for k, v in net.params.items() if k.startswith(a + "/")}
        w0, q0, m0 = len(ad_w), len(ad_q), len(ad_m)
        if nd["hidden"]:
            ad_w += [int(v) & 0xFF for v in np.asarray(p["w1"]).reshape(-1)]
        ad_w += [int(v) & 0xFF for v in np.asarray(p["w2"]).reshape(-1)]
        ad_q.append(pack_q(int(p["pool_M"][0]), 0, int(p["pool_sh"][0])))
        for j in range(nd["hidden"]):
            ad_q.append(pack_q(int(np.asarray(p["M1"]).reshape(-1)[j]), int(p["B1"][j]), int(p["sh1"][j])))
        ad_q.append(pack_q(int(np.asarray(p["M2"]).reshape(-1)[0]), int(p["B2"][0]), int(p["sh2"][0])))
        for lnd in net.nodes:
            if lnd.get("beta_from") == a:
                mn_of[lnd["name"]] = len(ad_m)
                ad_m += [int(v) for v in np.asarray(net.param(lnd["name"], "M")).reshape(-1)]
        g = next((q["g"] for q in net.nodes if q["op"] == "quant" and q.get("adapter") == a), 0)
        src = T[nd["inputs"][0]].shape
        ad_info[a] = dict(aw_base=w0, aw_count=len(ad_w) - w0, aq_base=q0, aq_count=len(ad_q) - q0,
                          am_base=m0, am_count=len(ad_m) - m0, channels=nd["channels"],
                          hidden=nd["hidden"], g=g, slot=slot_of[a],
                          hw=int(np.prod(src[1:])) if len(src) > 1 else 1)
    bb = {(nodes[a]["beta_bits"], nodes[a]["beta_frac"]) for a in adapters}
    if len(bb) > 1:
        raise UserError(f"{net.name}: adapters with different (beta_bits, beta_frac) {sorted(bb)}; "
                        "the accelerator has one adapter unit")
    beta_bits, beta_frac = bb.pop() if bb else (10, 8)
    ad_cfg = dict(max_channels=max([ad_info[a]["channels"] for a in adapters] or [1]),
                  max_hidden=max([ad_info[a]["hidden"] for a in adapters] or [0]),
                  max_hw=max([ad_info[a]["hw"] for a in adapters] or [1]),
                  max_mults=max(1, max([ad_info[a]["am_count"] for a in adapters] or [1])),
                  beta_bits=beta_bits, beta_frac=beta_frac, mn_depth=max(1, len(ad_m)),
                  w_depth=max(1, len(ad_w)), q_depth=max(1, len(ad_q)))

    # --- engines ----------------------------------------------------------------------------
    groups: dict = {}
    for nd in net.nodes:
        if nd["op"] in ("conv2d", "linear"):
            dp = net.datapath(nd)
            shape = _layer_shape(net, nd)
            groups.setdefault(_engine_key(nd, dp, shape.fan_in), []).append((nd, shape))
    if len(groups) > 8:
        raise UserError(f"{net.name}: {len(groups)} distinct layer datapaths; the accelerator holds at most 8 engines")
    engines, engine_of, progs = [], {}, {}
    for (dp, signed_out, wrap), members in groups.items():
        acc = max(nd["accumulator"]["bits"] for nd, _ in members)
        probe = EngineConfig(dp, lanes, acc, 16 if signed_out else 15, signed_out, _schedule(dp),
                             act_depth=1 << 20, term_depth=1 << 20, out_depth=1 << 20, max_channels=1 << 12)
        sizes = []
        for nd, shape in members:
            x = np.zeros((1, shape.c_in) if shape.kind == "linear" else (1, shape.c_in, shape.h, shape.w))
            pr = build_program(probe, shape, x, net.param(nd["name"], "w"), net.param(nd["name"], "M"),
                               net.param(nd["name"], "B"), net.param(nd["name"], "sh"))
            sizes.append((len(pr.act), len(pr.terms), shape.out_words, shape.c_out))
        act = max(s[0] for s in sizes)
        ecfg = EngineConfig(dp, lanes, acc, 16 if signed_out else 15, signed_out, _schedule(dp),
                            act_depth=-(-(act + 1) // lanes) * lanes, term_depth=max(s[1] for s in sizes),
                            out_depth=max(s[2] for s in sizes), max_channels=max(s[3] for s in sizes))
        # the engine's term memory is a ROM holding every layer's terms (EngineConfig.term_rom):
        # runs address it from their term_base, nothing is loaded per image
        terms = []
        for nd, shape in members:
            x = np.zeros((1, shape.c_in) if shape.kind == "linear" else (1, shape.c_in, shape.h, shape.w))
            terms += build_program(ecfg, shape, x, net.param(nd["name"], "w"), net.param(nd["name"], "M"),
                                   net.param(nd["name"], "B"), net.param(nd["name"], "sh")).terms
        ecfg = replace(ecfg, term_depth=max(len(terms), 1), term_rom=tuple(terms))
        slot = EngineSlot(ecfg)
        for nd, shape in members:
            x = np.zeros((1, shape.c_in) if shape.kind == "linear" else (1, shape.c_in, shape.h, shape.w))
            pr = build_program(ecfg, shape, x, net.param(nd["name"], "w"), net.param(nd["name"], "M"),
                               net.param(nd["name"], "B"), net.param(nd["name"], "sh"))
            progs[nd["name"]] = (pr, len(slot.terms), len(slot.params))
            slot.layers.append(nd["name"])
            slot.terms += pr.terms
            slot.params += pr.params
        if slot.terms != terms:
            raise AssertionError("term images differ between the two engine builds")
        engine_of.update({nd["name"]: len(engines) for nd, _ in members})
        engines.append(slot)

    # --- steps ----------------------------------------------------------------------------
    def quant_transform(nd):
        """The requantisation of a ``quant`` node (spec section 14): with an adapter, ``R`` and
        ``sh`` of its slot; without, ``requant(z, 1, 0, G, 0, Q_p)``."""
        qp = (1 << nd["bits"]) - 1
        if nd["adapter"] is not None:
            return dict(use_slot=1, slot=slot_of[nd["adapter"]], m0=1, sh=0, lo=0, hi=qp)
        return dict(m0=1, sh=nd["g"], lo=0, hi=qp)

    def source(name):
        """(stored tensor, transform fields) a reader of ``name`` uses."""
        nd = nodes.get(name)
        t = T[name]
        if nd is not None and nd["op"] == "quant" and name not in stored_quant:
            return nd["inputs"][0], quant_transform(nd)
        return name, dict(m0=1, sh=0, lo=t.lo, hi=t.hi)

    steps, order = [], []
    producer_step = {}

    def dims(name):
        return _chw(T[name].shape)

    for nd in net.nodes:
        name, op = nd["name"], nd["op"]
        if op in ("conv2d", "linear"):
            src, tf = source(nd["inputs"][0])
            pr, t0, p0 = progs[name]
            shape = pr.shape
            c, h, w = dims(src)
            if shape.kind == "linear":
                walk = dict(ho=h, ph=1, q=w, sx=1, pad=0)
            else:
                g = shape.engine_geometry
                walk = dict(ho=g["hp"], ph=g["stride"], q=g["wq"], sx=g["stride"], pad=shape.pad)
            ecfg = engines[engine_of[name]].ecfg
            f = dict(op=OPS["LAYER"], engine=engine_of[name], t_base=t0, t_count=len(pr.terms), p_base=p0,
                     p_count=shape.c_out, out_words=shape.out_words, is_output=int(name == net.output),
                     layer=pack_layer(ecfg, pr.layer), vop=VOPS["COPY"], sink=1, src_a=0, c=c, h=h, w=w,
                     kh=1, kw=1, sy=1, n_acc2=int(ecfg.n_acc == 2), **walk, **tf)
            if nd.get("beta_from"):
                f |= dict(beta=1, mn_base=mn_of[name])
            n_act = c * walk["ho"] * walk["ph"] * walk["q"]
            if n_act != len(pr.act):
                raise AssertionError(f"{name}: walker reads {n_act} words, engine image has {len(pr.act)}")
            steps.append(Step("LAYER", name, f, pr.counts, shape, n_act, shape.out_words, [src]))
            order.append((name, shape.out_words, [src]))
            producer_step[name] = len(steps) - 1
        elif op in ("maxpool", "avgpool", "add") or (op == "quant" and name in stored_quant):
            src, tf = source(nd["inputs"][0])
            if src != nd["inputs"][0]:
                raise UserError(f"node {name!r}: reads quant {nd['inputs'][0]!r}, which is not stored")
            if op == "quant":
                tf = quant_transform(nd)
            c, h, w = dims(src)
            oc, oh, ow = dims(name)
            out_n = oc * oh * ow
            t = T[name]
            f = dict(op=OPS["VEC"], sink=0, src_a=0, c=c, h=h, w=w, ho=oh, ph=1, q=ow, lo=t.lo, hi=t.hi, m0=1)
            srcs = [src]
            if op == "quant":
                f |= dict(vop=VOPS["COPY"], kh=1, kw=1, sy=1, sx=1, pad=0, **tf)
            elif op == "add":
                f |= dict(vop=VOPS["ADD"], kh=1, kw=1, sy=1, sx=1, pad=0, m0=int(net.param(name, "M")[0]),
                          m1=int(net.param(name, "M")[1]), b=int(net.param(name, "B")[0]),
                          sh=int(net.param(name, "sh")[0]))
                srcs.append(nd["inputs"][1])
            else:
                kh, kw = nd["kernel"]
                f |= dict(kh=kh, kw=kw, sy=nd["stride"], sx=nd["stride"], pad=nd.get("padding", 0))
                if op == "maxpool":
                    f |= dict(vop=VOPS["MAX"])
                else:
                    f |= dict(vop=VOPS["SUM"], m0=int(net.param(name, "M")[0]), sh=int(net.param(name, "sh")[0]))
            n_read = out_n * f["kh"] * f["kw"]
            steps.append(Step("VEC", name, f, [], None, n_read, out_n, srcs))
            order.append((name, out_n, srcs))
            producer_step[name] = len(steps) - 1
        elif op == "adapter":
            src = nd["inputs"][0]
            if src not in producer_step:
                raise UserError(f"adapter {name!r}: its input {src!r} is not made by a step of the accelerator")
            ps = steps[producer_step[src]]
            if ps.fields.get("tap"):
                raise UserError(f"tensor {src!r} is read by two adapters; the accelerator taps one")
            if producer_step[src] != len(steps) - 1:
                raise UserError(f"adapter {name!r} does not follow the step that makes {src!r}")
            info = ad_info[name]
            ps.fields |= dict(tap=1, tap_hw=info["hw"])
            f = dict(op=OPS["ADAPTER"], slot=info["slot"], **{k: info[k] for k in (
                "aw_base", "aw_count", "aq_base", "aq_count", "am_base", "am_count", "channels", "hidden", "g")})
            steps.append(Step("ADAPTER", name, f))
            order.append((None, 0, []))
        # a quant read only by layers makes no step
    steps[-1].fields["last"] = 1
    if steps[-1].node != net.output:
        raise UserError(f"{net.name}: the output node {net.output!r} must be the last step")
    for s in steps:                 # the walk's products, so the vector unit needs no multiplier
        f = s.fields
        if s.op in ("LAYER", "VEC"):
            f |= dict(hw=f["h"] * f["w"], syw=f["sy"] * f["w"], padw=f["pad"] * f["w"])
    n_in = int(np.prod(T["input"].shape))
    regions, depth = _allocate(order, {"input": (0, n_in)})
    for s in steps:
        if s.op == "LAYER":
            src, _ = source(net.node(s.node)["inputs"][0])
            s.fields |= dict(dst=regions[s.node][0], src_a=regions[src][0])
        elif s.op == "VEC":
            nd = nodes[s.node]
            src, _ = source(nd["inputs"][0])
            s.fields |= dict(dst=regions[s.node][0], src_a=regions[src][0])
            if nd["op"] == "add":
                s.fields["src_b"] = regions[nd["inputs"][1]][0]
    windows = [s.fields["kh"] * s.fields["kw"] for s in steps if s.op == "VEC"]
    vec_acc = 17 + _bitlen(max(windows + [1]))
    prog = AccelProgram(net, lanes, engines, steps, regions, depth, adapters, ad_w, ad_q, ad_m, ad_cfg,
                        n_in, int(net.manifest["classes"]), vec_acc)
    for s in steps:
        pack_desc(s.fields)           # every field fits
    return prog
