"""`budget.max_usd`: stop sending before the accumulated cost could pass the cap, also with many
calls in flight. Each call reserves its worst case (every prompt token a cache miss, the full output
reserve) before it is sent; when it returns, the reservation becomes its actual cost."""

from __future__ import annotations

import threading


class Budget:
    def __init__(self, max_usd: float | None):
        self.max_usd = max_usd
        self.spent = 0.0
        self.reserved = 0.0
        self.stopped = False
        self._lock = threading.Lock()

    def reserve(self, worst_case_usd: float) -> bool:
        with self._lock:
            if self.max_usd is None:
                return True
            if self.stopped or self.spent + self.reserved + worst_case_usd > self.max_usd:
                self.stopped = True  # once refused, stay stopped: later questions are not cheaper to trust
                return False
            self.reserved += worst_case_usd
            return True

    def settle(self, reserved_usd: float, actual_usd: float) -> None:
        with self._lock:
            if self.max_usd is not None:
                self.reserved -= reserved_usd
            self.spent += actual_usd
