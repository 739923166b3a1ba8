package webhook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"

	"github.com/mocs-dev/upload-operator/internal/objectstore"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/store"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// Direct sessions: the client PUTs each part to S3 (versitygw here) with a
// presigned URL from the upload API; the operator never sees the bytes.

// newDirectSession is an activated direct session of one file of size bytes
// (5 MiB parts).
func newDirectSession(t *testing.T, svc *uploads.Service, size int64) *activeSession {
	t.Helper()
	return newSessionWith(t, svc, size, store.TransferDirect)
}

// presigned is the answer of a part URL request.
type presigned struct {
	URL       string            `json:"url"`
	Method    string            `json:"method"`
	Headers   map[string]string `json:"headers"`
	ExpiresAt time.Time         `json:"expiresAt"`
}

// partURL asks for part n's URL as token, with an optional JSON body.
func (s *activeSession) partURL(t *testing.T, base, token string, n int, body map[string]string) (answer, presigned) {
	t.Helper()
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	a, err := send(context.Background(), t, http.MethodPost, base+s.partPath(n)+"/url", token, raw)
	if err != nil {
		t.Fatalf("part URL %d: %v", n, err)
	}
	var p presigned
	if a.status == http.StatusOK {
		b, _ := json.Marshal(a.body)
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
	}
	return a, p
}

// sendToS3 PUTs body with the presigned request and returns S3's status and
// body.
func sendToS3(t *testing.T, p presigned, body []byte) (int, string) {
	t.Helper()
	status, text, err := trySendToS3(p, body)
	if err != nil {
		t.Fatalf("PUT to S3: %v", err)
	}
	return status, text
}

// trySendToS3 is sendToS3 for a PUT that S3 may refuse by closing the
// connection while the body is still being sent.
func trySendToS3(p presigned, body []byte) (int, string, error) {
	req, err := http.NewRequest(p.Method, p.URL, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	for k, v := range p.Headers {
		req.Header.Set(k, v)
	}
	req.ContentLength = int64(len(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw), nil
}

func (s *activeSession) get(t *testing.T, base string) answer {
	t.Helper()
	a, err := send(context.Background(), t, http.MethodGet, base+"/api/mocs/uploads/sessions/"+s.act.Session.ID.String(), s.owner, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// onlyFile is files[0] of an answer about a session (or MOC) of one file.
func onlyFile(t *testing.T, a answer) map[string]any {
	t.Helper()
	files, _ := a.body["files"].([]any)
	if len(files) != 1 {
		t.Fatalf("%d files in the answer, want 1: %d %v", len(files), a.status, a.body)
	}
	f, _ := files[0].(map[string]any)
	return f
}

// listedParts is the part numbers and sizes GET lists for the session's file.
func listedParts(t *testing.T, a answer) map[int]int64 {
	t.Helper()
	out := map[int]int64{}
	parts, _ := onlyFile(t, a)["parts"].([]any)
	for _, p := range parts {
		m := p.(map[string]any)
		out[int(m["partNumber"].(float64))] = int64(m["sizeBytes"].(float64))
	}
	return out
}

func (s *activeSession) finalize(t *testing.T, base, title string) answer {
	t.Helper()
	a, err := send(context.Background(), t, http.MethodPost, base+"/api/mocs/uploads/finalize", s.owner, s.finalizeBody(title))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// A direct upload, resumed half way: the first part goes to S3 with its URL,
// GET lists what S3 holds, the second part follows, and finalize assembles
// the object from exactly the bytes sent.
func TestDirectUploadResumesFromWhatS3HoldsAndFinalizes(t *testing.T) {
	t.Parallel()
	svc := testService(t, nil)
	base := serve(t, svc, 25*time.Second).URL
	s := newDirectSession(t, svc, 5*session.MiB+4321)
	if got := s.act.Session.Transfer; got != store.TransferDirect {
		t.Fatalf("session transfer %q, want direct", got)
	}

	a, p := s.partURL(t, base, s.owner, 1, nil)
	if a.status != http.StatusOK || p.Method != http.MethodPut || !strings.Contains(p.URL, "X-Amz-Signature=") {
		t.Fatalf("part URL: %d %v", a.status, a.body)
	}
	if until := time.Until(p.ExpiresAt); until > session.MaxPartURLTTL || until < session.MaxPartURLTTL-time.Minute {
		t.Fatalf("URL expires in %s, want about %s", until, session.MaxPartURLTTL)
	}
	if status, body := sendToS3(t, p, s.part(1)); status != http.StatusOK {
		t.Fatalf("PUT part 1 to S3: %d %s", status, body)
	}
	if got := listedParts(t, s.get(t, base)); len(got) != 1 || got[1] != 5*session.MiB {
		t.Fatalf("GET after part 1 lists %v, want part 1 of 5 MiB", got)
	}
	if a := s.finalize(t, base, "Half a castle"); a.status != http.StatusBadRequest || a.code() != "INCOMPLETE_UPLOAD" {
		t.Fatalf("finalize with part 2 missing: %d %v", a.status, a.body)
	}

	_, p = s.partURL(t, base, s.owner, 2, nil)
	if status, body := sendToS3(t, p, s.part(2)); status != http.StatusOK {
		t.Fatalf("PUT part 2 to S3: %d %s", status, body)
	}
	if got := listedParts(t, s.get(t, base)); len(got) != 2 || got[2] != 4321 {
		t.Fatalf("GET after part 2 lists %v", got)
	}
	a = s.finalize(t, base, "Direct castle")
	if a.status != http.StatusCreated {
		t.Fatalf("finalize: %d %v", a.status, a.body)
	}
	obj, err := svc.S3.GetObject(context.Background(), s.act.Files[0].S3Key)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	got, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, s.data) {
		t.Fatalf("object has %d bytes that differ from the %d sent", len(got), len(s.data))
	}
}

// A part of the wrong size that reaches S3 (the URL signs the length, so only
// a client with its own S3 credentials can put one there) is named at
// finalize; sent again with the right size, the finalize goes through.
func TestDirectFinalizeRefusesAPartOfTheWrongSize(t *testing.T) {
	t.Parallel()
	svc := testService(t, nil)
	base := serve(t, svc, 25*time.Second).URL
	s := newDirectSession(t, svc, 5*session.MiB+10)
	f := s.act.Files[0]
	_, p := s.partURL(t, base, s.owner, 2, nil)
	if status, body := sendToS3(t, p, s.part(2)); status != http.StatusOK {
		t.Fatalf("PUT part 2: %d %s", status, body)
	}
	short := s.part(1)[:5*session.MiB-1]
	if _, err := svc.S3.UploadPart(context.Background(), f.S3Key, f.S3UploadID, 1, bytes.NewReader(short), int64(len(short)), objectstore.Checksums{}); err != nil {
		t.Fatal(err)
	}
	a := s.finalize(t, base, "Wrong size")
	if a.status != http.StatusBadRequest || a.code() != "INVALID_PART_SIZE" ||
		a.body["fileId"] != f.ID.String() || a.body["partNumber"] != float64(1) || a.body["expectedBytes"] != float64(5*session.MiB) {
		t.Fatalf("finalize with a short part 1: %d %v", a.status, a.body)
	}

	_, p = s.partURL(t, base, s.owner, 1, nil)
	if status, body, err := trySendToS3(p, short); err == nil && status == http.StatusOK {
		t.Fatalf("S3 took %d bytes with a URL signed for %d: %s", len(short), 5*session.MiB, body)
	}
	if status, body := sendToS3(t, p, s.part(1)); status != http.StatusOK {
		t.Fatalf("PUT part 1 again: %d %s", status, body)
	}
	if a := s.finalize(t, base, "Right size"); a.status != http.StatusCreated {
		t.Fatalf("finalize after the part was sent again: %d %v", a.status, a.body)
	}
}

// A URL past its expiry is refused by S3 itself, and nothing it carried is
// listed.
func TestDirectExpiredPartURLIsRefusedByS3(t *testing.T) {
	t.Parallel()
	svc := testService(t, nil)
	svc.PartURLTTL = time.Second
	base := serve(t, svc, 25*time.Second).URL
	s := newDirectSession(t, svc, 1000)
	_, p := s.partURL(t, base, s.owner, 1, nil)
	if until := time.Until(p.ExpiresAt); until > time.Second {
		t.Fatalf("URL expires in %s, want at most PART_URL_TTL (1s)", until)
	}
	// S3 judges expiry in whole seconds from the signing time: wait past it.
	time.Sleep(time.Until(p.ExpiresAt) + 1500*time.Millisecond)
	status, body := sendToS3(t, p, s.part(1))
	if status != http.StatusForbidden || !strings.Contains(body, "AccessDenied") {
		t.Fatalf("PUT with an expired URL: %d %s, want 403 AccessDenied", status, body)
	}
	if got := listedParts(t, s.get(t, base)); len(got) != 0 {
		t.Fatalf("GET lists %v after a refused PUT", got)
	}
}

// A checksum declared when asking for the URL is signed into it: S3 takes
// the bytes it matches and refuses others of the same size.
func TestDirectDeclaredChecksumIsVerifiedByS3(t *testing.T) {
	t.Parallel()
	svc := testService(t, nil)
	base := serve(t, svc, 25*time.Second).URL
	s := newDirectSession(t, svc, 2048)
	sum := sha256.Sum256(s.part(1))
	a, p := s.partURL(t, base, s.owner, 1, map[string]string{"checksumSHA256": base64.StdEncoding.EncodeToString(sum[:])})
	if a.status != http.StatusOK {
		t.Fatalf("part URL with a checksum: %d %v", a.status, a.body)
	}
	other := bytes.Repeat([]byte{'x'}, 2048)
	if status, body, err := trySendToS3(p, other); err == nil && status == http.StatusOK {
		t.Fatalf("S3 took bytes that do not match the signed checksum: %s", body)
	}
	if status, body := sendToS3(t, p, s.part(1)); status != http.StatusOK {
		t.Fatalf("PUT of the declared bytes: %d %s", status, body)
	}
	if a, _ := s.partURL(t, base, s.owner, 1, map[string]string{"checksumSHA256": "not base64"}); a.status != http.StatusBadRequest || a.code() != "VALIDATION_ERROR" {
		t.Fatalf("malformed checksum: %d %v", a.status, a.body)
	}
}

// The URL call runs the part PUT's checks: someone else's session is not
// found, part numbers are checked against the file, the transfer mode must
// match (both ways), and a finalized session hands out no more URLs.
func TestDirectPartURLChecks(t *testing.T) {
	t.Parallel()
	svc := testService(t, nil)
	base := serve(t, svc, 25*time.Second).URL
	s := newDirectSession(t, svc, 100)
	proxied := newSession(t, svc, 100)
	for _, tc := range []struct {
		name   string
		do     func() answer
		status int
		code   string
	}{
		{"another user's session", func() answer { a, _ := s.partURL(t, base, proxied.owner, 1, nil); return a }, http.StatusNotFound, "SESSION_NOT_FOUND"},
		{"part beyond the file", func() answer { a, _ := s.partURL(t, base, s.owner, 2, nil); return a }, http.StatusBadRequest, "INVALID_PART_NUMBER"},
		{"part number syntax", func() answer { a, _ := s.partURL(t, base, s.owner, 0, nil); return a }, http.StatusBadRequest, "INVALID_PART_NUMBER"},
		{"URL of a proxied session", func() answer { a, _ := proxied.partURL(t, base, proxied.owner, 1, nil); return a }, http.StatusConflict, "WRONG_TRANSFER_MODE"},
		{"PUT to a direct session", func() answer { return s.putPart(t, base, 1) }, http.StatusConflict, "WRONG_TRANSFER_MODE"},
	} {
		if a := tc.do(); a.status != tc.status || a.code() != tc.code {
			t.Errorf("%s: %d %v, want %d %s", tc.name, a.status, a.body, tc.status, tc.code)
		}
	}
	_, p := s.partURL(t, base, s.owner, 1, nil)
	if status, body := sendToS3(t, p, s.part(1)); status != http.StatusOK {
		t.Fatalf("PUT: %d %s", status, body)
	}
	if a := s.finalize(t, base, "Small"); a.status != http.StatusCreated {
		t.Fatalf("finalize: %d %v", a.status, a.body)
	}
	if a, _ := s.partURL(t, base, s.owner, 1, nil); a.status != http.StatusConflict || a.code() != "SESSION_NOT_ACTIVE" {
		t.Fatalf("URL of a finalized session: %d %v", a.status, a.body)
	}
}

// Expiry and delete of a direct session leave nothing in S3, including parts
// sent with URLs, and a URL handed out before is refused afterwards.
func TestDirectSessionLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	svc := testService(t, nil)
	base := serve(t, svc, 25*time.Second).URL
	for _, end := range []string{"expire", "delete"} {
		t.Run(end, func(t *testing.T) {
			s := newDirectSession(t, svc, 5*session.MiB+1)
			_, p1 := s.partURL(t, base, s.owner, 1, nil)
			_, p2 := s.partURL(t, base, s.owner, 2, nil)
			if status, body := sendToS3(t, p1, s.part(1)); status != http.StatusOK {
				t.Fatalf("PUT: %d %s", status, body)
			}
			id := s.act.Session.ID
			ctx := context.Background()
			switch end {
			case "expire":
				expiredOnPostgreSQL(t, id) // expiry is judged on PostgreSQL's clock
				if ok, err := svc.Expire(ctx, logr.Discard(), id); err != nil || !ok {
					t.Fatalf("expire: %v %v", ok, err)
				}
			case "delete":
				if err := svc.Discard(ctx, logr.Discard(), id); err != nil {
					t.Fatal(err)
				}
			}
			if status, _, err := trySendToS3(p2, s.part(2)); err == nil && status == http.StatusOK {
				t.Fatalf("S3 took a part for an upload the %s aborted", end)
			}
			prefix := session.SessionPrefix(id)
			ups, err := svc.S3.ListMultipartUploads(ctx, prefix)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := svc.S3.ListObjects(ctx, prefix)
			if err != nil {
				t.Fatal(err)
			}
			if len(ups) != 0 || len(objs) != 0 {
				t.Fatalf("after %s: %d uploads and objects %v left under %s", end, len(ups), objs, prefix)
			}
		})
	}
}

// Part URLs that point at plain http S3 off this machine need a declared
// SHA-256: a CRC signed into the URL would not keep the bytes from being
// changed on the way. Over https, or to loopback, none is needed.
func TestPlainHTTPPartURLsNeedASHA256(t *testing.T) {
	t.Parallel()
	o := testS3.Options()
	o.PresignEndpoint = "http://s3.example.test:9000" // presigning sends nothing: no such host is reached
	svc := testService(t, &o)
	srv := serve(t, svc, 25*time.Second)
	s := newSessionWith(t, svc, 5*session.MiB, store.TransferDirect)
	sum := sha256.Sum256(s.part(1))
	crc := base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, crc32.ChecksumIEEE(s.part(1))))
	for _, body := range []map[string]string{nil, {"checksumCRC32": crc}} {
		a, _ := s.partURL(t, srv.URL, s.owner, 1, body)
		if a.status != http.StatusBadRequest || a.code() != "VALIDATION_ERROR" || !strings.Contains(fmt.Sprint(a.body["details"]), "checksumSHA256") {
			t.Fatalf("part URL over plain http with %v: %d %v; want 400 naming checksumSHA256", body, a.status, a.body)
		}
	}
	a, p := s.partURL(t, srv.URL, s.owner, 1, map[string]string{"checksumSHA256": base64.StdEncoding.EncodeToString(sum[:])})
	if a.status != http.StatusOK || !strings.HasPrefix(p.URL, "http://s3.example.test:9000/") {
		t.Fatalf("part URL with a SHA-256: %d %v", a.status, a.body)
	}
	// A whole-file checksum would make the file's upload take no part
	// checksum but a CRC64NVME: refused with such URLs.
	_, err := svc.Activate(context.Background(), uploads.Request{SessionID: uuid.New(), Owner: s.owner, Transfer: store.TransferDirect,
		Files: []session.File{{Name: "a.pdf", ContentType: "application/pdf", SizeBytes: 10, Checksum: &session.FileChecksum{CRC64NVME: "AAAAAAAAAAA="}}}})
	var ve *uploads.ValidationError
	if !errors.As(err, &ve) || !strings.Contains(fmt.Sprint(ve.Details), "files[0].checksum") {
		t.Fatalf("a declared checksum on a direct session with plain http part URLs: %v; want a validation error naming files[0].checksum", err)
	}
	// The suite's own S3 is plain http on loopback: no digest needed.
	local := newSessionWith(t, testService(t, nil), 5*session.MiB, store.TransferDirect)
	if a, _ := local.partURL(t, serve(t, testService(t, nil), 25*time.Second).URL, local.owner, 1, nil); a.status != http.StatusOK {
		t.Fatalf("part URL to loopback S3 without a digest: %d %v", a.status, a.body)
	}
}
