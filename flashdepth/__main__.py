"""Entry point for ``python -m flashdepth``."""

from flashdepth.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
