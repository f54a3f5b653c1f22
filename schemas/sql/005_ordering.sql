-- Ordered execution per key (ordering_key in a job mapping): jobs of one
-- kind with the same key run one at a time, in source order. See queue.c
-- for the claim that relies on these indexes.
ALTER TABLE jobs ADD COLUMN ordering_key text;
