package uploads

import (
	"errors"
	"fmt"
	"time"
)

// Outcomes of session operations that callers turn into answers (HTTP codes,
// conditions). Each carries what the answer needs.
var (
	ErrSessionNotFound = errors.New("session not found")
	ErrFileNotFound    = errors.New("file not found")
	ErrExpired         = errors.New("session expired")
	// ErrTooManyActive: the owner has as many unfinished sessions as allowed.
	ErrTooManyActive = errors.New("too many active sessions")
	// ErrBoundElsewhere: the session belongs to another resource or owner.
	ErrBoundElsewhere = errors.New("the session id belongs to another resource")
)

// NotActiveError: the session is in a phase that does not take this operation.
type NotActiveError struct{ Status string }

func (e *NotActiveError) Error() string { return "session is " + e.Status }

// InProgressError: another finalize holds a fresh lock.
type InProgressError struct{ RetryAfter time.Duration }

func (e *InProgressError) Error() string {
	return fmt.Sprintf("another finalize is in progress; retry after %s", e.RetryAfter)
}

// IncompleteError lists the missing part numbers by file id.
type IncompleteError struct{ Missing map[string][]int }

func (e *IncompleteError) Error() string { return fmt.Sprintf("parts missing: %v", e.Missing) }

// SlugConflictError: the title's slug is taken for the owner.
type SlugConflictError struct{ Slug, Suggested string }

func (e *SlugConflictError) Error() string {
	return fmt.Sprintf("slug %q is taken; %q is free", e.Slug, e.Suggested)
}

// S3Error: S3 could not be reached or kept failing after the retries.
type S3Error struct{ Err error }

func (e *S3Error) Error() string { return "S3 unavailable: " + e.Err.Error() }
func (e *S3Error) Unwrap() error { return e.Err }

// UploadLostError: an S3 multipart upload of the session no longer exists and
// its object was never completed: the session cannot be finalized.
type UploadLostError struct{ FileID, Key string }

func (e *UploadLostError) Error() string {
	return fmt.Sprintf("S3 multipart upload of file %s (%s) is gone", e.FileID, e.Key)
}

// InternalError: the finalize transaction failed (rolled back).
type InternalError struct{ Err error }

func (e *InternalError) Error() string { return "finalize transaction failed: " + e.Err.Error() }
func (e *InternalError) Unwrap() error { return e.Err }

// ErrWrongTransfer: the operation belongs to the other transfer mode (a part
// PUT to a direct session, a part URL asked of a proxied one).
var ErrWrongTransfer = errors.New("the session uses the other transfer mode")

// PartSizeError: a part S3 holds has the wrong size (a direct session's
// client sent other bytes than the part's size).
type PartSizeError struct {
	FileID         string
	PartNumber     int
	Expected, Size int64
}

func (e *PartSizeError) Error() string {
	return fmt.Sprintf("part %d of file %s has %d bytes, expected %d", e.PartNumber, e.FileID, e.Size, e.Expected)
}

// PartBusyError: as many PUTs of the part are in flight as it has slots for
// (session.SlotsPerPart, less the acknowledged one); one must end first.
type PartBusyError struct {
	InFlight   int
	RetryAfter time.Duration
}

func (e *PartBusyError) Error() string {
	return fmt.Sprintf("%d PUTs of this part are in flight already; retry after %s", e.InFlight, e.RetryAfter)
}

// ChecksumMismatchError: a file's bytes do not match the whole-file checksum
// declared for it. Nothing is committed and the session stays active. For a
// CRC64NVME the parts are still open: the client re-sends the wrong ones
// (ResendAll false). A SHA-256 can only be read from the completed object, so
// on a mismatch the file starts over with an empty upload and every part of
// it must be sent again (ResendAll true).
type ChecksumMismatchError struct {
	FileID, Algorithm, Expected, Actual string
	ResendAll                           bool
}

func (e *ChecksumMismatchError) Error() string {
	return fmt.Sprintf("file %s: its %s is %s, not the %s declared", e.FileID, e.Algorithm, e.Actual, e.Expected)
}
