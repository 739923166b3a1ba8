-- +goose Up
-- Table and column names of upload_sessions, moc_instructions and moc_files come
-- from the story (STORY-01726) and are part of the contract; the story's seed
-- INSERT must apply, so every column it does not name has a default.
CREATE TABLE upload_sessions (
    id              uuid PRIMARY KEY,
    user_id         text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending',
    part_size_bytes bigint      NOT NULL CHECK (part_size_bytes > 0),
    finalizing_at   timestamptz,
    finalized_at    timestamptz,
    expires_at      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    k8s_namespace   text,
    k8s_name        text,
    -- The finalize request that holds (or last held) the lock, so that whoever
    -- takes over a stale lock (the reconciler, another replica) can finish it.
    finalize_title       text,
    finalize_description text,
    CONSTRAINT upload_sessions_status_check
        CHECK (status IN ('pending', 'active', 'finalizing', 'finalized', 'expired', 'failed'))
);
CREATE INDEX upload_sessions_user_id_idx ON upload_sessions (user_id);

-- One row per file of a session; s3_upload_id is set once its S3 multipart
-- upload exists, completed_etag once S3 completed it.
CREATE TABLE upload_files (
    id             uuid PRIMARY KEY,
    session_id     uuid    NOT NULL REFERENCES upload_sessions (id) ON DELETE CASCADE,
    ordinal        int     NOT NULL,
    name           text    NOT NULL,
    content_type   text    NOT NULL,
    size_bytes     bigint  NOT NULL CHECK (size_bytes > 0),
    part_count     int     NOT NULL CHECK (part_count BETWEEN 1 AND 10000),
    s3_key         text    NOT NULL,
    s3_upload_id   text,
    completed_etag text,
    UNIQUE (session_id, ordinal)
);

-- The last ETag S3 returned for each part; upserted, so a part sent twice
-- leaves one row. S3's ListParts stays the truth at finalize time.
CREATE TABLE upload_parts (
    file_id     uuid        NOT NULL REFERENCES upload_files (id) ON DELETE CASCADE,
    part_number int         NOT NULL CHECK (part_number BETWEEN 1 AND 10000),
    etag        text        NOT NULL,
    size_bytes  bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (file_id, part_number)
);

CREATE TABLE moc_instructions (
    id                uuid PRIMARY KEY,
    user_id           text        NOT NULL,
    upload_session_id uuid        NOT NULL UNIQUE REFERENCES upload_sessions (id),
    title             text        NOT NULL,
    slug              text        NOT NULL,
    description       text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT moc_instructions_user_slug_key UNIQUE (user_id, slug)
);

CREATE TABLE moc_files (
    id           uuid PRIMARY KEY,
    moc_id       uuid        NOT NULL REFERENCES moc_instructions (id) ON DELETE CASCADE,
    file_id      uuid        NOT NULL UNIQUE,
    name         text        NOT NULL,
    content_type text        NOT NULL,
    s3_key       text        NOT NULL,
    size_bytes   bigint      NOT NULL,
    etag         text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX moc_files_moc_id_idx ON moc_files (moc_id);

-- +goose Down
DROP TABLE moc_files;
DROP TABLE moc_instructions;
DROP TABLE upload_parts;
DROP TABLE upload_files;
DROP TABLE upload_sessions;
