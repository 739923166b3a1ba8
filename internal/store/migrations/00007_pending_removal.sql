-- +goose Up
-- A session that ended without a MOC (failed, expired) may still hold objects
-- and uploads in S3 until they are removed. The removal is a second step after
-- the status change and can be cut off (S3 down, the replica killed, the reply
-- lost), so it is recorded in the same UPDATE as the status and cleared only
-- once S3 holds nothing of the session; until then the reconciler and the
-- leader's sweep try again.
ALTER TABLE upload_sessions ADD COLUMN s3_removal_pending boolean NOT NULL DEFAULT false;
UPDATE upload_sessions SET s3_removal_pending = true WHERE status IN ('failed', 'expired');
CREATE INDEX upload_sessions_removal_pending_idx ON upload_sessions (id) WHERE s3_removal_pending;

-- +goose Down
ALTER TABLE upload_sessions DROP COLUMN s3_removal_pending;
