"""The feedback store: one SQLite file in the explorer's ``--store`` folder.

Every verdict is one row of ``feedback`` (model, image id, explained class,
predicted class, setting, 👍/👎, marked regions, why the setting was shown),
inserted in its own transaction and committed before the server answers
(write-ahead log, ``synchronous=FULL``): a killed server loses no confirmed
feedback, and a restarted one reads it all back. ``region_scores`` holds, per
feedback row with marked regions, how much of each setting's positive
attribution fell inside the marks (what the bandit learns from a mark).
"""
from __future__ import annotations

import csv
import io
import json
import logging
import sqlite3
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

DB_NAME = "feedback.sqlite"
VERDICTS = ("up", "down")
COLUMNS = ("id", "created", "model", "image_id", "class", "class_name", "predicted", "setting", "verdict",
           "regions", "chosen_by")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  created REAL NOT NULL,
  model TEXT NOT NULL,
  image_id TEXT NOT NULL,
  class INTEGER NOT NULL,
  class_name TEXT NOT NULL,
  predicted INTEGER NOT NULL,
  setting TEXT NOT NULL,
  verdict TEXT NOT NULL CHECK (verdict IN ('up', 'down')),
  regions TEXT NOT NULL DEFAULT '[]',
  chosen_by TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS feedback_model ON feedback (model, predicted, setting);
CREATE TABLE IF NOT EXISTS region_scores (
  feedback_id INTEGER NOT NULL REFERENCES feedback (id),
  setting TEXT NOT NULL,
  score REAL NOT NULL CHECK (score >= 0 AND score <= 1),
  PRIMARY KEY (feedback_id, setting)
);
"""


class FeedbackStore:
    """Feedback rows in ``DIR/feedback.sqlite`` (created if missing); safe to share between threads."""

    def __init__(self, directory):
        d = Path(directory)
        if d.exists() and not d.is_dir():
            raise ValueError(f"store: {d} exists and is not a folder")
        d.mkdir(parents=True, exist_ok=True)
        self.path = d / DB_NAME
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise ValueError(f"store: {self.path} is not a usable SQLite database: {e}") from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _write(self, sql: str, rows) -> list[int]:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                ids = []
                for r in rows:
                    cur.execute(sql, r)
                    ids.append(cur.lastrowid)
                cur.execute("COMMIT")  # durable (WAL + synchronous=FULL) before we return
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            return ids

    def add(self, *, model: str, image_id: str, cls: int, class_name: str, predicted: int, setting: str,
            verdict: str, regions=(), chosen_by: str = "") -> int:
        """Insert one verdict and commit it; returns its row id."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict: expected 'up' or 'down', got {verdict!r}")
        row = (time.time(), str(model), str(image_id), int(cls), str(class_name), int(predicted), str(setting),
               verdict, json.dumps(list(regions)), str(chosen_by))
        return self._write("INSERT INTO feedback (created, model, image_id, class, class_name, predicted, setting, "
                           "verdict, regions, chosen_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [row])[0]

    def add_region_scores(self, feedback_id: int, scores: dict) -> None:
        """Record, for one marked feedback row, each setting's share of positive attribution in the marks."""
        rows = [(int(feedback_id), str(s), min(1.0, max(0.0, float(v)))) for s, v in scores.items()]
        if rows:
            self._write("INSERT OR REPLACE INTO region_scores (feedback_id, setting, score) VALUES (?, ?, ?)", rows)

    def rows(self, model: str | None = None) -> list[dict]:
        """Every stored verdict (of ``model``, or all), oldest first, regions decoded."""
        q, args = "SELECT * FROM feedback", ()
        if model is not None:
            q, args = q + " WHERE model = ?", (model,)
        with self._lock:
            rows = [dict(r) for r in self._conn.execute(q + " ORDER BY id", args)]
            scores = {}
            for r in self._conn.execute("SELECT feedback_id, setting, score FROM region_scores"):
                scores.setdefault(r[0], {})[r[1]] = r[2]
        for r in rows:
            r["regions"] = json.loads(r["regions"])
            r["region_scores"] = scores.get(r["id"], {})
        return rows

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def counts(self, model: str, *, region_weight: float = 1.0) -> dict:
        """``{(predicted class, setting): (ups, downs)}`` for the bandit.

        A verdict counts once for its setting. A row with marked regions also adds, for every setting
        scored against the marks, ``region_weight * score`` 👍 and ``region_weight * (1 - score)`` 👎.
        """
        out: dict = {}
        with self._lock:
            for pred, setting, ups, downs in self._conn.execute(
                    "SELECT predicted, setting, SUM(verdict = 'up'), SUM(verdict = 'down') FROM feedback "
                    "WHERE model = ? GROUP BY predicted, setting", (model,)):
                out[(int(pred), setting)] = (float(ups), float(downs))
            if region_weight > 0:
                for pred, setting, s, n in self._conn.execute(
                        "SELECT f.predicted, r.setting, SUM(r.score), COUNT(*) FROM region_scores r "
                        "JOIN feedback f ON f.id = r.feedback_id WHERE f.model = ? GROUP BY f.predicted, r.setting",
                        (model,)):
                    u, d = out.get((int(pred), setting), (0.0, 0.0))
                    out[(int(pred), setting)] = (u + region_weight * s, d + region_weight * (n - s))
        return out

    def export_json(self, model: str | None = None) -> str:
        return json.dumps(self.rows(model), indent=1, ensure_ascii=False) + "\n"

    def export_csv(self, model: str | None = None) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(COLUMNS + ("region_scores",))
        for r in self.rows(model):
            w.writerow([json.dumps(r[c]) if c == "regions" else r[c] for c in COLUMNS]
                       + [json.dumps(r["region_scores"])])
        return buf.getvalue()
