-- One row the service rewrites to learn whether the database takes writes again
-- after a fault (a full disk, an I/O error, a locked or read-only database).
CREATE TABLE store_probe (id INTEGER PRIMARY KEY CHECK (id = 1), at INTEGER NOT NULL);
