-- The dead-letter index costs the path that dead-letters a row write per
-- record: keep only the indexes that path and the replays need (the
-- primary key, the source coordinates it moves rows by, the DLQ
-- coordinates replays update rows by). The filters on reason, status,
-- source topic and key are served by scans, which stay well under a
-- second at a million rows; time ranges by a BRIN index, nearly free to
-- keep up since rows arrive in time order.
DROP INDEX dead_letters_reason_idx;
DROP INDEX dead_letters_source_topic_idx;
DROP INDEX dead_letters_status_idx;
DROP INDEX dead_letters_key_idx;
DROP INDEX dead_letters_at_idx;
CREATE INDEX dead_letters_at_brin ON dead_letters USING brin (dead_lettered_at);
