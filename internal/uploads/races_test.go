package uploads_test

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"

	"github.com/mocs-dev/upload-operator/internal/failpoint"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/store"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// storePartAsync sends part n of file with body and returns where the
// outcome will arrive.
func storePartAsync(svc *uploads.Service, ts *testSession, file, n int, body []byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := svc.StorePart(context.Background(), uploads.PartUpload{
			Session: ts.act.Session, File: ts.act.Files[file], PartNumber: n, Body: bytes.NewReader(body), Size: int64(len(body)),
		})
		done <- err
	}()
	return done
}

func receiveErr(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("no outcome")
		return nil
	}
}

// otherBytes is part n of file with every byte changed.
func (ts *testSession) otherBytes(file, n int) []byte {
	ps := ts.act.Session.PartSizeBytes
	lo := int64(n-1) * ps
	b := bytes.Clone(ts.data[file][lo:min(lo+ps, int64(len(ts.data[file])))])
	for i := range b {
		b[i] ^= 0x5a
	}
	return b
}

// A part that finishes after its session stopped being active says what
// happened to the session: expired → ErrExpired (410), deleted →
// ErrSessionNotFound (404); never a 500 or a 409 that hides either; whether
// the S3 write came before or after the change.
func TestPartFinishingAfterExpiryOrDeleteSaysWhatHappened(t *testing.T) {
	for _, tc := range []struct {
		name, point, change string
		want                error
	}{
		{"expired before the S3 write", "part/before-s3", "expire", uploads.ErrExpired},
		{"expired before the record", "part/before-record", "expire", uploads.ErrExpired},
		{"deleted before the S3 write", "part/before-s3", "delete", uploads.ErrSessionNotFound},
		{"deleted before the record", "part/before-record", "delete", uploads.ErrSessionNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc, clk := newService(t)
			ts := activate(t, svc, 6*session.MiB)
			g := holdAt(t, tc.point)
			put := storePartAsync(svc, ts, 0, 1, ts.data[0][:5*session.MiB])
			g.wait(t)
			switch tc.change {
			case "expire":
				pastExpiry(t, clk, ts.id)
				if ok, err := svc.Expire(context.Background(), logr.Discard(), ts.id); !ok || err != nil {
					t.Fatalf("expire: %v, %v", ok, err)
				}
			case "delete":
				if err := svc.Discard(context.Background(), logr.Discard(), ts.id); err != nil {
					t.Fatalf("discard: %v", err)
				}
			}
			g.release()
			if err := receiveErr(t, put); !errors.Is(err, tc.want) {
				t.Fatalf("= %v; want %v", err, tc.want)
			}
			if n := countRows(t, `SELECT count(*) FROM upload_parts WHERE file_id = $1`, ts.act.Files[0].ID); n != 0 {
				t.Fatalf("%d parts recorded", n)
			}
		})
	}
}

// Deleting a session whose finalize is alive (renewing its lease, well past
// the stale window) waits for it: nothing is aborted under the finalize, which
// creates the MOC; the delete then leaves the finalized session alone.
func TestDeleteWaitsForALiveFinalize(t *testing.T) {
	svc, _ := newService(t)
	svc.StaleLockAfter = time.Second
	ts := activate(t, svc, 6*session.MiB, 100)
	ts.uploadAll(t, svc)
	g := holdAt(t, "finalize/after-plan")
	done := finalizeAsync(svc, ts, "Kept "+ts.id.String()[:8])
	g.wait(t)
	time.Sleep(1500 * time.Millisecond) // past the 1 s window: only renewals keep the lock fresh
	err := svc.Discard(context.Background(), logr.Discard(), ts.id)
	var ip *uploads.InProgressError
	if !errors.As(err, &ip) {
		t.Fatalf("delete during a live finalize: %v; want it told to wait", err)
	}
	g.release()
	if r := receive(t, done); r.err != nil || !r.res.Created {
		t.Fatalf("finalize: %+v, %v", r.res, r.err)
	}
	if err := svc.Discard(context.Background(), logr.Discard(), ts.id); err != nil {
		t.Fatal(err)
	}
	assertOneMOC(t, svc, ts)
}

// A finalize that comes after a delete claimed the session finds it gone
// (404), whatever the delete is still doing in S3.
func TestFinalizeAfterADeleteClaimedTheSessionIsNotFound(t *testing.T) {
	svc, _ := newService(t)
	ts := activate(t, svc, 6*session.MiB)
	ts.uploadAll(t, svc)
	g := holdAt(t, "discard/after-claim")
	discarded := make(chan error, 1)
	go func() { discarded <- svc.Discard(context.Background(), logr.Discard(), ts.id) }()
	g.wait(t)
	if _, err := finalize(svc, ts, "Too late"); !errors.Is(err, uploads.ErrSessionNotFound) {
		t.Fatalf("finalize during the delete: %v; want not found", err)
	}
	g.release()
	if err := receiveErr(t, discarded); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, svc, ts)
}

// assertNothingLeft checks that no multipart upload and no object remain under
// the session's prefix, and that its rows are gone or, with a status given
// (expired, failed), that they remain with that status.
func assertNothingLeft(t *testing.T, svc *uploads.Service, ts *testSession, status ...string) {
	t.Helper()
	ctx := context.Background()
	ups, err := svc.S3.ListMultipartUploads(ctx, session.SessionPrefix(ts.id))
	if err != nil || len(ups) != 0 {
		t.Fatalf("multipart uploads left: %v, %v", ups, err)
	}
	objs, err := svc.S3.ListObjects(ctx, session.SessionPrefix(ts.id))
	if err != nil || len(objs) != 0 {
		t.Fatalf("objects left: %v, %v", objs, err)
	}
	want, q, args := 0, `SELECT count(*) FROM upload_sessions WHERE id = $1`, []any{ts.id}
	if len(status) > 0 {
		want, q, args = 1, `SELECT count(*) FROM upload_sessions WHERE id = $1 AND status = $2`, []any{ts.id, status[0]}
	}
	if n := countRows(t, q, args...); n != want {
		t.Fatalf("session rows = %d, want %d", n, want)
	}
}

// A finalize that completed the S3 uploads and then lost the slug to another
// MOC at commit leaves objects under the session's prefix. If the session is
// then abandoned, expiry or delete removes those objects too.
func TestAbandonedSessionsLeaveNoObjects(t *testing.T) {
	for _, end := range []string{"expire", "delete"} {
		t.Run(end, func(t *testing.T) {
			svc, clk := newService(t)
			ts := activate(t, svc, 6*session.MiB, 100)
			ts.uploadAll(t, svc)
			rival := activate(t, svc, 10)
			if _, err := pool().Exec(context.Background(), `UPDATE upload_sessions SET user_id = $2 WHERE id = $1`, rival.id, ts.owner); err != nil {
				t.Fatal(err)
			}
			rival.uploadAll(t, svc)
			title := "Contested " + ts.id.String()[:8]
			var raced atomic.Bool
			failpoint.EnableFunc("finalize/after-all-complete", func() error {
				if raced.CompareAndSwap(false, true) { // the rival takes the slug between check and commit
					if _, err := finalize(svc, rival, title); err != nil {
						t.Errorf("rival: %v", err)
					}
				}
				return nil
			})
			_, err := finalize(svc, ts, title)
			failpoint.Disable("finalize/after-all-complete")
			var sc *uploads.SlugConflictError
			if !errors.As(err, &sc) {
				t.Fatalf("= %v; want a slug conflict at commit", err)
			}
			if objs, err := svc.S3.ListObjects(context.Background(), session.SessionPrefix(ts.id)); err != nil || len(objs) != 2 {
				t.Fatalf("objects completed before the conflict: %v, %v; want 2", objs, err)
			}
			switch end {
			case "expire":
				pastExpiry(t, clk, ts.id)
				if ok, err := svc.Expire(context.Background(), logr.Discard(), ts.id); !ok || err != nil {
					t.Fatalf("expire: %v, %v", ok, err)
				}
			case "delete":
				if err := svc.Discard(context.Background(), logr.Discard(), ts.id); err != nil {
					t.Fatal(err)
				}
			}
			if end == "expire" {
				assertNothingLeft(t, svc, ts, "expired")
			} else {
				assertNothingLeft(t, svc, ts)
			}
		})
	}
}

// A session whose S3 multipart upload is lost fails: its row says failed,
// and the other files' uploads and any completed object are removed.
func TestLostUploadFailsTheSession(t *testing.T) {
	ctx := context.Background()
	svc, _ := newService(t)
	ts := activate(t, svc, 6*session.MiB, 6*session.MiB)
	ts.uploadAll(t, svc)
	f := ts.act.Files[1]
	if err := svc.S3.AbortMultipartUpload(ctx, f.S3Key, f.S3UploadID); err != nil {
		t.Fatal(err)
	}
	_, err := finalize(svc, ts, "Lost "+ts.id.String()[:8])
	var lost *uploads.UploadLostError
	if !errors.As(err, &lost) || lost.FileID != f.ID.String() {
		t.Fatalf("= %v; want the upload of file 1 lost", err)
	}
	if n := countRows(t, `SELECT count(*) FROM upload_sessions WHERE id = $1 AND status = 'failed' AND finalizing_at IS NULL`, ts.id); n != 1 {
		t.Fatal("session not failed")
	}
	ups, err := svc.S3.ListMultipartUploads(ctx, session.SessionPrefix(ts.id))
	if err != nil || len(ups) != 0 {
		t.Fatalf("uploads left: %v, %v", ups, err)
	}
	if _, err := finalize(svc, ts, "Again"); !errors.As(err, new(*uploads.NotActiveError)) {
		t.Fatalf("finalize of a failed session: %v; want not active", err)
	}
}

// Recording an upload id whose reply is lost (the UPDATE committed; the
// network swallowed the answer) reads the record back instead of aborting the
// recorded upload: the session activates and takes parts.
func TestLostReplyToAnUploadRecordDoesNotBrickTheSession(t *testing.T) {
	ctx := context.Background()
	// The simple protocol sends each statement in one message, executed as it
	// arrives: the UPDATE commits, and only its reply is lost.
	px, viaProxy := proxiedDatabase(t, "sslmode=disable&connect_timeout=1&default_query_exec_mode=simple_protocol")
	proxied, err := store.OpenWithOptions(ctx, viaProxy, store.Options{CallTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer proxied.Close()
	svc, _ := newService(t)
	svc.DB = proxied

	var once atomic.Bool
	restored := make(chan struct{})
	failpoint.EnableFunc("activate/before-record-upload", func() error {
		if once.CompareAndSwap(false, true) {
			if err := px.AddToxic("lose-replies", "timeout", "downstream", `{"timeout":0}`); err != nil {
				return err
			}
			go func() {
				defer close(restored)
				time.Sleep(1200 * time.Millisecond)
				_ = px.RemoveToxic("lose-replies")
			}()
		}
		return nil
	})
	defer failpoint.Disable("activate/before-record-upload")
	ts := activate(t, svc, 6*session.MiB)
	<-restored
	f := ts.act.Files[0]
	if f.S3UploadID == "" {
		t.Fatal("no upload recorded")
	}
	ups, err := svc.S3.ListMultipartUploads(ctx, session.SessionPrefix(ts.id))
	if err != nil || len(ups) != 1 || ups[0].UploadID != f.S3UploadID {
		t.Fatalf("S3 uploads %v (%v); want exactly the recorded %s", ups, err, f.S3UploadID)
	}
	svc.DB = db
	ts.uploadAll(t, svc)
	if res, err := finalize(svc, ts, "Recorded "+ts.id.String()[:8]); err != nil || !res.Created {
		t.Fatalf("finalize: %v", err)
	}
	assertOneMOC(t, svc, ts)
}

// The active-session cap holds under concurrency: of ten sessions activated at
// once for an owner with a cap of three, exactly three are created.
func TestActiveSessionCapHoldsUnderConcurrency(t *testing.T) {
	svc, _ := newService(t)
	owner := "system:serviceaccount:cap:" + uuid.NewString()[:8]
	results := make(chan error, 10)
	for range 10 {
		go func() {
			_, err := svc.Activate(context.Background(), uploads.Request{SessionID: uuid.New(), Owner: owner, MaxActive: 3,
				Files: []session.File{{Name: "a.pdf", ContentType: "application/pdf", SizeBytes: 1}}})
			results <- err
		}()
	}
	created, refused := 0, 0
	for range 10 {
		switch err := <-results; {
		case err == nil:
			created++
		case errors.Is(err, uploads.ErrTooManyActive):
			refused++
		default:
			t.Fatal(err)
		}
	}
	if created != 3 || refused != 7 {
		t.Fatalf("created %d, refused %d; want 3 and 7", created, refused)
	}
}
