-- The dead-letter workbench: an index of every DLQ record (the bytes stay
-- in the DLQ topic) and an audit trail of operators' actions.

-- One row per dead letter. The consumer writes it in the same step that
-- produces the DLQ record (see ingest.c, index_dead_letters); `kjb dlq
-- reindex` builds or repairs it from a DLQ topic.
CREATE TABLE dead_letters (
  id                 bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- Where the record lies now: the DLQ record.
  dlq_topic          text        NOT NULL,
  dlq_partition      int         NOT NULL,
  dlq_offset         bigint      NOT NULL,
  -- Where it came from (the __connect.errors.* headers).
  source_topic       text        NOT NULL,
  source_partition   int         NOT NULL,
  source_offset      bigint      NOT NULL,
  key                bytea,
  -- The error code without "kjb." (UNKNOWN_SCHEMA_ID), or the exception
  -- class a Kafka Connect DLQ names.
  reason             text        NOT NULL,
  stage              text,
  message            text,
  consumer_group     text,
  original_timestamp timestamptz,
  dead_lettered_at   timestamptz NOT NULL,
  value_size         int         NOT NULL,
  status             text        NOT NULL DEFAULT 'dead'
                     CHECK (status IN ('dead', 'replayed', 'failing', 'ignored')),
  replays            int         NOT NULL DEFAULT 0,
  last_replayed_at   timestamptz,
  last_error         text,
  edited             boolean     NOT NULL DEFAULT false,
  -- A source record dead-lettered again (delivered again after a crash)
  -- moves its row to the new DLQ record instead of adding one.
  CONSTRAINT dead_letters_source_uniq
    UNIQUE (source_topic, source_partition, source_offset, dlq_topic)
);

-- Not unique: a DLQ topic deleted and created again starts its offsets
-- anew, and rows of the old one must not block the new one's.
CREATE INDEX dead_letters_dlq_idx ON dead_letters (dlq_topic, dlq_partition, dlq_offset);
-- The filters: --reason, --since/--until, --source-topic, --status, --key.
CREATE INDEX dead_letters_reason_idx ON dead_letters (reason);
CREATE INDEX dead_letters_at_idx ON dead_letters (dead_lettered_at);
CREATE INDEX dead_letters_source_topic_idx ON dead_letters (source_topic);
CREATE INDEX dead_letters_status_idx ON dead_letters (status);
-- Keys can be longer than a btree entry may be; equality is all --key asks.
CREATE INDEX dead_letters_key_idx ON dead_letters USING hash (key);

-- Who did what: replays, ignores, edits, job retries and cancels, from the
-- CLI (actor "cli:<user>" or --actor) and the admin API (the token's name).
CREATE TABLE audit (
  id     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at     timestamptz NOT NULL DEFAULT now(),
  actor  text        NOT NULL,
  action text        NOT NULL,
  params jsonb       NOT NULL DEFAULT '{}',
  -- NULL while the action runs (a replay), then what it did.
  result jsonb
);

CREATE INDEX audit_at_idx ON audit (at);
