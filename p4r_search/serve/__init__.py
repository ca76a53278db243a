"""`p4r serve`: a long-lived HTTP service (FastAPI + uvicorn) over one index, and a page to see personas at work.

    from p4r_search.serve import Service, ServedIndex, SharedEncoder, create_app
"""

from __future__ import annotations

from .app import Limits, create_app
from .service import Service
from .state import ServedIndex, SharedEncoder

__all__ = ["Limits", "ServedIndex", "Service", "SharedEncoder", "create_app"]
