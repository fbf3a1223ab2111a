"""The kernel tests share cases through kernel_cases.py, a plain module: a
conftest is no place for them, since every test folder has a module of that
name and only one of them can be imported under it."""
from __future__ import annotations

import sys
from pathlib import Path

# tests/ holds modules shared across test folders (tolerances.py).
_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
