-- Paused kinds and queues (kjb jobs pause): executors claim none of their
-- jobs until they are resumed; the jobs stay available. One row per
-- paused kind or queue, for the whole cluster.
CREATE TABLE pauses (
  kind      text,
  queue     text,
  paused_at timestamptz NOT NULL DEFAULT now(),
  paused_by text        NOT NULL,
  CONSTRAINT pauses_kind_or_queue CHECK ((kind IS NULL) <> (queue IS NULL))
);

CREATE UNIQUE INDEX pauses_kind_uniq ON pauses (kind) WHERE kind IS NOT NULL;
CREATE UNIQUE INDEX pauses_queue_uniq ON pauses (queue) WHERE queue IS NOT NULL;
