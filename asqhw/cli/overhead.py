"""What the ASQ adapters cost relative to the quantised model (paper Eq. 10-16, Table 1).

The paper counts parameters (Eq. 10-11) and multiplications (Eq. 12-13) and weighs them by bit
width (Eq. 14-16: an operation or a parameter at ``B`` bits costs ``B/32`` of a 32-bit one). On
top of the adapters' two FC layers, :func:`adapter_costs` counts what the integer adapter of
docs/datapath.md sections 13-15 also needs: the global-pool additions, the per-element
per-sample requantisation products, the reciprocal division, the per-sample multipliers of the
consuming layers and the wide tensor held while ``beta`` is unknown.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from asqhw.core.errors import UserError
from asqhw.core.layershape import LayerShape
from asqhw.core.validate import check_int

__all__ = ["Site", "ModelCount", "TABLE1", "FC_BITS", "WIDE_BITS", "DIVIDER_STEPS", "hidden_width",
           "topology_sites", "topology_count", "network_sites", "network_count", "adapter_params",
           "adapter_fc_macs", "adapter_costs", "totals", "overhead_rows", "report", "PARAM_CONVENTION",
           "COMPUTE_CONVENTION", "PAPER_COMPUTE_CONVENTION", "EXTENDED_CONVENTION"]

#: Paper Table 1 (ResNet-18): bits -> (Param %, Compute %).
TABLE1 = {8: (2.67, 0.04), 4: (5.34, 0.07), 3: (7.11, 0.10), 2: (10.67, 0.14)}
#: Width of the adapter's FC operands: 8-bit codes times 8-bit weights (spec section 13).
FC_BITS = 8
#: Width of the wide codes the pool adds and the per-sample requantisation multiplies (spec 10, 14).
WIDE_BITS = 16
#: Quotient bits of the restoring divider that makes ``1/beta`` (spec section 15).
DIVIDER_STEPS = 16

PARAM_CONVENTION = (
    "Param% = adapter parameters (Eq. 11, weights and biases) at 8 bits / all the model's "
    "parameters (Eq. 10-11, first conv and last FC included) at B bits; equivalently C//16 "
    "adapters at 32 bits. The paper does not say which.")
COMPUTE_CONVENTION = (
    "Compute% (ours) = adapter FC multiply-adds (Eq. 13) at 8 bits / all the model's "
    "multiply-adds (Eq. 12-13) at B bits (Eq. 15-16 weigh an operation by its bits / 32).")
PAPER_COMPUTE_CONVENTION = (
    "Compute% (paper's counting, reconstructed) = 2 x adapter FC multiply-adds (a multiplication "
    "and an addition each, Eq. 13's text) at 8 bits / the multiplications of the quantised convs "
    "only (Eq. 12; first conv and last FC left out) at B bits. Not unique: C//2 adapters counted "
    "once give the same figures.")
EXTENDED_CONVENTION = (
    "with pools + requant = (8 x FC multiply-adds + 16 x (pool additions + per-sample requant "
    "products + adapter requantisations + per-sample multipliers of the consuming layers) + "
    "16 x 16 x reciprocal divisions) / (B x all the model's multiply-adds): every operation "
    "weighed by its operand bits as in Eq. 15-16.")


@dataclass(frozen=True)
class Site:
    """One adapter: the ``C x H x W`` tensor it reads and what consumes its ``beta``.

    ``consumer_mults`` is the number of per-sample multipliers ``M_n`` of the layers whose input
    codes it scales (``C_out * n_acc`` summed over them, spec section 11).
    """

    name: str
    channels: int
    height: int
    width: int
    hidden: int
    consumer_mults: int
    beta_bits: int = 10


@dataclass(frozen=True)
class ModelCount:
    """Size of the model itself: parameters (Eq. 10-11) and multiply-adds (Eq. 12-13) per sample.

    ``quant_conv_macs`` are the multiply-adds of the conv layers whose input is an activation
    quantiser (all convs but the first): the denominator of the paper's Compute%.
    """

    name: str
    layers: int
    params: int
    macs: int
    quant_conv_macs: int


def hidden_width(channels: int, reduction: int) -> int:
    """Hidden width of the adapter the authors build for ``channels`` inputs.

    Parameters
    ----------
    channels : int
        ``C``, the channels of the quantised tensor.
    reduction : int
        ``r`` of ``Linear(C, C // r)``.

    Returns
    -------
    int
        ``C // r``, or 0 (the single ``Linear(C, 1)``) when ``C < 8`` or ``C // r == 0``.
    """
    if channels < 8:
        return 0
    return channels // reduction


def adapter_params(site: Site) -> int:
    """Parameters of one adapter by Eq. 11 (weights and biases of its one or two FC layers).

    Parameters
    ----------
    site : Site
        The adapter.

    Returns
    -------
    int
        ``C*h + h + h + 1`` with a hidden layer of width ``h``, ``C + 1`` without.
    """
    c, h = site.channels, site.hidden
    return c * h + h + h + 1 if h else c + 1


def adapter_fc_macs(site: Site) -> int:
    """Multiply-adds of one adapter's FC layers for one sample (Eq. 13).

    Parameters
    ----------
    site : Site
        The adapter.

    Returns
    -------
    int
        ``C*h + h`` with a hidden layer of width ``h``, ``C`` without.
    """
    c, h = site.channels, site.hidden
    return c * h + h if h else c


def adapter_costs(site: Site) -> dict:
    """Everything one adapter costs per sample in the integer datapath (spec section 15).

    Parameters
    ----------
    site : Site
        The adapter.

    Returns
    -------
    dict
        ``params`` (Eq. 11), ``fc_macs`` (Eq. 13, 8x8-bit), ``pool_adds`` (``C*H*W``),
        ``adapter_requants`` (``C`` mean codes, ``h`` hidden codes, one ``beta_q``),
        ``divisions`` (1 reciprocal), ``requant_mults`` (``C*H*W`` 16x16-bit products in place
        of the LSQ shift), ``consumer_mults``, ``held_bits`` (the wide tensor, 16 bits an
        element, held until ``beta`` is known) and ``param_bits`` (parameters at 8 bits).
    """
    n = site.channels * site.height * site.width
    p = adapter_params(site)
    return {"name": site.name, "channels": site.channels, "height": site.height, "width": site.width,
            "hidden": site.hidden, "params": p, "fc_macs": adapter_fc_macs(site), "pool_adds": n,
            "adapter_requants": site.channels + site.hidden + 1, "divisions": 1, "requant_mults": n,
            "consumer_mults": site.consumer_mults, "held_bits": n * WIDE_BITS, "param_bits": p * FC_BITS}


# --- built-in topologies ----------------------------------------------------------------
def topology_sites(layers: list[LayerShape], reduction: int = 4, fc_adapter: bool = False) -> list[Site]:
    """One adapter on the input of every quantised layer of a built-in topology.

    As in the authors' code, every conv with a quantised input has its own adapter (a block's
    conv1 and its projection shortcut read the same tensor but each has one); the last linear
    layer has one only with ``fc_adapter`` (the authors' ResNet-18 keeps its FC unquantised).
    Every consuming layer is taken to have one accumulator per output channel (``n_acc = 1``).

    Parameters
    ----------
    layers : list of LayerShape
        A topology (:mod:`asqhw.core.topologies`).
    reduction : int
        ``r`` of the hidden layer ``C // r``.
    fc_adapter : bool
        Also put an adapter on the input of linear layers with a quantised input.

    Returns
    -------
    list of Site
    """
    check_int("reduction", reduction, 1, 4096)
    sites = []
    for layer in layers:
        if not layer.quant_input or (layer.kind == "linear" and not fc_adapter):
            continue
        sites.append(Site(layer.name, layer.c_in, layer.h, layer.w,
                          hidden_width(layer.c_in, reduction), layer.c_out))
    return sites


def topology_count(name: str, layers: list[LayerShape]) -> ModelCount:
    """Parameters and multiply-adds of a built-in topology (Eq. 10-13).

    Parameters
    ----------
    name : str
        Its name, for the report.
    layers : list of LayerShape
        The topology.

    Returns
    -------
    ModelCount
        Convs count their weights (Eq. 10, grouped convs ``C_in / G``), linear layers their
        weights and biases (Eq. 11).
    """
    params = sum(l.params + (l.c_out if l.kind == "linear" else 0) for l in layers)
    return ModelCount(name, len(layers), params, sum(l.macs for l in layers),
                      sum(l.macs for l in layers if l.kind == "conv2d" and l.quant_input))


# --- network exports --------------------------------------------------------------------
def _chw(shape: tuple) -> tuple[int, int, int]:
    return (shape[0], 1, 1) if len(shape) == 1 else (shape[0], shape[1], shape[2])


def network_sites(net) -> list[Site]:
    """The adapter nodes of a network export, with the tensors they read and their consumers.

    Parameters
    ----------
    net : asqhw.core.network.Network
        A validated export.

    Returns
    -------
    list of Site
        One per ``adapter`` node, in node order; ``consumer_mults`` sums ``C_out * n_acc`` over
        the nodes whose ``beta_from`` names it.
    """
    sites = []
    for node in net.nodes:
        if node["op"] != "adapter":
            continue
        c, h, w = _chw(net.tensors[node["inputs"][0]].shape)
        mults = sum(net.tensors[n["name"]].shape[0] * net.datapath(n).n_acc for n in net.nodes
                    if n["op"] in ("conv2d", "linear") and n.get("beta_from") == node["name"])
        sites.append(Site(node["name"], c, h, w, node["hidden"], mults, node["beta_bits"]))
    return sites


def _reads_quantiser(net, name: str) -> bool:
    """True when tensor ``name`` is codes made by a quant node (possibly through pools)."""
    while name != "input":
        node = net.node(name)
        if node["op"] == "quant":
            return True
        if node["op"] not in ("maxpool", "avgpool"):
            return False
        name = node["inputs"][0]
    return False


def network_count(net) -> ModelCount:
    """Parameters and multiply-adds of a network export's conv2d and linear nodes (Eq. 10-13).

    Parameters
    ----------
    net : asqhw.core.network.Network
        A validated export.

    Returns
    -------
    ModelCount
    """
    params = macs = qmacs = layers = 0
    for node in net.nodes:
        if node["op"] not in ("conv2d", "linear"):
            continue
        layers += 1
        out = net.tensors[node["name"]].shape
        if node["op"] == "linear":
            weights = node["in_features"] * node["out_features"]
            params += weights + node["out_features"]
            macs += weights
            continue
        kh, kw = node["kernel"]
        weights = node["out_channels"] * node["in_channels"] // node["groups"] * kh * kw
        params += weights
        m = weights * out[1] * out[2]
        macs += m
        if _reads_quantiser(net, node["inputs"][0]):
            qmacs += m
    return ModelCount(net.name, layers, params, macs, qmacs)


# --- percentages ------------------------------------------------------------------------
def _check_bits(bits) -> None:
    if not bits:
        raise UserError("bits: give at least one bit width")
    for b in bits:
        check_int("bit width", b, 2, 32)


def totals(sites: list[Site]) -> dict:
    """Sum of :func:`adapter_costs` over all adapters, plus the peak held tensor.

    Parameters
    ----------
    sites : list of Site

    Returns
    -------
    dict
        The summed counts, ``adapters`` (how many) and ``peak_held_bits`` (largest one tensor).
    """
    keys = ("params", "fc_macs", "pool_adds", "adapter_requants", "divisions", "requant_mults",
            "consumer_mults", "held_bits", "param_bits")
    costs = [adapter_costs(s) for s in sites]
    out = {k: sum(c[k] for c in costs) for k in keys}
    out["adapters"] = len(sites)
    out["peak_held_bits"] = max((c["held_bits"] for c in costs), default=0)
    return out


def overhead_rows(sites: list[Site], model: ModelCount, bits: list[int], paper: dict | None = None) -> list[dict]:
    """Table 1 rows: Param% and Compute% of the adapters at each bit width of the model.

    Parameters
    ----------
    sites : list of Site
        The adapters.
    model : ModelCount
        The quantised model.
    bits : list of int
        Bit widths ``B`` (2..32) of the model's parameters and operations.
    paper : dict, optional
        ``{B: (Param%, Compute%)}`` to put beside ours (e.g. :data:`TABLE1`).

    Returns
    -------
    list of dict
        Per ``B``: ``param_pct`` (:data:`PARAM_CONVENTION`), ``compute_pct``
        (:data:`COMPUTE_CONVENTION`), ``compute_pct_paper_counting``
        (:data:`PAPER_COMPUTE_CONVENTION`), ``compute_pct_extended`` (:data:`EXTENDED_CONVENTION`),
        the paper's values (or None) and ``param_rel_diff`` (ours / paper - 1).
    """
    _check_bits(bits)
    t = totals(sites)
    wide = t["pool_adds"] + t["requant_mults"] + t["adapter_requants"] + t["consumer_mults"]
    extended = FC_BITS * t["fc_macs"] + WIDE_BITS * wide + WIDE_BITS * DIVIDER_STEPS * t["divisions"]
    rows = []
    for b in bits:
        row = {"bits": b,
               "param_pct": 100 * FC_BITS * t["params"] / (b * model.params),
               "compute_pct": 100 * FC_BITS * t["fc_macs"] / (b * model.macs),
               "compute_pct_paper_counting": (100 * FC_BITS * 2 * t["fc_macs"] / (b * model.quant_conv_macs)
                                              if model.quant_conv_macs else None),
               "compute_pct_extended": 100 * extended / (b * model.macs)}
        ref = (paper or {}).get(b)
        row["paper_param_pct"], row["paper_compute_pct"] = ref if ref else (None, None)
        row["param_rel_diff"] = row["param_pct"] / ref[0] - 1 if ref else None
        rows.append(row)
    return rows


def report(sites: list[Site], model: ModelCount, bits: list[int], paper: dict | None = None) -> dict:
    """Everything :func:`overhead_rows` and :func:`adapter_costs` say, as one JSON-ready dict.

    Parameters
    ----------
    sites, model, bits, paper
        As for :func:`overhead_rows`.

    Returns
    -------
    dict
        ``model``, ``adapters`` (per adapter), ``totals``, ``rows`` and ``conventions``.
    """
    return {"model": asdict(model), "adapters": [adapter_costs(s) for s in sites], "totals": totals(sites),
            "rows": overhead_rows(sites, model, bits, paper),
            "conventions": {"param": PARAM_CONVENTION, "compute": COMPUTE_CONVENTION,
                            "compute_paper_counting": PAPER_COMPUTE_CONVENTION,
                            "extended": EXTENDED_CONVENTION}}
