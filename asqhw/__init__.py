"""asq-hw: bit-exact ASQ+POST datapath tools (spec, vectors, CLI)."""

__version__ = "0.2.0"
SPEC_VERSION = "1.1"

# The implementations are installed as asqhw.sim, asqhw.golden and asqhw.hdl (no top-level
# names of their own). In a source checkout their folders sit beside asqhw/: look there too.
from pathlib import Path as _Path

_here = _Path(__file__).resolve().parent
if not (_here / "sim").is_dir() and (_here.parent / "sim" / "__init__.py").is_file():
    __path__.append(str(_here.parent))
del _Path, _here
