// Package soakcheck checks a soak's history (what clients were told) against
// what the system holds once it has settled, in the spirit of Jepsen: every
// acknowledged byte accounted for, nothing left behind, no answer outside the
// contract. It is plain Go over plain records, so a planted violation of each
// kind can be shown to be caught.
package soakcheck

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// PartKey names one part of one file of one session.
type PartKey struct {
	Session, File string
	Part          int
}

func (k PartKey) String() string { return fmt.Sprintf("%s/%s/%d", k.Session, k.File, k.Part) }

// PartPut is one PUT of a part as its client saw it: a digest of the bytes
// sent, when it was sent and when answered, and the answer. Status 0 means no
// answer arrived (a reset, a timeout): the write may or may not have landed.
type PartPut struct {
	PartKey
	Digest     string
	Start, End time.Time
	Status     int
	Replica    string // the replica that served it
}

// PartRead is what one GET of a session listed for a part, as its client
// saw it: the digest of the version whose ETag it listed ("" when it listed
// none; "unknown:<etag>" for an ETag of bytes no client sent), between Start
// and End. It is a read of the part's register.
type PartRead struct {
	PartKey
	Digest     string
	Start, End time.Time
}

// FinalizeCall is one finalize as its client saw it (Status 0: no answer).
type FinalizeCall struct {
	Session    string
	Start, End time.Time
	Status     int
	MocID      string // of a 200 or 201 answer
	Replica    string // the replica that served it
}

// Window is a span of time a fault was in force on its target, e.g. while
// one replica's PostgreSQL was cut off (plus the grace after).
type Window struct {
	From, To time.Time
	Target   string
}

// ExpectedSession is what a client created: its part size and the size of
// each file (by file id). A finalized session must hold exactly that.
type ExpectedSession struct {
	PartSize int64
	Files    map[string]int64
}

// History is everything the clients were told, and the database cuts.
type History struct {
	Puts     []PartPut
	Reads    []PartRead
	Finals   []FinalizeCall
	Calls    []Call
	DBCuts   []Window
	Expected map[string]ExpectedSession
}

// Final is what the system holds after the faults stopped and it settled.
type Final struct {
	// Status of every session the clients created: finalized, expired,
	// failed or deleted when settled.
	Status map[string]string
	// MOCs lists the moc_instructions ids of each session that has any.
	MOCs map[string][]string
	// Parts is, for every part of every file of a finalized session as its
	// client created it, the digest of that part's bytes in the final object
	// ("" when the object is too short to hold it).
	Parts map[PartKey]string
	// Objects is the length of each file's final object, by file id, for the
	// files of finalized sessions that a MOC names and S3 holds.
	Objects map[string]int64
	// LeftoverUploads are S3 multipart uploads still open; Unreferenced are
	// objects no MOC references.
	LeftoverUploads, Unreferenced []string
}

// Violation kinds.
const (
	LostPart         = "lost-part"         // a part's final bytes are no bytes a client sent
	StalePart        = "stale-part"        // a part's final bytes are not the last write that could win
	StaleRead        = "stale-read"        // a GET listed a version of a part no linearization of the writes explains
	MissingFile      = "missing-file"      // a finalized session's file absent from its MOC or from S3, or of the wrong length
	Crash            = "crash"             // a replica exited unbidden or uncleanly, or logged a panic or fatal error
	DuplicateMOC     = "duplicate-moc"     // more than one MOC for a session
	MissingMOC       = "missing-moc"       // a finalized session without its MOC
	FinalizeAnswer   = "finalize-answer"   // a 200/201 naming another MOC, or none when one exists
	StuckSession     = "stuck-session"     // a session not finalized, expired, failed or deleted
	Leftover         = "leftover"          // a multipart upload or object left behind
	UnexpectedAnswer = "unexpected-answer" // a status the contract does not give for that call
	Memory           = "memory"            // a replica's peak RSS above its part buffer budget + 64 MiB
)

// Violation is one thing the checker found.
type Violation struct{ Kind, Detail string }

func (v Violation) String() string { return v.Kind + ": " + v.Detail }

// Statuses the contract gives to a part PUT and to a finalize (0: no answer).
// 500 only while PostgreSQL was cut off.
var (
	partAnswers     = []int{0, 200, 400, 401, 403, 404, 408, 409, 410, 413, 429, 503}
	finalizeAnswers = []int{0, 200, 201, 400, 401, 403, 404, 409, 410, 429, 503}
	settled         = []string{"finalized", "expired", "failed", "deleted"}
)

// Check returns every violation of the history against the final state.
func Check(h History, final Final) []Violation {
	var out []Violation
	for _, p := range h.Puts {
		if !answerAllowed(partAnswers, p.Status, p.Start, p.End, p.Replica, h.DBCuts) {
			out = append(out, Violation{UnexpectedAnswer, fmt.Sprintf("PUT %s answered %d by %s", p.PartKey, p.Status, p.Replica)})
		}
	}
	for _, f := range h.Finals {
		if !answerAllowed(finalizeAnswers, f.Status, f.Start, f.End, f.Replica, h.DBCuts) {
			out = append(out, Violation{UnexpectedAnswer, fmt.Sprintf("finalize %s answered %d by %s", f.Session, f.Status, f.Replica)})
		}
	}
	for _, c := range h.Calls {
		if !answerAllowed(otherAnswers[c.Kind], c.Status, c.Start, c.End, c.Replica, h.DBCuts) {
			out = append(out, Violation{UnexpectedAnswer, fmt.Sprintf("%s answered %d by %s at %s", c.Kind, c.Status, c.Replica,
				c.Start.Format(time.RFC3339Nano))})
		}
	}
	out = append(out, checkContent(h.Expected, final)...)
	out = append(out, checkParts(h.Puts, h.Reads, final)...)
	out = append(out, checkMOCs(h.Finals, final)...)
	for _, id := range sortedKeys(final.Status) {
		if !slices.Contains(settled, final.Status[id]) {
			out = append(out, Violation{StuckSession, fmt.Sprintf("session %s is %s", id, final.Status[id])})
		}
	}
	for _, u := range final.LeftoverUploads {
		out = append(out, Violation{Leftover, "multipart upload " + u})
	}
	for _, o := range final.Unreferenced {
		out = append(out, Violation{Leftover, "object " + o + " referenced by no MOC"})
	}
	return out
}

// checkContent derives what each finalized session must hold from what its
// client created (not from what the database says it holds): every file in
// S3 with exactly its size, and every part of it checked.
func checkContent(expected map[string]ExpectedSession, final Final) []Violation {
	var out []Violation
	for _, id := range sortedKeys(expected) {
		if final.Status[id] != "finalized" {
			continue
		}
		e := expected[id]
		want, checked := 0, 0
		for _, file := range sortedKeys(e.Files) {
			size := e.Files[file]
			parts := int((size + e.PartSize - 1) / e.PartSize)
			want += parts
			got, ok := final.Objects[file]
			switch {
			case !ok:
				out = append(out, Violation{MissingFile, fmt.Sprintf("session %s: file %s is not in its MOC or not in S3", id, file)})
			case got != size:
				out = append(out, Violation{MissingFile, fmt.Sprintf("session %s: file %s is %d bytes in S3; %d were sent", id, file, got, size)})
			}
			for n := 1; n <= parts; n++ {
				if _, ok := final.Parts[PartKey{id, file, n}]; ok {
					checked++ // its bytes are checked as a register (checkParts)
				}
			}
		}
		if checked != want && len(out) == 0 {
			out = append(out, Violation{MissingFile, fmt.Sprintf("session %s: %d parts checked, %d expected", id, checked, want)})
		}
	}
	return out
}

// Call is any other API call as its client saw it (Status 0: no answer).
type Call struct {
	Kind       string // "create" or "get"
	Start, End time.Time
	Status     int
	Replica    string // the replica that served it
}

var otherAnswers = map[string][]int{
	"create": {0, 201, 400, 401, 403, 404, 408, 413, 429, 503},
	"get":    {0, 200, 401, 404, 410},
}

// MemoryHeadroom is what a replica may use beyond its part buffer budget
// (the Go runtime, the binary, everything but part bodies).
const MemoryHeadroom = 64 << 20

// CheckMemory reports each replica run whose peak RSS passed budget + 64
// MiB, and each run that was never sampled (no figure is not a pass).
func CheckMemory(runs []string, peakRSS map[string]int64, budget int64) []Violation {
	var out []Violation
	for _, name := range runs {
		peak, sampled := peakRSS[name]
		switch {
		case !sampled:
			out = append(out, Violation{Memory, name + " was never sampled"})
		case peak > budget+MemoryHeadroom:
			out = append(out, Violation{Memory, fmt.Sprintf("%s peaked at %d MiB; the limit is %d MiB", name, peak>>20, (budget+MemoryHeadroom)>>20)})
		}
	}
	return out
}

// RunEnd is how one replica incarnation ended: ExitedUnbidden when it
// exited without being stopped (and without losing its lease, which
// controller-runtime exits on by design), Err its exit status when stopped
// (nil for a clean SIGTERM shutdown; a SIGKILL on purpose is not listed).
type RunEnd struct {
	Run            string
	ExitedUnbidden bool
	Err            error
}

// CheckRuns reports runs that crashed and shutdowns that were not clean.
func CheckRuns(ends []RunEnd) []Violation {
	var out []Violation
	for _, e := range ends {
		switch {
		case e.ExitedUnbidden:
			out = append(out, Violation{Crash, e.Run + " exited on its own"})
		case e.Err != nil:
			out = append(out, Violation{Crash, fmt.Sprintf("%s did not shut down cleanly: %v", e.Run, e.Err)})
		}
	}
	return out
}

// CheckLogs reports a panic or a fatal runtime error (a concurrent map write,
// a deadlock) in any replica's output, by replica name.
func CheckLogs(logs map[string][]byte) []Violation {
	var out []Violation
	for _, name := range sortedKeys(logs) {
		for _, bad := range []string{"panic:", "fatal error:"} {
			if bytes.Contains(logs[name], []byte(bad)) {
				out = append(out, Violation{Crash, fmt.Sprintf("%s logged %q", name, bad)})
			}
		}
	}
	return out
}

// answerAllowed: a status the contract gives for the call, or a 500 while the
// PostgreSQL of the replica that answered was cut off (not another's).
func answerAllowed(allowed []int, status int, start, end time.Time, replica string, dbCuts []Window) bool {
	if slices.Contains(allowed, status) {
		return true
	}
	if status == 500 {
		for _, w := range dbCuts {
			if w.Target == replica && start.Before(w.To) && end.After(w.From) {
				return true
			}
		}
	}
	return false
}

// checkMOCs: exactly one MOC per finalized session, at most one per any
// session, and every 200/201 finalize answer names it.
func checkMOCs(finals []FinalizeCall, final Final) []Violation {
	var out []Violation
	for _, id := range sortedKeys(final.MOCs) {
		if n := len(final.MOCs[id]); n > 1 {
			out = append(out, Violation{DuplicateMOC, fmt.Sprintf("session %s has %d MOCs", id, n)})
		}
	}
	for _, id := range sortedKeys(final.Status) {
		if final.Status[id] == "finalized" && len(final.MOCs[id]) == 0 {
			out = append(out, Violation{MissingMOC, "finalized session " + id + " has no MOC"})
		}
	}
	for _, f := range finals {
		if f.Status != 200 && f.Status != 201 {
			continue
		}
		// More than one MOC is reported once, as a duplicate.
		if mocs := final.MOCs[f.Session]; len(mocs) == 0 || len(mocs) == 1 && mocs[0] != f.MocID {
			out = append(out, Violation{FinalizeAnswer, fmt.Sprintf("finalize %s answered %d with MOC %q; the database holds %v",
				f.Session, f.Status, f.MocID, mocs)})
		}
	}
	return out
}

// write and read are the register operations of one part: a PUT (certain
// when acknowledged, possible when unanswered) and the final object's bytes.
type write struct {
	digest  string
	certain bool
}
type read struct{}

// checkParts checks each part of every finalized session as a register: the
// final object's part, and every GET's listing of it, must be reads of some
// linearization of the writes clients sent (overlapping writes may land in
// either order; a write answered before another was sent may not land after
// it; a GET after a 200 lists that version or a later one). A write answered
// with an error never lands; one without an answer may.
func checkParts(puts []PartPut, reads []PartRead, final Final) []Violation {
	byPart := map[PartKey][]PartPut{}
	for _, p := range puts {
		byPart[p.PartKey] = append(byPart[p.PartKey], p)
	}
	readsOf := map[PartKey][]PartRead{}
	for _, r := range reads {
		readsOf[r.PartKey] = append(readsOf[r.PartKey], r)
	}
	keys := make([]PartKey, 0, len(final.Parts))
	for k := range final.Parts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	var out []Violation
	for _, k := range keys {
		got := final.Parts[k]
		var ops []porcupine.Operation
		sent := false
		var last int64
		for _, p := range byPart[k] {
			if p.Status != 200 && p.Status != 0 {
				continue
			}
			sent = sent || p.Digest == got
			ret := int64(math.MaxInt64)
			if p.Status == 200 {
				ret = p.End.UnixNano()
			}
			last = max(last, p.End.UnixNano(), p.Start.UnixNano())
			ops = append(ops, porcupine.Operation{Input: write{p.Digest, p.Status == 200}, Call: p.Start.UnixNano(), Return: ret})
		}
		if !sent {
			out = append(out, Violation{LostPart, fmt.Sprintf("part %s holds %q, bytes no client had acknowledged or left unanswered", k, got)})
			continue
		}
		for _, r := range readsOf[k] {
			last = max(last, r.End.UnixNano())
		}
		final := porcupine.Operation{Input: read{}, Output: got, Call: last + 1, Return: last + 1}
		if !porcupine.CheckOperations(registerModel.ToModel(), append(slices.Clone(ops), final)) {
			out = append(out, Violation{StalePart, fmt.Sprintf("part %s holds %q, which a later acknowledged write replaced", k, got)})
			continue
		}
		for _, r := range readsOf[k] {
			ops = append(ops, porcupine.Operation{Input: read{}, Output: r.Digest, Call: r.Start.UnixNano(), Return: r.End.UnixNano()})
		}
		if !porcupine.CheckOperations(registerModel.ToModel(), append(ops, final)) {
			out = append(out, Violation{StaleRead, fmt.Sprintf("part %s: what GET listed (%d reads) and what the object holds (%q) are not reads of one register",
				k, len(readsOf[k]), got)})
		}
	}
	return out
}

var registerModel = porcupine.NondeterministicModel{
	Init: func() []interface{} { return []interface{}{""} },
	Step: func(state, input, output interface{}) []interface{} {
		switch in := input.(type) {
		case write:
			if in.certain {
				return []interface{}{in.digest}
			}
			return []interface{}{in.digest, state}
		case read:
			if output == state {
				return []interface{}{state}
			}
		}
		return nil
	},
	Equal: func(a, b interface{}) bool { return a == b },
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
