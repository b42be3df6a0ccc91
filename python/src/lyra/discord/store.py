"""store: the bot's SQLite database (stdlib sqlite3, WAL mode, one file
state.db in the state directory): one row per conversation (a channel, or a
user's DMs) with its settings, and its transcript. Used from the event loop
and the engine's thread: one connection behind a lock."""
import sqlite3
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    key TEXT PRIMARY KEY,          -- c<channel id> or u<user id> (DMs)
    system TEXT,                   -- /system (NULL: the config's system_prompt)
    temperature REAL,              -- /settings (NULL: the config's)
    max_tokens INTEGER,
    trim_told INTEGER NOT NULL DEFAULT 0,  -- the user was told the oldest turns are left out
    first_id INTEGER NOT NULL DEFAULT 0,   -- turns before this message id are past the context
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    role TEXT NOT NULL,            -- user | assistant
    content TEXT NOT NULL,
    t REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_key ON messages (key, id);
"""


class Store:
    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _ensure(self, key: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO conversations (key, updated) VALUES (?, ?)", (key, time.time()))

    def conversation(self, key: str) -> Dict[str, Any]:
        with self._lock:
            self._ensure(key)
            row = self._db.execute("SELECT system, temperature, max_tokens, trim_told, first_id FROM conversations "
                                   "WHERE key = ?", (key,)).fetchone()
        return {"system": row[0], "temperature": row[1], "max_tokens": row[2], "trim_told": bool(row[3]),
                "first_id": row[4]}

    def keys(self) -> List[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT key FROM conversations ORDER BY updated DESC")]

    def update(self, key: str, **fields: Any) -> None:
        allowed = {"system", "temperature", "max_tokens", "trim_told", "first_id"}
        assert set(fields) <= allowed, fields
        with self._lock:
            self._ensure(key)
            sets = ", ".join(f"{k} = ?" for k in fields)
            self._db.execute(f"UPDATE conversations SET {sets}, updated = ? WHERE key = ?",
                             (*fields.values(), time.time(), key))

    def add(self, key: str, role: str, content: str) -> int:
        with self._lock:
            self._ensure(key)
            cur = self._db.execute("INSERT INTO messages (key, role, content, t) VALUES (?, ?, ?, ?)",
                                   (key, role, content, time.time()))
            self._db.execute("UPDATE conversations SET updated = ? WHERE key = ?", (time.time(), key))
            return int(cur.lastrowid)

    def history(self, key: str, since: int = 0) -> List[Tuple[int, str, str]]:
        """(id, role, content) of the transcript from message id since."""
        with self._lock:
            return list(self._db.execute("SELECT id, role, content FROM messages WHERE key = ? AND id >= ? "
                                         "ORDER BY id", (key, since)))

    def clear(self, key: str) -> None:
        """/reset: the transcript goes, the settings stay."""
        with self._lock:
            self._db.execute("DELETE FROM messages WHERE key = ?", (key,))
            self._db.execute("UPDATE conversations SET trim_told = 0, first_id = 0, updated = ? WHERE key = ?",
                             (time.time(), key))

    def forget(self, key: str) -> None:
        """/forget: every row of the conversation."""
        with self._lock:
            self._db.execute("DELETE FROM messages WHERE key = ?", (key,))
            self._db.execute("DELETE FROM conversations WHERE key = ?", (key,))

    def count(self, key: str) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM messages WHERE key = ?", (key,)).fetchone()[0])
