-- +goose Up
-- How a session's part bytes travel: through the operator's part endpoint
-- ('proxy'), or from the client straight to S3 with presigned UploadPart URLs
-- ('direct'). Sessions written before this column existed were all proxied.
ALTER TABLE upload_sessions ADD COLUMN transfer text NOT NULL DEFAULT 'proxy'
  CONSTRAINT upload_sessions_transfer_check CHECK (transfer IN ('proxy', 'direct'));

-- +goose Down
ALTER TABLE upload_sessions DROP COLUMN transfer;
