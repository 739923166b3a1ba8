-- +goose Up
-- A session row is bound to exactly one resource: its namespace, name and UID
-- (and its owner). A resource that points at a row bound to another (a label
-- copied from someone else's session) is refused and touches nothing.
ALTER TABLE upload_sessions ADD COLUMN k8s_uid text;

-- +goose Down
ALTER TABLE upload_sessions DROP COLUMN k8s_uid;
