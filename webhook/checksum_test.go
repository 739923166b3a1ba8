package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"k8s.io/utils/ptr"

	"github.com/mocs-dev/upload-operator/internal/checksum"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/store"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// The direct mode the same: a part flipped on its way to S3 (its URL signed
// for the flipped bytes' CRC64NVME, so S3 takes it) is caught at finalize
// before anything is completed; the right part sent again with a new URL
// finalizes. A part URL for such a file takes no part checksum but a
// CRC64NVME (the upload S3 checks as a whole refuses the others).
func TestDirectFlippedByteIsCaughtAtFinalize(t *testing.T) {
	t.Parallel()
	svc := testService(t, nil)
	base := serve(t, svc, 25*time.Second).URL
	data := randomFile(t, 7<<20)
	want := checksum.EncodeCRC64(checksum.CRC64NVME(data))
	s := declaredDirectSession(t, svc, &session.FileChecksum{CRC64NVME: want}, data)
	if a, _ := s.partURL(t, base, s.owner, 1, map[string]string{"checksumCRC32": crc32Of(s.part(1))}); a.status != http.StatusBadRequest ||
		!strings.Contains(fmt.Sprint(a.body["details"]), "checksumCRC32") {
		t.Fatalf("a CRC32 for a checked file's part: %d %v; want 400 naming checksumCRC32", a.status, a.body)
	}
	flipped := bytes.Clone(s.part(2))
	flipped[100] ^= 0x04
	for n, body := range map[int][]byte{1: s.part(1), 2: flipped} {
		crc := checksum.EncodeCRC64(checksum.CRC64NVME(body))
		a, p := s.partURL(t, base, s.owner, n, map[string]string{"checksumCRC64NVME": crc})
		if a.status != http.StatusOK {
			t.Fatalf("part URL %d: %d %v", n, a.status, a.body)
		}
		if status, text := sendToS3(t, p, body); status != http.StatusOK {
			t.Fatalf("PUT of part %d to S3: %d %s", n, status, text)
		}
	}
	a := s.finalize(t, base, "Direct flipped "+uuid.NewString()[:8])
	if a.status != http.StatusBadRequest || a.code() != "CHECKSUM_MISMATCH" || a.body["resend"] != "changed-parts" || a.body["expected"] != want {
		t.Fatalf("finalize = %d %v; want 400 CHECKSUM_MISMATCH, changed parts", a.status, a.body)
	}
	_, p := s.partURL(t, base, s.owner, 2, nil) // no part checksum: S3 computes the CRC itself
	if status, text := sendToS3(t, p, s.part(2)); status != http.StatusOK {
		t.Fatalf("PUT of part 2 again: %d %s", status, text)
	}
	a = s.finalize(t, base, "Direct fixed "+uuid.NewString()[:8])
	if a.status != http.StatusCreated || finalizedChecksum(t, a)["crc64nvme"] != want {
		t.Fatalf("finalize after the fix = %d %v; want 201 with crc64nvme %s", a.status, a.body, want)
	}
}

// declaredSession activates a proxied session of one file of data (parts of
// 5 MiB) with the whole-file checksum sum declared.
func declaredSession(t *testing.T, svc *uploads.Service, sum *session.FileChecksum, data []byte) *activeSession {
	t.Helper()
	return declaredSessionWith(t, svc, store.TransferProxy, sum, data)
}

// declaredDirectSession is declaredSession for a direct session.
func declaredDirectSession(t *testing.T, svc *uploads.Service, sum *session.FileChecksum, data []byte) *activeSession {
	t.Helper()
	return declaredSessionWith(t, svc, store.TransferDirect, sum, data)
}

func declaredSessionWith(t *testing.T, svc *uploads.Service, transfer string, sum *session.FileChecksum, data []byte) *activeSession {
	t.Helper()
	owner := "system:serviceaccount:webhook-test:" + uuid.NewString()[:8]
	act, err := svc.Activate(context.Background(), uploads.Request{
		SessionID: uuid.New(), Owner: owner, PartSizeBytes: ptr.To(5 * session.MiB), Transfer: transfer,
		Files: []session.File{{Name: "castle.pdf", ContentType: "application/pdf", SizeBytes: int64(len(data)), Checksum: sum}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &activeSession{owner: owner, act: act, data: data}
}

// putBytes PUTs body as part n with the given headers.
func (s *activeSession) putBytes(t *testing.T, base string, n int, body []byte, hdr map[string]string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, base+s.partPath(n), bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+s.owner)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("PUT part %d: %v", n, err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header}
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &a.body)
	return a
}

func crc32Of(b []byte) string {
	return base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, crc32.ChecksumIEEE(b)))
}

func randomFile(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// mocCount is how many MOCs the session has (0 or 1).
func mocCount(t *testing.T, id uuid.UUID) int {
	t.Helper()
	var n int
	if err := testDB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM moc_instructions WHERE upload_session_id = $1`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// finalizedChecksum is files[0].checksum of a finalize answer.
func finalizedChecksum(t *testing.T, a answer) map[string]any {
	t.Helper()
	c, _ := onlyFile(t, a)["checksum"].(map[string]any)
	return c
}

// One flipped byte in one part, sent with a part checksum that matches the
// flipped bytes (so nothing on the way can tell), is caught at finalize by the
// declared CRC64NVME: 400 naming the file, nothing committed, the session
// still active. The right part sent again finalizes, and the catalog, the
// answer and S3 carry the verified checksum. A resume from a changed local
// file is the same case: parts of another file under the declared checksum.
func TestAFlippedByteIsCaughtAtFinalizeAndTheRightPartFixesIt(t *testing.T) {
	t.Parallel()
	svc := testService(t, nil)
	base := serve(t, svc, 25*time.Second).URL
	data := randomFile(t, 12<<20)
	want := checksum.EncodeCRC64(checksum.CRC64NVME(data))
	s := declaredSession(t, svc, &session.FileChecksum{CRC64NVME: want}, data)
	flipped := bytes.Clone(s.part(2))
	flipped[12345] ^= 0x01
	for n, body := range map[int][]byte{1: s.part(1), 2: flipped, 3: s.part(3)} {
		if a := s.putBytes(t, base, n, body, map[string]string{"x-amz-checksum-crc32": crc32Of(body)}); a.status != http.StatusOK {
			t.Fatalf("part %d: %d %v", n, a.status, a.body)
		}
	}
	a := s.finalize(t, base, "Flipped "+uuid.NewString()[:8])
	bad := bytes.Clone(data)
	bad[5<<20+12345] ^= 0x01
	if a.status != http.StatusBadRequest || a.code() != "CHECKSUM_MISMATCH" || a.body["fileId"] != s.act.Files[0].ID.String() ||
		a.body["algorithm"] != "crc64nvme" || a.body["expected"] != want || a.body["actual"] != checksum.EncodeCRC64(checksum.CRC64NVME(bad)) ||
		a.body["resend"] != "changed-parts" {
		t.Fatalf("finalize = %d %v; want 400 CHECKSUM_MISMATCH naming the file, crc64nvme %s, and the CRC of what was sent", a.status, a.body, want)
	}
	if n := mocCount(t, s.act.Session.ID); n != 0 {
		t.Fatalf("%d MOCs after a refused finalize", n)
	}
	if g := s.get(t, base); g.body["status"] != store.StatusActive {
		t.Fatalf("session after the mismatch: %v, want active", g.body["status"])
	}
	if a := s.putBytes(t, base, 2, s.part(2), nil); a.status != http.StatusOK {
		t.Fatalf("part 2 again: %d %v", a.status, a.body)
	}
	a = s.finalize(t, base, "Fixed "+uuid.NewString()[:8])
	if a.status != http.StatusCreated || finalizedChecksum(t, a)["crc64nvme"] != want {
		t.Fatalf("finalize after the fix = %d %v; want 201 with crc64nvme %s", a.status, a.body, want)
	}
	var stored string
	if err := testDB.Pool.QueryRow(context.Background(), `SELECT checksum_crc64nvme FROM moc_files WHERE file_id = $1`, s.act.Files[0].ID).Scan(&stored); err != nil || stored != want {
		t.Fatalf("moc_files.checksum_crc64nvme = %q (%v), want %s", stored, err, want)
	}
	obj, ok, err := testS3.Client().HeadObject(context.Background(), s.act.Files[0].S3Key)
	if err != nil || !ok || obj.CRC64NVME != want {
		t.Fatalf("S3's object: %+v, %v, %v; want its CRC64NVME %s", obj, ok, err, want)
	}
	body, err := testS3.Client().GetObject(context.Background(), s.act.Files[0].S3Key)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	if got, _ := io.ReadAll(body); !bytes.Equal(got, data) {
		t.Fatal("the object's bytes are not the file's")
	}
	if g := s.get(t, base); fmt.Sprint(onlyFile(t, g)["checksum"]) != fmt.Sprint(map[string]any{"crc64nvme": want}) {
		t.Fatalf("GET of the finalized session: %v, want its checksum", g.body["files"])
	}
	// The MOC by its id: its owner sees the verified checksum; anyone else,
	// and an id that is not one, gets 404.
	mocPath := base + "/api/mocs/uploads/mocs/" + a.body["mocId"].(string)
	m, err := send(context.Background(), t, http.MethodGet, mocPath, s.owner, nil)
	if err != nil || m.status != http.StatusOK || m.body["sessionId"] != s.act.Session.ID.String() || finalizedChecksum(t, m)["crc64nvme"] != want {
		t.Fatalf("GET of the MOC: %d %v (%v); want 200 with its session and checksum", m.status, m.body, err)
	}
	for _, tc := range []struct{ path, token string }{{mocPath, "someone-else"}, {base + "/api/mocs/uploads/mocs/not-a-uuid", s.owner}} {
		if m, err := send(context.Background(), t, http.MethodGet, tc.path, tc.token, nil); err != nil || m.status != http.StatusNotFound || m.code() != "MOC_NOT_FOUND" {
			t.Fatalf("GET %s as %s: %d %v (%v); want 404 MOC_NOT_FOUND", tc.path, tc.token, m.status, m.body, err)
		}
	}
}

// A file with no declared checksum still gets S3's CRC64NVME in the answer
// and the catalog.
func TestUndeclaredFilesGetTheirCRC64NVME(t *testing.T) {
	t.Parallel()
	svc := testService(t, nil)
	base := serve(t, svc, 25*time.Second).URL
	data := randomFile(t, 7<<20)
	s := declaredSession(t, svc, nil, data)
	for n := 1; n <= 2; n++ {
		if a := s.putPart(t, base, n); a.status != http.StatusOK {
			t.Fatalf("part %d: %d %v", n, a.status, a.body)
		}
	}
	a := s.finalize(t, base, "Undeclared "+uuid.NewString()[:8])
	if want := checksum.EncodeCRC64(checksum.CRC64NVME(data)); a.status != http.StatusCreated || finalizedChecksum(t, a)["crc64nvme"] != want {
		t.Fatalf("finalize = %d %v; want 201 with crc64nvme %s", a.status, a.body, want)
	}
}

// A declared SHA-256 (which S3 cannot check for a multipart object) is checked
// by reading the completed object back: a mismatch refuses the finalize,
// commits nothing, and starts the file over (every part to send again); the
// right bytes then finalize with the SHA-256 in the answer and the catalog.
func TestADeclaredSHA256IsCheckedByReadingTheObjectBack(t *testing.T) {
	t.Parallel()
	svc := testService(t, nil)
	base := serve(t, svc, 25*time.Second).URL
	data := randomFile(t, 12<<20)
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	s := declaredSession(t, svc, &session.FileChecksum{SHA256: strings.ToUpper(want)}, data)
	wrong := bytes.Clone(s.part(3))
	wrong[0] ^= 0xff
	for n, body := range map[int][]byte{1: s.part(1), 2: s.part(2), 3: wrong} {
		if a := s.putBytes(t, base, n, body, nil); a.status != http.StatusOK {
			t.Fatalf("part %d: %d %v", n, a.status, a.body)
		}
	}
	a := s.finalize(t, base, "Wrong "+uuid.NewString()[:8])
	if a.status != http.StatusBadRequest || a.code() != "CHECKSUM_MISMATCH" || a.body["algorithm"] != "sha256" ||
		a.body["expected"] != want || a.body["resend"] != "all-parts" {
		t.Fatalf("finalize = %d %v; want 400 CHECKSUM_MISMATCH sha256 %s, every part to send again", a.status, a.body, want)
	}
	if n := mocCount(t, s.act.Session.ID); n != 0 {
		t.Fatalf("%d MOCs after a refused finalize", n)
	}
	if got := listedParts(t, s.get(t, base)); len(got) != 0 {
		t.Fatalf("GET lists parts %v after the file started over, want none", got)
	}
	for n := 1; n <= 3; n++ {
		if a := s.putPart(t, base, n); a.status != http.StatusOK {
			t.Fatalf("part %d again: %d %v", n, a.status, a.body)
		}
	}
	a = s.finalize(t, base, "Right "+uuid.NewString()[:8])
	if a.status != http.StatusCreated || finalizedChecksum(t, a)["sha256"] != want {
		t.Fatalf("finalize of the right bytes = %d %v; want 201 with sha256 %s", a.status, a.body, want)
	}
	var stored string
	if err := testDB.Pool.QueryRow(context.Background(), `SELECT checksum_sha256 FROM moc_files WHERE file_id = $1`, s.act.Files[0].ID).Scan(&stored); err != nil || stored != want {
		t.Fatalf("moc_files.checksum_sha256 = %q (%v), want %s", stored, err, want)
	}
}

// The operator checks a part checksum S3 will not (an upload checked as a
// whole takes only CRC64NVME part checksums) as the bytes arrive: a wrong or
// malformed one is 400 CHECKSUM_MISMATCH naming the header, and nothing of
// the part is kept; the right one is 200.
func TestPartChecksumsAreCheckedAsTheBytesArrive(t *testing.T) {
	t.Parallel()
	svc := testService(t, nil)
	base := serve(t, svc, 25*time.Second).URL
	data := randomFile(t, 7<<20)
	s := declaredSession(t, svc, nil, data)
	p1 := s.part(1)
	sha := sha256.Sum256(p1)
	otherSHA := sha256.Sum256(p1[1:])
	for _, tc := range []struct {
		name, header, value string
		status              int
		malformed           bool
	}{
		{"wrong CRC32", "x-amz-checksum-crc32", crc32Of(p1[1:]), 400, false},
		{"malformed CRC32", "x-amz-checksum-crc32", "not-base64!", 400, true},
		{"wrong SHA-256", "x-amz-checksum-sha256", base64.StdEncoding.EncodeToString(otherSHA[:]), 400, false},
		{"right SHA-256", "x-amz-checksum-sha256", base64.StdEncoding.EncodeToString(sha[:]), 200, false},
	} {
		a := s.putBytes(t, base, 1, p1, map[string]string{tc.header: tc.value})
		if a.status != tc.status {
			t.Fatalf("%s: %d %v, want %d", tc.name, a.status, a.body, tc.status)
		}
		if tc.status == 400 {
			if a.code() != "CHECKSUM_MISMATCH" || a.body["header"] != tc.header || a.body["malformed"] != tc.malformed {
				t.Fatalf("%s: %v; want CHECKSUM_MISMATCH naming %s", tc.name, a.body, tc.header)
			}
			if got := listedParts(t, s.get(t, base)); len(got) != 0 {
				t.Fatalf("%s: GET lists %v after a refused part", tc.name, got)
			}
		}
	}
	listed, err := testS3.Client().ListParts(context.Background(), s.act.Files[0].S3Key, s.act.Files[0].S3UploadID)
	if err != nil || len(listed) != 1 {
		t.Fatalf("S3 holds %d parts (%v) after three refused PUTs and one accepted, want 1", len(listed), err)
	}
}

// Declared checksums are validated field by field. test/e2e checks the 201's
// and GET's echo, and the resource's spec, against a real API server.
func TestDeclaredChecksumsAreValidated(t *testing.T) {
	t.Parallel()
	base := serveWith(t, nil)
	file := func(c string) string {
		return fmt.Sprintf(`{"files":[{"name":"a.pdf","contentType":"application/pdf","sizeBytes":10,"checksum":%s}]}`, c)
	}
	for _, tc := range []struct{ body, field string }{
		{file(`{"crc64nvme":"AAAA"}`), "files[0].checksum.crc64nvme"},
		{file(`{"crc64nvme":"not base64"}`), "files[0].checksum.crc64nvme"},
		{file(`{"sha256":"abc"}`), "files[0].checksum.sha256"},
		{file(`{"sha256":"` + strings.Repeat("zz", 32) + `"}`), "files[0].checksum.sha256"},
	} {
		a, err := send(context.Background(), t, http.MethodPost, base+"/api/mocs/uploads/sessions", "alice", []byte(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		if a.status != http.StatusBadRequest || a.code() != "VALIDATION_ERROR" || !strings.Contains(fmt.Sprint(a.body["details"]), "field:"+tc.field+" ") {
			t.Errorf("%s: %d %v; want 400 VALIDATION_ERROR naming %s", tc.body, a.status, a.body, tc.field)
		}
	}
}
