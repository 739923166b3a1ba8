-- +goose Up
-- Whole-file checksums (contract section 7). declared_*: what the client
-- declared at creation, verified at finalize. completed_crc64nvme: the
-- CRC64NVME of the completed object (S3's full-object checksum), recorded with
-- completed_etag so a finalize that resumes after the completion still knows
-- it. moc_files keeps the verified values.
ALTER TABLE upload_files
  ADD COLUMN declared_crc64nvme text,
  ADD COLUMN declared_sha256 text,
  ADD COLUMN completed_crc64nvme text;
ALTER TABLE moc_files
  ADD COLUMN checksum_crc64nvme text,
  ADD COLUMN checksum_sha256 text;

-- +goose Down
ALTER TABLE moc_files DROP COLUMN checksum_sha256, DROP COLUMN checksum_crc64nvme;
ALTER TABLE upload_files DROP COLUMN completed_crc64nvme, DROP COLUMN declared_sha256, DROP COLUMN declared_crc64nvme;
