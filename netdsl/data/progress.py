"""Progress bars for long data jobs."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress_bar(total: int, description: str, enabled: bool = True) -> tqdm:
    """A tqdm bar counting images, silent unless asked for and stderr is a terminal.

    Logs and CI output stay free of carriage-return noise.
    """
    return tqdm(
        total=total,
        desc=description,
        unit="img",
        disable=not (enabled and sys.stderr.isatty()),
        dynamic_ncols=True,
    )
