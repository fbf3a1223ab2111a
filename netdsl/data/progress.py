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


def counted(batches, total: int, description: str, enabled: bool | None = None):
    """Yield `batches` with a bar counting them (validation, testing), so a long evaluation
    shows life. `enabled` None: a bar when stderr is a terminal; False (--no-progress): none."""
    bar = tqdm(total=total, desc=description, unit="batch", leave=False, dynamic_ncols=True,
               disable=enabled is False or not sys.stderr.isatty())
    with bar:
        for batch in batches:
            yield batch
            bar.update()
