package e2e

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
)

const pdf, png = "application/pdf", "image/png"

// A service's whole flow over HTTP: create, send parts (one twice), resume
// information from GET, finalize (201, then 200 with the same body); the MOC
// rows, the S3 objects' bytes and the resource's status all agree.
func TestHTTPUploadFlow(t *testing.T) {
	ctx := context.Background()
	acct := user(t)
	u := createUpload(t, acct, fileReq{"castle-instructions.pdf", pdf, 12 << 20}, fileReq{"cover.png", png, 300 << 10})
	if len(u.files) != 2 || u.files[0].partCount != 3 || u.files[1].partCount != 1 {
		t.Fatalf("files = %+v", u.files)
	}

	// The resource exists before the 201, named after the session, labelled with it.
	us := &uploadsv1.UploadSession{}
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: "default", Name: u.id}, us); err != nil {
		t.Fatalf("resource of the session: %v", err)
	}
	if us.Labels[uploadsv1.SessionIDLabel] != u.id || us.Spec.Owner != acct.name {
		t.Fatalf("resource = %+v", us.ObjectMeta)
	}

	// Part 1 first, with a correlation id the response echoes.
	r := u.put(t, "", 0, 1, withHeader("X-Correlation-ID", "corr-flow-1"))
	if r.status != 200 || r.header.Get("X-Correlation-ID") != "corr-flow-1" || r.header.Get("ETag") != r.str("etag") ||
		r.body["partNumber"].(float64) != 1 || r.body["sizeBytes"].(float64) != 5<<20 || !strings.HasPrefix(r.str("etag"), `"`) {
		t.Fatalf("part 1: %d %s %v", r.status, r.raw, r.header)
	}
	// GET shows what was received, so a client can resume.
	g := call(t, "", "GET", "/api/mocs/uploads/sessions/"+u.id, acct.token, nil)
	if g.status != 200 || g.str("status") != "active" || g.str("phase") != "Active" {
		t.Fatalf("GET: %d %s", g.status, g.raw)
	}
	parts := g.body["files"].([]any)[0].(map[string]any)["parts"].([]any)
	if len(parts) != 1 || parts[0].(map[string]any)["etag"] != r.str("etag") {
		t.Fatalf("GET parts = %v", parts)
	}

	u.putAll(t, "")
	again := u.put(t, "", 0, 1) // the same part again: idempotent
	if again.status != 200 || again.str("etag") != r.str("etag") {
		t.Fatalf("part 1 again: %d %s", again.status, again.raw)
	}
	var rows int
	must(t, db.QueryRow(ctx, `SELECT count(*) FROM upload_parts p JOIN upload_files f ON f.id = p.file_id WHERE f.session_id = $1`, u.id).Scan(&rows))
	if rows != 4 {
		t.Fatalf("upload_parts rows = %d, want 4 (one per part)", rows)
	}
	// The resource's progress follows (batched, a moment behind).
	waitFor(t, 20*time.Second, "progress to reach 100%", func() (bool, string) {
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: "default", Name: u.id}, us); err != nil {
			return false, err.Error()
		}
		return strings.HasPrefix(us.Status.Progress, "100%"), us.Status.Progress
	})

	title := uniqueTitle("Flow Castle")
	f := u.finalize(t, "", title)
	if f.status != http.StatusCreated {
		t.Fatalf("finalize: %d %s", f.status, f.raw)
	}
	files := f.body["files"].([]any)
	if f.str("title") != title || f.str("slug") == "" || len(files) != 2 {
		t.Fatalf("finalize body: %s", f.raw)
	}
	for i, x := range files {
		m := x.(map[string]any)
		etag := m["etag"].(string)
		want := fmt.Sprintf(`-%d"`, u.files[i].partCount)
		if !strings.HasPrefix(etag, `"`) || !strings.HasSuffix(etag, want) || m["fileId"] != u.files[i].id {
			t.Errorf("file %d: %v", i, m)
		}
		obj, err := stack.S3.Client().GetObject(ctx, m["s3Key"].(string))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(obj)
		obj.Close()
		if !bytes.Equal(got, u.files[i].data) {
			t.Errorf("S3 object of file %d differs from what was sent", i)
		}
	}
	replay := u.finalize(t, "", title)
	if replay.status != http.StatusOK || !bytes.Equal(replay.raw, f.raw) {
		t.Fatalf("replay: %d %s, want 200 with %s", replay.status, replay.raw, f.raw)
	}
	var mocs, mocFiles int
	must(t, db.QueryRow(ctx, `SELECT count(*) FROM moc_instructions WHERE upload_session_id = $1 AND user_id = $2`, u.id, acct.name).Scan(&mocs))
	must(t, db.QueryRow(ctx, `SELECT count(*) FROM moc_files WHERE moc_id = $1`, f.str("mocId")).Scan(&mocFiles))
	if mocs != 1 || mocFiles != 2 {
		t.Fatalf("rows: %d moc_instructions, %d moc_files", mocs, mocFiles)
	}

	fin := waitPhase(t, "default", u.id, uploadsv1.PhaseFinalized)
	if fin.Status.Slug != f.str("slug") || fin.Status.MocID != f.str("mocId") || fin.Status.FinalizedAt == nil {
		t.Fatalf("status = %+v", fin.Status)
	}
	if c := meta.FindStatusCondition(fin.Status.Conditions, uploadsv1.ConditionFinalized); c == nil || c.Status != "True" {
		t.Fatalf("Finalized condition = %+v", c)
	}
	out := mustKubectl(t, "get", "us", u.id, "-n", "default")
	if !strings.Contains(out, "Finalized") || !strings.Contains(out, f.str("slug")) {
		t.Errorf("kubectl get:\n%s", out)
	}
	// Parts are refused once finalized.
	if r := u.put(t, "", 1, 1); r.status != http.StatusConflict || r.str("error") != "SESSION_NOT_ACTIVE" {
		t.Errorf("part after finalize: %d %s", r.status, r.raw)
	}

	// Deleting the resource of a finalized session loses nothing: GET and the
	// replay are answered from PostgreSQL.
	if err := k8s.Delete(ctx, fin); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "resource deleted", func() (bool, string) {
		err := k8s.Get(ctx, types.NamespacedName{Namespace: "default", Name: u.id}, &uploadsv1.UploadSession{})
		return apierrors.IsNotFound(err), fmt.Sprint("get: ", err)
	})
	if g := call(t, "", "GET", "/api/mocs/uploads/sessions/"+u.id, acct.token, nil); g.status != 200 || g.str("status") != "finalized" {
		t.Errorf("GET after delete: %d %s", g.status, g.raw)
	}
	if r := u.finalize(t, "", title); r.status != 200 || !bytes.Equal(r.raw, f.raw) {
		t.Errorf("replay after delete: %d %s", r.status, r.raw)
	}
}

func TestPartErrors(t *testing.T) {
	acct := user(t)
	u := createUpload(t, acct, fileReq{"a.pdf", pdf, 11 << 20})
	base := "/api/mocs/uploads/sessions/" + u.id + "/files/" + u.files[0].id + "/parts/"
	five := bytes.Repeat([]byte{1}, 5<<20)
	md5sum := md5.Sum([]byte("not these bytes"))
	cases := []struct {
		name, path, token string
		body              []byte
		opts              []reqOpt
		status            int
		code              string
		check             func(t *testing.T, r response)
	}{
		{"no token", base + "1", "", five, nil, 401, "UNAUTHENTICATED", nil},
		{"bad token", base + "1", "not-a-token", five, nil, 401, "UNAUTHENTICATED", nil},
		{"part 0", base + "0", acct.token, five, nil, 400, "INVALID_PART_NUMBER", validRange(1, 10000)},
		{"part -1", base + "-1", acct.token, five, nil, 400, "INVALID_PART_NUMBER", validRange(1, 10000)},
		{"part abc", base + "abc", acct.token, five, nil, 400, "INVALID_PART_NUMBER", validRange(1, 10000)},
		{"part 1.5", base + "1.5", acct.token, five, nil, 400, "INVALID_PART_NUMBER", validRange(1, 10000)},
		{"part 10001", base + "10001", acct.token, five, nil, 400, "INVALID_PART_NUMBER", validRange(1, 10000)},
		{"part beyond the file", base + "4", acct.token, five, nil, 400, "INVALID_PART_NUMBER", validRange(1, 3)},
		{"session not a UUID", "/api/mocs/uploads/sessions/nope/files/" + u.files[0].id + "/parts/1", acct.token, five, nil, 404, "SESSION_NOT_FOUND", nil},
		{"unknown session", "/api/mocs/uploads/sessions/" + uuid.NewString() + "/files/" + u.files[0].id + "/parts/1", acct.token, five, nil, 404, "SESSION_NOT_FOUND", nil},
		{"someone else's session", base + "1", other(t).token, five, nil, 404, "SESSION_NOT_FOUND", nil},
		{"unknown file", "/api/mocs/uploads/sessions/" + u.id + "/files/" + uuid.NewString() + "/parts/1", acct.token, five, nil, 404, "FILE_NOT_FOUND", nil},
		{"wrong size", base + "1", acct.token, five[:100], nil, 400, "INVALID_PART_SIZE", func(t *testing.T, r response) {
			if r.body["expectedBytes"].(float64) != 5<<20 {
				t.Errorf("expectedBytes = %v", r.body["expectedBytes"])
			}
		}},
		{"last part wrong size", base + "3", acct.token, five, nil, 400, "INVALID_PART_SIZE", func(t *testing.T, r response) {
			if r.body["expectedBytes"].(float64) != 1<<20 {
				t.Errorf("expectedBytes = %v", r.body["expectedBytes"])
			}
		}},
		{"bad Content-MD5", base + "1", acct.token, five, []reqOpt{withHeader("Content-MD5", base64.StdEncoding.EncodeToString(md5sum[:]))}, 400, "CHECKSUM_MISMATCH", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, "", "PUT", tc.path, tc.token, bytes.NewReader(tc.body), tc.opts...)
			if r.status != tc.status || r.str("error") != tc.code {
				t.Fatalf("= %d %s; want %d %s", r.status, r.raw, tc.status, tc.code)
			}
			if r.header.Get("X-Correlation-ID") == "" {
				t.Error("no X-Correlation-ID")
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
	t.Run("chunked body", func(t *testing.T) {
		req, _ := http.NewRequest("PUT", apiURL+base+"1", io.MultiReader(bytes.NewReader(five)))
		req.Header.Set("Authorization", "Bearer "+acct.token)
		req.ContentLength = -1
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusLengthRequired {
			t.Fatalf("status %d, want 411", resp.StatusCode)
		}
	})
	t.Run("good Content-MD5", func(t *testing.T) {
		sum := md5.Sum(u.partBytes(0, 1))
		r := u.put(t, "", 0, 1, withHeader("Content-MD5", base64.StdEncoding.EncodeToString(sum[:])))
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})
}

func validRange(lo, hi int) func(t *testing.T, r response) {
	return func(t *testing.T, r response) {
		vr, _ := r.body["validRange"].([]any)
		if len(vr) != 2 || vr[0].(float64) != float64(lo) || vr[1].(float64) != float64(hi) {
			t.Errorf("validRange = %v, want [%d, %d]", r.body["validRange"], lo, hi)
		}
	}
}

func TestCreateSessionValidation(t *testing.T) {
	acct := user(t)
	cases := []struct {
		name, body, field string
	}{
		{"no files", `{"files":[]}`, "files"},
		{"not JSON", `{"files":`, "body"},
		{"size is a string", `{"files":[{"name":"a.pdf","contentType":"application/pdf","sizeBytes":"big"}]}`, "files.sizeBytes"},
		{"files is an object", `{"files":{}}`, "files"},
		{"zero size", `{"files":[{"name":"a.pdf","contentType":"application/pdf","sizeBytes":0}]}`, "files[0].sizeBytes"},
		{"content type not allowed", `{"files":[{"name":"a.exe","contentType":"application/x-msdownload","sizeBytes":5}]}`, "files[0].contentType"},
		{"path in name", `{"files":[{"name":"../a.pdf","contentType":"application/pdf","sizeBytes":5}]}`, "files[0].name"},
		{"part size too small", `{"files":[{"name":"a.pdf","contentType":"application/pdf","sizeBytes":5}],"partSizeBytes":1024}`, "partSizeBytes"},
		{"too large", `{"files":[{"name":"a.pdf","contentType":"application/pdf","sizeBytes":6000000000}]}`, "files[0].sizeBytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, "", "POST", "/api/mocs/uploads/sessions", acct.token, strings.NewReader(tc.body))
			if r.status != 400 || r.str("error") != "VALIDATION_ERROR" {
				t.Fatalf("= %d %s", r.status, r.raw)
			}
			details, _ := r.body["details"].([]any)
			found := false
			for _, d := range details {
				if d.(map[string]any)["field"] == tc.field {
					found = true
				}
			}
			if !found {
				t.Errorf("details %v do not name %s", details, tc.field)
			}
		})
	}
	t.Run("default part size", func(t *testing.T) {
		r := call(t, "", "POST", "/api/mocs/uploads/sessions", acct.token, strings.NewReader(`{"files":[{"name":"a.pdf","contentType":"application/pdf","sizeBytes":5}]}`))
		if r.status != 201 || r.body["partSizeBytes"].(float64) != 8<<20 || r.str("status") != "active" {
			t.Fatalf("= %d %s", r.status, r.raw)
		}
		exp, err := time.Parse(time.RFC3339Nano, r.str("expiresAt"))
		if err != nil || time.Until(exp) < 50*time.Minute {
			t.Errorf("expiresAt = %s", r.str("expiresAt"))
		}
	})
}

func TestFinalizeErrorsAndAdmins(t *testing.T) {
	acct := user(t)
	u := createUpload(t, acct, fileReq{"a.pdf", pdf, 11 << 20})
	u.put(t, "", 0, 1)
	r := u.finalize(t, "", "Incomplete")
	missing, _ := r.body["missingParts"].(map[string]any)
	if r.status != 400 || r.str("error") != "INCOMPLETE_UPLOAD" || fmt.Sprint(missing[u.files[0].id]) != "[2 3]" {
		t.Fatalf("incomplete: %d %s", r.status, r.raw)
	}
	for name, body := range map[string]string{
		"no title":        `{"uploadSessionId":"` + u.id + `"}`,
		"title is number": `{"uploadSessionId":"` + u.id + `","title":5}`,
		"no session":      `{"title":"x"}`,
		"title with NUL":  `{"uploadSessionId":"` + u.id + `","title":"Cas\u0000tle"}`,
	} {
		r := call(t, "", "POST", "/api/mocs/uploads/finalize", acct.token, strings.NewReader(body))
		if r.status != 400 || r.str("error") != "VALIDATION_ERROR" {
			t.Errorf("%s: %d %s", name, r.status, r.raw)
		}
	}
	if r := call(t, "", "POST", "/api/mocs/uploads/finalize", other(t).token, jsonBody(map[string]any{"uploadSessionId": u.id, "title": "Mine"})); r.status != 404 {
		t.Errorf("someone else's finalize: %d %s", r.status, r.raw)
	}
	u.put(t, "", 0, 2)
	u.put(t, "", 0, 3)

	// Slug conflict for the owner; the admin finalizes on the owner's behalf.
	title := uniqueTitle("Conflict Castle")
	finalized(t, acct, title, fileReq{"b.pdf", pdf, 10})
	c := u.finalize(t, "", title)
	slug := strings.ToLower(strings.ReplaceAll(title, " ", "-"))
	if c.status != 409 || c.str("error") != "SLUG_CONFLICT" || c.str("suggestedSlug") != slug+"-1" || c.str("retryStrategy") != "AUTO_APPEND" {
		t.Fatalf("conflict: %d %s", c.status, c.raw)
	}
	adm := admin(t)
	g := call(t, "", "GET", "/api/mocs/uploads/sessions/"+u.id, adm.token, nil)
	if g.status != 200 {
		t.Fatalf("admin GET: %d %s", g.status, g.raw)
	}
	a := call(t, "", "POST", "/api/mocs/uploads/finalize", adm.token, jsonBody(map[string]any{"uploadSessionId": u.id, "title": title + " (1)"}))
	if a.status != 201 || a.str("slug") != slug+"-1" {
		t.Fatalf("admin finalize: %d %s", a.status, a.raw)
	}
	var owner string
	must(t, db.QueryRow(context.Background(), `SELECT user_id FROM moc_instructions WHERE id = $1`, a.str("mocId")).Scan(&owner))
	if owner != acct.name {
		t.Errorf("MOC belongs to %q, want the session's owner %q", owner, acct.name)
	}
}
