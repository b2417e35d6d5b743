"""Where the repository and the shared reference material (../shared) are."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("TERRACUBE_SHARED", REPO.parent / "shared"))
