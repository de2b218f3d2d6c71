"""The emulated clock: epoch seconds that run `speed` times faster than real time.

Stdlib only. A speed of 0 stops the clock; it then moves only through `advance()`, which is what
deterministic tests use.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Clock:
    """Emulated wall clock in epoch seconds."""

    def __init__(
        self,
        speed: float = 1.0,
        start_epoch_s: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed < 0:
            raise ValueError(f"clock speed must be >= 0, got {speed}")
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._speed = speed
        self._base_real_s = monotonic()
        self._base_emu_s = float(start_epoch_s if start_epoch_s is not None else time.time())

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> float:
        with self._lock:
            return self._base_emu_s + (self._monotonic() - self._base_real_s) * self._speed

    def advance(self, seconds: float) -> None:
        """Jump the emulated clock forward (never backwards)."""
        if seconds < 0:
            raise ValueError("the emulated clock cannot go backwards")
        with self._lock:
            self._base_emu_s += seconds

    def set_speed(self, speed: float) -> None:
        if speed < 0:
            raise ValueError(f"clock speed must be >= 0, got {speed}")
        with self._lock:
            real = self._monotonic()
            self._base_emu_s += (real - self._base_real_s) * self._speed
            self._base_real_s = real
            self._speed = speed
