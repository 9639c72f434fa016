/** Version of the schema below; a database written by a newer version is refused. */
export const SCHEMA_VERSION = 1;

/** Name of the database file inside the queue's directory (plus SQLite's `-wal` and `-shm`). */
export const DB_FILE = 'queue.sqlite';

/**
 * The queue's tables. Hot fields of a record are columns so that indexes serve every ordered
 * access (claim order per group, position, the next timed transition); the request itself, read
 * whole, is JSON. Partial indexes keep each index to the records it is about, and every index
 * is one more page written per commit, so there are as few as the reads need (prune, rare,
 * scans). Times are epoch ms of the injected clock.
 *
 * `seq` is the rowid with AUTOINCREMENT: SQLite never hands out a seq twice, even after the row
 * with the largest one is deleted, which is what submission order needs across processes.
 */
export const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS meta (
  name TEXT PRIMARY KEY,
  value ANY
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS records (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  key TEXT NOT NULL UNIQUE,
  state TEXT NOT NULL,
  grp TEXT NOT NULL,
  priority INTEGER NOT NULL,
  owner TEXT,
  submitted_at INTEGER NOT NULL,
  ready_at INTEGER NOT NULL,
  pending_expires_at INTEGER,
  started_at INTEGER,
  finished_at INTEGER,
  attempts INTEGER NOT NULL,
  max_attempts INTEGER NOT NULL,
  lease_token TEXT,
  lease_expires_at INTEGER,
  worker_id TEXT,
  progress REAL,
  message TEXT,
  cancel_requested INTEGER,
  error TEXT,
  retain_until INTEGER,
  -- When time alone changes the record next: lease expiry (running), pending expiry (never
  -- claimed), end of retention (finished); null when never. One index serves every timed transition.
  due_at INTEGER,
  request TEXT NOT NULL
);
-- ready_at rides along so that a claim skips records waiting out a retry backoff inside the index.
CREATE INDEX IF NOT EXISTS records_claim ON records (grp, priority DESC, seq, ready_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS records_due ON records (due_at) WHERE due_at IS NOT NULL;
-- Pending records back from a run (retry, release, lease expiry): a record waiting out a backoff is
-- one of them (its ready_at is past its submission). A position finds here the ones ahead of it
-- still waiting, which it must not count. A fresh submit (ready at once) and its first claim never
-- touch this index.
CREATE INDEX IF NOT EXISTS records_backoff ON records (grp, ready_at, priority, seq, submitted_at)
  WHERE state = 'pending' AND ready_at > submitted_at;
CREATE INDEX IF NOT EXISTS records_owner ON records (owner) WHERE state = 'pending' AND owner IS NOT NULL;

-- One row per group: record counts by state (kept by triggers; caps, counts() and claims read
-- them in O(groups)) and claim history (SharQ ready time = last claim + interval; the global
-- claim number breaks ties by recency). One row for both: a claim writes one page, not two.
CREATE TABLE IF NOT EXISTS groups (
  name TEXT PRIMARY KEY,
  pending INTEGER NOT NULL DEFAULT 0,
  running INTEGER NOT NULL DEFAULT 0,
  completed INTEGER NOT NULL DEFAULT 0,
  failed INTEGER NOT NULL DEFAULT 0,
  cancelled INTEGER NOT NULL DEFAULT 0,
  expired INTEGER NOT NULL DEFAULT 0,
  last_claim_at INTEGER,
  last_claim_seq INTEGER NOT NULL DEFAULT 0,
  max_interval_ms INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS records_count_insert AFTER INSERT ON records BEGIN
  INSERT INTO groups (name, pending, running, completed, failed, cancelled, expired)
    VALUES (new.grp, new.state = 'pending', new.state = 'running', new.state = 'completed',
            new.state = 'failed', new.state = 'cancelled', new.state = 'expired')
    ON CONFLICT (name) DO UPDATE SET
      pending = pending + excluded.pending, running = running + excluded.running,
      completed = completed + excluded.completed, failed = failed + excluded.failed,
      cancelled = cancelled + excluded.cancelled, expired = expired + excluded.expired;
END;
CREATE TRIGGER IF NOT EXISTS records_count_delete AFTER DELETE ON records BEGIN
  UPDATE groups SET
    pending = pending - (old.state = 'pending'), running = running - (old.state = 'running'),
    completed = completed - (old.state = 'completed'), failed = failed - (old.state = 'failed'),
    cancelled = cancelled - (old.state = 'cancelled'), expired = expired - (old.state = 'expired')
  WHERE name = old.grp;
END;
CREATE TRIGGER IF NOT EXISTS records_count_update AFTER UPDATE OF state ON records
  WHEN old.state <> new.state BEGIN
  UPDATE groups SET
    pending = pending - (old.state = 'pending') + (new.state = 'pending'),
    running = running - (old.state = 'running') + (new.state = 'running'),
    completed = completed - (old.state = 'completed') + (new.state = 'completed'),
    failed = failed - (old.state = 'failed') + (new.state = 'failed'),
    cancelled = cancelled - (old.state = 'cancelled') + (new.state = 'cancelled'),
    expired = expired - (old.state = 'expired') + (new.state = 'expired')
  WHERE name = old.grp;
END;

-- Transitions applied by time (lease and pending expiry) and not yet reported by a sweep.
CREATE TABLE IF NOT EXISTS sweep_journal (
  id INTEGER PRIMARY KEY,
  kind TEXT NOT NULL,
  record TEXT NOT NULL
);

-- Per-minute transition counts per group (the last ten minutes are kept); each process adds
-- its counts in batches (see StatsStore).
CREATE TABLE IF NOT EXISTS activity (
  minute INTEGER NOT NULL,
  grp TEXT NOT NULL,
  submitted INTEGER NOT NULL DEFAULT 0,
  claimed INTEGER NOT NULL DEFAULT 0,
  completed INTEGER NOT NULL DEFAULT 0,
  failed INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (minute, grp)
) WITHOUT ROWID;

-- Learned run times per uri: moving average, percentiles refreshed as samples come in; the
-- window of recent samples is a ring of float64 in one blob (one row written per completion).
CREATE TABLE IF NOT EXISTS uri_stats (
  uri TEXT PRIMARY KEY,
  count INTEGER NOT NULL,
  avg REAL NOT NULL,
  p50 REAL NOT NULL,
  p95 REAL NOT NULL,
  sorted_at INTEGER NOT NULL,
  next INTEGER NOT NULL,
  samples BLOB NOT NULL,
  updated_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS workers (
  id TEXT PRIMARY KEY,
  slots INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;

INSERT OR IGNORE INTO meta (name, value) VALUES
  ('schema_version', ${String(SCHEMA_VERSION)}),
  ('paused', 0),
  ('dropped', 0);
`;
