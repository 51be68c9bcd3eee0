-- One row the service writes while the store refuses writes, to learn when it takes
-- them again (Store.probe).
CREATE TABLE store_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at TIMESTAMPTZ NOT NULL
);
