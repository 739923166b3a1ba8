// Package soakcheck checks a soak's history (what clients were told) against
// what the system holds once it has settled, in the spirit of Jepsen: every
// acknowledged byte accounted for, nothing left behind, no answer outside the
// contract. It is plain Go over plain records, so a planted violation of each
// kind can be shown to be caught.
package soakcheck

import (
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
}

// Window is a span of time, e.g. while PostgreSQL was cut off.
type Window struct{ From, To time.Time }

// Final is what the system holds after the faults stopped and it settled.
type Final struct {
	// Status of every session the clients created: finalized, expired,
	// failed or deleted when settled.
	Status map[string]string
	// MOCs lists the moc_instructions ids of each session that has any.
	MOCs map[string][]string
	// Parts is, for every part of every file of a finalized session, the
	// digest of that part's bytes in the final object ("" when missing).
	Parts map[PartKey]string
	// LeftoverUploads are S3 multipart uploads still open; Unreferenced are
	// objects no MOC references.
	LeftoverUploads, Unreferenced []string
}

// Violation kinds.
const (
	LostPart         = "lost-part"         // a part's final bytes are no bytes a client sent
	StalePart        = "stale-part"        // a part's final bytes are not the last write that could win
	StaleRead        = "stale-read"        // a GET listed a version of a part no linearization of the writes explains
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
func Check(puts []PartPut, reads []PartRead, finals []FinalizeCall, final Final, dbCut []Window) []Violation {
	var out []Violation
	for _, p := range puts {
		if !answerAllowed(partAnswers, p.Status, p.Start, p.End, dbCut) {
			out = append(out, Violation{UnexpectedAnswer, fmt.Sprintf("PUT %s answered %d", p.PartKey, p.Status)})
		}
	}
	for _, f := range finals {
		if !answerAllowed(finalizeAnswers, f.Status, f.Start, f.End, dbCut) {
			out = append(out, Violation{UnexpectedAnswer, fmt.Sprintf("finalize %s answered %d", f.Session, f.Status)})
		}
	}
	out = append(out, checkParts(puts, reads, final)...)
	out = append(out, checkMOCs(finals, final)...)
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

// Call is any other API call as its client saw it (Status 0: no answer).
type Call struct {
	Kind       string // "create" or "get"
	Start, End time.Time
	Status     int
}

var otherAnswers = map[string][]int{
	"create": {0, 201, 400, 401, 403, 404, 408, 413, 429, 503},
	"get":    {0, 200, 401, 404, 410},
}

// CheckAnswers reports calls answered with a status the contract does not
// give for that call (500 only while PostgreSQL was cut off).
func CheckAnswers(calls []Call, dbCut []Window) []Violation {
	var out []Violation
	for _, c := range calls {
		if !answerAllowed(otherAnswers[c.Kind], c.Status, c.Start, c.End, dbCut) {
			out = append(out, Violation{UnexpectedAnswer, fmt.Sprintf("%s answered %d at %s", c.Kind, c.Status, c.Start.Format(time.RFC3339Nano))})
		}
	}
	return out
}

// MemoryHeadroom is what a replica may use beyond its part buffer budget
// (the Go runtime, the binary, everything but part bodies).
const MemoryHeadroom = 64 << 20

// CheckMemory reports each replica run whose peak RSS passed budget + 64 MiB.
func CheckMemory(peakRSS map[string]int64, budget int64) []Violation {
	var out []Violation
	for _, name := range sortedKeys(peakRSS) {
		if peak := peakRSS[name]; peak > budget+MemoryHeadroom {
			out = append(out, Violation{Memory, fmt.Sprintf("%s peaked at %d MiB; the limit is %d MiB", name, peak>>20, (budget+MemoryHeadroom)>>20)})
		}
	}
	return out
}

func answerAllowed(allowed []int, status int, start, end time.Time, dbCut []Window) bool {
	if slices.Contains(allowed, status) {
		return true
	}
	if status == 500 {
		for _, w := range dbCut {
			if start.Before(w.To) && end.After(w.From) {
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
