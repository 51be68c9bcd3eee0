-- Who holds the single-worker guard (guard.py): the service that runs on this database,
-- written by it once it holds the advisory lock, so a second one refused at start can
-- say which (its host, process id, home folder and start time). One row at most; the
-- lock, not this row, decides: a row whose server process holds no lock is stale.
CREATE TABLE service_guard (
    id BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    backend_pid INTEGER NOT NULL,  -- the server process of the guard's connection
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    home TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    taken_at TIMESTAMPTZ NOT NULL
);
