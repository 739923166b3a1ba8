package soakcheck

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

var p1 = PartKey{"s1", "f1", 1}

// healthy is a settled, healthy run: session s1 (one file of one 100-byte
// part) finalized, part 1 written twice in sequence, then by two overlapping
// PUTs, then a PUT refused; read by a GET between b's 200 and c's PUT and one
// during c and d; s2 expired. Every call was served by r1.
func healthy() (History, Final) {
	h := History{
		Puts: []PartPut{
			{p1, "a", at(0), at(10), 200, "r1"},
			{p1, "b", at(20), at(30), 200, "r1"},
			{p1, "c", at(40), at(60), 200, "r1"}, // c and d overlap: either may win
			{p1, "d", at(45), at(55), 200, "r1"},
			{p1, "e", at(70), at(80), 503, "r1"}, // refused: never lands
			{PartKey{"s2", "f2", 1}, "x", at(0), at(5), 200, "r1"},
		},
		Reads: []PartRead{{p1, "b", at(32), at(35)}, {p1, "b", at(46), at(50)}},
		Finals: []FinalizeCall{
			{"s1", at(100), at(200), 201, "m1", "r1"},
			{"s1", at(150), at(210), 200, "m1", "r1"},
			{"s1", at(90), at(95), 409, "", "r1"},
		},
		Calls: []Call{{"create", at(0), at(10), 201, "r1"}, {"get", at(40), at(50), 410, "r1"}},
		Expected: map[string]ExpectedSession{
			"s1": {PartSize: 100, Files: map[string]int64{"f1": 100}},
			"s2": {PartSize: 100, Files: map[string]int64{"f2": 100}},
		},
	}
	final := Final{
		Status:  map[string]string{"s1": "finalized", "s2": "expired"},
		MOCs:    map[string][]string{"s1": {"m1"}},
		Parts:   map[PartKey]string{p1: "c"},
		Objects: map[string]int64{"f1": 100},
	}
	return h, final
}

func TestAHealthyHistoryHasNoViolation(t *testing.T) {
	t.Parallel()
	for _, winner := range []string{"c", "d"} {
		h, final := healthy()
		final.Parts[p1] = winner
		h.Reads = append(h.Reads, PartRead{p1, winner, at(85), at(88)})
		if v := Check(h, final); len(v) != 0 {
			t.Errorf("overlapping writes, %s landing last, GET listing it: %v", winner, v)
		}
	}
	// An unanswered write may land, or not.
	for _, landed := range []string{"c", "u"} {
		h, final := healthy()
		h.Puts = append(h.Puts, PartPut{p1, "u", at(65), at(90), 0, "r1"})
		final.Parts[p1] = landed
		if v := Check(h, final); len(v) != 0 {
			t.Errorf("unanswered write, final %s: %v", landed, v)
		}
	}
}

// Each kind of violation, planted in the healthy history, is reported (and
// only that kind).
func TestPlantedViolationsAreFound(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		plant func(h *History, f *Final)
		kind  string
	}{
		{"bytes nobody sent", func(_ *History, f *Final) { f.Parts[p1] = "zzz" }, LostPart},
		{"refused write landed", func(_ *History, f *Final) { f.Parts[p1] = "e" }, LostPart},
		{"object ends before a part", func(_ *History, f *Final) { f.Parts[p1], f.Objects["f1"] = "", 50 }, MissingFile + "," + LostPart},
		{"stale part", func(_ *History, f *Final) { f.Parts[p1] = "b" }, StalePart},
		{"GET lists an older version after a 200", func(h *History, _ *Final) { h.Reads = append(h.Reads, PartRead{p1, "a", at(33), at(34)}) }, StaleRead},
		{"GET lists nothing after a 200", func(h *History, _ *Final) { h.Reads = append(h.Reads, PartRead{p1, "", at(33), at(34)}) }, StaleRead},
		{"GET lists bytes nobody sent", func(h *History, _ *Final) {
			h.Reads = append(h.Reads, PartRead{p1, `unknown:"0badc0de"`, at(33), at(34)})
		}, StaleRead},
		{"GET lists what the object does not hold, after everything", func(h *History, _ *Final) {
			h.Reads = append(h.Reads, PartRead{p1, "d", at(95), at(96)})
		}, StaleRead},
		{"a file missing from the MOC", func(h *History, _ *Final) { h.Expected["s1"].Files["f9"] = 100 }, MissingFile},
		{"an object longer than its parts", func(_ *History, f *Final) { f.Objects["f1"] = 101 }, MissingFile},
		{"a part never checked", func(_ *History, f *Final) { delete(f.Parts, p1) }, MissingFile},
		{"duplicate MOC", func(_ *History, f *Final) { f.MOCs["s1"] = []string{"m1", "m2"} }, DuplicateMOC},
		{"finalized without MOC", func(h *History, f *Final) {
			delete(f.MOCs, "s1")
			h.Finals = h.Finals[2:]
		}, MissingMOC},
		{"answer names another MOC", func(h *History, _ *Final) { h.Finals[1].MocID = "m9" }, FinalizeAnswer},
		{"stuck in finalizing", func(_ *History, f *Final) { f.Status["s2"] = "finalizing" }, StuckSession},
		{"leftover upload", func(_ *History, f *Final) { f.LeftoverUploads = []string{"sessions/s2/f2 upload-1"} }, Leftover},
		{"unreferenced object", func(_ *History, f *Final) { f.Unreferenced = []string{"sessions/s2/x.pdf"} }, Leftover},
		{"500 outside any database cut", func(h *History, _ *Final) {
			h.Puts[4].Status = 500
			h.DBCuts = []Window{{at(500), at(600), "r1"}}
		}, UnexpectedAnswer},
		{"500 from a replica whose PostgreSQL was fine while another's was cut", func(h *History, _ *Final) {
			h.Puts[4].Status = 500
			h.DBCuts = []Window{{at(75), at(85), "r2"}}
		}, UnexpectedAnswer},
		{"create answered outside its list", func(h *History, _ *Final) { h.Calls[0].Status = 200 }, UnexpectedAnswer},
		{"get answered 500 outside a cut", func(h *History, _ *Final) { h.Calls[1].Status = 500 }, UnexpectedAnswer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, final := healthy()
			tc.plant(&h, &final)
			v := Check(h, final)
			var kinds []string
			for _, x := range v {
				kinds = append(kinds, x.Kind)
			}
			if strings.Join(kinds, ",") != tc.kind {
				t.Fatalf("= %v; want %s", v, tc.kind)
			}
		})
	}
}

// A 500 while the answering replica's PostgreSQL was cut off is what the
// contract allows then.
func TestA500DuringItsReplicasDatabaseCutIsAllowed(t *testing.T) {
	t.Parallel()
	h, final := healthy()
	h.Puts[4].Status = 500
	h.Calls = append(h.Calls, Call{"create", at(80), at(90), 500, "r1"})
	h.DBCuts = []Window{{at(75), at(85), "r1"}}
	if v := Check(h, final); len(v) != 0 {
		t.Fatalf("= %v", v)
	}
}

func TestReplicaMemoryIsFoundOverItsLimitOrUnsampled(t *testing.T) {
	t.Parallel()
	budget := int64(64 << 20)
	peaks := map[string]int64{"replica-0#1": budget + MemoryHeadroom, "replica-1#1": budget + MemoryHeadroom + 1}
	v := CheckMemory([]string{"replica-0#1", "replica-1#1", "replica-2#1"}, peaks, budget)
	if len(v) != 2 || v[0].Kind != Memory || !strings.Contains(v[0].Detail, "replica-1#1") ||
		!strings.Contains(v[1].Detail, "replica-2#1 was never sampled") {
		t.Fatalf("= %v; want replica-1#1 over its limit and replica-2#1 never sampled", v)
	}
}

func TestCrashesAndUncleanShutdownsAreFound(t *testing.T) {
	t.Parallel()
	v := CheckRuns([]RunEnd{{Run: "replica-0#1"}, {Run: "replica-0#2", ExitedUnbidden: true},
		{Run: "replica-1#1", Err: errors.New("exit status 2")}})
	if len(v) != 2 || v[0].Kind != Crash || !strings.Contains(v[0].Detail, "replica-0#2 exited on its own") ||
		!strings.Contains(v[1].Detail, "replica-1#1 did not shut down cleanly") {
		t.Fatalf("= %v", v)
	}
}

func TestPanicsAndFatalErrorsInLogsAreFound(t *testing.T) {
	t.Parallel()
	v := CheckLogs(map[string][]byte{
		"replica-0": []byte(`{"level":"info","msg":"part uploaded"}`),
		"replica-1": []byte("panic: runtime error: index out of range"),
		"replica-2": []byte("fatal error: concurrent map writes"),
	})
	if len(v) != 2 || v[0].Kind != Crash || !strings.Contains(v[0].Detail, "replica-1") || !strings.Contains(v[1].Detail, "replica-2") {
		t.Fatalf("= %v", v)
	}
}
