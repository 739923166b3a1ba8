package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/testenv/soakcheck"
)

// unsettled describes what still moves: sessions not yet finalized, expired,
// failed or deleted, held locks, resources being deleted. Empty when settled.
func (e *env) unsettled(ctx context.Context, db *pgx.Conn) (string, error) {
	var n, locks int
	if err := db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status NOT IN ('finalized', 'expired', 'failed')),
		count(*) FILTER (WHERE finalizing_at IS NOT NULL) FROM upload_sessions`).Scan(&n, &locks); err != nil {
		return "", err
	}
	var l uploadsv1.UploadSessionList
	if err := e.k8s.List(ctx, &l, ctrlclient.InNamespace(namespace)); err != nil {
		return "", err
	}
	deleting := 0
	for _, us := range l.Items {
		if us.DeletionTimestamp != nil {
			deleting++
		}
	}
	// Every session settled: no multipart upload has a use any more, and the
	// orphan sweep aborts what activations left.
	ups, err := e.st.S3.Client().ListMultipartUploads(ctx, "")
	if err != nil {
		return "", err
	}
	if n == 0 && locks == 0 && deleting == 0 && len(ups) == 0 {
		return "", nil
	}
	return fmt.Sprintf("%d sessions not settled, %d locks held, %d resources being deleted, %d multipart uploads in progress",
		n, locks, deleting, len(ups)), nil
}

// waitSettled polls until nothing moves or timeout passes; it returns what
// still moved then.
func (e *env) waitSettled(ctx context.Context, db *pgx.Conn, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		what, err := e.unsettled(ctx, db)
		if err != nil || what == "" || time.Now().After(deadline) {
			return what, err
		}
		time.Sleep(time.Second)
	}
}

// final reads what the system holds: every session's status, the MOCs, the
// bytes of every part of every finalized file, and what S3 holds beyond them.
func (e *env) final(ctx context.Context, db *pgx.Conn, h *history) (soakcheck.Final, error) {
	f := soakcheck.Final{Status: map[string]string{}, MOCs: map[string][]string{}, Parts: map[soakcheck.PartKey]string{}}
	rows, err := db.Query(ctx, `SELECT id::text, status FROM upload_sessions`)
	if err != nil {
		return f, err
	}
	for rows.Next() {
		var id, status string
		if err := rows.Scan(&id, &status); err != nil {
			return f, err
		}
		f.Status[id] = status
	}
	if err := rows.Err(); err != nil {
		return f, err
	}
	h.mu.Lock()
	for id, s := range h.sessions {
		if _, ok := f.Status[id]; !ok {
			f.Status[id] = "vanished (no delete asked)"
			if s.DeleteAsked {
				f.Status[id] = "deleted"
			}
		}
	}
	h.mu.Unlock()

	type object struct {
		session, file, key string
		size, partSize     int64
	}
	var objects []object
	referenced := map[string]bool{}
	rows, err = db.Query(ctx, `SELECT m.upload_session_id::text, m.id::text, f.file_id::text, f.s3_key, f.size_bytes, s.part_size_bytes
		FROM moc_instructions m JOIN upload_sessions s ON s.id = m.upload_session_id LEFT JOIN moc_files f ON f.moc_id = m.id`)
	if err != nil {
		return f, err
	}
	seen := map[string]bool{}
	for rows.Next() {
		var sess, moc string
		var file, key *string
		var size *int64
		var partSize int64
		if err := rows.Scan(&sess, &moc, &file, &key, &size, &partSize); err != nil {
			return f, err
		}
		if !seen[moc] {
			seen[moc] = true
			f.MOCs[sess] = append(f.MOCs[sess], moc)
		}
		if key != nil {
			referenced[*key] = true
			objects = append(objects, object{sess, *file, *key, *size, partSize})
		}
	}
	if err := rows.Err(); err != nil {
		return f, err
	}
	s3 := e.st.S3.Client()
	f.Objects = map[string]int64{}
	h.mu.Lock()
	expected := h.expected
	h.mu.Unlock()
	for _, o := range objects {
		body, err := s3.GetObject(ctx, o.key)
		if err != nil {
			return f, fmt.Errorf("read %s: %w", o.key, err)
		}
		data, err := io.ReadAll(body)
		_ = body.Close()
		if err != nil {
			return f, fmt.Errorf("read %s: %w", o.key, err)
		}
		f.Objects[o.file] = int64(len(data))
		// The parts its client created, not the ones the database says the
		// file has: a row that lost a part or a file must not shrink the check.
		size := o.size
		if want, ok := expected[o.session].Files[o.file]; ok {
			size = want
		}
		o.size = size
		parts := int((size + o.partSize - 1) / o.partSize)
		for n := 1; n <= parts; n++ {
			k := soakcheck.PartKey{Session: o.session, File: o.file, Part: n}
			lo, hi := int64(n-1)*o.partSize, min(int64(n)*o.partSize, o.size)
			if hi > int64(len(data)) {
				f.Parts[k] = "" // the object is shorter than its row says
				continue
			}
			f.Parts[k] = digest(data[lo:hi])
		}
	}
	ups, err := s3.ListMultipartUploads(ctx, "")
	if err != nil {
		return f, err
	}
	for _, u := range ups {
		f.LeftoverUploads = append(f.LeftoverUploads, u.Key+" "+u.UploadID)
	}
	keys, err := s3.ListObjects(ctx, "")
	if err != nil {
		return f, err
	}
	for _, k := range keys {
		if !referenced[k] {
			f.Unreferenced = append(f.Unreferenced, k)
		}
	}
	return f, nil
}
