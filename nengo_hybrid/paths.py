"""Where the data lives: ``--data`` flag, else ``$NENGO_HYBRID_DATA``, else ``./data``."""

import os
from pathlib import Path

DATA_ENV = "NENGO_HYBRID_DATA"


def data_dir(flag=None):
    """The data directory: ``flag`` if given, else ``$NENGO_HYBRID_DATA``, else ``./data``."""
    if flag:
        return Path(flag)
    return Path(os.environ.get(DATA_ENV) or "data")


def add_data_argument(parser):
    """Add the ``--data DIR`` option every experiment takes to an argparse parser."""
    parser.add_argument(
        "--data",
        default=None,
        help=f"data directory (default: ${DATA_ENV}, else ./data)",
    )
    return parser
