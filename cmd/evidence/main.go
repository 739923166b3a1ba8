// Command evidence is `make evidence`: it runs the story's HTTP plan
// (__http__/story-01726-reliability-resilience.http) against a running
// `make dev`, drives each fault itself, and writes docs/evidence/STORY-01726.md
// from what really happened: requests, responses, JSON log lines with their
// correlation ids, database rows around a rolled-back finalize, and the rate
// limiter's Redis keys. Nothing in the document is written by hand.
//
// It starts one extra operator replica beside `make dev`'s (same control
// plane, PostgreSQL, Redis and S3) whose S3 traffic goes through a fault proxy
// and whose JSON log it reads; every request of the plan is sent to it.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/mocs-dev/upload-operator/internal/testenv/faultproxy"
	"github.com/mocs-dev/upload-operator/internal/testenv/httpfile"
	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "make evidence:", err)
		os.Exit(1)
	}
}

type evidence struct {
	ctx     context.Context
	env     map[string]string
	plan    httpfile.File
	vars    map[string]string
	replica string
	logPath string
	s3      *faultproxy.Proxy
	db      *pgx.Conn
	rdb     *redis.Client
	doc     strings.Builder
}

func run() error {
	root, err := localenv.RepoRoot()
	if err != nil {
		return err
	}
	env, err := readEnvFile(filepath.Join(root, "bin", "dev", "env"))
	if err != nil {
		return fmt.Errorf("%w (is `make dev` running?)", err)
	}
	text, err := os.ReadFile(filepath.Join(root, "__http__", "story-01726-reliability-resilience.http"))
	if err != nil {
		return err
	}
	plan, err := httpfile.Parse(string(text))
	if err != nil {
		return err
	}
	ctx := context.Background()
	e := &evidence{ctx: ctx, env: env, plan: plan, vars: map[string]string{}}
	if e.db, err = pgx.Connect(ctx, env["DATABASE_URL"]); err != nil {
		return err
	}
	defer e.db.Close(ctx)
	opt, err := redis.ParseURL(env["REDIS_URL"])
	if err != nil {
		return err
	}
	e.rdb = redis.NewClient(opt)
	defer e.rdb.Close()

	fp := faultproxy.New()
	defer fp.Close()
	if e.s3, err = fp.Add("s3", strings.TrimPrefix(env["S3_ENDPOINT"], "http://")); err != nil {
		return err
	}
	stop, err := e.startReplica(root)
	if err != nil {
		return err
	}
	defer stop()

	if err := e.waitForRateWindow(); err != nil {
		return err
	}
	e.header()
	if err := e.scenarios(); err != nil {
		return err
	}
	out := filepath.Join(root, "docs", "evidence", "STORY-01726.md")
	if err := os.MkdirAll(filepath.Dir(out), 0o750); err != nil {
		return err
	}
	if err := os.WriteFile(out, []byte(e.doc.String()), 0o644); err != nil { //nolint:gosec // a committed document
		return err
	}
	fmt.Fprintln(os.Stderr, "wrote", out)
	return nil
}

// startReplica runs bin/manager beside make dev's operator, S3 through the proxy.
func (e *evidence) startReplica(root string) (func(), error) {
	addr, err := localenv.FreeAddr()
	if err != nil {
		return nil, err
	}
	e.replica = "http://" + addr
	e.logPath = filepath.Join(root, "bin", "dev", "evidence-replica.log")
	logf, err := os.Create(e.logPath)
	if err != nil {
		return nil, err
	}
	renv := map[string]string{
		"HTTP_ADDR": addr, "METRICS_ADDR": "0", "PROBE_ADDR": "0", "LOG_FORMAT": "json",
		"S3_ENDPOINT": "http://" + e.s3.Addr, "UPLOAD_PART_TIMEOUT": "2s",
		"WATCH_NAMESPACE": "mocupload-evidence-none", "ADMIN_GROUPS": "system:serviceaccounts:mocupload-admins",
		// The plan creates many sessions as one user; the creation limits are not what it shows.
		"SESSION_CREATE_RATE_LIMIT": "1000/1m", "SESSION_CREATE_RATE_LIMIT_PER_TENANT": "100000/1m", "MAX_ACTIVE_SESSIONS_PER_USER": "1000", "MAX_PARTS_IN_FLIGHT_PER_USER": "1000", "GET_RATE_LIMIT": "100000/1m",
	}
	for _, k := range []string{"KUBECONFIG", "DATABASE_URL", "REDIS_URL", "S3_BUCKET", "AWS_ACCESS_KEY_ID",
		"AWS_SECRET_ACCESS_KEY", "SESSION_NAMESPACE", "ALLOW_BROWSER_UPLOADS", "ALLOWED_UPLOAD_ORIGINS"} {
		renv[k] = e.env[k]
	}
	p, err := localenv.StartProcess(filepath.Join(root, "bin", "manager"), renv, logf)
	if err != nil {
		return nil, err
	}
	if err := p.WaitHTTP(e.ctx, e.replica+"/healthz", time.Minute); err != nil {
		return nil, err
	}
	return func() { _ = p.Stop(10 * time.Second); _ = logf.Close() }, nil
}

func (e *evidence) scenarios() error {
	e.vars["api"] = e.replica
	e.vars["faultApi"] = e.replica
	e.vars["partBody"] = "" // generated per part

	// A session to work on.
	e.section("Setup: a session", "The session every request below uses (6 MiB in 5 MiB parts: part 1 is 5 MiB, part 2 is 1 MiB).")
	resp := e.send("createSession", nil, "")
	var created struct {
		SessionID string `json:"sessionId"`
		Files     []struct {
			FileID string `json:"fileId"`
		} `json:"files"`
	}
	if err := json.Unmarshal(resp.body, &created); err != nil || created.SessionID == "" {
		return fmt.Errorf("create session: %d %s", resp.status, resp.body)
	}
	e.vars["sessionId"], e.vars["fileId"] = created.SessionID, created.Files[0].FileID
	part1, part2 := make([]byte, 5<<20), make([]byte, 1<<20)

	// The section titles keep the plan's test ids: the evidence document is
	// read against the plan.
	e.section("uploadPartS3Retry — S3-HP-001", "Fault: the proxy between the operator and S3 resets the first 2 connections (TCP RST). "+
		"The SDK's standard retryer sends the part again (the operator holds it, the client sends it once); it succeeds on attempt 3.")
	if err := e.s3.ResetFirst(2); err != nil {
		return err
	}
	e.send("uploadPartS3Retry", part1, "")
	e.note(fmt.Sprintf("Attempts that reached the proxy: **%d**.", e.s3.Attempts()))
	e.logs("evidence-s3-retry")

	e.section("uploadPartS3Retry with S3 down — S3-ERR-001", "Fault: every connection to S3 is reset. After 3 attempts the answer is 503 S3_UNAVAILABLE with Retry-After.")
	if err := e.s3.ResetFirst(1000); err != nil {
		return err
	}
	e.send("uploadPartS3Retry", part1, "evidence-s3-down")
	e.note(fmt.Sprintf("Attempts that reached the proxy: **%d**.", e.s3.Attempts()))
	e.logs("evidence-s3-down")
	_ = e.s3.StopCounting()

	e.section("uploadPartTimeout — TO-HP-001 / TO-ERR-001", "Fault: the client sends part 2 at ~10 KiB/s; the replica runs with UPLOAD_PART_TIMEOUT=2s "+
		"(25s in production). The answer is 408 with elapsedMs and timeoutAt, and no part is recorded.")
	if err := e.trickle("uploadPartTimeout", part2); err != nil {
		return err
	}
	e.rows("Part 2 recorded after the timeout?", `SELECT count(*) AS part2_rows FROM upload_parts WHERE file_id = $1 AND part_number = 2`, e.vars["fileId"])
	e.logs("evidence-timeout")

	e.section("uploadPartInvalidRange — VR-HP-001", "partNumber 10001.")
	e.send("uploadPartInvalidRange", nil, "")
	e.section("uploadPartInvalidRange with partNumber 0 — VR-ERR-001", "The same request with partNumber 0.")
	e.sendEdited("uploadPartInvalidRange", func(r *httpfile.Request) { r.URL = strings.Replace(r.URL, "/parts/10001", "/parts/0", 1) }, nil, "evidence-invalid-range-0")

	// Complete the session.
	e.section("Setup: the parts", "Both parts uploaded normally.")
	e.sendEdited("uploadPartS3Retry", nil, part1, "evidence-part-1")
	e.sendEdited("uploadPartTimeout", nil, part2, "evidence-part-2")

	title := fmt.Sprintf("Evidence Castle %d", time.Now().Unix())
	if err := e.takeSlug(title); err != nil {
		return err
	}
	e.vars["title"] = title
	e.section("finalizeSlugConflict — SC-HP-001", fmt.Sprintf("Another session of the same owner was finalized as %q first.", title))
	e.send("finalizeSlugConflict", nil, "")

	// A forced rollback.
	rbTitle := title + " rollback"
	e.section("A rolled-back finalize", "Fault: a trigger on moc_instructions raises SQLSTATE 40001 (serialization_failure) "+
		"for every insert of this title; the operator tries the transaction 3 times, rolls back each, and answers 500. Rows before and after:")
	if err := e.forceRollback(rbTitle); err != nil {
		return err
	}

	e.section("finalizeStaleLock — LR-HP-001", "Fault: the session's finalizing_at is set 10 minutes back (a finalizer that died holding the lock). "+
		"The new finalize takes it over (WARN \"stale lock recovered\") and answers 201.")
	if _, err := e.db.Exec(e.ctx, `UPDATE upload_sessions SET finalizing_at = now() - interval '10 minutes' WHERE id = $1`, e.vars["sessionId"]); err != nil {
		return err
	}
	e.rows("Before", `SELECT id::text, status, finalizing_at, finalized_at FROM upload_sessions WHERE id = $1`, e.vars["sessionId"])
	e.vars["title"] = title + " (1)"
	e.send("finalizeStaleLock", nil, "")
	e.rows("After", `SELECT id::text, status, finalizing_at, finalized_at FROM upload_sessions WHERE id = $1`, e.vars["sessionId"])
	e.rows("The MOC", `SELECT m.slug, m.title, count(f.*) AS files FROM moc_instructions m JOIN moc_files f ON f.moc_id = m.id WHERE m.upload_session_id = $1 GROUP BY m.slug, m.title`, e.vars["sessionId"])
	e.logs("evidence-stale-lock")

	e.section("finalizeRateLimit — RL-HP-001 / RL-ERR-001", "The same finalize (a replay, 200) sent until the user's 11th request in the sliding minute; "+
		"every finalize request counts. The refused one:")
	n := 0
	var last response
	for n = 1; n <= 12; n++ {
		last = e.sendQuiet("finalizeRateLimit")
		if last.status == http.StatusTooManyRequests {
			break
		}
	}
	e.record(last)
	e.note(fmt.Sprintf("Refused after %d more requests in this run (the earlier finalize requests above count too).", n-1))
	e.redis()

	e.section("uploadPartCORS — CO-HP-001", "Preflight from an allowed origin (`make dev` allows http://localhost:3000).")
	e.send("uploadPartCORS", nil, "")
	e.sendEdited("uploadPartCORS", func(r *httpfile.Request) { r.Header.Set("Origin", "http://evil.example") }, nil, "evidence-cors-denied")
	return nil
}

// takeSlug finalizes a small session of the same owner with title.
func (e *evidence) takeSlug(title string) error {
	c := e.rawCall("POST", "/api/mocs/uploads/sessions", `{"files":[{"name":"other.pdf","contentType":"application/pdf","sizeBytes":10}]}`)
	var s struct {
		SessionID string `json:"sessionId"`
		Files     []struct {
			FileID string `json:"fileId"`
		} `json:"files"`
	}
	if err := json.Unmarshal(c.body, &s); err != nil || len(s.Files) == 0 {
		return fmt.Errorf("setup session: %s", c.body)
	}
	e.rawCall("PUT", "/api/mocs/uploads/sessions/"+s.SessionID+"/files/"+s.Files[0].FileID+"/parts/1", "0123456789")
	f := e.rawCall("POST", "/api/mocs/uploads/finalize", fmt.Sprintf(`{"uploadSessionId":%q,"title":%q}`, s.SessionID, title))
	if f.status != 201 {
		return fmt.Errorf("setup finalize: %d %s", f.status, f.body)
	}
	return nil
}

func (e *evidence) forceRollback(title string) error {
	stmts := []string{
		`CREATE OR REPLACE FUNCTION evidence_fail() RETURNS trigger LANGUAGE plpgsql AS $$
		 BEGIN IF NEW.title LIKE '% rollback' THEN RAISE EXCEPTION 'evidence: forced serialization failure' USING ERRCODE = '40001'; END IF; RETURN NEW; END $$`,
		`DROP TRIGGER IF EXISTS evidence_fail ON moc_instructions`,
		`CREATE TRIGGER evidence_fail BEFORE INSERT ON moc_instructions FOR EACH ROW EXECUTE FUNCTION evidence_fail()`,
	}
	for _, s := range stmts {
		if _, err := e.db.Exec(e.ctx, s); err != nil {
			return err
		}
	}
	defer func() {
		if _, err := e.db.Exec(e.ctx, `DROP TRIGGER IF EXISTS evidence_fail ON moc_instructions; DROP FUNCTION IF EXISTS evidence_fail()`); err != nil {
			fmt.Fprintln(os.Stderr, "evidence: could not drop the rollback trigger:", err)
		}
	}()
	q := `SELECT (SELECT count(*) FROM moc_instructions WHERE upload_session_id = $1) AS moc_instructions,
	             (SELECT count(*) FROM moc_files f JOIN moc_instructions m ON m.id = f.moc_id WHERE m.upload_session_id = $1) AS moc_files,
	             s.status, s.finalizing_at, s.finalized_at
	      FROM upload_sessions s WHERE s.id = $1`
	e.rows("Before", q, e.vars["sessionId"])
	e.vars["title"] = title
	e.sendEdited("finalizeSlugConflict", nil, nil, "evidence-rollback")
	e.rows("After (nothing committed, lock released)", q, e.vars["sessionId"])
	e.logs("evidence-rollback")
	return nil
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (e *evidence) expand(name string) httpfile.Request {
	r, ok := e.plan.Get(name)
	if !ok {
		panic("no request " + name + " in the plan")
	}
	return e.plan.Expand(r, e.vars, func(k string) string { return e.env[k] })
}

func (e *evidence) send(name string, body []byte, corr string) response {
	return e.sendEdited(name, nil, body, corr)
}

// sendEdited sends a request of the plan (optionally edited, with a generated
// body, with another correlation id) and records it.
func (e *evidence) sendEdited(name string, edit func(*httpfile.Request), body []byte, corr string) response {
	r := e.expand(name)
	if edit != nil {
		edit(&r)
	}
	if corr != "" {
		r.Header.Set("X-Correlation-ID", corr)
	}
	resp := e.do(r, body)
	e.recordRequest(r, body)
	e.record(resp)
	return resp
}

func (e *evidence) sendQuiet(name string) response { return e.do(e.expand(name), nil) }

func (e *evidence) do(r httpfile.Request, body []byte) response {
	var rd io.Reader = strings.NewReader(r.Body)
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, _ := http.NewRequestWithContext(e.ctx, r.Method, r.URL, rd)
	req.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{status: 0, body: []byte(err.Error())}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (e *evidence) rawCall(method, path, body string) response {
	req, _ := http.NewRequestWithContext(e.ctx, method, e.replica+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.env["DEV_USER_TOKEN"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{body: []byte(err.Error())}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// trickle sends the request's headers, then its body at ~10 KiB/s.
func (e *evidence) trickle(name string, body []byte) error {
	r := e.expand(name)
	u := strings.TrimPrefix(r.URL, "http://")
	host, path, _ := strings.Cut(u, "/")
	c, err := net.Dial("tcp", host)
	if err != nil {
		return err
	}
	defer c.Close()
	var hdr strings.Builder
	fmt.Fprintf(&hdr, "%s /%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", r.Method, path, host, len(body))
	for k, vs := range r.Header {
		for _, v := range vs {
			fmt.Fprintf(&hdr, "%s: %s\r\n", k, v)
		}
	}
	hdr.WriteString("\r\n")
	if _, err := io.WriteString(c, hdr.String()); err != nil {
		return err
	}
	go func() {
		for i := 0; i < len(body); i += 1024 {
			if _, err := c.Write(body[i:min(i+1024, len(body))]); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	e.recordRequest(r, body)
	e.note("(body trickled at ~10 KiB/s)")
	e.record(response{status: resp.StatusCode, header: resp.Header, body: b})
	return nil
}

// --- the document ---

func (e *evidence) header() {
	fmt.Fprintf(&e.doc, `# STORY-01726 evidence

Generated by `+"`make evidence`"+` on %s from a live `+"`make dev`"+`: every request below comes from
`+"`__http__/story-01726-reliability-resilience.http`"+`, sent to an operator replica that `+"`make evidence`"+` starts beside
`+"`make dev`"+`'s own (same control plane, PostgreSQL, Redis and S3; its S3 traffic goes through a fault proxy, and its
JSON log is quoted). Each fault is driven by the tool itself. Tokens are redacted. Do not edit by hand: run
`+"`make dev`"+` in one shell and `+"`make evidence`"+` in another.

`, time.Now().UTC().Format(time.RFC3339))
}

func (e *evidence) section(title, text string) {
	fmt.Fprintf(&e.doc, "\n## %s\n\n%s\n\n", title, text)
}

func (e *evidence) note(s string) { fmt.Fprintf(&e.doc, "%s\n\n", s) }

func (e *evidence) recordRequest(r httpfile.Request, body []byte) {
	fmt.Fprintf(&e.doc, "```http\n%s %s\n", r.Method, r.URL)
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := r.Header.Get(k)
		if k == "Authorization" {
			v = "Bearer <redacted>"
		}
		fmt.Fprintf(&e.doc, "%s: %s\n", k, v)
	}
	switch {
	case body != nil:
		fmt.Fprintf(&e.doc, "\n<%d bytes>\n", len(body))
	case r.Body != "":
		fmt.Fprintf(&e.doc, "\n%s\n", r.Body)
	}
	e.doc.WriteString("```\n\n")
}

func (e *evidence) record(r response) {
	fmt.Fprintf(&e.doc, "```http\nHTTP/1.1 %d %s\n", r.status, http.StatusText(r.status))
	keys := []string{}
	for k := range r.header {
		if k == "Date" || k == "Content-Length" {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&e.doc, "%s: %s\n", k, strings.Join(r.header.Values(k), ", "))
	}
	if len(r.body) > 0 {
		fmt.Fprintf(&e.doc, "\n%s\n", strings.TrimSpace(string(r.body)))
	}
	e.doc.WriteString("```\n\n")
}

func (e *evidence) logs(corr string) {
	time.Sleep(200 * time.Millisecond)
	f, err := os.Open(e.logPath)
	if err != nil {
		return
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["correlationId"] == corr {
			lines = append(lines, sc.Text())
		}
	}
	fmt.Fprintf(&e.doc, "Log lines with correlationId `%s`:\n\n```json\n%s\n```\n\n", corr, strings.Join(lines, "\n"))
}

func (e *evidence) rows(title, q string, args ...any) {
	rows, err := e.db.Query(e.ctx, q, args...)
	if err != nil {
		fmt.Fprintf(&e.doc, "%s: query failed: %v\n\n", title, err)
		return
	}
	defer rows.Close()
	cols := rows.FieldDescriptions()
	var b strings.Builder
	fmt.Fprintf(&b, "%s:\n\n|", title)
	for _, c := range cols {
		fmt.Fprintf(&b, " %s |", c.Name)
	}
	b.WriteString("\n|")
	for range cols {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for rows.Next() {
		vals, _ := rows.Values()
		b.WriteString("|")
		for _, v := range vals {
			if t, ok := v.(time.Time); ok {
				v = t.UTC().Format(time.RFC3339Nano)
			}
			if v == nil {
				v = "NULL"
			}
			fmt.Fprintf(&b, " %v |", v)
		}
		b.WriteString("\n")
	}
	e.doc.WriteString(b.String() + "\n")
}

func (e *evidence) redis() {
	keys, _ := e.rdb.Keys(e.ctx, "mocupload:ratelimit:finalize:*").Result()
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		entries, _ := e.rdb.ZRangeWithScores(e.ctx, k, 0, -1).Result()
		ttl, _ := e.rdb.PTTL(e.ctx, k).Result()
		fmt.Fprintf(&b, "%s  (sorted set, %d entries, PTTL %s)\n", k, len(entries), ttl)
		for _, z := range entries {
			fmt.Fprintf(&b, "  %v  score=%.0f (%s)\n", z.Member, z.Score, time.UnixMicro(int64(z.Score)).UTC().Format(time.RFC3339Nano))
		}
	}
	fmt.Fprintf(&e.doc, "Redis keys of the rate limiter (sliding-window log: one member per admitted request, scored by Redis time in µs):\n\n```\n%s```\n\n", b.String())
}

// waitForRateWindow waits until the dev user's finalize requests of an
// earlier run have left the sliding window, so every answer below is the one
// its label says (and the 429 comes exactly at the 11th request).
func (e *evidence) waitForRateWindow() error {
	keys, err := e.rdb.Keys(e.ctx, "mocupload:ratelimit:finalize:*dev-user").Result()
	if err != nil {
		return err
	}
	for _, k := range keys {
		newest, err := e.rdb.ZRangeWithScores(e.ctx, k, -1, -1).Result()
		if err != nil || len(newest) == 0 {
			continue
		}
		wait := time.Until(time.UnixMicro(int64(newest[0].Score)).Add(61 * time.Second))
		if wait > 0 {
			fmt.Fprintf(os.Stderr, "waiting %s for the dev user's finalize requests of an earlier run to leave the rate-limit window\n", wait.Round(time.Second))
			time.Sleep(wait)
		}
	}
	return nil
}

// readEnvFile reads `export K='v'` lines of bin/dev/env.
func readEnvFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimPrefix(strings.TrimSpace(line), "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		env[k] = strings.ReplaceAll(strings.Trim(v, "'"), `'\''`, "'")
	}
	return env, nil
}
