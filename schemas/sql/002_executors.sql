-- Executors: the nodes that run jobs, the shared rate-limit buckets, and
-- an index for claiming by kind (each handler claims its own kind).

-- One row per running kjb process, kept fresh by its heartbeat. A running
-- job whose attempted_by names no fresh node is rescued.
CREATE TABLE nodes (
  name         text        PRIMARY KEY,
  host         text        NOT NULL,
  pid          int         NOT NULL,
  roles        text        NOT NULL,
  version      text        NOT NULL,
  started_at   timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- Token buckets of rate limits with scope "cluster": every instance takes
-- tokens from the same row, refilled by the time since updated_at.
CREATE TABLE rate_limits (
  kind       text             PRIMARY KEY,
  tokens     double precision NOT NULL,
  updated_at timestamptz      NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX jobs_kind_claim_idx ON jobs (kind, priority, scheduled_at, id)
  WHERE state IN ('available', 'scheduled', 'retryable');

-- Wakes executors when jobs become runnable now (payload: the kind).
-- Fires once per statement, not per row: a batch of 5,000 inserted jobs
-- sends one notification per kind.
CREATE FUNCTION jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE k text;
BEGIN
  FOR k IN SELECT DISTINCT kind FROM new_jobs
           WHERE state IN ('available', 'retryable') AND scheduled_at <= now()
  LOOP
    PERFORM pg_notify('kjb_jobs', k);
  END LOOP;
  RETURN NULL;
END $$;

CREATE TRIGGER jobs_notify_insert AFTER INSERT ON jobs
  REFERENCING NEW TABLE AS new_jobs
  FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify();

CREATE TRIGGER jobs_notify_update AFTER UPDATE ON jobs
  REFERENCING NEW TABLE AS new_jobs
  FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify();
