"""Base URLs replacing the real services, shared by the pipeline and the demo region (no import cycle)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoints:
    """Base URLs replacing the real services (None = the real one); tests and the demo use loopback."""

    crash_portal: str | None = None
    overpass: str | None = None
    meteostat: str | None = None
    hpms: str | None = None
