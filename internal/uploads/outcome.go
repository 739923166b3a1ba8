package uploads

import (
	"context"
	"errors"
)

// Outcome is what became of a finalize, classified once (ClassifyFinalize)
// for everyone who answers for it: the HTTP API, the reconciler's conditions
// and the finalize metric each keep a table from Outcome to their own
// vocabulary, and a test fails when an Outcome has no row in one of them. A
// new kind of finalize failure is added here, in ClassifyFinalize, and as a
// row in each table.
type Outcome int

// The outcomes of a finalize. Each failure carries its error for the
// details an answer needs (missing parts, the suggested slug, …).
const (
	// OutcomeCreated: the MOC was committed by this call.
	OutcomeCreated Outcome = iota
	// OutcomeReplayed: the session was finalized before; its MOC.
	OutcomeReplayed
	// OutcomeInProgress: another finalize holds the lock (*InProgressError).
	OutcomeInProgress
	// OutcomeIncomplete: parts are missing (*IncompleteError).
	OutcomeIncomplete
	// OutcomeWrongPartSize: a direct session's part in S3 has the wrong
	// size (*PartSizeError).
	OutcomeWrongPartSize
	// OutcomeChecksumMismatch: a file is not the one declared
	// (*ChecksumMismatchError).
	OutcomeChecksumMismatch
	// OutcomeSlugConflict: the title's slug is taken (*SlugConflictError).
	OutcomeSlugConflict
	// OutcomeS3Unavailable: S3 failed after its retries (*S3Error).
	OutcomeS3Unavailable
	// OutcomeTimedOut: FINALIZE_TIMEOUT ran out (context.DeadlineExceeded);
	// what was completed is recorded.
	OutcomeTimedOut
	// OutcomeExpired: the session expired (ErrExpired).
	OutcomeExpired
	// OutcomeNotFound: no such session, or it is being deleted
	// (ErrSessionNotFound).
	OutcomeNotFound
	// OutcomeNotActive: the session is in a phase that cannot be finalized
	// (*NotActiveError).
	OutcomeNotActive
	// OutcomeUploadLost: an S3 upload is gone; the session fails
	// (*UploadLostError).
	OutcomeUploadLost
	// OutcomeInternal: anything else (the transaction, PostgreSQL).
	OutcomeInternal

	outcomeCount
)

// Outcomes lists every Outcome, for the tests that hold each table to it.
func Outcomes() []Outcome {
	out := make([]Outcome, outcomeCount)
	for i := range out {
		out[i] = Outcome(i)
	}
	return out
}

var outcomeNames = [outcomeCount]string{
	"created", "replayed", "in_progress", "incomplete", "wrong_part_size", "checksum_mismatch", "slug_conflict",
	"s3_unavailable", "timed_out", "expired", "not_found", "not_active", "upload_lost", "internal",
}

func (o Outcome) String() string {
	if o < 0 || o >= outcomeCount {
		return "unknown"
	}
	return outcomeNames[o]
}

// ClassifyFinalize says what a finalize's result and error mean. The order
// settles an error that wraps several: S3's failure before the deadline it
// ran into, the session's state before what a step found.
func ClassifyFinalize(res FinalizeResult, err error) Outcome {
	var (
		inProgress *InProgressError
		incomplete *IncompleteError
		wrongSize  *PartSizeError
		mismatch   *ChecksumMismatchError
		conflict   *SlugConflictError
		s3e        *S3Error
		notActive  *NotActiveError
		lost       *UploadLostError
	)
	switch {
	case err == nil && res.Created:
		return OutcomeCreated
	case err == nil:
		return OutcomeReplayed
	case errors.Is(err, ErrSessionNotFound):
		return OutcomeNotFound
	case errors.Is(err, ErrExpired):
		return OutcomeExpired
	case errors.As(err, &inProgress):
		return OutcomeInProgress
	case errors.As(err, &wrongSize):
		return OutcomeWrongPartSize
	case errors.As(err, &incomplete):
		return OutcomeIncomplete
	case errors.As(err, &mismatch):
		return OutcomeChecksumMismatch
	case errors.As(err, &conflict):
		return OutcomeSlugConflict
	case errors.As(err, &s3e):
		return OutcomeS3Unavailable
	case errors.Is(err, context.DeadlineExceeded):
		return OutcomeTimedOut
	case errors.As(err, &notActive):
		return OutcomeNotActive
	case errors.As(err, &lost):
		return OutcomeUploadLost
	}
	return OutcomeInternal
}
