"""asq-hw: bit-exact ASQ+POST datapath tools.

Three floors (docs/layering.md): ``asqhw.core`` is the ground (formats, spec constants, safe
reading, atomic writing); ``asqhw.golden``, ``asqhw.sim`` and ``asqhw.hdl`` are the three
independent implementations; ``asqhw.cli`` is the command line and its reports.
"""

__version__ = "0.3.0"
