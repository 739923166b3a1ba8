package uploads

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"

	"github.com/mocs-dev/upload-operator/internal/failpoint"
	"github.com/mocs-dev/upload-operator/internal/logging"
	"github.com/mocs-dev/upload-operator/internal/objectstore"
	"github.com/mocs-dev/upload-operator/internal/partbuf"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/store"
)

// Session reads a session; one that a delete has claimed is already not found.
func (s *Service) Session(ctx context.Context, id uuid.UUID) (store.Session, error) {
	sess, err := s.DB.GetSession(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && sess.Status == store.StatusDeleting) {
		return sess, ErrSessionNotFound
	}
	return sess, err
}

// File reads one file of a session (one row: this is on every part's path).
func (s *Service) File(ctx context.Context, sessionID, fileID uuid.UUID) (store.File, error) {
	f, err := s.DB.FileOf(ctx, sessionID, fileID)
	if errors.Is(err, store.ErrNotFound) {
		return f, ErrFileNotFound
	}
	return f, err
}

// CheckAcceptsParts answers whether a session takes parts now.
func (s *Service) CheckAcceptsParts(sess store.Session, f store.File) error {
	switch {
	case sess.Expired(s.Now()):
		return ErrExpired
	case sess.Status == store.StatusDeleting:
		return ErrSessionNotFound
	case sess.Status != store.StatusActive:
		return &NotActiveError{Status: sess.Status}
	case s.lockHeld(sess):
		return &NotActiveError{Status: store.StatusFinalizing}
	case f.CompletedETag != "" || f.S3UploadID == "":
		// Completed by an interrupted finalize (or never started): no more parts.
		return &NotActiveError{Status: sess.Status}
	}
	return nil
}

// PartUpload is one part on its way to S3.
type PartUpload struct {
	Session    store.Session
	File       store.File
	PartNumber int
	Body       io.Reader
	Size       int64
	Checksums  objectstore.Checksums
}

// PartError wraps a failure with where it happened, for the HTTP answer.
type PartError struct {
	Stage PartStage
	Err   error
}

// PartStage is where a part failed.
type PartStage string

// The stages of a part.
const (
	// StageRead: receiving the client's body.
	StageRead PartStage = "read"
	// StageS3: storing it in S3.
	StageS3 PartStage = "s3"
)

func (e *PartError) Error() string { return string(e.Stage) + ": " + e.Err.Error() }
func (e *PartError) Unwrap() error { return e.Err }

// StorePart registers the PUT, buffers the body (memory within the budget,
// else a spill file), uploads it to S3 with the SDK's retries, and records its
// ETag as the part's register. A part is acknowledged only if it will be in
// the finalized object, and a PUT that is not acknowledged changes nothing the
// session holds (ADR 0001, "Parts"): the PUT is registered before its first
// byte goes to S3 and writes a slot of its own (never the one holding the
// acknowledged version), and the record is written after S3 accepted the part
// and only while the session still takes parts (active, unexpired, no
// finalize lock), in one statement ordered with the finalize lock. A part that
// finishes after the session moved on is refused with what happened to it
// (ErrExpired, ErrSessionNotFound, NotActiveError); its bytes sit in a slot
// nothing points at.
func (s *Service) StorePart(ctx context.Context, p PartUpload) (store.Part, error) {
	start := time.Now()
	forward, checks, err := splitChecksums(p.Checksums)
	if err != nil {
		return store.Part{}, err
	}
	p.Checksums = forward
	if len(checks) > 0 {
		p.Body = &verifyingReader{r: p.Body, size: p.Size, checks: checks}
	}
	// The tenant's share of the part buffers bounds what its parts hold
	// (partbuf.Pool.OwnerShare): all ServiceAccounts of a namespace together.
	ctx = partbuf.WithOwner(ctx, session.TenantOf(p.Session.UserID))
	if !s.Buffers.OwnerHasRoom(ctx, p.Size) {
		// Refused before the registration: a tenant hammering past its share
		// costs PostgreSQL nothing.
		return store.Part{}, &PartError{Stage: StageRead, Err: partbuf.ErrOwnerShare}
	}
	w, ok, err := s.DB.BeginPartWrite(ctx, p.File.ID, p.PartNumber, s.StaleAfter(), writeLifetime(ctx))
	if errors.Is(err, store.ErrPartBusy) {
		return store.Part{}, &PartBusyError{InFlight: max(w.Slots-1, 1), RetryAfter: time.Second}
	}
	if err != nil {
		return store.Part{}, err
	}
	if !ok {
		return store.Part{}, s.refusal(ctx, p.Session.ID)
	}
	part, quarantine, err := s.storeRegistered(ctx, p, w, start)
	if err != nil {
		// The registration ends here unless the record already ended it.
		if eerr := s.DB.EndPartWrite(context.WithoutCancel(ctx), w.Token, quarantine); eerr != nil {
			logr.FromContextOrDiscard(ctx).Error(eerr, "could not end a part's registration; it lapses by itself",
				"sessionId", p.Session.ID.String(), "partNumber", p.PartNumber)
		}
	}
	return part, err
}

// PartQuarantine is how long the slot a PUT wrote is kept from other PUTs of
// the part once the PUT ended (unless the client's body was cut short, which S3
// cannot store): an SDK attempt of it that is still on its way can land there
// without replacing anything acknowledged, even after the register moved on to
// a later PUT's slot (hack/model/register.pml finds that without the
// quarantine). A new PUT takes a free slot first and a quarantined one only
// when none is free; an attempt that lands later still is caught by finalize,
// which completes a part only with the ETag its register names.
const PartQuarantine = 15 * time.Minute

// writeLifetime is how long a PUT's registration may live: its deadline (the
// part timeout) and a margin, after which a replica that died mid-PUT no
// longer holds the slot.
func writeLifetime(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return time.Until(d) + time.Minute
	}
	return PartQuarantine
}

// storeRegistered sends a registered PUT's bytes to its slot and records them.
// On failure it says how long the slot stays quarantined (0: no attempt can
// land, because the client's body never arrived whole or the upload is gone).
func (s *Service) storeRegistered(ctx context.Context, p PartUpload, w store.PartWrite, start time.Time) (store.Part, time.Duration, error) {
	buf, err := s.Buffers.Stream(ctx, p.Body, p.Size)
	if err != nil {
		return store.Part{}, 0, &PartError{Stage: StageRead, Err: err}
	}
	defer buf.Close()
	if err := failpoint.Inject("part/before-s3"); err != nil {
		return store.Part{}, 0, err
	}
	etag, err := s.uploadWhileReceiving(ctx, p, w.S3PartNumber, buf)
	if rerr := buf.Err(); rerr != nil {
		// The client's body failed: S3 cannot store a part it did not get
		// every byte of, whatever it did with those that arrived.
		return store.Part{}, 0, &PartError{Stage: StageRead, Err: rerr}
	}
	if err != nil {
		// The upload may have been completed or aborted while the part was on
		// its way (S3 then refuses it, or resets the connection): if the
		// session moved on, say what became of it rather than blame S3.
		why := s.whyRefused(ctx, p.Session.ID, err)
		var na *NotActiveError
		switch {
		case errors.Is(why, ErrSessionNotFound), errors.Is(why, ErrExpired), errors.As(why, &na):
			return store.Part{}, PartQuarantine, why
		case s.uploadGone(ctx, p.Session.ID, p.File, err):
			// The session is active but the file's upload is gone: an
			// interrupted finalize completed it, and it takes no more parts.
			return store.Part{}, 0, &NotActiveError{Status: store.StatusActive}
		}
		// Even a refusal at the last attempt leaves earlier attempts that may
		// still land: the slot is quarantined.
		return store.Part{}, PartQuarantine, &PartError{Stage: StageS3, Err: err}
	}
	log := logr.FromContextOrDiscard(ctx)
	if !objectstore.ETagShapeOK(etag, 0) {
		// Stored and returned as S3 gave it all the same: ETags are opaque.
		logging.Warn(log, "unexpected part ETag format from S3", "sessionId", p.Session.ID.String(),
			"fileId", p.File.ID.String(), "partNumber", p.PartNumber, "etag", etag, "expected", `"<32 hex digits>"`)
	}
	if err := failpoint.Inject("part/before-record"); err != nil {
		return store.Part{}, 0, err
	}
	ok, err := s.DB.RecordPart(ctx, w.Token, etag, p.Size, s.StaleAfter(), PartQuarantine)
	if err != nil {
		// Whether it committed is unknown; the bytes are in the PUT's own slot.
		return store.Part{}, PartQuarantine, err
	}
	if !ok {
		return store.Part{}, PartQuarantine, s.refusal(ctx, p.Session.ID)
	}
	log.Info("part uploaded", "sessionId", p.Session.ID.String(), "fileId", p.File.ID.String(),
		"partNumber", p.PartNumber, "s3PartNumber", w.S3PartNumber, "sizeBytes", p.Size, "etag", etag,
		"durationMs", time.Since(start).Milliseconds(), "spilled", buf.Spilled())
	return store.Part{FileID: p.File.ID, PartNumber: p.PartNumber, ETag: etag, SizeBytes: p.Size, S3PartNumber: w.S3PartNumber}, 0, nil
}

// uploadGone tells, after S3 refused or dropped a part, whether the file's
// multipart upload no longer exists. S3 may say so (NoSuchUpload), or answer
// before it has read the body and close the connection, which the client
// sees as a reset: then, if a finalize ever held the session's lock (only a
// finalize completes uploads), one small listing settles it. A session no
// finalize touched costs S3 nothing more when S3 itself is failing.
func (s *Service) uploadGone(ctx context.Context, sessionID uuid.UUID, f store.File, cause error) bool {
	if objectstore.IsNoSuchUpload(cause) {
		return true
	}
	if sess, err := s.DB.GetSession(ctx, sessionID); err != nil || !sess.FinalizeTried {
		return false
	}
	exists, err := s.S3.UploadExists(ctx, f.S3Key, f.S3UploadID) // within the part's own deadline
	return err == nil && !exists
}

// refusal says why a part was not registered or not recorded: what became of
// the session, or, when it still takes parts, that the file does not (an
// interrupted finalize completed it).
func (s *Service) refusal(ctx context.Context, id uuid.UUID) error {
	why := s.whyRefused(ctx, id, errPartRefused)
	if errors.Is(why, errStillAccepting) {
		return &NotActiveError{Status: store.StatusActive}
	}
	return why
}

// uploadWhileReceiving sends the part to S3 as its bytes arrive (the
// stream's reads wait for them). If the client's body fails, the S3 request
// is stopped at once rather than left waiting for bytes that will not come;
// S3 keeps no part from a request cut short.
func (s *Service) uploadWhileReceiving(ctx context.Context, p PartUpload, slot int, buf partbuf.Stream) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-buf.Received():
			if buf.Err() != nil {
				cancel()
			}
		case <-ctx.Done():
		}
	}()
	return s.S3.UploadPart(ctx, p.File.S3Key, p.File.S3UploadID, int32(slot), buf, p.Size, p.Checksums) //nolint:gosec // at most 10,000
}

var (
	errPartRefused    = errors.New("the session no longer takes parts")
	errStillAccepting = errors.New("the session still takes parts")
)

// whyRefused reads the session again to tell a part's sender what became of
// it: deleted (or being deleted), expired, or no longer active; or
// errStillAccepting when it still takes parts (the failure was S3's own).
func (s *Service) whyRefused(ctx context.Context, id uuid.UUID, cause error) error {
	sess, err := s.DB.GetSession(context.WithoutCancel(ctx), id)
	switch {
	case errors.Is(err, store.ErrNotFound), err == nil && sess.Status == store.StatusDeleting:
		return ErrSessionNotFound
	case err != nil:
		return fmt.Errorf("%w; reading the session: %w", cause, err)
	case sess.Expired(s.Now()):
		return ErrExpired
	case sess.Status == store.StatusActive && s.lockHeld(sess):
		return &NotActiveError{Status: store.StatusFinalizing}
	case sess.Status == store.StatusActive:
		return errStillAccepting
	}
	return &NotActiveError{Status: sess.Status}
}

// ExpectedPartSize is the length part n of f must have.
func ExpectedPartSize(sess store.Session, f store.File, n int) int64 {
	return session.ExpectedPartSize(f.SizeBytes, sess.PartSizeBytes, n)
}

// Received lists a session's files with the parts received for each (a
// client resumes from it): acknowledged PUTs, or for a direct session the
// parts S3 holds.
func (s *Service) Received(ctx context.Context, sess store.Session) ([]store.File, map[uuid.UUID][]store.Part, error) {
	files, err := s.DB.Files(ctx, sess.ID)
	if err != nil {
		return nil, nil, err
	}
	parts, _, err := s.partsOf(ctx, sess, files)
	if err != nil {
		return nil, nil, err
	}
	return files, parts, nil
}

// Progress sums the received parts of each file of sess (as the caller just
// read it): from PostgreSQL's registers, or for a direct session from S3's
// listing, where the parts land without passing through this service.
func (s *Service) Progress(ctx context.Context, sess store.Session) (map[uuid.UUID]store.FileProgress, error) {
	if sess.Transfer != store.TransferDirect {
		return s.DB.Progress(ctx, sess.ID)
	}
	files, err := s.DB.Files(ctx, sess.ID)
	if err != nil {
		return nil, err
	}
	// Progress may be a few seconds behind (the contract says so): a listing
	// a GET just made will do.
	parts, done, err := s.directParts(ctx, sess.ID, files, time.Now().Add(-progressStaleness))
	if err != nil {
		return nil, err
	}
	out := make(map[uuid.UUID]store.FileProgress, len(files))
	for _, f := range files {
		p := store.FileProgress{FileID: f.ID}
		if done[f.ID] {
			p.PartsReceived, p.BytesReceived = f.PartCount, f.SizeBytes
			out[f.ID] = p
			continue
		}
		for _, part := range parts[f.ID] {
			if part.SizeBytes == ExpectedPartSize(sess, f, part.PartNumber) {
				p.PartsReceived++
				p.BytesReceived += part.SizeBytes
			}
		}
		out[f.ID] = p
	}
	return out, nil
}

// progressStaleness is how old a direct session's listing may be for the
// status's progress.
const progressStaleness = 2 * time.Second

// MOC reads the MOC of a finalized session.
func (s *Service) MOC(ctx context.Context, id uuid.UUID) (store.MOC, error) {
	return s.DB.MOCBySession(ctx, id)
}

// ActivationTimeout bounds a session's activation by the upload API; a delete
// that finds no rows for a resource the API created waits twice as long for
// that activation to end before it lets the resource go.
const ActivationTimeout = 30 * time.Second
