package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/pkg/client"
)

// hostCounter counts the part PUTs sent to each host.
type hostCounter struct {
	mu   sync.Mutex
	puts map[string]int
}

func (h *hostCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPut {
		h.mu.Lock()
		h.puts[r.URL.Host]++
		h.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(r)
}

// The Go client in direct mode: every part goes to S3, none through the
// upload API; the resource shows the mode and the parts S3 holds; the object
// has exactly the file's bytes.
func TestClientDirectUploadSendsPartsStraightToS3(t *testing.T) {
	dir := t.TempDir()
	paths := []string{writeFile(t, dir, "direct.pdf", 11<<20+7), writeFile(t, dir, "direct.io", 3000)}
	hc := &hostCounter{puts: map[string]int{}}
	c := client.New(apiURL, client.StaticToken(user(t).token))
	c.HTTP = &http.Client{Transport: hc}
	c.Transfer = "direct"
	specs, err := client.SpecsFor(paths)
	must(t, err)
	s, err := c.CreateSession(context.Background(), specs, 5<<20)
	must(t, err)
	if s.Transfer != "direct" {
		t.Fatalf("created session transfer %q", s.Transfer)
	}
	if _, err := c.Upload(context.Background(), s.SessionID, paths); err != nil {
		t.Fatal(err)
	}
	api, _ := url.Parse(apiURL)
	s3, _ := url.Parse(stack.S3.Endpoint)
	if hc.puts[api.Host] != 0 || hc.puts[s3.Host] != 4 {
		t.Fatalf("part PUTs per host: %v; want 4 to S3 (%s), none to the API", hc.puts, s3.Host)
	}
	got, err := c.GetSession(context.Background(), s.SessionID)
	must(t, err)
	if len(got.Files[0].Parts) != 3 || len(got.Files[1].Parts) != 1 || got.Files[0].Parts[2].SizeBytes != 1<<20+7 {
		t.Fatalf("GET lists %+v", got.Files)
	}
	// The reconciler reads a direct session's progress from S3's listing:
	// no part passed through the API to be acknowledged in PostgreSQL.
	waitFor(t, 20*time.Second, "the resource to show the parts S3 holds", func() (bool, string) {
		us := &uploadsv1.UploadSession{}
		if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: "default", Name: s.SessionID}, us); err != nil {
			return false, err.Error()
		}
		return strings.HasPrefix(us.Status.Progress, "100%") && strings.HasSuffix(us.Status.Progress, "(4/4 parts)"), us.Status.Progress
	})
	moc, err := c.Finalize(context.Background(), s.SessionID, uniqueTitle("Direct Castle"), "", client.FollowServer)
	must(t, err)
	obj, err := stack.S3.Client().GetObject(context.Background(), moc.Files[0].S3Key)
	must(t, err)
	defer obj.Close()
	body, err := io.ReadAll(obj)
	must(t, err)
	want, err := os.ReadFile(paths[0])
	must(t, err)
	if !bytes.Equal(body, want) {
		t.Fatalf("object %s differs from the file (%d vs %d bytes)", moc.Files[0].S3Key, len(body), len(want))
	}
	us := waitPhase(t, "default", s.SessionID, uploadsv1.PhaseFinalized)
	if us.Spec.Transfer != uploadsv1.TransferDirect {
		t.Fatalf("spec.transfer = %q, want direct", us.Spec.Transfer)
	}
	out := mustKubectl(t, "get", "uploadsessions", "-n", "default", s.SessionID, "-o", "wide")
	if !strings.Contains(out, "TRANSFER") || !strings.Contains(out, "direct") {
		t.Fatalf("kubectl get -o wide does not show the transfer mode:\n%s", out)
	}
}

// `mocupload upload --direct` creates a direct session and finalizes it.
func TestCLIDirectUpload(t *testing.T) {
	dir := t.TempDir()
	f := writeFile(t, dir, "cli-direct.pdf", 6<<20)
	cmd := cliCmd(t, apiURL, user(t).token, "--output", "json", "upload", "--direct", "--title", uniqueTitle("CLI Direct"), f)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s\n%s", err, out, stderr.String())
	}
	var res map[string]any
	if err := json.Unmarshal(out, &res); err != nil || res["created"] != true {
		t.Fatalf("json: %s", out)
	}
	us := &uploadsv1.UploadSession{}
	must(t, k8s.Get(context.Background(), types.NamespacedName{Namespace: "default", Name: res["sessionId"].(string)}, us))
	if us.Spec.Transfer != uploadsv1.TransferDirect {
		t.Fatalf("spec.transfer = %q", us.Spec.Transfer)
	}
}
