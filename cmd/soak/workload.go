package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/testenv/soakcheck"
	pkgclient "github.com/mocs-dev/upload-operator/pkg/client"
)

const partSize = 5 << 20 // S3's minimum: every size choice below crosses it

// plans a client picks from for each session, with weights.
var plans = []struct {
	name   string
	weight int
}{
	{"finalize", 30}, {"finalize twice", 8}, {"finalize concurrently", 10}, {"declarative", 12}, {"go client", 10},
	{"delete mid-upload", 8}, {"delete mid-finalize", 8}, {"abandon", 8},
}

// workload runs the clients: each loops over sessions until the load ends,
// then finishes the session it is in.
type workload struct {
	e    *env
	h    *history
	http *http.Client
	seed uint64
	dir  string
}

type client struct {
	w     *workload
	id    int
	rngMu sync.Mutex // the client's own goroutines (parts in parallel) share rng
	rng   *rand.Rand
	user  user
	n     int // sessions started
}

func (c *client) intn(n int) int {
	c.rngMu.Lock()
	defer c.rngMu.Unlock()
	return c.rng.IntN(n)
}

func (c *client) int64n(n int64) int64 {
	c.rngMu.Lock()
	defer c.rngMu.Unlock()
	return c.rng.Int64N(n)
}

func (c *client) uint32() uint32 {
	c.rngMu.Lock()
	defer c.rngMu.Unlock()
	return c.rng.Uint32()
}

// upload is a session as its client knows it.
type upload struct {
	id, resource string
	owner        user
	files        []upFile
	mu           sync.Mutex
	version      map[soakcheck.PartKey]int // the latest bytes sent to each part
}

type upFile struct {
	id    string
	size  int64
	parts int
}

func (u *upload) keys() []soakcheck.PartKey {
	var out []soakcheck.PartKey
	for _, f := range u.files {
		for n := 1; n <= f.parts; n++ {
			out = append(out, soakcheck.PartKey{Session: u.id, File: f.id, Part: n})
		}
	}
	return out
}

func (u *upload) partLen(k soakcheck.PartKey) int64 {
	for _, f := range u.files {
		if f.id == k.File {
			if int64(k.Part) < int64(f.parts) {
				return partSize
			}
			return f.size - int64(f.parts-1)*partSize
		}
	}
	return 0
}

// bytesOf is the content of version v of a part: pseudo-random, derived from
// the run's seed, so it is never stored and never repeats across parts.
func (w *workload) bytesOf(k soakcheck.PartKey, v int, n int64) []byte {
	seed := sha256.Sum256([]byte(fmt.Sprintf("%d/%s/%d", w.seed, k, v)))
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(seed).Read(b)
	return b
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}

func (w *workload) run(load, drain context.Context, clients int) {
	var wg sync.WaitGroup
	for i := range clients {
		c := &client{w: w, id: i, rng: rand.New(rand.NewPCG(w.seed, uint64(i))), user: w.e.users[i%len(w.e.users)]} //nolint:gosec // seeded on purpose: a run is replayed by its seed
		wg.Go(func() {
			for load.Err() == nil && drain.Err() == nil {
				c.session(drain)
			}
		})
	}
	wg.Wait()
}

func (c *client) pick() string {
	total := 0
	for _, p := range plans {
		total += p.weight
	}
	r := c.intn(total)
	for _, p := range plans {
		if r -= p.weight; r < 0 {
			return p.name
		}
	}
	return plans[0].name
}

// fileSizes: 1 to 3 files, sizes around the part size (exactly 5 MiB, a
// last part of 1 byte, small files of one part).
func (c *client) fileSizes() []int64 {
	choices := []int64{1, 1 + c.int64n(200<<10), partSize, partSize + 1, 2*partSize + 1, partSize + c.int64n(7<<20)}
	out := make([]int64, 1+c.intn(3))
	for i := range out {
		out[i] = choices[c.intn(len(choices))]
	}
	return out
}

func (c *client) title() string {
	return fmt.Sprintf("Soak %d-%d %08x", c.id, c.n, c.uint32())
}

func (c *client) session(ctx context.Context) {
	c.n++
	plan := c.pick()
	sizes := c.fileSizes()
	var u *upload
	switch plan {
	case "declarative":
		c.declarative(ctx, sizes)
		return
	case "go client":
		c.goClient(ctx, sizes)
		return
	default:
		if u = c.create(ctx, sizes, plan); u == nil {
			return
		}
	}
	switch plan {
	case "finalize", "finalize twice", "finalize concurrently":
		c.uploadAll(ctx, u, u.keys())
		if c.intn(3) == 0 {
			c.get(ctx, u)
		}
		if plan == "finalize concurrently" {
			var wg sync.WaitGroup
			for range 2 {
				wg.Go(func() { c.finalize(ctx, u, c.title()) })
			}
			wg.Wait()
			return
		}
		title := c.title()
		if ok := c.finalize(ctx, u, title); ok && plan == "finalize twice" {
			c.finalize(ctx, u, title)
		}
	case "delete mid-upload":
		done := make(chan struct{})
		go func() { defer close(done); c.uploadAll(ctx, u, u.keys()) }()
		c.sleep(ctx, time.Duration(c.intn(1500))*time.Millisecond)
		c.delete(ctx, u)
		<-done
	case "delete mid-finalize":
		c.uploadAll(ctx, u, u.keys())
		done := make(chan struct{})
		go func() { defer close(done); c.finalize(ctx, u, c.title()) }()
		c.sleep(ctx, time.Duration(c.intn(400))*time.Millisecond)
		c.delete(ctx, u)
		<-done
	case "abandon":
		keys := u.keys()
		c.uploadAll(ctx, u, keys[:c.intn(len(keys)+1)])
	}
}

func (c *client) sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// replica picks a running replica, as a Service would (a replica killed a
// moment ago may still be picked: its caller sees no answer).
func (c *client) replica() *replica {
	rs := c.w.e.replicas
	for range 8 {
		if r := rs[c.intn(len(rs))]; r.running() {
			return r
		}
	}
	return rs[c.intn(len(rs))]
}

// answer is an HTTP answer; status 0 when none arrived.
type answer struct {
	status int
	body   map[string]any
	header http.Header
}

func (a answer) code() string { s, _ := a.body["error"].(string); return s }

func (c *client) send(ctx context.Context, r *replica, method, path string, body []byte, timeout time.Duration) answer {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, r.url+path, bytes.NewReader(body))
	if err != nil {
		return answer{}
	}
	req.Header.Set("Authorization", "Bearer "+c.user.token)
	if method != http.MethodPut {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.w.http.Do(req)
	if err != nil {
		return answer{}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}
	}
	a := answer{status: resp.StatusCode, header: resp.Header}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

// retryWait is how long to wait before retrying after a: Retry-After when
// given (capped), else a short growing backoff.
func (c *client) retryWait(a answer, attempt int) time.Duration {
	if s, err := strconv.Atoi(a.header.Get("Retry-After")); err == nil && s > 0 {
		return min(time.Duration(s)*time.Second, 3*time.Second)
	}
	return time.Duration(200*(attempt+1)+c.intn(200)) * time.Millisecond
}

func retryable(a answer) bool {
	return a.status == 0 || a.status == 500 || a.status == 503 || a.status == 429 || a.status == 408
}

func (c *client) create(ctx context.Context, sizes []int64, plan string) *upload {
	type fileReq struct {
		Name        string `json:"name"`
		ContentType string `json:"contentType"`
		SizeBytes   int64  `json:"sizeBytes"`
	}
	var req struct {
		Files    []fileReq `json:"files"`
		PartSize int64     `json:"partSizeBytes"`
	}
	for i, s := range sizes {
		req.Files = append(req.Files, fileReq{fmt.Sprintf("part-%d.pdf", i), "application/pdf", s})
	}
	req.PartSize = partSize
	body, _ := json.Marshal(req)
	for attempt := range 4 {
		start, r := time.Now(), c.replica()
		a := c.send(ctx, r, http.MethodPost, "/api/mocs/uploads/sessions", body, 30*time.Second)
		c.w.h.call(soakcheck.Call{Kind: "create", Start: start, End: time.Now(), Status: a.status, Replica: r.name}, "create (HTTP)")
		if a.status == 201 {
			u := &upload{owner: c.user, version: map[soakcheck.PartKey]int{}}
			u.id, _ = a.body["sessionId"].(string)
			u.resource = u.id
			files, _ := a.body["files"].([]any)
			for i, f := range files {
				m, _ := f.(map[string]any)
				id, _ := m["fileId"].(string)
				pc, _ := m["partCount"].(float64)
				u.files = append(u.files, upFile{id: id, size: sizes[i], parts: int(pc)})
			}
			c.w.h.session(&sessionRecord{ID: u.id, Owner: c.user.name, Via: "HTTP", Plan: plan, Resource: u.resource})
			c.w.h.expect(u)
			return u
		}
		if !retryable(a) || ctx.Err() != nil {
			return nil
		}
		c.sleep(ctx, c.retryWait(a, attempt))
	}
	return nil
}

// putOnce sends version v of part k once and records the answer.
func (c *client) putOnce(ctx context.Context, u *upload, k soakcheck.PartKey, v int) answer {
	n := u.partLen(k)
	b := c.w.bytesOf(k, v, n)
	path := fmt.Sprintf("/api/mocs/uploads/sessions/%s/files/%s/parts/%d", k.Session, k.File, k.Part)
	start, r := time.Now(), c.replica()
	a := c.send(ctx, r, http.MethodPut, path, b, 40*time.Second)
	c.w.h.put(soakcheck.PartPut{PartKey: k, Digest: digest(b), Start: start, End: time.Now(), Status: a.status, Replica: r.name}, n)
	c.w.h.sent(b)
	return a
}

// put sends a part until it is acknowledged or refused for good.
func (c *client) put(ctx context.Context, u *upload, k soakcheck.PartKey, v int) bool {
	for attempt := range 8 {
		a := c.putOnce(ctx, u, k, v)
		if a.status == 200 {
			return true
		}
		if !retryable(a) || ctx.Err() != nil {
			return false
		}
		c.sleep(ctx, c.retryWait(a, attempt))
	}
	return false
}

// uploadAll sends keys in random order with random concurrency; some parts
// are sent again, some get different bytes from two connections at once.
func (c *client) uploadAll(ctx context.Context, u *upload, keys []soakcheck.PartKey) {
	keys = append([]soakcheck.PartKey(nil), keys...)
	c.rngMu.Lock()
	c.rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	c.rngMu.Unlock()
	type job struct {
		k     soakcheck.PartKey
		extra int // 0: once; 1: again, same bytes; 2: two versions at once
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	for range 1 + c.intn(4) {
		wg.Go(func() {
			for j := range jobs {
				u.mu.Lock()
				v := u.version[j.k]
				if j.extra == 2 {
					u.version[j.k] = v + 2
				}
				u.mu.Unlock()
				switch j.extra {
				case 2:
					var both sync.WaitGroup
					for _, ver := range []int{v + 1, v + 2} {
						both.Go(func() { c.put(ctx, u, j.k, ver) })
					}
					both.Wait()
				default:
					if c.put(ctx, u, j.k, v) && j.extra == 1 {
						c.put(ctx, u, j.k, v)
					}
				}
			}
		})
	}
	for _, k := range keys {
		j := job{k: k}
		switch r := c.intn(100); {
		case r < 8:
			j.extra = 1
		case r < 13:
			j.extra = 2
		}
		jobs <- j
	}
	close(jobs)
	wg.Wait()
}

// get reads the session as a client resuming would; what it lists for each
// part is a read of that part's register (soakcheck.PartRead).
func (c *client) get(ctx context.Context, u *upload) {
	start, r := time.Now(), c.replica()
	a := c.send(ctx, r, http.MethodGet, "/api/mocs/uploads/sessions/"+u.id, nil, 20*time.Second)
	end := time.Now()
	c.w.h.call(soakcheck.Call{Kind: "get", Start: start, End: end, Status: a.status, Replica: r.name}, "get session")
	if a.status != http.StatusOK {
		return
	}
	listed := map[soakcheck.PartKey]string{}
	files, _ := a.body["files"].([]any)
	for _, f := range files {
		fm, _ := f.(map[string]any)
		fileID, _ := fm["fileId"].(string)
		parts, _ := fm["parts"].([]any)
		for _, p := range parts {
			pm, _ := p.(map[string]any)
			n, _ := pm["partNumber"].(float64)
			etag, _ := pm["etag"].(string)
			listed[soakcheck.PartKey{Session: u.id, File: fileID, Part: int(n)}] = etag
		}
	}
	for _, k := range u.keys() {
		d := ""
		if etag, ok := listed[k]; ok {
			d = c.w.h.digestOf(etag)
		}
		c.w.h.read(soakcheck.PartRead{PartKey: k, Digest: d, Start: start, End: end})
	}
}

// finalize finalizes over HTTP until it has the MOC or a final refusal:
// it polls while another finalize holds the lock, re-sends the parts a
// 400 INCOMPLETE_UPLOAD names, and follows slug suggestions.
func (c *client) finalize(ctx context.Context, u *upload, title string) bool {
	repairs := 0
	for attempt := range 20 {
		body, _ := json.Marshal(map[string]string{"uploadSessionId": u.id, "title": title})
		r := c.replica()
		r.finalizeStarted()
		start := time.Now()
		a := c.send(ctx, r, http.MethodPost, "/api/mocs/uploads/finalize", body, 30*time.Second)
		r.finalizeEnded()
		moc, _ := a.body["mocId"].(string)
		c.w.h.finalize(soakcheck.FinalizeCall{Session: u.id, Start: start, End: time.Now(), Status: a.status, MocID: moc, Replica: r.name}, "HTTP")
		switch {
		case a.status == 200 || a.status == 201:
			return true
		case a.status == 409 && a.code() == "FINALIZE_IN_PROGRESS", retryable(a):
			c.sleep(ctx, c.retryWait(a, min(attempt, 4)))
		case a.status == 400 && a.code() == "INCOMPLETE_UPLOAD" && repairs < 3:
			repairs++
			c.repair(ctx, u, a)
		case a.status == 409 && a.code() == "SLUG_CONFLICT":
			title = fmt.Sprintf("%s (%d)", title, attempt+1)
		default:
			return false
		}
		if ctx.Err() != nil {
			return false
		}
	}
	return false
}

// repair re-sends, with the bytes last sent, the parts a finalize named missing.
func (c *client) repair(ctx context.Context, u *upload, a answer) {
	missing, _ := a.body["missingParts"].(map[string]any)
	var keys []soakcheck.PartKey
	for file, ns := range missing {
		list, _ := ns.([]any)
		for _, n := range list {
			f, _ := n.(float64)
			keys = append(keys, soakcheck.PartKey{Session: u.id, File: file, Part: int(f)})
		}
	}
	for _, k := range keys {
		u.mu.Lock()
		v := u.version[k]
		u.mu.Unlock()
		c.put(ctx, u, k, v)
	}
}

func (c *client) delete(ctx context.Context, u *upload) {
	us := &uploadsv1.UploadSession{ObjectMeta: metav1.ObjectMeta{Name: u.resource, Namespace: namespace}}
	err := c.w.e.k8s.Delete(ctx, us)
	if err == nil || apierrors.IsNotFound(err) {
		c.w.h.deleted(u.id)
		c.w.h.op("delete resource", 200)
		return
	}
	c.w.h.op("delete resource", 0)
}

// declarative: the session is a manifest (applied for the user by a
// platform tool), parts go over HTTP, finalize is asked for in the spec.
func (c *client) declarative(ctx context.Context, sizes []int64) {
	name := fmt.Sprintf("decl-%d-%d-%04x", c.id, c.n, c.uint32()&0xffff)
	us := &uploadsv1.UploadSession{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: uploadsv1.UploadSessionSpec{Owner: c.user.name, PartSizeBytes: ptr.To(int64(partSize))}}
	for i, s := range sizes {
		us.Spec.Files = append(us.Spec.Files, uploadsv1.FileSpec{Name: fmt.Sprintf("decl-%d.pdf", i), ContentType: "application/pdf", SizeBytes: s})
	}
	if err := c.w.e.k8s.Create(ctx, us); err != nil {
		c.w.h.op("apply manifest", 0)
		return
	}
	c.w.h.op("apply manifest", 201)
	key := types.NamespacedName{Namespace: namespace, Name: name}
	var got uploadsv1.UploadSession
	if !c.poll(ctx, 60*time.Second, func() bool {
		return c.w.e.k8s.Get(ctx, key, &got) == nil && got.Status.SessionID != "" && len(got.Status.Files) == len(sizes)
	}) {
		c.w.h.op("manifest session ready", 0)
		return
	}
	u := &upload{id: got.Status.SessionID, resource: name, owner: c.user, version: map[soakcheck.PartKey]int{}}
	for i, f := range got.Status.Files {
		u.files = append(u.files, upFile{id: f.FileID, size: sizes[i], parts: int((sizes[i] + partSize - 1) / partSize)})
	}
	c.w.h.session(&sessionRecord{ID: u.id, Owner: c.user.name, Via: "manifest", Plan: "declarative", Resource: name})
	c.w.h.expect(u)
	c.uploadAll(ctx, u, u.keys())
	patch := fmt.Sprintf(`{"spec":{"finalize":{"title":%q}}}`, c.title())
	if err := c.w.e.k8s.Patch(ctx, &got, ctrlclient.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		c.w.h.op("finalize (manifest)", 0)
		return
	}
	ok := c.poll(ctx, 90*time.Second, func() bool {
		return c.w.e.k8s.Get(ctx, key, &got) == nil && got.Status.Phase == uploadsv1.PhaseFinalized
	})
	c.w.h.op("finalize (manifest)", map[bool]int{true: 200, false: 0}[ok])
}

func (c *client) poll(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if cond() {
			return true
		}
		c.sleep(ctx, 500*time.Millisecond)
	}
	return false
}

// goClient uses pkg/client as an application would: create, Upload (its own
// concurrency and retries, from files on disk), Finalize (polling the lock,
// following slug suggestions). Each part is recorded as one write spanning
// the Upload call: it landed some time within it, or not at all.
func (c *client) goClient(ctx context.Context, sizes []int64) {
	r := c.replica()
	gc := pkgclient.New(r.url, pkgclient.StaticToken(c.user.token))
	gc.RequestTimeout, gc.BaseBackoff, gc.MaxRetries, gc.FinalizeWait = 40*time.Second, 300*time.Millisecond, 5, time.Minute
	var specs []pkgclient.FileSpec
	for i, s := range sizes {
		specs = append(specs, pkgclient.FileSpec{Name: fmt.Sprintf("client-%d.pdf", i), ContentType: "application/pdf", SizeBytes: s})
	}
	start := time.Now()
	s, err := gc.CreateSession(ctx, specs, partSize)
	c.w.h.call(soakcheck.Call{Kind: "create", Start: start, End: time.Now(), Status: apiStatus(err, 201), Replica: r.name}, "create (Go client)")
	if err != nil {
		return
	}
	u := &upload{id: s.SessionID, resource: s.SessionID, owner: c.user, version: map[soakcheck.PartKey]int{}}
	c.w.h.session(&sessionRecord{ID: u.id, Owner: c.user.name, Via: "Go client", Plan: "go client", Resource: u.resource})
	var paths []string
	for i, f := range s.Files {
		u.files = append(u.files, upFile{id: f.FileID, size: sizes[i], parts: f.PartCount})
		path := filepath.Join(c.w.dir, fmt.Sprintf("%s-%d.pdf", u.id, i))
		var content []byte
		for n := 1; n <= f.PartCount; n++ {
			k := soakcheck.PartKey{Session: u.id, File: f.FileID, Part: n}
			content = append(content, c.w.bytesOf(k, 0, u.partLen(k))...)
		}
		if err := os.WriteFile(path, content, 0o600); err != nil {
			say("client %d: %v", c.id, err)
			return
		}
		defer os.Remove(path)
		paths = append(paths, path)
	}
	c.w.h.expect(u)
	start = time.Now()
	_, err = gc.Upload(ctx, u.id, paths)
	end, status := time.Now(), 200
	if err != nil {
		status = 0 // some parts may have landed
	}
	for _, k := range u.keys() {
		b := c.w.bytesOf(k, 0, u.partLen(k))
		c.w.h.put(soakcheck.PartPut{PartKey: k, Digest: digest(b), Start: start, End: end, Status: status, Replica: r.name}, int64(len(b)))
		c.w.h.sent(b)
	}
	if err != nil {
		return
	}
	start = time.Now()
	moc, err := gc.Finalize(ctx, u.id, c.title(), "", pkgclient.AutoAppend)
	f := soakcheck.FinalizeCall{Session: u.id, Start: start, End: time.Now(), Status: apiStatus(err, 200), Replica: r.name}
	if err == nil {
		f.MocID = moc.MocID
		if moc.Created {
			f.Status = 201
		}
	}
	c.w.h.finalize(f, "Go client")
}

// apiStatus is the status an error of pkg/client carries (0: no answer).
func apiStatus(err error, ok int) int {
	if err == nil {
		return ok
	}
	var ae *pkgclient.APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}
