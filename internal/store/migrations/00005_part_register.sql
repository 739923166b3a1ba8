-- +goose Up
-- Each part is a register: every PUT of it writes its own S3 part number (a
-- slot), so a PUT that is refused, or an attempt of one that lingers on its
-- way to S3, never replaces the bytes a 200 was given for. A file of N parts
-- has slots_per_part slots per part (S3 part numbers (n-1)*k+1 .. n*k, so a
-- completion with one slot per part is in ascending order); files written
-- before this migration keep one slot per part (k = 1: S3 part number n).
ALTER TABLE upload_files ADD COLUMN slots_per_part int NOT NULL DEFAULT 1
    CONSTRAINT upload_files_slots_check CHECK (slots_per_part BETWEEN 1 AND 10000 AND slots_per_part * part_count <= 10000);

-- The register: the slot holding the acknowledged version. No default, so a
-- replica of the previous version (which knows no slots) cannot record a part
-- it wrote to the wrong S3 part number: its record fails and nothing is acknowledged.
ALTER TABLE upload_parts ADD COLUMN s3_part_number int;
UPDATE upload_parts SET s3_part_number = part_number;
ALTER TABLE upload_parts ALTER COLUMN s3_part_number SET NOT NULL;
-- acked_etags is superseded by the register; it stays one release (with its
-- default) for replicas of the previous version.

-- A PUT registers here before its first byte reaches S3, and takes a slot no
-- other registered PUT holds and the register does not point at. in_flight
-- rows end with the PUT; a PUT that failed after S3 may have received all its
-- bytes keeps its slot in quarantine (in_flight false) until busy_until, so a
-- late attempt lands where nothing acknowledged lives.
CREATE TABLE part_writes (
    token          uuid PRIMARY KEY,
    file_id        uuid        NOT NULL REFERENCES upload_files (id) ON DELETE CASCADE,
    part_number    int         NOT NULL,
    s3_part_number int         NOT NULL,
    in_flight      boolean     NOT NULL DEFAULT true,
    busy_until     timestamptz NOT NULL
);
CREATE INDEX part_writes_file_part_idx ON part_writes (file_id, part_number);

-- +goose Down
DROP TABLE part_writes;
ALTER TABLE upload_parts DROP COLUMN s3_part_number;
ALTER TABLE upload_files DROP COLUMN slots_per_part;
