-- +goose Up
-- The finalize lock becomes a lease. Its holder renews finalizing_at while it
-- works; staleness is judged on one clock, PostgreSQL's (lock_clock()), never
-- a replica's; and finalize_token, a random id per acquisition, fences every
-- later write of that finalize (renewal, release, the commit).
ALTER TABLE upload_sessions ADD COLUMN finalize_token uuid;

-- 'deleting': a delete has claimed the session (no finalize can take the lock
-- any more) and is removing what it holds.
ALTER TABLE upload_sessions DROP CONSTRAINT upload_sessions_status_check;
ALTER TABLE upload_sessions ADD CONSTRAINT upload_sessions_status_check
    CHECK (status IN ('pending', 'active', 'finalizing', 'finalized', 'expired', 'failed', 'deleting'));

-- Every ETag a PUT of the part was answered 200 with. Finalize completes a
-- part only with bytes some client was told were stored: S3 may hold a later
-- version from a PUT that was refused (it raced the finalize).
ALTER TABLE upload_parts ADD COLUMN acked_etags text[] NOT NULL DEFAULT '{}';
UPDATE upload_parts SET acked_etags = ARRAY[etag];

-- The clock of finalize leases. It is now() unless a connection pins it with
-- SET mocupload.lock_clock = '<timestamptz>', which tests use to put a lock at
-- an exact age (the 5:00.001 boundary) on PostgreSQL's own terms.
-- +goose StatementBegin
CREATE FUNCTION lock_clock() RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('mocupload.lock_clock', true), '')::timestamptz, now())
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION lock_clock();
ALTER TABLE upload_parts DROP COLUMN acked_etags;
DELETE FROM upload_sessions WHERE status = 'deleting';
ALTER TABLE upload_sessions DROP CONSTRAINT upload_sessions_status_check;
ALTER TABLE upload_sessions ADD CONSTRAINT upload_sessions_status_check
    CHECK (status IN ('pending', 'active', 'finalizing', 'finalized', 'expired', 'failed'));
ALTER TABLE upload_sessions DROP COLUMN finalize_token;
