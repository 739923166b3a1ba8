package e2e

import (
	"context"
	"crypto/rand"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mocs-dev/upload-operator/pkg/client"
)

// writeFile writes size random bytes to dir/name.
func writeFile(t *testing.T, dir, name string, size int) string {
	t.Helper()
	b := make([]byte, size)
	_, _ = rand.Read(b)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// countingTransport counts part PUTs that reach the server.
type countingTransport struct{ puts atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPut {
		c.puts.Add(1)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func TestClientUploadsFilesAndReportsProgress(t *testing.T) {
	dir := t.TempDir()
	paths := []string{writeFile(t, dir, "castle.pdf", 19<<20), writeFile(t, dir, "castle.io", 5000)}
	c := client.New(apiURL, client.StaticToken(user(t).token))
	var mu sync.Mutex
	var last client.Progress
	calls := 0
	c.OnProgress = func(p client.Progress) { mu.Lock(); last, calls = p, calls+1; mu.Unlock() }
	id, moc, err := c.UploadFiles(context.Background(), uniqueTitle("Client Castle"), "", paths, client.FollowServer)
	if err != nil {
		t.Fatalf("UploadFiles(%s): %v", id, err)
	}
	if !moc.Created || len(moc.Files) != 2 || !strings.HasSuffix(moc.Files[0].ETag, `-3"`) {
		t.Fatalf("moc = %+v", moc)
	}
	if last.TotalBytes != last.TotalSize || last.TotalSize != 19<<20+5000 || calls < 4 {
		t.Fatalf("last progress %+v after %d calls", last, calls)
	}
}

// An upload interrupted half-way resumes from GET on the session: only the
// missing parts are sent.
func TestClientResumeSendsOnlyMissingParts(t *testing.T) {
	dir := t.TempDir()
	paths := []string{writeFile(t, dir, "big.pdf", 6*5<<20)} // 6 parts of 5 MiB
	tr := &countingTransport{}
	c := client.New(apiURL, client.StaticToken(user(t).token))
	c.HTTP = &http.Client{Transport: tr}
	c.Concurrency = 1
	specs, _ := client.SpecsFor(paths)
	s, err := c.CreateSession(context.Background(), specs, 5<<20)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.OnProgress = func(p client.Progress) {
		if p.PartsSent == 2 {
			cancel() // the process "dies" after two parts
		}
	}
	if _, err := c.Upload(ctx, s.SessionID, paths); err == nil {
		t.Fatal("interrupted upload reported success")
	}
	got, err := c.GetSession(context.Background(), s.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	have := len(got.Files[0].Parts)
	if have < 2 || have >= 6 {
		t.Fatalf("server has %d parts after the interruption", have)
	}
	c.OnProgress = nil
	tr.puts.Store(0)
	sent, err := c.Upload(context.Background(), s.SessionID, paths)
	if err != nil {
		t.Fatal(err)
	}
	if sent != 6-have || tr.puts.Load() != int64(6-have) {
		t.Fatalf("resume sent %d parts (%d PUTs), want only the %d missing", sent, tr.puts.Load(), 6-have)
	}
	if _, err := c.Finalize(context.Background(), s.SessionID, uniqueTitle("Resumed"), "", client.FollowServer); err != nil {
		t.Fatal(err)
	}
}

// A burst of 503s (S3 behind a proxy resetting every connection for a while)
// is absorbed by the client's retries with backoff, honouring Retry-After.
func TestClientAbsorbs503Burst(t *testing.T) {
	rep, px := s3Proxied(t, nil)
	dir := t.TempDir()
	paths := []string{writeFile(t, dir, "burst.pdf", 1000)}
	tr := &countingTransport{}
	c := client.New(rep.url, client.StaticToken(user(t).token))
	c.HTTP = &http.Client{Transport: tr}
	specs, _ := client.SpecsFor(paths)
	s, err := c.CreateSession(context.Background(), specs, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := px.ResetFirst(6); err != nil { // two whole requests of 3 S3 attempts each fail
		t.Fatal(err)
	}
	defer px.StopCounting()
	if _, err := c.Upload(context.Background(), s.SessionID, paths); err != nil {
		t.Fatalf("the burst was not absorbed: %v", err)
	}
	if tr.puts.Load() != 3 {
		t.Fatalf("client PUTs = %d, want 3 (two 503s, then success)", tr.puts.Load())
	}
}

// Slug conflicts: auto-append retitles, ReturnConflict hands the 409 back.
func TestClientSlugConflictPolicies(t *testing.T) {
	dir := t.TempDir()
	p := []string{writeFile(t, dir, "s.pdf", 10)}
	c := client.New(apiURL, client.StaticToken(user(t).token))
	title := uniqueTitle("Policy Castle")
	if _, _, err := c.UploadFiles(context.Background(), title, "", p, client.FollowServer); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.UploadFiles(context.Background(), title, "", p, client.ReturnConflict)
	if !client.IsCode(err, "SLUG_CONFLICT") {
		t.Fatalf("ReturnConflict: %v", err)
	}
	_, moc, err := c.UploadFiles(context.Background(), title, "", p, client.AutoAppend)
	if err != nil || moc.Title != title+" (1)" {
		t.Fatalf("AutoAppend: %+v, %v", moc, err)
	}
}
