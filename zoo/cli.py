"""The `zoo` command (placeholder until the benchmark CLI lands)."""


def main(argv=None):
    raise SystemExit("zoo: no commands yet")
