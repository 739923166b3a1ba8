package uploads

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"

	"github.com/mocs-dev/upload-operator/internal/failpoint"
	"github.com/mocs-dev/upload-operator/internal/logging"
	"github.com/mocs-dev/upload-operator/internal/metrics"
	"github.com/mocs-dev/upload-operator/internal/objectstore"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/store"
)

// MaxTxAttempts bounds the finalize transaction: a serialization failure
// (40001) or deadlock (40P01) is retried, and the third failure answers 500.
const MaxTxAttempts = 3

// FinalizeRequest asks for a session to become a MOC.
type FinalizeRequest struct {
	SessionID   uuid.UUID
	Title       string
	Description string
	// Resume finishes a taken-over finalize with the title and description its
	// first holder stored (the reconciler's path after a crash).
	Resume bool
}

// FinalizeResult is the MOC; Created is false for a replay.
type FinalizeResult struct {
	MOC      store.MOC
	Created  bool
	TookOver bool
}

// Finalize turns a complete session into exactly one MOC (ADR 0001):
// take the lock, check completeness against S3, check the slug, complete each
// S3 multipart upload (recording each), then commit moc_instructions,
// moc_files and upload_sessions in one READ COMMITTED transaction. Every step
// is idempotent, so a finalize interrupted anywhere is finished by the next one
// once the lock is stale.
func (s *Service) Finalize(ctx context.Context, req FinalizeRequest) (res0 FinalizeResult, err error) {
	defer func() { metrics.Finalizes.WithLabelValues(outcome(res0, err)).Inc() }()
	start := s.Now()
	log := logr.FromContextOrDiscard(ctx).WithValues("sessionId", req.SessionID.String())
	sess, err := s.DB.GetSession(ctx, req.SessionID)
	if errors.Is(err, store.ErrNotFound) {
		return FinalizeResult{}, ErrSessionNotFound
	}
	if err != nil {
		return FinalizeResult{}, &InternalError{Err: err}
	}
	if sess.FinalizedAt != nil {
		return s.replay(ctx, req.SessionID)
	}
	if err := s.checkFinalizable(sess); err != nil {
		return FinalizeResult{}, err
	}
	if req.Resume {
		if req.Title, req.Description, err = s.DB.FinalizeRequest(ctx, req.SessionID); err != nil {
			return FinalizeResult{}, &InternalError{Err: err}
		}
		if req.Title == "" {
			return FinalizeResult{}, &NotActiveError{Status: sess.Status}
		}
	}

	now := s.Now()
	lock, err := s.DB.TryLock(ctx, req.SessionID, now, now.Add(-s.StaleAfter()), req.Title, req.Description)
	if err != nil {
		return FinalizeResult{}, &InternalError{Err: err}
	}
	if !lock.Acquired {
		return s.notLocked(ctx, lock)
	}
	res := FinalizeResult{TookOver: lock.Previous != nil}
	if lock.Previous != nil {
		metrics.StaleLockRecoveries.Inc()
		logging.Warn(log, "stale lock recovered", "previousLockAt", lock.Previous.UTC().Format(time.RFC3339Nano),
			"lockAgeMs", now.Sub(*lock.Previous).Milliseconds(), "staleLockAfter", s.StaleAfter().String())
	}
	committed := false
	defer func() {
		// An injected failure stands for a crash: the process is gone and its
		// lock stays until it is stale, exactly what the recovery path handles.
		if !committed && !errors.Is(err, failpoint.ErrInjected) {
			s.releaseLock(ctx, log, req.SessionID, lock.Token)
		}
	}()
	if err := failpoint.Inject("finalize/after-lock"); err != nil {
		return res, &InternalError{Err: err}
	}

	files, err := s.DB.Files(ctx, req.SessionID)
	if err != nil {
		return res, &InternalError{Err: err}
	}
	s3Start := s.Now()
	plans, err := s.planCompletion(ctx, log, sess, files)
	if err != nil {
		return res, err
	}
	s3Time := s.Now().Sub(s3Start)
	slug := session.Slug(req.Title)
	if err := s.checkSlug(ctx, sess.UserID, req.Title, slug); err != nil {
		return res, err
	}
	completeStart := s.Now()
	if err := s.completeUploads(ctx, log, plans); err != nil {
		return res, err
	}
	s3Time += s.Now().Sub(completeStart)

	moc := store.MOC{
		ID: uuid.NewSHA1(req.SessionID, []byte("moc")), UserID: sess.UserID, UploadSessionID: req.SessionID,
		Title: req.Title, Slug: slug, Description: req.Description,
	}
	var total int64
	for _, p := range plans {
		moc.Files = append(moc.Files, store.MOCFile{
			ID: uuid.NewSHA1(p.file.ID, []byte("moc-file")), FileID: p.file.ID, Name: p.file.Name,
			ContentType: p.file.ContentType, S3Key: p.file.S3Key, SizeBytes: p.file.SizeBytes, ETag: p.file.CompletedETag,
		})
		total += p.file.SizeBytes
	}
	txStart := s.Now()
	if err := s.commit(ctx, log, moc, lock.Token); err != nil {
		if errors.Is(err, store.ErrAlreadyFinalized) {
			committed = true
			return s.replay(ctx, req.SessionID)
		}
		if errors.Is(err, store.ErrSlugTaken) {
			return res, s.slugConflict(ctx, sess.UserID, req.Title, slug)
		}
		if errors.Is(err, store.ErrLockLost) {
			committed = true // the new holder owns the lock now
			return res, &InProgressError{RetryAfter: time.Second}
		}
		return res, err
	}
	committed = true
	if err := failpoint.Inject("finalize/after-commit"); err != nil {
		return res, &InternalError{Err: err}
	}
	log.Info("finalize succeeded", "mocId", moc.ID.String(), "slug", slug, "fileCount", len(moc.Files),
		"totalSizeBytes", total, "durationMs", s.Now().Sub(start).Milliseconds(), "tookOverStaleLock", res.TookOver,
		"s3Ms", float64(s3Time.Microseconds())/1000, "txMs", float64(s.Now().Sub(txStart).Microseconds())/1000)
	res.MOC, res.Created = moc, true
	return res, nil
}

// StaleAfter is how old a finalize lock must be to be taken over
// (StaleLockAfter, or the default when unset).
func (s *Service) StaleAfter() time.Duration {
	if s.StaleLockAfter > 0 {
		return s.StaleLockAfter
	}
	return session.DefaultStaleLockAfter
}

// checkFinalizable answers for sessions that cannot be finalized at all.
func (s *Service) checkFinalizable(sess store.Session) error {
	switch {
	case sess.Status == store.StatusExpired:
		return ErrExpired
	case sess.Status == store.StatusActive && s.Now().After(sess.ExpiresAt):
		return ErrExpired
	case sess.Status != store.StatusActive && sess.Status != store.StatusFinalizing:
		return &NotActiveError{Status: sess.Status}
	}
	return nil
}

// notLocked explains why the lock was not acquired.
func (s *Service) notLocked(ctx context.Context, lock store.Lock) (FinalizeResult, error) {
	sess := lock.Session
	switch {
	case sess.FinalizedAt != nil:
		return s.replay(ctx, sess.ID)
	case sess.FinalizingAt != nil:
		wait := sess.FinalizingAt.Add(s.StaleAfter()).Sub(s.Now())
		return FinalizeResult{}, &InProgressError{RetryAfter: max(wait, time.Second)}
	default:
		if err := s.checkFinalizable(sess); err != nil {
			return FinalizeResult{}, err
		}
		return FinalizeResult{}, &NotActiveError{Status: sess.Status}
	}
}

func (s *Service) replay(ctx context.Context, id uuid.UUID) (FinalizeResult, error) {
	moc, err := s.DB.MOCBySession(ctx, id)
	if err != nil {
		return FinalizeResult{}, &InternalError{Err: err}
	}
	return FinalizeResult{MOC: moc}, nil
}

// releaseLock gives the lock back after a failed finalize. When PostgreSQL is
// unreachable it keeps trying in the background until it is back (or the lock
// would be stale anyway), so clients are not locked out for STALE_LOCK_AFTER.
func (s *Service) releaseLock(ctx context.Context, log logr.Logger, id uuid.UUID, token time.Time) {
	ctx = context.WithoutCancel(ctx)
	try := func() bool {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := s.DB.ReleaseLock(c, id, token)
		return err == nil
	}
	if try() {
		return
	}
	logging.Warn(log, "could not release finalize lock; retrying until PostgreSQL is back")
	go func() {
		deadline := token.Add(s.StaleAfter())
		for s.Now().Before(deadline) {
			time.Sleep(time.Second)
			if try() {
				log.Info("finalize lock released after PostgreSQL came back")
				return
			}
		}
	}()
}

// filePlan is a file and the parts to complete it with (nil when S3 already
// completed it).
type filePlan struct {
	file  store.File
	parts []objectstore.PartInfo
}

// planCompletion reads each unfinished file's parts from S3 (the truth) and
// checks that all are there with the right sizes. A file whose upload is gone
// but whose object exists was completed by an interrupted finalize: its ETag
// is recorded now instead of completing it twice.
func (s *Service) planCompletion(ctx context.Context, log logr.Logger, sess store.Session, files []store.File) ([]*filePlan, error) {
	missing := map[string][]int{}
	plans := make([]*filePlan, 0, len(files))
	for _, f := range files {
		p := &filePlan{file: f}
		plans = append(plans, p)
		if f.CompletedETag != "" {
			continue
		}
		parts, err := s.S3.ListParts(ctx, f.S3Key, f.S3UploadID)
		if err != nil && objectstore.IsNoSuchUpload(err) {
			if ok, err := s.recognizeCompleted(ctx, log, p); err != nil || ok {
				if err != nil {
					return nil, err
				}
				continue
			}
			return nil, &UploadLostError{FileID: f.ID.String(), Key: f.S3Key}
		}
		if err != nil {
			return nil, &S3Error{Err: err}
		}
		have := make(map[int32]objectstore.PartInfo, len(parts))
		for _, part := range parts {
			have[part.PartNumber] = part
		}
		for n := 1; n <= f.PartCount; n++ {
			part, ok := have[int32(n)]
			if !ok || part.Size != session.ExpectedPartSize(f.SizeBytes, sess.PartSizeBytes, n) {
				missing[f.ID.String()] = append(missing[f.ID.String()], n)
				continue
			}
			p.parts = append(p.parts, part)
		}
	}
	if len(missing) > 0 {
		return nil, &IncompleteError{Missing: missing}
	}
	return plans, nil
}

// recognizeCompleted checks for the object of a file whose multipart upload
// no longer exists; found with a multipart ETag of its part count, S3
// completed it before a crash.
func (s *Service) recognizeCompleted(ctx context.Context, log logr.Logger, p *filePlan) (bool, error) {
	obj, ok, err := s.S3.HeadObject(ctx, p.file.S3Key)
	if err != nil {
		return false, &S3Error{Err: err}
	}
	if !ok || obj.Size != p.file.SizeBytes {
		return false, nil
	}
	if !objectstore.ETagShapeOK(obj.ETag, p.file.PartCount) {
		logging.Warn(log, "unexpected ETag format from S3", "fileId", p.file.ID.String(), "etag", obj.ETag,
			"expected", `"<hex>-`+strconv.Itoa(p.file.PartCount)+`"`)
	}
	if err := s.DB.SetCompletedETag(ctx, p.file.ID, obj.ETag); err != nil {
		return false, &InternalError{Err: err}
	}
	p.file.CompletedETag = obj.ETag
	log.Info("recognised an S3 upload completed by an interrupted finalize", "fileId", p.file.ID.String(), "etag", obj.ETag)
	return true, nil
}

func (s *Service) checkSlug(ctx context.Context, owner, title, slug string) error {
	taken, err := s.DB.SlugsTaken(ctx, owner, slug)
	if err != nil {
		return &InternalError{Err: err}
	}
	if taken[slug] {
		return &SlugConflictError{Slug: slug, Suggested: session.SuggestSlug(title, func(s string) bool { return taken[s] })}
	}
	return nil
}

func (s *Service) slugConflict(ctx context.Context, owner, title, slug string) error {
	if err := s.checkSlug(ctx, owner, title, slug); err != nil {
		return err
	}
	return &SlugConflictError{Slug: slug, Suggested: session.Slug(title + " (1)")}
}

// completeUploads completes each unfinished S3 multipart upload and records
// its ETag before the next, so an interruption leaves a record of exactly
// which files are done.
func (s *Service) completeUploads(ctx context.Context, log logr.Logger, plans []*filePlan) error {
	for _, p := range plans {
		if p.file.CompletedETag != "" {
			continue
		}
		etag, err := s.S3.CompleteMultipartUpload(ctx, p.file.S3Key, p.file.S3UploadID, p.parts)
		if err != nil && objectstore.IsNoSuchUpload(err) {
			if ok, rerr := s.recognizeCompleted(ctx, log, p); rerr != nil || ok {
				if rerr != nil {
					return rerr
				}
				continue
			}
			return &UploadLostError{FileID: p.file.ID.String(), Key: p.file.S3Key}
		}
		if err != nil {
			log.Error(err, "S3 completion failed", "fileId", p.file.ID.String())
			return &S3Error{Err: err}
		}
		if !objectstore.ETagShapeOK(etag, len(p.parts)) {
			logging.Warn(log, "unexpected ETag format from S3", "fileId", p.file.ID.String(), "etag", etag,
				"expected", `"<hex>-`+strconv.Itoa(len(p.parts))+`"`)
		}
		// A crash here leaves an object S3 completed that nothing recorded.
		if err := failpoint.Inject("finalize/after-s3-complete"); err != nil {
			return &InternalError{Err: err}
		}
		if err := s.DB.SetCompletedETag(ctx, p.file.ID, etag); err != nil {
			return &InternalError{Err: err}
		}
		p.file.CompletedETag = etag
		if err := failpoint.Inject("finalize/after-file-complete"); err != nil {
			return &InternalError{Err: err}
		}
	}
	return failpoint.Inject("finalize/after-all-complete")
}

// commit runs the transaction, retrying serialization failures and deadlocks.
func (s *Service) commit(ctx context.Context, log logr.Logger, moc store.MOC, token time.Time) error {
	var err error
	for attempt := 1; attempt <= MaxTxAttempts; attempt++ {
		err = s.DB.CommitMOC(ctx, moc, token, s.Now(), func(step string) error {
			return failpoint.Inject("finalize/tx-" + step)
		})
		if err == nil || !store.Retryable(err) {
			break
		}
		logging.Warn(log, "finalize transaction conflict; retrying", "attempt", attempt, "error", err.Error())
		time.Sleep(time.Duration(attempt*attempt) * 10 * time.Millisecond)
	}
	switch {
	case err == nil, errors.Is(err, store.ErrAlreadyFinalized), errors.Is(err, store.ErrSlugTaken), errors.Is(err, store.ErrLockLost):
		return err
	case store.Retryable(err):
		log.Error(err, "finalize transaction failed after retries; rolled back", "attempts", MaxTxAttempts)
		return &InternalError{Err: fmt.Errorf("after %d attempts: %w", MaxTxAttempts, err)}
	default:
		log.Error(err, "finalize transaction failed; rolled back")
		return &InternalError{Err: err}
	}
}

// outcome names a finalize result for mocupload_finalize_total.
func outcome(res FinalizeResult, err error) string {
	var (
		ip  *InProgressError
		inc *IncompleteError
		sc  *SlugConflictError
		s3e *S3Error
	)
	switch {
	case err == nil && res.Created:
		return "created"
	case err == nil:
		return "replayed"
	case errors.As(err, &ip):
		return "in_progress"
	case errors.As(err, &inc):
		return "incomplete"
	case errors.As(err, &sc):
		return "slug_conflict"
	case errors.As(err, &s3e):
		return "s3_unavailable"
	case errors.Is(err, ErrExpired):
		return "expired"
	case errors.Is(err, ErrSessionNotFound):
		return "not_found"
	}
	return "error"
}
