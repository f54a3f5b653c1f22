-- Ordered execution per key (ordering_key in a job mapping): jobs of one
-- kind with the same key run one at a time, in source order. See queue.c
-- for the claim that relies on these indexes.
ALTER TABLE jobs ADD COLUMN ordering_key text;

-- The unfinished jobs of each (kind, key) in source order (jobs without
-- source coordinates after those with, by id): the first entry of a key is
-- its head, the only job of the key an executor may start. Discarded jobs
-- stay in it, for handlers with on_discard = "hold". Executors walk it one
-- key at a time (a skip scan), so a claim costs a probe per key visited,
-- never one per job waiting behind a head. Keys compare bytewise (COLLATE
-- "C"), as executors compare them when they go round the keys.
CREATE INDEX jobs_ordering_idx
  ON jobs (kind, ordering_key COLLATE "C", source_partition, source_offset, id)
  WHERE ordering_key IS NOT NULL AND state NOT IN ('completed', 'cancelled');

-- A job of the key running anywhere keeps the key busy, even when it is
-- not the head (an operator retried an earlier job meanwhile).
CREATE INDEX jobs_ordering_running_idx ON jobs (kind, ordering_key)
  WHERE ordering_key IS NOT NULL AND state = 'running';

-- Unkeyed jobs are claimed through their own index, so that a backlog of
-- keyed jobs waiting behind their heads is never scanned by that claim.
DROP INDEX jobs_kind_claim_idx;
CREATE INDEX jobs_kind_claim_idx ON jobs (kind, priority, scheduled_at, id)
  WHERE state IN ('available', 'scheduled', 'retryable') AND ordering_key IS NULL;
