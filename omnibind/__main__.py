"""`python -m omnibind` and the `omnibind` script: the CLI, with Ctrl-C as a one-line exit."""

import sys

from omnibind.cli import app, err


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
