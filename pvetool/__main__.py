"""``python -m pvetool``: the same as the ``pvetool`` command."""

from pvetool.cli.main import main

if __name__ == "__main__":
    main()
