"""Where the SQL sources live.

The package is installed editable from the repo, so db/ sits next to runner/.
TICKAGG_DB_DIR overrides it (tests point it at a modified copy).
"""

import os
from pathlib import Path

REPO_DB_DIR = Path(__file__).resolve().parent.parent / "db"


def db_dir() -> Path:
    """Return the db/ directory; read the environment on every call so tests can change it."""
    override = os.environ.get("TICKAGG_DB_DIR")
    return Path(override).resolve() if override else REPO_DB_DIR
