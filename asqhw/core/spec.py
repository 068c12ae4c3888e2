"""The version of the integer spec (docs/datapath.md) that this package implements."""

SPEC_VERSION = "1.2"
