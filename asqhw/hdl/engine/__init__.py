"""The layer engine: a whole conv2d or linear layer from on-chip memories (docs/engine.md).

Modules: ``params`` (engine parameters, word layouts), ``program`` (host side: layer to
memory images and term lists), ``memories`` (stream loaders), ``tiles`` (address
generation), ``lanes`` (the lane array), ``drain`` (requantisation and output
buffer), ``top`` (the ``Engine`` component and its FSM), ``cycles`` (the exact cycle
model), ``expect`` (entry counts under a Gaussian weight model), ``adapter`` (cycle
model of the ASQ adapter companion unit), ``adapter_unit`` (that unit in RTL),
``adapter_cosim`` (its Verilator co-simulation), ``adapter_conform`` (``asqhw conform
--unit adapter``), ``emit`` (Verilog, sidecar, FuseSoC core),
``cosim`` (Verilator co-simulation of golden cases), ``synth`` (synthesis).
"""

from .params import EngineConfig, ENGINE_SCHEDULES

__all__ = ["EngineConfig", "ENGINE_SCHEDULES"]
