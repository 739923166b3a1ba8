package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
)

var (
	cliOnce sync.Once
	cliBin  string
	cliErr  error
)

// mocupload builds the CLI once per run.
func mocupload(t *testing.T) string {
	t.Helper()
	cliOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mocupload-cli-")
		if err != nil {
			cliErr = err
			return
		}
		cliBin, cliErr = localenv.BuildBinary(context.Background(), filepath.Join(dir, "mocupload"), "./cmd/mocupload",
			childBuild())
	})
	if cliErr != nil {
		t.Fatal(cliErr)
	}
	return cliBin
}

func cliCmd(t *testing.T, api, token string, args ...string) *exec.Cmd {
	cmd := exec.Command(mocupload(t), args...)
	cmd.Env = append(os.Environ(), "UPLOAD_API="+api, "MOCUPLOAD_TOKEN="+token, "DEV_USER_TOKEN=")
	return cmd
}

func exitCode(err error) int {
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// Not a terminal: plain progress lines on stderr, the result on stdout.
func TestCLIPlainAndJSONOutput(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, dir, "plain.pdf", 12<<20)
	b := writeFile(t, dir, "plain.io", 100)
	title := uniqueTitle("CLI Plain")
	cmd := cliCmd(t, apiURL, user(t).token, "upload", "--title", title, a, b)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "(100%)") || strings.Contains(stderr.String(), "\x1b[") {
		t.Errorf("plain progress:\n%q", stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "MOC created") {
		t.Errorf("stdout: %s", stdout.String())
	}

	// JSON: machine-readable result; a slug conflict with --slug prompt exits 3.
	cmd = cliCmd(t, apiURL, user(t).token, "--output", "json", "upload", "--slug", "prompt", "--title", title, b)
	out, err := cmd.Output()
	if exitCode(err) != 3 {
		t.Fatalf("exit %d, want 3 (slug conflict): %s", exitCode(err), out)
	}
	var res map[string]any
	if err := json.Unmarshal(out, &res); err != nil || res["api"].(map[string]any)["error"] != "SLUG_CONFLICT" || res["sessionId"] == nil {
		t.Fatalf("json: %s", out)
	}
	cmd = cliCmd(t, apiURL, user(t).token, "--output", "json", "finalize", res["sessionId"].(string), "--title", title, "--slug", "auto")
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if err := json.Unmarshal(out, &res); err != nil || res["created"] != true || !strings.HasSuffix(res["slug"].(string), "-1") {
		t.Fatalf("finalize json: %s", out)
	}
	st, err := cliCmd(t, apiURL, user(t).token, "status", res["sessionId"].(string)).Output()
	if err != nil || !strings.Contains(string(st), "finalized") || !strings.Contains(string(st), "1/1 parts") {
		t.Fatalf("status: %v %s", err, st)
	}
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// On a terminal (a real pseudo-terminal): live bars per file and in total
// with bytes, percentage, rate and ETA.
func TestCLITerminalProgress(t *testing.T) {
	// S3 behind a real bandwidth limit (20 MB/s), so the upload lasts over a
	// second and the bars have to be redrawn (unthrottled it can finish before
	// the first refresh).
	rep, px := s3Proxied(t, nil)
	if err := px.AddToxic("slow", "bandwidth", "upstream", `{"rate":20000}`); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a := writeFile(t, dir, "tty.pdf", 30<<20)
	cmd := cliCmd(t, rep.url, user(t).token, "--concurrency", "1", "upload", "--title", uniqueTitle("CLI TTY"), a)
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 30, Cols: 140})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var buf bytes.Buffer
	done := make(chan struct{})
	go func() { _, _ = io.Copy(&buf, f); close(done) }()
	err = cmd.Wait()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	screen := ansi.ReplaceAllString(buf.String(), "")
	if err != nil {
		t.Fatalf("%v\n%s", err, screen)
	}
	for _, want := range []string{"tty.pdf", "total", "30.0 MiB / 30.0 MiB", "100 %", "ETA", "MiB/s", "[===", "MOC created"} {
		if !strings.Contains(screen, want) {
			t.Errorf("terminal output lacks %q:\n%s", want, screen)
		}
	}
	if !strings.Contains(buf.String(), "\x1b[") {
		t.Error("no cursor movement: bars are not redrawn in place")
	}
}

// Ctrl-C leaves a resumable session and prints the resume command; running it
// sends only the missing parts and finalizes.
func TestCLIInterruptAndResume(t *testing.T) {
	// S3 behind a real bandwidth limit (20 MB/s), so the upload is still
	// running when the test presses Ctrl-C.
	rep, px := s3Proxied(t, nil)
	if err := px.AddToxic("slow", "bandwidth", "upstream", `{"rate":20000}`); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	big := writeFile(t, dir, "resume.pdf", 20*5<<20) // 100 MiB in 20 parts
	cmd := cliCmd(t, rep.url, user(t).token, "--concurrency", "1", "upload", "--part-size", "5242880", "--title", uniqueTitle("CLI Resume"), big)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if strings.Contains(sc.Text(), "total 15.0 MiB") { // three parts in
			_ = cmd.Process.Signal(syscall.SIGINT)
		}
	}
	err := cmd.Wait()
	if exitCode(err) != 130 {
		t.Fatalf("exit %d, want 130:\n%s", exitCode(err), strings.Join(lines, "\n"))
	}
	var resume string
	for _, l := range lines {
		if r, ok := strings.CutPrefix(l, "resume with: "); ok {
			resume = r
		}
	}
	if !strings.HasPrefix(resume, "mocupload resume ") || !strings.HasSuffix(resume, big) {
		t.Fatalf("no resume command:\n%s", strings.Join(lines, "\n"))
	}
	id := strings.Fields(resume)[2]
	g := call(t, "", "GET", "/api/mocs/uploads/sessions/"+id, user(t).token, nil)
	have := len(g.body["files"].([]any)[0].(map[string]any)["parts"].([]any))
	if have == 0 || have >= 20 {
		t.Fatalf("server holds %d parts after Ctrl-C", have)
	}
	out, err := cliCmd(t, rep.url, user(t).token, "resume", id, big, "--title", uniqueTitle("CLI Resumed")).CombinedOutput()
	if err != nil {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	if want := regexp.MustCompile(`(\d+) part\(s\) sent`).FindStringSubmatch(string(out)); want == nil || want[1] != strconv.Itoa(20-have) {
		t.Fatalf("resume sent %v parts, want only the %d missing:\n%s", want, 20-have, out)
	}
	if !strings.Contains(string(out), "MOC created") {
		t.Fatalf("resume did not finalize:\n%s", out)
	}
}

// --service-account NS/NAME: the CLI requests a token through the kubeconfig.
func TestCLIServiceAccountTokenThroughKubeconfig(t *testing.T) {
	acct := user(t) // makes sure default/dev-user exists
	u := createUpload(t, acct, fileReq{"sa.pdf", pdf, 10})
	cmd := exec.Command(mocupload(t), "--service-account", "default/dev-user", "--output", "json", "status", u.id)
	cmd.Env = append(os.Environ(), "UPLOAD_API="+apiURL, "KUBECONFIG="+stack.Kubeconfig, "MOCUPLOAD_TOKEN=", "DEV_USER_TOKEN=")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var s map[string]any
	if err := json.Unmarshal(out, &s); err != nil || s["sessionId"] != u.id || s["status"] != "active" {
		t.Fatalf("status as the ServiceAccount: %s", out)
	}
}
