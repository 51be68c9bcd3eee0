"""The simulator's log of texts sent, indexed for the service's questions."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

_READ = msgspec.json.Decoder().decode


class SendLog:
    """The log of texts sent, indexed by attempt and by provider id for the service's
    lookups and polls (a recovery asks for each text in doubt or awaiting a receipt:
    reading the whole log each time made a restart after a long run take minutes).
    Read on the first question, then only the lines added since; the first record of
    an attempt is its answer, as when the log is read in order."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._offset = 0
        self._by_attempt: dict[str, tuple[str, str]] = {}  # attempt -> provider id, time
        self._recipients: dict[str, str] = {}  # provider id -> recipient

    def attempt(self, attempt_id: str) -> tuple[str, str] | None:
        self._read()
        return self._by_attempt.get(attempt_id)

    def recipient(self, provider_id: str) -> str | None:
        self._read()
        return self._recipients.get(provider_id)

    def _read(self) -> None:
        if self._path is None:
            return
        try:
            with self._path.open("rb") as fh:
                if os.fstat(fh.fileno()).st_size < self._offset:  # a new log
                    self._offset = 0
                    self._by_attempt.clear()
                    self._recipients.clear()
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1  # whole lines only: the last may still be written
        for line in data[:end].splitlines():
            try:
                record = _READ(line)
            except msgspec.DecodeError:
                continue  # a line cut short (a full disk): it recorded no send
            if not isinstance(record, dict):
                continue
            attempt, provider_id = record.get("attempt_id"), record.get("provider_id")
            if isinstance(attempt, str) and isinstance(provider_id, str):
                self._by_attempt.setdefault(attempt, (provider_id, str(record.get("at"))))
                self._recipients.setdefault(provider_id, str(record.get("to")))
        self._offset += end
