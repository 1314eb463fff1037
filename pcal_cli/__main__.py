"""``python -m pcal_cli`` works like the ``pcal`` command."""

from pcal_cli.cli import main

if __name__ == "__main__":
    main()
