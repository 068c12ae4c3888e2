"""The top floor: the ``asqhw`` command line and its reports (docs/layering.md)."""
