package uploads

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	"github.com/mocs-dev/upload-operator/internal/checksum"
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
	// Restore makes again a MOC that PostgreSQL lost after it was committed (a
	// failover to a replica that had not received it): a resumed finalize
	// that may run past expiresAt, since the original one did not.
	Restore bool
}

// FinalizeResult is the MOC; Created is false for a replay.
type FinalizeResult struct {
	MOC      store.MOC
	Created  bool
	TookOver bool
}

// lockPoll is how long a client is told to wait while another finalize holds
// a live lock: its holder renews the lock, so it is worth asking again soon
// rather than when the lock would go stale.
const lockPoll = 2 * time.Second

// Finalize turns a complete session into exactly one MOC (ADR 0001): take the
// lock (a lease the holder renews while it works), check completeness against
// S3 and the acknowledged parts, check the slug, complete each S3 multipart
// upload (recording each, the lease checked before each), then commit
// moc_instructions, moc_files and upload_sessions in one READ COMMITTED
// transaction that checks the lease first. Every step is idempotent, so a
// finalize interrupted anywhere is finished by the next one once the lock is
// stale.
func (s *Service) Finalize(ctx context.Context, req FinalizeRequest) (res FinalizeResult, err error) {
	defer func() { metrics.Finalizes.WithLabelValues(outcome(res, err)).Inc() }()
	start := time.Now()
	log := logr.FromContextOrDiscard(ctx).WithValues("sessionId", req.SessionID.String())
	sess, done, err := s.finalizable(ctx, &req)
	if done || err != nil {
		return sess, err
	}
	if err := failpoint.Inject("finalize/before-lock"); err != nil {
		return FinalizeResult{}, &InternalError{Err: err}
	}
	sent := time.Now()
	token := uuid.New()
	lock, err := s.DB.TryLock(ctx, req.SessionID, token, s.StaleAfter(), req.Title, req.Description, req.Restore)
	if err == nil {
		err = failpoint.Inject("finalize/lock-reply")
	}
	if err != nil {
		// The UPDATE may have committed and only its reply been lost: give back
		// whatever this token holds, so nobody waits STALE_LOCK_AFTER for it.
		s.releaseLock(ctx, log, req.SessionID, token)
		return FinalizeResult{}, &InternalError{Err: err}
	}
	if !lock.Acquired {
		return s.notLocked(ctx, req.SessionID)
	}
	res.TookOver = lock.PreviousAge != nil
	if res.TookOver {
		metrics.StaleLockRecoveries.Inc()
		logging.Warn(log, "stale lock recovered", "lockAgeMs", lock.PreviousAge.Milliseconds(),
			"staleLockAfter", s.StaleAfter().String())
	}
	l := s.holdLease(ctx, log, req.SessionID, token, sent)
	moc, timing, err := s.finalizeLocked(l, log, req)
	lost := l.lost()
	l.stop()

	var lostUpload *UploadLostError
	switch {
	case err == nil:
		log.Info("finalize succeeded", "mocId", moc.ID.String(), "slug", moc.Slug, "fileCount", len(moc.Files),
			"totalSizeBytes", totalSize(moc), "durationMs", time.Since(start).Milliseconds(), "tookOverStaleLock", res.TookOver,
			"s3Ms", ms(timing.s3), "txMs", ms(timing.tx))
		res.MOC, res.Created = moc, true
		return res, nil
	case errors.Is(err, failpoint.ErrInjected):
		// An injected failure stands for a crash: the process is gone and its
		// lock stays until it is stale, exactly what the recovery path handles.
		return res, &InternalError{Err: err}
	case lost != nil, errors.Is(err, store.ErrLockLost):
		log.Info("finalize stopped: its lock is no longer held", "reason", fmt.Sprint(cmp.Or(lost, err)))
		return s.afterLockLost(ctx, req.SessionID)
	case errors.Is(err, store.ErrAlreadyFinalized):
		return s.replay(ctx, req.SessionID)
	case errors.As(err, &lostUpload):
		return s.failSession(ctx, log, req.SessionID, token, lostUpload)
	default:
		if err := failpoint.Inject("finalize/before-release"); err != nil {
			return res, &InternalError{Err: err}
		}
		if !s.releaseLock(ctx, log, req.SessionID, token) {
			// Someone else holds (or ended) the session now: what this finalize
			// found no longer describes it.
			log.Info("finalize failed after its lock was taken over; answering for the session as it is", "error", err.Error())
			return s.afterLockLost(ctx, req.SessionID)
		}
		return res, err
	}
}

// finalizable loads the session and answers what needs no lock: a replay
// (done), expiry, a session in a phase that cannot be finalized. For a resumed
// finalize it fills in the stored title and description.
func (s *Service) finalizable(ctx context.Context, req *FinalizeRequest) (FinalizeResult, bool, error) {
	sess, err := s.DB.GetSession(ctx, req.SessionID)
	if errors.Is(err, store.ErrNotFound) {
		return FinalizeResult{}, false, ErrSessionNotFound
	}
	if err != nil {
		return FinalizeResult{}, false, &InternalError{Err: err}
	}
	if sess.FinalizedAt != nil {
		res, err := s.replay(ctx, req.SessionID)
		return res, true, err
	}
	req.Resume = req.Resume || req.Restore
	// What was committed once before expiresAt may be committed again after it.
	if err := s.checkFinalizable(sess); err != nil && (!req.Restore || !errors.Is(err, ErrExpired)) {
		return FinalizeResult{}, false, err
	}
	if req.Resume {
		if req.Title, req.Description, err = s.DB.FinalizeRequest(ctx, req.SessionID); err != nil {
			return FinalizeResult{}, false, &InternalError{Err: err}
		}
		if req.Title == "" {
			return FinalizeResult{}, false, &NotActiveError{Status: sess.Status}
		}
	}
	return FinalizeResult{}, false, nil
}

type finalizeTiming struct{ s3, tx time.Duration }

// finalizeLocked is the work done under the lease, on its context: plan,
// slug, S3 completion, commit. It returns the committed MOC.
func (s *Service) finalizeLocked(l *lease, log logr.Logger, req FinalizeRequest) (store.MOC, finalizeTiming, error) {
	ctx := l.ctx
	var timing finalizeTiming
	if err := failpoint.Inject("finalize/after-lock"); err != nil {
		return store.MOC{}, timing, err
	}
	sess, err := s.DB.GetSession(ctx, req.SessionID)
	if err != nil {
		return store.MOC{}, timing, &InternalError{Err: err}
	}
	s3Start := time.Now()
	plans, err := s.planCompletion(ctx, log, sess)
	if err != nil {
		return store.MOC{}, timing, err
	}
	timing.s3 = time.Since(s3Start)
	slug := session.Slug(req.Title)
	if err := failpoint.Inject("finalize/before-slug"); err != nil {
		return store.MOC{}, timing, err
	}
	if err := s.checkSlug(ctx, sess, req.Title, slug); err != nil {
		return store.MOC{}, timing, err
	}
	if err := failpoint.Inject("finalize/after-plan"); err != nil {
		return store.MOC{}, timing, err
	}
	completeStart := time.Now()
	for attempt := 1; ; attempt++ {
		err = s.completeUploads(ctx, log, l, plans)
		if !errors.Is(err, errPartsChanged) {
			break
		}
		if attempt == maxCompletionAttempts {
			// The parts keep changing under the completion (a direct
			// session's client still sending them): name them, as missing.
			changed, cerr := s.changedParts(ctx, plans)
			switch {
			case cerr != nil:
				err = cerr
			case len(changed) > 0:
				err = &IncompleteError{Missing: changed}
			default:
				err = &S3Error{Err: fmt.Errorf("S3 refused the completion %d times for parts it lists unchanged", attempt)}
			}
			break
		}
		// A part changed in S3 after it was listed: a PUT that raced this
		// finalize overwrote it (and was refused). Look again: the listing
		// now shows whether what S3 holds was ever acknowledged.
		logging.Warn(log, "a part changed in S3 after it was listed; listing the parts again", "attempt", attempt)
		if plans, err = s.planCompletion(ctx, log, sess); err != nil {
			return store.MOC{}, timing, err
		}
	}
	if err != nil {
		return store.MOC{}, timing, err
	}
	if err := s.verifySHA256(ctx, log, plans); err != nil {
		return store.MOC{}, timing, err
	}
	timing.s3 += time.Since(completeStart)

	moc := store.MOC{
		ID: uuid.NewSHA1(req.SessionID, []byte("moc")), UserID: sess.UserID, UploadSessionID: req.SessionID,
		Title: req.Title, Slug: slug, Description: req.Description,
	}
	for _, p := range plans {
		moc.Files = append(moc.Files, store.MOCFile{
			ID: uuid.NewSHA1(p.file.ID, []byte("moc-file")), FileID: p.file.ID, Name: p.file.Name,
			ContentType: p.file.ContentType, S3Key: p.file.S3Key, SizeBytes: p.file.SizeBytes, ETag: p.file.CompletedETag,
			ChecksumCRC64NVME: p.file.CompletedCRC64NVME, ChecksumSHA256: p.file.DeclaredSHA256,
		})
	}
	if err := failpoint.Inject("finalize/before-commit"); err != nil {
		return store.MOC{}, timing, err
	}
	txStart := time.Now()
	if err := s.commit(ctx, log, moc, l.token); err != nil {
		if errors.Is(err, store.ErrSlugTaken) {
			return store.MOC{}, timing, s.slugConflict(ctx, sess, req.Title, slug)
		}
		return store.MOC{}, timing, err
	}
	timing.tx = time.Since(txStart)
	if err := failpoint.Inject("finalize/after-commit"); err != nil {
		return store.MOC{}, timing, err
	}
	return moc, timing, nil
}

func totalSize(m store.MOC) int64 {
	var n int64
	for _, f := range m.Files {
		n += f.SizeBytes
	}
	return n
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// StaleAfter is how old a finalize lock must be to be taken over
// (StaleLockAfter, or the default when unset).
func (s *Service) StaleAfter() time.Duration {
	if s.StaleLockAfter > 0 {
		return s.StaleLockAfter
	}
	return session.DefaultStaleLockAfter
}

// lockHeld reports whether a finalize holds a live lock on the session, by
// the lock's age on PostgreSQL's clock and its holder's window.
func (s *Service) lockHeld(sess store.Session) bool { return sess.LockHeld(s.StaleAfter()) }

// checkFinalizable answers for sessions that cannot be finalized at all.
func (s *Service) checkFinalizable(sess store.Session) error {
	switch {
	case sess.Status == store.StatusDeleting:
		return ErrSessionNotFound
	case sess.Expired(s.Now()):
		return ErrExpired
	case sess.Status != store.StatusActive && sess.Status != store.StatusFinalizing:
		return &NotActiveError{Status: sess.Status}
	}
	return nil
}

// ErrMOCLost: PostgreSQL holds no MOC, and not enough of the session to make
// it again, for a session a resource reports Finalized.
var ErrMOCLost = errors.New("the MOC is not in PostgreSQL and cannot be made again from what it holds")

// RestoreMOC makes sure that the MOC a resource reports for a session (mocID)
// is in PostgreSQL: it is (false), or it was lost after its commit (a
// failover to a replica that had not received it) and a finalize resumed with
// the stored request makes it again from the objects S3 holds (true; MOC ids
// derive from the session, so it is the same one). It never removes anything.
// ErrMOCLost when PostgreSQL has too little of the session left to do it;
// InProgressError while a lock that looks live must go stale first.
func (s *Service) RestoreMOC(ctx context.Context, id, mocID uuid.UUID) (bool, error) {
	moc, err := s.DB.MOCBySession(ctx, id)
	switch {
	case err == nil && moc.ID == mocID:
		return false, nil
	case err == nil:
		return false, fmt.Errorf("%w: PostgreSQL has MOC %s for the session, the resource reports %s", ErrMOCLost, moc.ID, mocID)
	case !errors.Is(err, store.ErrNotFound):
		return false, err
	}
	res, err := s.Finalize(ctx, FinalizeRequest{SessionID: id, Restore: true})
	var na *NotActiveError
	switch {
	case errors.Is(err, ErrSessionNotFound), errors.As(err, &na):
		return false, fmt.Errorf("%w (%w)", ErrMOCLost, err)
	case err != nil:
		return false, err
	case res.MOC.ID != mocID:
		return false, fmt.Errorf("%w: the session made MOC %s again, the resource reports %s", ErrMOCLost, res.MOC.ID, mocID)
	}
	return true, nil
}

// notLocked explains why the lock was not acquired, from the session as it
// is now.
func (s *Service) notLocked(ctx context.Context, id uuid.UUID) (FinalizeResult, error) {
	if err := failpoint.Inject("finalize/lock-refused"); err != nil {
		return FinalizeResult{}, &InternalError{Err: err}
	}
	sess, err := s.DB.GetSession(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return FinalizeResult{}, ErrSessionNotFound
	case err != nil:
		return FinalizeResult{}, &InternalError{Err: err}
	case sess.FinalizedAt != nil:
		return s.replay(ctx, sess.ID)
	case sess.LockHeld(s.StaleAfter()):
		return FinalizeResult{}, &InProgressError{RetryAfter: s.pollAfter(sess)}
	case sess.PastExpiry:
		// Not locked for us because expiresAt passed on PostgreSQL's clock
		// (a finalizing session whose holder stopped included).
		return FinalizeResult{}, ErrExpired
	}
	if err := s.checkFinalizable(sess); err != nil {
		return FinalizeResult{}, err
	}
	// Active (or stale) by now: the lock was held when this finalize asked
	// and was released, or went stale, before this read. Ask again soon.
	return FinalizeResult{}, &InProgressError{RetryAfter: time.Second}
}

// pollAfter is the wait to suggest while sess's lock is held: the poll
// interval, or until the lock would go stale if that is sooner.
func (s *Service) pollAfter(sess store.Session) time.Duration {
	return max(min(lockPoll, sess.LockStaleIn(s.StaleAfter())), time.Second)
}

// afterLockLost answers a finalize that lost its lock while it worked: the
// session's MOC if the new holder committed it, not found if a delete took the
// session, else "in progress" (or why it cannot be finalized any more).
func (s *Service) afterLockLost(ctx context.Context, id uuid.UUID) (FinalizeResult, error) {
	sess, err := s.DB.GetSession(context.WithoutCancel(ctx), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return FinalizeResult{}, ErrSessionNotFound
	case err != nil:
		return FinalizeResult{}, &InternalError{Err: err}
	case sess.FinalizedAt != nil:
		return s.replay(context.WithoutCancel(ctx), id)
	}
	if err := s.checkFinalizable(sess); err != nil {
		return FinalizeResult{}, err
	}
	return FinalizeResult{}, &InProgressError{RetryAfter: lockPoll}
}

func (s *Service) replay(ctx context.Context, id uuid.UUID) (FinalizeResult, error) {
	moc, err := s.DB.MOCBySession(ctx, id)
	if err != nil {
		return FinalizeResult{}, &InternalError{Err: err}
	}
	return FinalizeResult{MOC: moc}, nil
}

// releaseLock gives the lock back after a failed finalize and reports
// whether it was still this finalize's (false: taken over, or the session
// moved on). When PostgreSQL is unreachable it keeps trying in the background
// until it is back (or the lock would be stale anyway), so clients are not
// locked out for STALE_LOCK_AFTER, and reports true: as far as anyone knows,
// the lock was ours.
func (s *Service) releaseLock(ctx context.Context, log logr.Logger, id, token uuid.UUID) bool {
	ctx = context.WithoutCancel(ctx)
	try := func() (bool, error) {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return s.DB.ReleaseLock(c, id, token)
	}
	ours, err := try()
	if err == nil {
		return ours
	}
	logging.Warn(log, "could not release finalize lock; retrying until PostgreSQL is back")
	go func() {
		deadline := time.Now().Add(s.StaleAfter())
		for time.Now().Before(deadline) {
			time.Sleep(time.Second)
			if _, err := try(); err == nil {
				log.Info("finalize lock released after PostgreSQL came back")
				return
			}
		}
	}()
	return true
}

// failSession marks a session whose S3 multipart upload is lost as failed (it
// can never become a MOC) and removes what it still holds in S3: the other
// files' uploads and any object already completed. It answers UPLOAD_LOST;
// or, when the lock was no longer this finalize's (taken over, or the session
// claimed by a delete), what became of the session.
func (s *Service) failSession(ctx context.Context, log logr.Logger, id, token uuid.UUID, cause *UploadLostError) (FinalizeResult, error) {
	ctx = context.WithoutCancel(ctx)
	if err := failpoint.Inject("finalize/before-fail"); err != nil {
		return FinalizeResult{}, &InternalError{Err: err}
	}
	ok, err := s.DB.FailLocked(ctx, id, token)
	switch {
	case err != nil:
		// The lock stays and goes stale; whoever takes it over finds the lost
		// upload again and fails the session then.
		log.Error(err, "could not mark the session failed", "cause", cause.Error())
		return FinalizeResult{}, cause
	case !ok:
		log.Info("an S3 upload is lost, but the lock is no longer this finalize's; answering for the session as it is",
			"cause", cause.Error())
		return s.afterLockLost(ctx, id)
	}
	log.Error(cause, "session failed: an S3 multipart upload is lost")
	if err := failpoint.Inject("finalize/after-fail"); err != nil {
		return FinalizeResult{}, &InternalError{Err: err}
	}
	sess, err := s.DB.GetSession(ctx, id)
	if err == nil {
		err = s.FinishRemoval(ctx, log, sess)
	}
	if err != nil {
		log.Error(err, "could not remove what the failed session holds in S3; the removal is recorded as pending and retried")
	}
	return FinalizeResult{}, cause
}

// errPartsChanged: S3 refused a completion because a listed part changed.
var errPartsChanged = errors.New("a part changed after it was listed")

// maxCompletionAttempts bounds the listings of a finalize whose parts keep
// changing between the listing and the completion.
const maxCompletionAttempts = 3

// filePlan is a file and the parts to complete it with (none when S3
// already completed it): for part i+1, the slot parts[i] as S3 listed it.
type filePlan struct {
	file  store.File
	parts []objectstore.PartInfo
	// crc is the file's CRC64NVME (base64) combined from its parts' before
	// the completion ("" when S3 keeps no part checksums, or completed).
	crc string
}

// planCompletion reads each unfinished file's parts from S3 and checks that
// every part is there with the right size. For a proxied session each part is
// its register (ADR 0001, "Parts"): the slot the last acknowledged PUT wrote,
// which S3 must still hold with that PUT's ETag; completing with that ETag
// makes S3 refuse the part if its bytes changed since. A register whose bytes
// S3 no longer holds (possible only with one slot per part) is dropped, so GET
// stops listing it and the client sends the part again. A direct session's
// parts never passed through the operator: what S3 lists is the record, and
// is recorded in PostgreSQL before the completion, because S3 lists nothing
// once it completed the upload. A file whose upload is gone but whose object
// exists was completed by an interrupted finalize: its ETag is recorded now
// instead of completing it twice.
func (s *Service) planCompletion(ctx context.Context, log logr.Logger, sess store.Session) ([]*filePlan, error) {
	files, err := s.DB.Files(ctx, sess.ID)
	if err != nil {
		return nil, &InternalError{Err: err}
	}
	registers, err := s.DB.Parts(ctx, sess.ID)
	if err != nil {
		return nil, &InternalError{Err: err}
	}
	direct := sess.Transfer == store.TransferDirect
	var wrongSize *PartSizeError
	var gone []store.Part
	missing := map[string][]int{}
	plans := make([]*filePlan, 0, len(files))
	for _, f := range files {
		p := &filePlan{file: f}
		plans = append(plans, p)
		if f.CompletedETag != "" {
			continue
		}
		listed, err := s.S3.ListParts(ctx, f.S3Key, f.S3UploadID)
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
		have := make(map[int32]objectstore.PartInfo, len(listed))
		for _, part := range listed {
			have[part.PartNumber] = part
		}
		reg := make(map[int]store.Part, len(registers[f.ID]))
		for _, r := range registers[f.ID] {
			reg[r.PartNumber] = r
		}
		for n := 1; n <= f.PartCount; n++ {
			want := session.ExpectedPartSize(f.SizeBytes, sess.PartSizeBytes, n)
			slot, etag := n, ""
			if !direct {
				r, ok := reg[n]
				if !ok {
					missing[f.ID.String()] = append(missing[f.ID.String()], n)
					continue
				}
				slot, etag = r.S3PartNumber, r.ETag
			}
			part, ok := have[int32(slot)] //nolint:gosec // at most 10,000
			if ok && direct && part.Size != want && wrongSize == nil {
				wrongSize = &PartSizeError{FileID: f.ID.String(), PartNumber: n, Expected: want, Size: part.Size}
			}
			if !ok || part.Size != want || (!direct && bareETag(part.ETag) != bareETag(etag)) {
				missing[f.ID.String()] = append(missing[f.ID.String()], n)
				if !direct {
					gone = append(gone, reg[n])
				}
				continue
			}
			p.parts = append(p.parts, part)
		}
	}
	for _, r := range gone {
		logging.Warn(log, "S3 no longer holds an acknowledged part; the client must send it again",
			"fileId", r.FileID.String(), "partNumber", r.PartNumber, "s3PartNumber", r.S3PartNumber, "etag", r.ETag)
		if err := s.DB.ForgetPart(ctx, r.FileID, r.PartNumber, r.ETag); err != nil {
			return nil, &InternalError{Err: err}
		}
	}
	if wrongSize != nil {
		// Only a direct session's client can put a part of the wrong size in
		// S3 (the part endpoint refuses one); it must send that part again.
		return nil, wrongSize
	}
	if len(missing) > 0 {
		return nil, &IncompleteError{Missing: missing}
	}
	for _, p := range plans {
		if err := s.checkCRC(ctx, p); err != nil {
			return nil, err
		}
	}
	if direct {
		if err := s.recordListed(ctx, plans); err != nil {
			return nil, err
		}
	}
	return plans, nil
}

// checkCRC combines the CRC64NVMEs S3 computed of a file's parts, in the
// file's order, into the file's, and holds it against the declared one before
// anything is completed: a mismatch leaves every part open for the client to
// send again. A file completed by an earlier finalize has its CRC recorded
// (or, from before that was recorded, read from the object).
func (s *Service) checkCRC(ctx context.Context, p *filePlan) error {
	f := &p.file
	if f.CompletedETag != "" {
		if f.CompletedCRC64NVME != "" {
			return nil
		}
		obj, ok, err := s.S3.HeadObject(ctx, f.S3Key)
		if err != nil {
			return &S3Error{Err: err}
		}
		if ok && obj.CRC64NVME != "" {
			if err := s.DB.SetCompletedETag(ctx, f.ID, f.CompletedETag, obj.CRC64NVME); err != nil {
				return &InternalError{Err: err}
			}
			f.CompletedCRC64NVME = obj.CRC64NVME
		}
		return nil
	}
	var crc uint64
	for _, part := range p.parts {
		c, err := checksum.DecodeCRC64(part.CRC64NVME)
		if err != nil {
			if f.DeclaredCRC64NVME != "" {
				return &InternalError{Err: fmt.Errorf("S3 keeps no CRC64NVME of part %d of file %s: its declared checksum cannot be verified", part.PartNumber, f.ID)}
			}
			return nil // an upload S3 keeps no checksums of
		}
		crc = checksum.CombineCRC64NVME(crc, c, part.Size)
	}
	p.crc = checksum.EncodeCRC64(crc)
	if f.DeclaredCRC64NVME != "" && f.DeclaredCRC64NVME != p.crc {
		return &ChecksumMismatchError{FileID: f.ID.String(), Algorithm: "crc64nvme", Expected: f.DeclaredCRC64NVME, Actual: p.crc}
	}
	return nil
}

// verifySHA256 reads back every completed file with a declared SHA-256, at
// most two at a time, and holds it against the declaration. A mismatch starts
// the file over (its object deleted, a new upload): S3 keeps no SHA-256 of a
// multipart object, so nothing short of the whole file can be checked again.
func (s *Service) verifySHA256(ctx context.Context, log logr.Logger, plans []*filePlan) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(2)
	var mu sync.Mutex
	var first *ChecksumMismatchError
	for _, p := range plans {
		if p.file.DeclaredSHA256 == "" {
			continue
		}
		g.Go(func() error {
			actual, err := s.objectSHA256(gctx, p.file.S3Key)
			if err != nil {
				return &S3Error{Err: err}
			}
			if actual == p.file.DeclaredSHA256 {
				return nil
			}
			logging.Warn(log, "a completed file is not the one declared: it starts over", "fileId", p.file.ID.String(),
				"algorithm", "sha256", "expected", p.file.DeclaredSHA256, "actual", actual)
			if err := s.restartFile(gctx, p); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			if first == nil {
				first = &ChecksumMismatchError{FileID: p.file.ID.String(), Algorithm: "sha256", Expected: p.file.DeclaredSHA256,
					Actual: actual, ResendAll: true}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if first != nil {
		return first
	}
	return nil
}

// objectSHA256 is the hex SHA-256 of an object's bytes.
func (s *Service) objectSHA256(ctx context.Context, key string) (string, error) {
	body, err := s.S3.GetObject(ctx, key)
	if err != nil {
		return "", err
	}
	defer body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, body); err != nil {
		return "", fmt.Errorf("read %s: %w", key, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// restartFile gives a file a new, empty upload in place of its completed
// object: a new upload is created first, then recorded (parts and PUT
// registrations dropped), then the object deleted.
func (s *Service) restartFile(ctx context.Context, p *filePlan) error {
	uploadID, err := s.S3.CreateCheckedMultipartUpload(ctx, p.file.S3Key, session.MediaType(p.file.ContentType), session.ContentDisposition(p.file.Name))
	if err != nil {
		return &S3Error{Err: err}
	}
	if err := s.DB.ResetFileUpload(ctx, p.file.ID, uploadID); err != nil {
		_ = s.S3.AbortMultipartUpload(context.WithoutCancel(ctx), p.file.S3Key, uploadID)
		return &InternalError{Err: err}
	}
	if _, err := s.S3.DeleteObjects(ctx, p.file.S3Key); err != nil {
		return &S3Error{Err: err}
	}
	return nil
}

// recordListed records the parts a direct session's files are about to be
// completed with (see planCompletion).
func (s *Service) recordListed(ctx context.Context, plans []*filePlan) error {
	for _, p := range plans {
		if p.file.CompletedETag != "" {
			continue
		}
		parts := make([]store.Part, len(p.parts))
		for i, part := range p.parts {
			parts[i] = store.Part{PartNumber: int(part.PartNumber), ETag: part.ETag, SizeBytes: part.Size}
		}
		if err := s.DB.RecordListedParts(ctx, p.file.ID, parts); err != nil {
			return &InternalError{Err: err}
		}
	}
	return nil
}

// changedParts lists, after S3 refused completions because listed parts
// changed again and again, which parts changed since they were planned: a
// client still sending them (a direct session's, which no lock can stop).
func (s *Service) changedParts(ctx context.Context, plans []*filePlan) (map[string][]int, error) {
	changed := map[string][]int{}
	for _, p := range plans {
		if p.file.CompletedETag != "" {
			continue
		}
		listed, err := s.S3.ListParts(ctx, p.file.S3Key, p.file.S3UploadID)
		if err != nil {
			return nil, &S3Error{Err: err}
		}
		now := make(map[int32]string, len(listed))
		for _, part := range listed {
			now[part.PartNumber] = bareETag(part.ETag)
		}
		for i, part := range p.parts {
			if now[part.PartNumber] != bareETag(part.ETag) {
				changed[p.file.ID.String()] = append(changed[p.file.ID.String()], i+1)
			}
		}
	}
	return changed, nil
}

// bareETag drops the quotes S3 puts around an ETag (some stores list parts
// without them); ETags are otherwise compared exactly.
func bareETag(e string) string { return strings.Trim(e, `"`) }

// MissingParts lists the parts of each unfinished file that have no register
// (read from PostgreSQL), or for a direct session that S3 does not hold with
// the part's size; a file S3 completed (recorded, or found by its object) is
// missing nothing. It takes no lock, so the declarative finalize can wait for
// parts without getting in their way; the finalize itself checks S3 under
// the lock.
func (s *Service) MissingParts(ctx context.Context, id uuid.UUID) (map[string][]int, error) {
	sess, err := s.DB.GetSession(ctx, id)
	if err != nil {
		return nil, err
	}
	files, err := s.DB.Files(ctx, id)
	if err != nil {
		return nil, err
	}
	parts, done, err := s.partsOf(ctx, sess, files)
	if err != nil {
		return nil, err
	}
	missing := map[string][]int{}
	for _, f := range files {
		if done[f.ID] {
			continue
		}
		have := map[int]bool{}
		for _, p := range parts[f.ID] {
			have[p.PartNumber] = p.SizeBytes == session.ExpectedPartSize(f.SizeBytes, sess.PartSizeBytes, p.PartNumber)
		}
		for n := 1; n <= f.PartCount; n++ {
			if !have[n] {
				missing[f.ID.String()] = append(missing[f.ID.String()], n)
			}
		}
	}
	return missing, nil
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
	if err := s.DB.SetCompletedETag(ctx, p.file.ID, obj.ETag, obj.CRC64NVME); err != nil {
		return false, &InternalError{Err: err}
	}
	p.file.CompletedETag, p.file.CompletedCRC64NVME = obj.ETag, obj.CRC64NVME
	log.Info("recognised an S3 upload completed by an interrupted finalize", "fileId", p.file.ID.String(), "etag", obj.ETag)
	return true, nil
}

func (s *Service) checkSlug(ctx context.Context, sess store.Session, title, slug string) error {
	taken, err := s.DB.SlugsTaken(ctx, sess.UserID, slug, sess.ID)
	if err != nil {
		return &InternalError{Err: err}
	}
	if taken[slug] {
		return &SlugConflictError{Slug: slug, Suggested: session.SuggestSlug(title, func(s string) bool { return taken[s] })}
	}
	return nil
}

func (s *Service) slugConflict(ctx context.Context, sess store.Session, title, slug string) error {
	if err := s.checkSlug(ctx, sess, title, slug); err != nil {
		return err
	}
	return &SlugConflictError{Slug: slug, Suggested: session.Slug(title + " (1)")}
}

// completeUploads completes each unfinished S3 multipart upload and records
// its ETag before the next, so an interruption leaves a record of exactly
// which files are done. The lease is renewed right before each completion: a
// holder that lost its lock completes nothing more.
func (s *Service) completeUploads(ctx context.Context, log logr.Logger, l *lease, plans []*filePlan) error {
	for _, p := range plans {
		if p.file.CompletedETag != "" {
			continue
		}
		if err := l.renew(ctx); err != nil {
			return err
		}
		if err := failpoint.Inject("finalize/before-s3-complete"); err != nil {
			return err
		}
		etag, crc, err := s.S3.CompleteMultipartUpload(ctx, p.file.S3Key, p.file.S3UploadID, p.parts, p.crc)
		if err != nil && (objectstore.IsNoSuchUpload(err) || objectstore.IsInvalidPart(err)) {
			if ok, rerr := s.recognizeCompleted(ctx, log, p); rerr != nil || ok {
				if rerr != nil {
					return rerr
				}
				continue
			}
			if objectstore.IsInvalidPart(err) {
				return errPartsChanged // listing again tells a changed part from a lost upload
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
		crc = cmp.Or(crc, p.crc)
		if err := s.DB.SetCompletedETag(ctx, p.file.ID, etag, crc); err != nil {
			return &InternalError{Err: err}
		}
		p.file.CompletedETag, p.file.CompletedCRC64NVME = etag, crc
		if err := failpoint.Inject("finalize/after-file-complete"); err != nil {
			return &InternalError{Err: err}
		}
	}
	return failpoint.Inject("finalize/after-all-complete")
}

// commit runs the transaction, retrying serialization failures and deadlocks.
func (s *Service) commit(ctx context.Context, log logr.Logger, moc store.MOC, token uuid.UUID) error {
	var err error
	for attempt := 1; attempt <= MaxTxAttempts; attempt++ {
		err = s.DB.CommitMOC(ctx, moc, token, func(step string) error {
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
	return finalizeLabels[ClassifyFinalize(res, err)]
}

// finalizeLabels are mocupload_finalize_total's result labels (docs/operations.md).
var finalizeLabels = map[Outcome]string{
	OutcomeCreated: "created", OutcomeReplayed: "replayed", OutcomeInProgress: "in_progress",
	OutcomeIncomplete: "incomplete", OutcomeWrongPartSize: "error", OutcomeChecksumMismatch: "checksum_mismatch",
	OutcomeSlugConflict: "slug_conflict", OutcomeS3Unavailable: "s3_unavailable", OutcomeTimedOut: "error",
	OutcomeExpired: "expired", OutcomeNotFound: "not_found", OutcomeNotActive: "error", OutcomeUploadLost: "error",
	OutcomeInternal: "error",
}
