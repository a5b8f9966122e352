"""Where the library database is by default: apart from tagger.store.db, so that ``--help`` can
say it without importing SQLAlchemy."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def default_db() -> str:
    """``$TAGGER_DB``, else ``library.db`` in the user data folder (platformdirs)."""
    return os.environ.get("TAGGER_DB") or str(Path(platformdirs.user_data_dir("tagger")) / "library.db")
