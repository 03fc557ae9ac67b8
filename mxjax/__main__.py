"""``python -m mxjax``: the command line (see :mod:`mxjax.cli`)."""

from .cli import run

if __name__ == "__main__":
    run()
