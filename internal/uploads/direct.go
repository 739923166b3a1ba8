package uploads

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/mocs-dev/upload-operator/internal/objectstore"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/store"
)

// In a direct session the client PUTs each part to S3 with a presigned
// UploadPart URL, so the operator never sees the bytes and keeps no record of
// parts: S3's listing of each multipart upload is the record. Everything else
// (rows, multipart uploads, expiry, delete, the finalize lock and transaction)
// is the same as for a proxied session.

// PartURL is a presigned part upload handed to a direct session's client.
type PartURL struct {
	objectstore.PresignedPart
	ExpiresAt time.Time
}

// CheckTransfer answers ErrWrongTransfer unless the session moves its bytes
// the way the caller expects.
func CheckTransfer(sess store.Session, want string) error {
	if sess.Transfer != want {
		return ErrWrongTransfer
	}
	return nil
}

// PartURL presigns the upload of part n of f, valid for the service's part
// URL lifetime but never past the session's expiry (the upload is aborted
// then anyway). The caller has checked that the session takes parts.
func (s *Service) PartURL(ctx context.Context, sess store.Session, f store.File, n int, cs objectstore.Checksums) (PartURL, error) {
	now := s.Now()
	ttl := min(s.partURLTTL(), sess.ExpiresAt.Sub(now))
	if ttl < time.Second {
		return PartURL{}, ErrExpired
	}
	// S3 counts expiry in whole seconds from the signing time.
	ttl = ttl.Truncate(time.Second)
	p, err := s.S3.PresignUploadPart(ctx, f.S3Key, f.S3UploadID, int32(n), ExpectedPartSize(sess, f, n), cs, ttl) //nolint:gosec // validated to [1, 10000]
	if err != nil {
		return PartURL{}, &S3Error{Err: err}
	}
	return PartURL{PresignedPart: p, ExpiresAt: now.Add(ttl)}, nil
}

func (s *Service) partURLTTL() time.Duration {
	if s.PartURLTTL <= 0 || s.PartURLTTL > session.MaxPartURLTTL {
		return session.MaxPartURLTTL
	}
	return s.PartURLTTL
}

// directParts is listDirectParts shared between callers: a caller takes a
// listing of the session that started no earlier than since (when it needs
// to see what S3 held), waiting for one in flight if need be, and otherwise
// starts one, never two of one session at once. A flood of GETs of a
// session of 100 files then costs one listing in flight and one waiting,
// not 100 ListParts per request, and no caller is answered with a listing
// older than it asked for.
func (s *Service) directParts(ctx context.Context, sessionID uuid.UUID, files []store.File, since time.Time) (map[uuid.UUID][]store.Part, map[uuid.UUID]bool, error) {
	for {
		s.listings.mu.Lock()
		l := s.listings.latest[sessionID]
		switch {
		case l != nil && !l.started.Before(since):
			s.listings.mu.Unlock()
			return l.wait(ctx)
		case l != nil && !l.finished():
			s.listings.mu.Unlock()
			if _, _, err := l.wait(ctx); ctx.Err() != nil {
				return nil, nil, err
			}
			continue // then start one that is new enough, unless another did
		}
		l = &listing{started: time.Now(), done: make(chan struct{})}
		s.listings.put(sessionID, l)
		s.listings.mu.Unlock()
		// Shared: one caller giving up must not fail the others.
		l.parts, l.complete, l.err = s.listDirectParts(context.WithoutCancel(ctx), sessionID, files)
		close(l.done)
		return l.parts, l.complete, l.err
	}
}

// listings are the latest direct listing of each session.
type listings struct {
	mu     sync.Mutex
	latest map[uuid.UUID]*listing
}

// listingKeep is how long a finished listing is kept for callers that can use
// one that old.
const listingKeep = time.Minute

func (ls *listings) put(id uuid.UUID, l *listing) {
	if ls.latest == nil {
		ls.latest = map[uuid.UUID]*listing{}
	}
	for k, old := range ls.latest {
		if old.finished() && time.Since(old.started) > listingKeep {
			delete(ls.latest, k)
		}
	}
	ls.latest[id] = l
}

type listing struct {
	started  time.Time
	done     chan struct{}
	parts    map[uuid.UUID][]store.Part
	complete map[uuid.UUID]bool
	err      error
}

func (l *listing) finished() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

func (l *listing) wait(ctx context.Context) (map[uuid.UUID][]store.Part, map[uuid.UUID]bool, error) {
	select {
	case <-l.done:
		return l.parts, l.complete, l.err
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// directParts reads what each file of a direct session holds: S3's listing
// while the file's upload is open; once S3 completed it (recorded, or found by
// its object after a completion nobody recorded) the parts recorded just
// before the completion, and the file is done. A file whose upload is gone
// with no object (aborted by expiry or delete) holds nothing.
func (s *Service) listDirectParts(ctx context.Context, sessionID uuid.UUID, files []store.File) (parts map[uuid.UUID][]store.Part, done map[uuid.UUID]bool, err error) {
	parts, done = make(map[uuid.UUID][]store.Part, len(files)), map[uuid.UUID]bool{}
	var recorded map[uuid.UUID][]store.Part
	fromRecord := func(f store.File) error {
		if recorded == nil {
			if recorded, err = s.DB.Parts(ctx, sessionID); err != nil {
				return err
			}
		}
		parts[f.ID], done[f.ID] = recorded[f.ID], true
		return nil
	}
	for _, f := range files {
		if f.S3UploadID == "" {
			continue
		}
		if f.CompletedETag != "" {
			if err := fromRecord(f); err != nil {
				return nil, nil, err
			}
			continue
		}
		listed, err := s.S3.ListParts(ctx, f.S3Key, f.S3UploadID)
		if objectstore.IsNoSuchUpload(err) {
			obj, ok, herr := s.S3.HeadObject(ctx, f.S3Key)
			if herr != nil {
				return nil, nil, &S3Error{Err: herr}
			}
			if ok && obj.Size == f.SizeBytes {
				if err := fromRecord(f); err != nil {
					return nil, nil, err
				}
			}
			continue
		}
		if err != nil {
			return nil, nil, &S3Error{Err: err}
		}
		for _, p := range listed {
			parts[f.ID] = append(parts[f.ID], store.Part{FileID: f.ID, PartNumber: int(p.PartNumber), ETag: p.ETag, SizeBytes: p.Size})
		}
	}
	return parts, done, nil
}

// partsOf is the record of parts of a session and which files are done
// (completed in S3): the registers of acknowledged PUTs (proxy), or what S3
// holds (direct).
func (s *Service) partsOf(ctx context.Context, sess store.Session, files []store.File) (map[uuid.UUID][]store.Part, map[uuid.UUID]bool, error) {
	if sess.Transfer == store.TransferDirect {
		return s.directParts(ctx, sess.ID, files, time.Now())
	}
	parts, err := s.DB.Parts(ctx, sess.ID)
	done := map[uuid.UUID]bool{}
	for _, f := range files {
		done[f.ID] = f.CompletedETag != ""
	}
	return parts, done, err
}
