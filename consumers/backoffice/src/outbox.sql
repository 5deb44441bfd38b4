-- The transactional outbox: the contract between the back office (which inserts rows in the
-- transaction of the domain change) and the relay in choreo-producers (which publishes them and
-- updates relayed_at / parked_at / error / attempts). See src/outbox.rs for each column.
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, aggregate TEXT NOT NULL, event TEXT NOT NULL,
    created_at TEXT NOT NULL, relayed_at TEXT, parked_at TEXT, error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0)) STRICT;
-- The relay's question: the oldest pending row of each aggregate.
CREATE INDEX outbox_pending ON outbox (aggregate, seq) WHERE relayed_at IS NULL AND parked_at IS NULL;
