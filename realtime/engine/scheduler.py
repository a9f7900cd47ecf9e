"""The engine's periodic work, as one task on the collector's event loop: every second it
expires the visits past their site's timeout (``Engine.sweep``) and takes the active-visitor
figures of the minute that ended (``Engine.close_windows``), and every
``snapshot_seconds`` it has the snapshot written in the background (``persistence.py``).
With a shared store it first starts delivering the other engine processes' changes to this
process's stream listeners (``Hub.follow``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from realtime.engine.engine import Engine

log = logging.getLogger("siteline.engine")

SWEEP_SECONDS = 1.0


async def housekeeping(engine: Engine) -> None:
    """Run the engine's periodic work until cancelled (see the module docstring)."""
    if engine.store.shared:
        engine.hub.follow(engine.store.client)
    last_save = time.monotonic()
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        try:
            engine.sweep()
            engine.close_windows()
            if time.monotonic() - last_save >= engine.snapshot_seconds:
                last_save = time.monotonic()
                engine.save_in_background()
        except Exception:  # housekeeping must go on
            log.exception("engine housekeeping failed")
