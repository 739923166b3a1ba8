// Package uploads is the upload engine: the operations on a session that both
// the HTTP server and the reconciler perform (activate, abort; parts and
// finalize), written once against the store and object-store adapters.
package uploads

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/utils/clock"

	"github.com/go-logr/logr"
	"github.com/google/uuid"

	"github.com/mocs-dev/upload-operator/internal/failpoint"
	"github.com/mocs-dev/upload-operator/internal/objectstore"
	"github.com/mocs-dev/upload-operator/internal/partbuf"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/store"
)

// Service performs session operations.
type Service struct {
	DB     *store.Store
	S3     *objectstore.Store
	Limits session.Limits
	// SessionTTL is how long a new session may take to be finalized.
	SessionTTL time.Duration
	// StaleLockAfter is how long a finalize lock may go without renewal
	// before it may be taken over; its age is measured on PostgreSQL's clock.
	StaleLockAfter time.Duration
	// Buffers holds parts between client and S3 within the memory budget.
	Buffers *partbuf.Pool
	// Clock tells expiry, ages and cutoffs (nil: the real clock); tests step
	// a fake one (Now). Finalize locks are judged on PostgreSQL's clock instead, so
	// replicas' clocks cannot skew them.
	Clock clock.PassiveClock
	// PartURLTTL is how long a direct session's presigned part URL is valid
	// (0 or more than session.MaxPartURLTTL: that).
	PartURLTTL time.Duration
	// UploadStepTimeout bounds one file's activation step (0: the default).
	UploadStepTimeout time.Duration
	// listings shares direct sessions' S3 listings between callers.
	listings listings
}

// Request describes a session to activate.
type Request struct {
	SessionID     uuid.UUID
	Owner         string
	Files         []session.File
	PartSizeBytes *int64
	// Transfer is store.TransferProxy (also when empty) or store.TransferDirect.
	Transfer string
	// Namespace, Name and UID of the session's custom resource: the session
	// is bound to it, and to Owner.
	Namespace, Name, UID string
	// MaxActive, when set, refuses the session (ErrTooManyActive) if its owner
	// already has this many sessions not finalized, expired or failed.
	MaxActive int
}

// ValidationError lists what is wrong with a request.
type ValidationError struct{ Details []session.FieldError }

func (e *ValidationError) Error() string {
	return fmt.Sprintf("invalid session: %v", e.Details)
}

// Validate checks a request and returns the part size it gets.
func (s *Service) Validate(req Request) (int64, error) {
	details := session.ValidateFiles(req.Files, s.Limits)
	if len(details) == 1 && details[0].Field == "files" && len(req.Files) > 0 {
		return 0, &ValidationError{Details: details} // too many files: nothing else was looked at
	}
	partSize, err := session.ChoosePartSize(req.PartSizeBytes, session.LargestFile(req.Files), s.Limits.PartSizeLimit())
	if err != nil {
		details = append(details, session.FieldError{Field: "partSizeBytes", Message: err.Error()})
	}
	if req.Owner == "" {
		details = append(details, session.FieldError{Field: "owner", Message: "is required"})
	}
	if req.Transfer != "" && req.Transfer != store.TransferProxy && req.Transfer != store.TransferDirect {
		details = append(details, session.FieldError{Field: "transfer", Message: `must be "proxy" or "direct"`})
	}
	if req.Transfer == store.TransferDirect && (s.S3 == nil || !s.S3.PresignSecure()) {
		for i, f := range req.Files {
			if session.NormalizeChecksum(f.Checksum) != nil {
				// Such a file's upload is checked as a whole and takes no
				// part checksum but a CRC64NVME, while part URLs to plain
				// http:// S3 need a SHA-256 to keep a part from being changed
				// on the way.
				details = append(details, session.FieldError{Field: fmt.Sprintf("files[%d].checksum", i),
					Message: "whole-file checksums on a direct session need part URLs over https:// (S3_PRESIGN_ENDPOINT)"})
			}
		}
	}
	if len(details) > 0 {
		return 0, &ValidationError{Details: details}
	}
	return partSize, nil
}

// Active is an activated session: its row and its files with their uploads.
type Active struct {
	Session store.Session
	Files   []store.File
}

// Activate makes a session usable: its rows exist and every file has an S3
// multipart upload, created eagerly. It is idempotent and safe to re-run after
// a crash at any point: rows are inserted only if absent, file ids are derived
// from the session id, and an upload id is recorded only if none is, so a
// racing activation aborts its surplus upload. An upload created but never
// recorded (a crash in between) stays under the session's prefix, where
// AbortAll finds it on expiry or delete.
func (s *Service) Activate(ctx context.Context, req Request) (Active, error) {
	partSize, err := s.Validate(req)
	if err != nil {
		return Active{}, err
	}
	files := make([]store.File, len(req.Files))
	for i, f := range req.Files {
		id := session.FileID(req.SessionID, i)
		count := session.PartCount(f.SizeBytes, partSize)
		files[i] = store.File{
			ID: id, SessionID: req.SessionID, Ordinal: i, Name: f.Name, ContentType: session.MediaType(f.ContentType),
			SizeBytes: f.SizeBytes, PartCount: count, S3Key: session.ObjectKey(req.SessionID, id, f.Name),
			SlotsPerPart: session.SlotsPerPart(count),
		}
		if c := session.NormalizeChecksum(f.Checksum); c != nil {
			files[i].DeclaredCRC64NVME, files[i].DeclaredSHA256 = c.CRC64NVME, c.SHA256
		}
		if req.Transfer == store.TransferDirect {
			// A direct session's client writes S3 part number n itself.
			files[i].SlotsPerPart = 1
		}
	}
	sess, err := s.DB.EnsureSession(ctx, store.Session{
		ID: req.SessionID, UserID: req.Owner, PartSizeBytes: partSize,
		ExpiresAt: s.Now().Add(s.SessionTTL), Namespace: req.Namespace, Name: req.Name, UID: req.UID,
		Transfer: req.Transfer,
	}, files, req.MaxActive)
	if errors.Is(err, store.ErrTooManyActive) {
		return Active{}, ErrTooManyActive
	}
	if err != nil {
		return Active{}, err
	}
	if err := checkBinding(sess, req.Ref()); err != nil {
		return Active{}, err
	}
	switch sess.Status {
	case store.StatusPending:
	case store.StatusDeleting:
		return Active{}, ErrSessionNotFound
	default:
		return s.load(ctx, sess)
	}
	stored, err := s.DB.Files(ctx, req.SessionID)
	if err != nil {
		return Active{}, err
	}
	for _, f := range stored {
		if f.S3UploadID != "" {
			continue
		}
		if err := s.createUpload(ctx, f, sess.Transfer != store.TransferDirect || f.Declared()); err != nil {
			return Active{}, err
		}
	}
	// Only a session with every upload recorded becomes active: a record
	// that did not commit leaves a file without one, for the next attempt.
	if stored, err = s.DB.Files(ctx, req.SessionID); err != nil {
		return Active{}, err
	}
	for _, f := range stored {
		if f.S3UploadID == "" {
			if gone, err := s.claimedForDelete(ctx, req.SessionID); err != nil || gone {
				return Active{}, cmp.Or(err, ErrSessionNotFound)
			}
			return Active{}, fmt.Errorf("activate session %s: the upload of file %s was not recorded; try again", req.SessionID, f.ID)
		}
	}
	if _, err := s.DB.Activate(ctx, req.SessionID); err != nil {
		return Active{}, err
	}
	sess, err = s.DB.GetSession(ctx, req.SessionID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Active{}, ErrSessionNotFound
	case err != nil:
		return Active{}, err
	case sess.Status == store.StatusDeleting, sess.Status == store.StatusPending:
		// A delete claimed it while the uploads were being created.
		return Active{}, ErrSessionNotFound
	}
	return s.load(ctx, sess)
}

// claimedForDelete reports whether a delete claimed (or removed) the session.
func (s *Service) claimedForDelete(ctx context.Context, id uuid.UUID) (bool, error) {
	sess, err := s.DB.GetSession(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return true, nil
	}
	return err == nil && sess.Status == store.StatusDeleting, err
}

// createUpload creates a file's S3 multipart upload and records its id; an
// upload that is not the recorded one is aborted. When the record's outcome is
// unknown (the UPDATE may have committed and only its reply been lost), what
// is recorded is read back before anything is aborted: aborting the recorded
// upload would leave the session pointing at nothing.
//
// A proxied file's upload is created for a full-object CRC64NVME: S3 computes
// each part's and checks the whole file's at completion (finalize combines
// them first, to name a mismatch). So is a direct session's file with a
// declared checksum (its part URLs then take only a CRC64NVME); other direct
// files' are not: their clients sign part URLs for checksums of their own,
// which such an upload refuses.
func (s *Service) createUpload(ctx context.Context, f store.File, wholeFileCRC bool) error {
	// Once S3 may have created the upload, finish recording or aborting it even
	// if the caller gives up (a reconcile cut short by shutdown, a client gone):
	// an upload whose id nobody learned is left for the orphan sweep. Each call
	// is bounded by its own deadline, and the whole step by UploadStepTimeout.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cmp.Or(s.UploadStepTimeout, DefaultUploadStepTimeout))
	defer cancel()
	create := s.S3.CreateMultipartUpload
	if wholeFileCRC {
		create = s.S3.CreateCheckedMultipartUpload
	}
	uploadID, err := create(ctx, f.S3Key, session.MediaType(f.ContentType), session.ContentDisposition(f.Name))
	if err != nil {
		return &S3Error{Err: err}
	}
	if err := failpoint.Inject("activate/before-record-upload"); err != nil {
		return err
	}
	won, err := s.DB.SetUploadID(ctx, f.ID, uploadID)
	if err != nil {
		recorded, rerr := s.recordedUploadID(ctx, f.ID)
		if rerr != nil {
			// Still unknown: keep the upload. If it is surplus it lives under
			// the session's prefix, where expiry and delete abort it.
			return fmt.Errorf("%w (and reading it back: %w)", err, rerr)
		}
		won = recorded == uploadID
	}
	if !won {
		// Another activation recorded its upload first, or a delete claimed
		// the session: this one is surplus.
		if err := s.S3.AbortMultipartUpload(context.WithoutCancel(ctx), f.S3Key, uploadID); err != nil {
			logr.FromContextOrDiscard(ctx).Error(err, "could not abort a surplus multipart upload; the session's expiry or delete will",
				"key", f.S3Key)
		}
	}
	return nil
}

// DefaultUploadStepTimeout bounds one file's activation step (create the S3
// upload, record its id or abort it) unless Service.UploadStepTimeout says
// otherwise; the orphan sweep's minimum age must exceed it.
const DefaultUploadStepTimeout = 2 * time.Minute

// SweepOrphanedUploads aborts the multipart uploads under the sessions'
// prefix that no session may use any more: not recorded for a file of a
// pending, active or finalizing session. They come from activations that
// never learned or never recorded their upload's id (a process killed between
// S3's create and the record, a create whose reply was lost) and from
// activations still creating when their session was finalized, expired or
// deleted. Uploads initiated less than minAge ago are left alone: their
// creator may be about to record them, so minAge must exceed the longest
// activation step (the S3 call and the record, with their retries).
func (s *Service) SweepOrphanedUploads(ctx context.Context, log logr.Logger, minAge time.Duration) (int, error) {
	ups, err := s.S3.ListMultipartUploads(ctx, session.SessionsPrefix)
	if err != nil {
		return 0, &S3Error{Err: err}
	}
	cutoff := s.Now().Add(-minAge)
	var old []objectstore.Upload
	var keys, ids []string
	for _, u := range ups {
		if u.Initiated.Before(cutoff) {
			old = append(old, u)
			keys, ids = append(keys, u.Key), append(ids, u.UploadID)
		}
	}
	if len(old) == 0 {
		return 0, nil
	}
	live, err := s.DB.LiveUploads(ctx, keys, ids)
	if err != nil {
		return 0, err
	}
	aborted := 0
	for _, u := range old {
		if live[u.Key+" "+u.UploadID] {
			continue
		}
		if err := s.S3.AbortMultipartUpload(ctx, u.Key, u.UploadID); err != nil {
			return aborted, &S3Error{Err: err}
		}
		aborted++
		log.Info("aborted an orphaned multipart upload", "key", u.Key, "uploadId", u.UploadID,
			"initiated", u.Initiated.UTC().Format(time.RFC3339))
	}
	return aborted, nil
}

// recordedUploadID reads a file's recorded upload id, retrying while
// PostgreSQL does not answer, until ctx ends.
func (s *Service) recordedUploadID(ctx context.Context, fileID uuid.UUID) (string, error) {
	for {
		id, err := s.DB.RecordedUploadID(ctx, fileID)
		if err == nil {
			return id, nil
		}
		select {
		case <-ctx.Done():
			return "", err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ActiveSessions counts an owner's sessions that are not finalized, expired
// or failed.
func (s *Service) ActiveSessions(ctx context.Context, owner string) (int, error) {
	return s.DB.ActiveSessions(ctx, owner)
}

// Ref is the resource a request comes from.
func (r Request) Ref() ResourceRef {
	return ResourceRef{Namespace: r.Namespace, Name: r.Name, UID: r.UID, Owner: r.Owner}
}

// ResourceRef names the resource (and owner) a session is bound to.
type ResourceRef struct{ Namespace, Name, UID, Owner string }

// CheckBinding reports ErrBoundElsewhere when the session's row exists and is
// bound to another resource or owner than ref: a resource whose session-id
// label was copied from someone else's session. Nothing may then be done to
// the session on that resource's behalf. A session without a row is bound to
// no one yet.
func (s *Service) CheckBinding(ctx context.Context, id uuid.UUID, ref ResourceRef) error {
	sess, err := s.DB.GetSession(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return checkBinding(sess, ref)
}

func checkBinding(sess store.Session, ref ResourceRef) error {
	if sess.UserID == ref.Owner && sess.Namespace == ref.Namespace && sess.Name == ref.Name &&
		(sess.UID == ref.UID || sess.UID == "") {
		return nil
	}
	return ErrBoundElsewhere
}

func (s *Service) load(ctx context.Context, sess store.Session) (Active, error) {
	files, err := s.DB.Files(ctx, sess.ID)
	if err != nil {
		return Active{}, err
	}
	return Active{Session: sess, Files: files}, nil
}

// Discard removes a session that will never be finalized: it claims the
// session in PostgreSQL (from then on no finalize can take the lock and no
// part is acknowledged), aborts every S3 multipart upload and deletes every
// object under the session's prefix, then removes its rows, so it reads as not
// found. A finalized session is left alone: its MOC rows and objects stay. A
// finalize holding a live lock is waited for: Discard answers InProgressError
// and the caller comes back.
func (s *Service) Discard(ctx context.Context, log logr.Logger, sessionID uuid.UUID) error {
	claim, err := s.DB.ClaimForDelete(ctx, sessionID, s.StaleAfter())
	if err != nil {
		return err
	}
	switch claim {
	case store.ClaimFinalized:
		return nil
	case store.ClaimLocked:
		return &InProgressError{RetryAfter: lockPoll}
	}
	if err := failpoint.Inject("discard/after-claim"); err != nil {
		return err
	}
	if err := s.removeHeld(ctx, log, sessionID); err != nil {
		return err
	}
	if claim == store.ClaimGone {
		return nil
	}
	return s.DB.DeleteClaimedSession(ctx, sessionID)
}

// removeHeld aborts the S3 multipart uploads and deletes the objects of a
// session that will never be finalized: nothing references what is under its
// prefix (objects that an interrupted or refused finalize completed included).
// Both steps are idempotent, so an interrupted removal is finished by the next.
func (s *Service) removeHeld(ctx context.Context, log logr.Logger, sessionID uuid.UUID) error {
	prefix := session.SessionPrefix(sessionID)
	aborted, err := s.S3.AbortAll(ctx, prefix)
	if err != nil {
		return &S3Error{Err: err}
	}
	deleted, err := s.S3.DeleteObjects(ctx, prefix)
	if err != nil {
		return &S3Error{Err: err}
	}
	if aborted > 0 || deleted > 0 {
		log.Info("removed what the session held in S3", "sessionId", sessionID.String(),
			"abortedUploads", aborted, "deletedObjects", deleted)
	}
	return nil
}

// Expire aborts the S3 uploads and deletes the objects of a session past its
// expiresAt (on PostgreSQL's clock) and marks it expired; its rows stay, so GET
// answers 410 rather than 404. false means it could not be expired now (not
// due on PostgreSQL's clock, finalized, or a finalize holds a live lock: the
// caller comes back). The removal is recorded as pending with the status
// change and cleared once done, so one cut off is finished by FinishRemoval.
func (s *Service) Expire(ctx context.Context, log logr.Logger, sessionID uuid.UUID) (bool, error) {
	if _, err := s.DB.Expire(ctx, sessionID, s.StaleAfter()); err != nil {
		return false, err
	}
	sess, err := s.DB.GetSession(ctx, sessionID)
	if err != nil || sess.Status != store.StatusExpired {
		return false, err
	}
	if err := s.FinishRemoval(ctx, log, sess); err != nil {
		return true, err
	}
	log.Info("session expired; what it held in S3 removed", "sessionId", sessionID.String())
	return true, nil
}

// FinishRemoval removes what a failed or expired session (as just read) still
// holds in S3 when its removal is pending, and records it done. Removal is
// idempotent, so one cut off anywhere (S3 down, the replica killed after the
// status change, a lost reply) is finished by the next call: the reconciler's
// for the session's resource, or the leader's sweep (FinishRemovals).
func (s *Service) FinishRemoval(ctx context.Context, log logr.Logger, sess store.Session) error {
	if !sess.RemovalPending || (sess.Status != store.StatusFailed && sess.Status != store.StatusExpired) {
		return nil
	}
	if err := failpoint.Inject("removal/before-s3"); err != nil {
		return err
	}
	if err := s.removeHeld(ctx, log, sess.ID); err != nil {
		return err
	}
	return s.DB.RemovalDone(ctx, sess.ID)
}

// BoundUnfinalized lists up to limit sessions that are not finalized, are
// bound to a resource in one of namespaces (nil: any) and are older than
// olderThan: those the leader checks for a resource that is gone.
func (s *Service) BoundUnfinalized(ctx context.Context, olderThan time.Duration, namespaces []string, limit int) ([]store.ResourceRef, error) {
	return s.DB.BoundUnfinalized(ctx, olderThan, namespaces, limit)
}

// FinishRemovals finishes up to limit pending removals (FinishRemoval) of
// sessions whose resource may be gone; it returns how many it finished.
func (s *Service) FinishRemovals(ctx context.Context, log logr.Logger, limit int) (int, error) {
	ids, err := s.DB.PendingRemovals(ctx, limit)
	if err != nil {
		return 0, err
	}
	done := 0
	for _, id := range ids {
		sess, err := s.DB.GetSession(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return done, err
		}
		if err := s.FinishRemoval(ctx, log, sess); err != nil {
			return done, err
		}
		done++
	}
	return done, nil
}

// SweepOrphanedObjects deletes the objects under the sessions' prefix that
// belong to no session that may still use them: a session with no row (its
// delete removed the rows; a completion still on its way landed after), or
// one that failed or expired (an object completed after its removal). Objects
// younger than minAge are left alone: a finalize may be about to record them;
// so are those of sessions keep names (a resource reports them Finalized,
// whatever PostgreSQL lost). It lists one prefix per session ever finalized
// too, so it costs a listing request per thousand sessions per sweep.
func (s *Service) SweepOrphanedObjects(ctx context.Context, log logr.Logger, minAge time.Duration, keep map[uuid.UUID]bool) (int, error) {
	prefixes, err := s.S3.ListPrefixes(ctx, session.SessionsPrefix)
	if err != nil {
		return 0, &S3Error{Err: err}
	}
	cutoff := s.Now().Add(-minAge)
	deleted := 0
	for batch := range slices.Chunk(prefixes, 1000) {
		ids := make([]uuid.UUID, 0, len(batch))
		for _, p := range batch {
			if id, err := uuid.Parse(strings.TrimSuffix(strings.TrimPrefix(p, session.SessionsPrefix), "/")); err == nil {
				ids = append(ids, id)
			}
		}
		statuses, err := s.DB.Statuses(ctx, ids)
		if err != nil {
			return deleted, err
		}
		for _, id := range ids {
			if st, ok := statuses[id]; ok && st != store.StatusFailed && st != store.StatusExpired || keep[id] {
				continue
			}
			objs, err := s.S3.ListObjectInfos(ctx, session.SessionPrefix(id))
			if err != nil {
				return deleted, &S3Error{Err: err}
			}
			for _, o := range objs {
				if !o.LastModified.Before(cutoff) {
					continue
				}
				if err := s.S3.DeleteObject(ctx, o.Key); err != nil {
					return deleted, &S3Error{Err: err}
				}
				deleted++
				log.Info("deleted an orphaned object", "key", o.Key, "sessionId", id.String(), "sessionStatus", statuses[id],
					"lastModified", o.LastModified.UTC().Format(time.RFC3339))
			}
		}
	}
	return deleted, nil
}

// Now is the session clock: expiry, ages and cutoffs as replicas see them
// (Clock; the real clock when nil), the one the reconciler, the sweep and the
// upload API ask. Where replicas must agree, PostgreSQL's clock judges instead
// (store.Session's PastExpiry and LockAge). Deadlines and durations are
// measured on the process's monotonic clock (time.Now), never on this one.
func (s *Service) Now() time.Time {
	if s.Clock != nil {
		return s.Clock.Now()
	}
	return time.Now()
}
