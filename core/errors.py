"""The one exception type for domain refusals.

Services raise ``LoyaltyError(code, message)``; the admin, API and pages translate it
in one place each. ``code`` is stable and machine-readable, ``message`` is for people
and is translated.
"""

from typing import Any


class LoyaltyError(Exception):
    def __init__(self, code: str, message: Any, **extra: Any) -> None:
        super().__init__(str(message))
        self.code = code
        self.message = message
        self.extra = extra

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
