"""Live events and durable per-user history: `Event` (one interaction or review), `HistoryStore` (SQLite in
WAL mode, beside the index or at --history-db), and `UserHistories`, what the service and `p4r features`
read a user from."""

from .models import Event, EventBatchResult
from .store import HistoryStore, UserHistories, default_history_db

__all__ = ["Event", "EventBatchResult", "HistoryStore", "UserHistories", "default_history_db"]
