"""What a failed poll raises: the one error type every cloud source speaks."""
from __future__ import annotations


class SourceError(Exception):
    """A poll that failed, with what a user needs to know.

    retry_after: seconds the service asked us to wait (HTTP 429 Retry-After).
    auth: credentials were refused or missing (401/403): no point retrying fast.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, auth: bool = False):
        super().__init__(message)
        self.retry_after, self.auth = retry_after, auth
