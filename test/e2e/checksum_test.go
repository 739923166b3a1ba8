package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/uuid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/checksum"
)

// Whole-file checksums over the real API server: declared over HTTP, echoed by
// the 201, by GET and in the resource's spec; verified at finalize, in the
// answer and in moc_files.
func TestDeclaredChecksumsAreEchoedAndKept(t *testing.T) {
	ctx := context.Background()
	acct := user(t)
	data := randomBytes(7 << 20)
	crc := checksum.EncodeCRC64(checksum.CRC64NVME(data))
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	r := call(t, "", "POST", "/api/mocs/uploads/sessions", acct.token, jsonBody(map[string]any{"partSizeBytes": 5 << 20,
		"files": []any{map[string]any{"name": "sum.pdf", "contentType": pdf, "sizeBytes": len(data),
			"checksum": map[string]any{"crc64nvme": crc, "sha256": strings.ToUpper(sha)}}}}))
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	want := fmt.Sprint(map[string]any{"crc64nvme": crc, "sha256": sha})
	file := r.body["files"].([]any)[0].(map[string]any)
	if got := fmt.Sprint(file["checksum"]); got != want {
		t.Fatalf("the 201 echoes %s, want %s", got, want)
	}
	us := &uploadsv1.UploadSession{}
	must(t, k8s.Get(ctx, types.NamespacedName{Namespace: "default", Name: r.str("sessionId")}, us))
	if c := us.Spec.Files[0].Checksum; c == nil || c.CRC64NVME != crc || c.SHA256 != sha {
		t.Fatalf("spec.files[0].checksum = %+v, want %s / %s", c, crc, sha)
	}
	u := &upload{id: r.str("sessionId"), partSize: 5 << 20, token: acct.token,
		files: []uploadFile{{id: file["fileId"].(string), data: data, partCount: 2}}}
	if g := call(t, "", "GET", "/api/mocs/uploads/sessions/"+u.id, acct.token, nil); fmt.Sprint(g.body["files"].([]any)[0].(map[string]any)["checksum"]) != want {
		t.Fatalf("GET: %s", g.raw)
	}
	u.putAll(t, "")
	f := u.finalize(t, "", uniqueTitle("Checked Castle"))
	if f.status != 201 || fmt.Sprint(f.body["files"].([]any)[0].(map[string]any)["checksum"]) != want {
		t.Fatalf("finalize: %d %s", f.status, f.raw)
	}
	var gotCRC, gotSHA string
	must(t, db.QueryRow(ctx, `SELECT checksum_crc64nvme, checksum_sha256 FROM moc_files WHERE file_id = $1`, u.files[0].id).Scan(&gotCRC, &gotSHA))
	if gotCRC != crc || gotSHA != sha {
		t.Fatalf("moc_files: %s / %s, want %s / %s", gotCRC, gotSHA, crc, sha)
	}
}

// A manifest's declared checksum that the parts do not match holds the
// session Active with Finalized=False, reason ChecksumMismatch, naming the
// file; the right part sent again finalizes it.
func TestDeclarativeChecksumMismatch(t *testing.T) {
	ctx := context.Background()
	acct := user(t)
	data := randomBytes(7 << 20)
	name := "checked-" + uuid.NewString()[:8]
	us := &uploadsv1.UploadSession{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: uploadsv1.UploadSessionSpec{Owner: acct.name, PartSizeBytes: ptr.To(int64(5 << 20)), Files: []uploadsv1.FileSpec{
			{Name: "checked.pdf", ContentType: pdf, SizeBytes: 7 << 20,
				Checksum: &uploadsv1.FileChecksum{CRC64NVME: checksum.EncodeCRC64(checksum.CRC64NVME(data))}},
		}},
	}
	must(t, k8s.Create(ctx, us))
	got := waitPhase(t, "default", name, uploadsv1.PhaseActive)
	wrong := append([]byte(nil), data...)
	wrong[len(wrong)-1] ^= 0x80
	u := &upload{id: got.Status.SessionID, partSize: got.Status.PartSizeBytes, token: acct.token,
		files: []uploadFile{{id: got.Status.Files[0].FileID, data: wrong, partCount: 2}}}
	u.putAll(t, "")
	patch := fmt.Sprintf(`{"spec":{"finalize":{"title":%q}}}`, uniqueTitle("Checked Manifest"))
	must(t, k8s.Patch(ctx, got, client.RawPatch(types.MergePatchType, []byte(patch))))
	c := waitCondition(t, name, uploadsv1.ReasonChecksumMismatch)
	if !strings.Contains(c.Message, got.Status.Files[0].FileID) || !strings.Contains(c.Message, "crc64nvme") {
		t.Fatalf("condition %+v; want it to name the file and the algorithm", c)
	}
	u.files[0].data = data
	if r := u.put(t, "", 0, 2); r.status != 200 {
		t.Fatalf("part 2 again: %d %s", r.status, r.raw)
	}
	waitPhase(t, "default", name, uploadsv1.PhaseFinalized)
}

// mocupload declares each file's CRC64NVME, refuses to resume from a file
// that changed, and verify tells a local file that is the one finalized from
// one that is not (exit 6).
func TestCLIDeclaresAndVerifiesChecksums(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "verify.pdf", 6<<20)
	token := user(t).token
	out, err := cliCmd(t, apiURL, token, "--output", "json", "upload", "--title", uniqueTitle("CLI Verify"), path).Output()
	if err != nil {
		t.Fatalf("upload: %v %s", err, out)
	}
	var res map[string]any
	must(t, json.Unmarshal(out, &res))
	id := res["sessionId"].(string)
	g := call(t, "", "GET", "/api/mocs/uploads/sessions/"+id, token, nil)
	crc, err := os.ReadFile(path)
	must(t, err)
	want := checksum.EncodeCRC64(checksum.CRC64NVME(crc))
	if got := g.body["files"].([]any)[0].(map[string]any)["checksum"]; fmt.Sprint(got) != fmt.Sprint(map[string]any{"crc64nvme": want}) {
		t.Fatalf("the CLI declared %v, want crc64nvme %s", got, want)
	}
	for _, by := range []string{id, res["mocId"].(string)} { // by session id and by MOC id
		if out, err := cliCmd(t, apiURL, token, "verify", by, path).CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "same") {
			t.Fatalf("verify %s of the same file: %v %s", by, err, out)
		}
	}
	other := writeFile(t, dir, "other.pdf", 6<<20)
	if out, err := cliCmd(t, apiURL, token, "verify", id, other).CombinedOutput(); exitCode(err) != 6 || !strings.HasPrefix(string(out), "DIFFERENT") {
		t.Fatalf("verify of another file: exit %d %s; want 6 and DIFFERENT", exitCode(err), out)
	}

	// A session declared for one file, resumed from that file changed:
	// refused before a byte is sent.
	orig, err := os.ReadFile(other)
	must(t, err)
	sess := call(t, "", "POST", "/api/mocs/uploads/sessions", token, jsonBody(map[string]any{"partSizeBytes": 5 << 20,
		"files": []any{map[string]any{"name": "other.pdf", "contentType": pdf, "sizeBytes": len(orig),
			"checksum": map[string]any{"crc64nvme": checksum.EncodeCRC64(checksum.CRC64NVME(orig))}}}}))
	if sess.status != 201 {
		t.Fatalf("create: %d %s", sess.status, sess.raw)
	}
	orig[0] ^= 1
	must(t, os.WriteFile(other, orig, 0o600))
	out, err = cliCmd(t, apiURL, token, "resume", sess.str("sessionId"), other).CombinedOutput()
	if exitCode(err) != 6 || !strings.Contains(string(out), "not the one the session declared") {
		t.Fatalf("resume from a changed file: exit %d %s; want 6", exitCode(err), out)
	}
	g = call(t, "", "GET", "/api/mocs/uploads/sessions/"+sess.str("sessionId"), token, nil)
	if parts, _ := g.body["files"].([]any)[0].(map[string]any)["parts"].([]any); len(parts) != 0 {
		t.Fatalf("parts were sent from the changed file: %s", g.raw)
	}
}
