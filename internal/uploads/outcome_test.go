package uploads

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// Each kind of finalize failure is one Outcome, however it is wrapped, and
// the finalize metric has a label for every Outcome.
func TestClassifyFinalize(t *testing.T) {
	t.Parallel()
	wrap := func(err error) error { return fmt.Errorf("finalize: %w", err) }
	for _, tc := range []struct {
		res  FinalizeResult
		err  error
		want Outcome
	}{
		{FinalizeResult{Created: true}, nil, OutcomeCreated},
		{FinalizeResult{}, nil, OutcomeReplayed},
		{FinalizeResult{}, wrap(&InProgressError{RetryAfter: time.Second}), OutcomeInProgress},
		{FinalizeResult{}, &IncompleteError{Missing: map[string][]int{"f": {1}}}, OutcomeIncomplete},
		{FinalizeResult{}, &PartSizeError{FileID: "f"}, OutcomeWrongPartSize},
		{FinalizeResult{}, wrap(&ChecksumMismatchError{FileID: "f"}), OutcomeChecksumMismatch},
		{FinalizeResult{}, &SlugConflictError{Slug: "s"}, OutcomeSlugConflict},
		{FinalizeResult{}, &S3Error{Err: context.DeadlineExceeded}, OutcomeS3Unavailable},
		{FinalizeResult{}, &InternalError{Err: context.DeadlineExceeded}, OutcomeTimedOut},
		{FinalizeResult{}, wrap(ErrExpired), OutcomeExpired},
		{FinalizeResult{}, ErrSessionNotFound, OutcomeNotFound},
		{FinalizeResult{}, &NotActiveError{Status: "failed"}, OutcomeNotActive},
		{FinalizeResult{}, &UploadLostError{FileID: "f"}, OutcomeUploadLost},
		{FinalizeResult{}, errors.New("the transaction failed"), OutcomeInternal},
	} {
		if got := ClassifyFinalize(tc.res, tc.err); got != tc.want {
			t.Errorf("ClassifyFinalize(%+v, %v) = %s, want %s", tc.res, tc.err, got, tc.want)
		}
	}
	for _, o := range Outcomes() {
		if _, ok := finalizeLabels[o]; !ok || o.String() == "unknown" {
			t.Errorf("outcome %d (%s) has no finalize metric label or no name", o, o)
		}
	}
}
