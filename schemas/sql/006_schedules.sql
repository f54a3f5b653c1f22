-- Schedules (config `schedules`): the latest tick of each whose job was
-- inserted, so that the instances of a cluster insert one job per tick
-- between them, and that a tick is never inserted twice, not even after its
-- job was pruned. schedule.c moves last_tick forward only, in the same
-- statement that inserts the job.
CREATE TABLE schedules (
  name        text        PRIMARY KEY,
  last_tick   timestamptz NOT NULL,
  -- The node that inserted last_tick's job, or recorded the first tick of
  -- a new schedule (without a job: a new schedule does not catch up).
  inserted_by text        NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);
