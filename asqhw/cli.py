"""The asqhw command line (placeholder until the subcommands land)."""


def main(argv=None):
    raise SystemExit("asqhw: not built yet")
