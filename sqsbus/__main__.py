"""``python -m sqsbus``: the same as the ``sqsbus`` command."""

from sqsbus.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
