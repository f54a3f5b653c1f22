-- Jobs: one row per unit of work, created from a source record.
-- Names are unqualified: kjb runs migrations with search_path set to the
-- configured schema (postgres.schema, default "kjb").

CREATE TYPE job_state AS ENUM (
  'available', 'scheduled', 'running', 'retryable',
  'completed', 'discarded', 'cancelled'
);

CREATE TABLE jobs (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind             text        NOT NULL,
  queue            text        NOT NULL DEFAULT 'default',
  priority         smallint    NOT NULL DEFAULT 0,
  state            job_state   NOT NULL DEFAULT 'available',
  args             jsonb       NOT NULL DEFAULT '{}',
  meta             jsonb       NOT NULL DEFAULT '{}',
  attempt          int         NOT NULL DEFAULT 0,
  max_attempts     int         NOT NULL DEFAULT 20 CHECK (max_attempts > 0),
  scheduled_at     timestamptz NOT NULL DEFAULT now(),
  attempted_at     timestamptz,
  finished_at      timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  attempted_by     text,
  errors           jsonb       NOT NULL DEFAULT '[]',
  unique_key       text,
  source_topic     text,
  source_partition int,
  source_offset    bigint,
  -- A redelivered source record inserts nothing: one row per record and
  -- job kind (one record may fan out into several kinds).
  CONSTRAINT jobs_source_uniq
    UNIQUE (source_topic, source_partition, source_offset, kind)
);

-- unique_key templates deduplicate jobs of one kind across records.
CREATE UNIQUE INDEX jobs_unique_key_idx ON jobs (kind, unique_key)
  WHERE unique_key IS NOT NULL;

-- Executors claim runnable jobs by queue, priority, then scheduled time.
CREATE INDEX jobs_claim_idx ON jobs (queue, priority, scheduled_at, id)
  WHERE state IN ('available', 'scheduled', 'retryable');

-- Lease rescue looks at running jobs only.
CREATE INDEX jobs_running_idx ON jobs (attempted_at)
  WHERE state = 'running';

-- Retention pruning of finished jobs.
CREATE INDEX jobs_finished_idx ON jobs (finished_at)
  WHERE finished_at IS NOT NULL;
