"""asq-hw: bit-exact ASQ+POST datapath tools (spec, vectors, CLI)."""

__version__ = "0.1.0"
SPEC_VERSION = "1.1"
