-- +goose Up
-- The stale window of the lock's holder, stored with the lock. Replicas may
-- run with different STALE_LOCK_AFTER values (a rolling change of it): a lock
-- is judged stale on the window its holder renews for, never on the judge's,
-- so a replica with a shorter window cannot overtake a holder renewing on a
-- longer one. NULL (a lock taken before this column existed): the judge's own.
ALTER TABLE upload_sessions ADD COLUMN finalize_stale_after_us bigint
    CONSTRAINT upload_sessions_stale_after_check CHECK (finalize_stale_after_us > 0);

-- +goose Down
ALTER TABLE upload_sessions DROP COLUMN finalize_stale_after_us;
