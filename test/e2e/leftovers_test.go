package e2e

import (
	"context"
	"errors"
	"fmt"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
)

// nothingLeftBehind runs after every test (from TestMain, whatever order the
// tests ran in): every session resource is deleted; once the finalizers have
// run, nothing may be left that no MOC needs: no S3 multipart upload
// (finalize completed them, delete and expiry aborted them), no object that no
// MOC references (a failed or refused finalize may have completed some), and
// no session row that is not finalized. Any error reading them is a failure.
func nothingLeftBehind(ctx context.Context) error {
	var list uploadsv1.UploadSessionList
	if err := k8s.List(ctx, &list); err != nil {
		return fmt.Errorf("list session resources: %w", err)
	}
	for i := range list.Items {
		if err := client.IgnoreNotFound(k8s.Delete(ctx, &list.Items[i])); err != nil {
			return fmt.Errorf("delete %s/%s: %w", list.Items[i].Namespace, list.Items[i].Name, err)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var l uploadsv1.UploadSessionList
		if err := k8s.List(ctx, &l, client.Limit(5)); err != nil {
			return fmt.Errorf("list session resources: %w", err)
		}
		if len(l.Items) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("session resource %s/%s (%s) still there 60s after its delete",
				l.Items[0].Namespace, l.Items[0].Name, l.Items[0].Status.Phase)
		}
		time.Sleep(200 * time.Millisecond)
	}
	var problems []error
	ups, err := stack.S3.Client().ListMultipartUploads(ctx, "sessions/")
	if err != nil {
		return fmt.Errorf("list multipart uploads: %w", err)
	}
	if len(ups) != 0 {
		problems = append(problems, fmt.Errorf("%d multipart uploads left in the bucket, e.g. %v", len(ups), ups[0]))
	}
	keys, err := stack.S3.Client().ListObjects(ctx, "sessions/")
	if err != nil {
		return fmt.Errorf("list objects: %w", err)
	}
	referenced, err := referencedKeys(ctx)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if !referenced[k] {
			problems = append(problems, fmt.Errorf("object %s is referenced by no MOC", k))
		}
	}
	var unfinished int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM upload_sessions WHERE status <> 'finalized'`).Scan(&unfinished); err != nil {
		return fmt.Errorf("count unfinished session rows: %w", err)
	}
	if unfinished != 0 {
		problems = append(problems, fmt.Errorf("%d session rows left that are not finalized", unfinished))
	}
	return errors.Join(problems...)
}

// referencedKeys returns the S3 keys of every MOC's files.
func referencedKeys(ctx context.Context) (map[string]bool, error) {
	rows, err := db.Query(ctx, `SELECT s3_key FROM moc_files`)
	if err != nil {
		return nil, fmt.Errorf("read moc_files: %w", err)
	}
	defer rows.Close()
	referenced := map[string]bool{}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, fmt.Errorf("read moc_files: %w", err)
		}
		referenced[k] = true
	}
	return referenced, rows.Err()
}
