"""The one error type the graph layer raises."""
from __future__ import annotations

from typing import Optional


class GraphError(ValueError):
    """A GraphDef is malformed (dangling input, cycle, dtype mismatch, ...). ``node`` names the
    node at fault where there is one."""

    def __init__(self, message: str, node: Optional[str] = None):
        super().__init__(message)
        self.node = node
