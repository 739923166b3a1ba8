package main

import (
	"crypto/md5" //nolint:gosec // S3's part ETag
	"encoding/hex"
	"sort"
	"sync"
	"time"

	"github.com/mocs-dev/upload-operator/internal/testenv/soakcheck"
)

// history is everything the clients were told and everything the fault
// scheduler did, with times, for the checker and the report.
type history struct {
	mu       sync.Mutex
	puts     []soakcheck.PartPut
	reads    []soakcheck.PartRead
	etags    map[string]string // the ETag S3 gives bytes a client sent → their digest
	finals   []soakcheck.FinalizeCall
	calls    []soakcheck.Call
	ops      map[string]map[int]int // call kind → status → count
	sessions map[string]*sessionRecord
	faults   []fault
	dbCut    []soakcheck.Window
	expected map[string]soakcheck.ExpectedSession // what each session's client created
	acks     []ack
}

// ack is a part acknowledged (200) at a time: the throughput plot's data.
type ack struct {
	at    time.Time
	bytes int64
}

// sessionRecord is what a client knows of a session it created.
type sessionRecord struct {
	ID, Owner, Via, Plan string
	Resource             string // the UploadSession's name
	DeleteAsked          bool   // a client deleted its resource
}

// fault is one injected fault and when it was in force.
type fault struct {
	Kind, Target string
	From, To     time.Time
}

func newHistory() *history {
	return &history{ops: map[string]map[int]int{}, sessions: map[string]*sessionRecord{}, etags: map[string]string{},
		expected: map[string]soakcheck.ExpectedSession{}}
}

func (h *history) count(kind string, status int) {
	if h.ops[kind] == nil {
		h.ops[kind] = map[int]int{}
	}
	h.ops[kind][status]++
}

func (h *history) put(p soakcheck.PartPut, size int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.puts = append(h.puts, p)
	if p.Status == 200 {
		h.acks = append(h.acks, ack{p.End, size})
	}
	h.count("put part", p.Status)
}

// expect records what a client created: a finalized session must hold
// exactly these files (soakcheck's content check).
func (h *history) expect(u *upload) {
	files := make(map[string]int64, len(u.files))
	for _, f := range u.files {
		files[f.id] = f.size
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.expected[u.id] = soakcheck.ExpectedSession{PartSize: partSize, Files: files}
}

// checked is the history as soakcheck reads it.
func (h *history) checked() soakcheck.History {
	h.mu.Lock()
	defer h.mu.Unlock()
	return soakcheck.History{Puts: h.puts, Reads: h.reads, Finals: h.finals, Calls: h.calls, DBCuts: h.dbCut, Expected: h.expected}
}

// sent remembers bytes a client sent, so a GET's ETag can be read back as
// the version it lists (S3's part ETag is the MD5 of the part, quoted).
func (h *history) sent(b []byte) {
	sum := md5.Sum(b) //nolint:gosec // S3's part ETag, not a security hash
	etag := `"` + hex.EncodeToString(sum[:]) + `"`
	h.mu.Lock()
	defer h.mu.Unlock()
	h.etags[etag] = digest(b)
}

// digestOf is the digest of the bytes a listed ETag stands for, or
// "unknown:<etag>" for bytes no client sent.
func (h *history) digestOf(etag string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if d, ok := h.etags[etag]; ok {
		return d
	}
	return "unknown:" + etag
}

func (h *history) read(r soakcheck.PartRead) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reads = append(h.reads, r)
}

func (h *history) finalize(f soakcheck.FinalizeCall, via string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.finals = append(h.finals, f)
	h.count("finalize ("+via+")", f.Status)
}

func (h *history) call(c soakcheck.Call, label string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, c)
	h.count(label, c.Status)
}

// op counts an operation that is not an HTTP call (a manifest applied, a
// resource deleted); status 0 is a failure.
func (h *history) op(label string, status int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.count(label, status)
}

func (h *history) session(s *sessionRecord) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sessions[s.ID] = s
}

func (h *history) deleted(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s := h.sessions[id]; s != nil {
		s.DeleteAsked = true
	}
}

func (h *history) fault(f fault) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.faults = append(h.faults, f)
	if f.Kind == faultPostgresCut {
		// Connections a cut broke surface on their next use, just after it.
		h.dbCut = append(h.dbCut, soakcheck.Window{From: f.From, To: f.To.Add(dbCutGrace), Target: f.Target})
	}
}

// dbCutGrace: how long after PostgreSQL comes back a call may still meet a
// connection the cut broke (the pool finds it dead on use, within a health
// check period).
const dbCutGrace = 5 * time.Second

// ackedBytes returns, per bucket of width w from start, the bytes of parts
// acknowledged (200) in it.
func (h *history) ackedBytes(start time.Time, w time.Duration, n int) []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]int64, n)
	for _, a := range h.acks {
		if i := int(a.at.Sub(start) / w); i >= 0 && i < n {
			out[i] += a.bytes
		}
	}
	return out
}

func (h *history) sortedFaults() []fault {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := append([]fault(nil), h.faults...)
	sort.Slice(out, func(i, j int) bool { return out[i].From.Before(out[j].From) })
	return out
}
