"""The ground floor: file formats, spec constants, safe reading and atomic writing (docs/layering.md).

Every other part of asq-hw stands on these modules; they import nothing above them.
"""
