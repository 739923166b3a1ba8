package uploads_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
	"k8s.io/utils/ptr"

	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// Objects are stored so that a browser served one downloads it and never runs
// it: SVG (a document with scripts) is not allowed by default, the content type
// is the bare media type whatever parameters the client sent, and every object
// carries Content-Disposition: attachment with its file's name.
func TestObjectsAreStoredForDownloadOnly(t *testing.T) {
	svc, _ := newService(t)
	_, err := svc.Activate(context.Background(), uploads.Request{SessionID: uuid.New(), Owner: "someone",
		Files: []session.File{{Name: "castle.svg", ContentType: "image/svg+xml", SizeBytes: 10}}})
	var ve *uploads.ValidationError
	if !errors.As(err, &ve) || ve.Details[0].Field != "files[0].contentType" {
		t.Fatalf("an SVG file: %v; want refused by the default content types", err)
	}

	ts := &testSession{id: uuid.New(), owner: "system:serviceaccount:test:" + uuid.NewString()[:8]}
	ts.act, err = svc.Activate(context.Background(), uploads.Request{SessionID: ts.id, Owner: ts.owner,
		PartSizeBytes: ptr.To(5 * session.MiB),
		Files:         []session.File{{Name: "château plan.png", ContentType: "Image/PNG; charset=binary; x=\"<script>\"", SizeBytes: 100}}})
	if err != nil {
		t.Fatal(err)
	}
	ts.data = [][]byte{make([]byte, 100)}
	if ts.act.Files[0].ContentType != "image/png" {
		t.Fatalf("stored content type %q, want image/png", ts.act.Files[0].ContentType)
	}
	ts.uploadAll(t, svc)
	if _, err := finalize(svc, ts, "Plan "+ts.id.String()[:8]); err != nil {
		t.Fatal(err)
	}
	obj, ok, err := svc.S3.HeadObject(context.Background(), ts.act.Files[0].S3Key)
	if err != nil || !ok {
		t.Fatalf("object: %v %v", ok, err)
	}
	if obj.ContentType != "image/png" || obj.ContentDisposition != `attachment; filename*=utf-8''ch%C3%A2teau%20plan.png` {
		t.Fatalf("object Content-Type %q, Content-Disposition %q", obj.ContentType, obj.ContentDisposition)
	}
}
