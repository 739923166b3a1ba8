package soakcheck

import (
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

var p1 = PartKey{"s1", "f1", 1}

// history is a settled, healthy run: session s1 finalized (part 1 written
// twice in sequence, then by two overlapping PUTs), s2 expired.
func history() ([]PartPut, []FinalizeCall, Final) {
	puts, fins, final, _ := historyWithReads()
	return puts, fins, final
}

// historyWithReads is history with the GETs a client made of part 1: one
// between b's 200 and c's PUT (b listed), one during c and d (either, or b).
func historyWithReads() ([]PartPut, []FinalizeCall, Final, []PartRead) {
	puts := []PartPut{
		{p1, "a", at(0), at(10), 200},
		{p1, "b", at(20), at(30), 200},
		{p1, "c", at(40), at(60), 200}, // c and d overlap: either may win
		{p1, "d", at(45), at(55), 200},
		{p1, "e", at(70), at(80), 503}, // refused: never lands
		{PartKey{"s2", "f2", 1}, "x", at(0), at(5), 200},
	}
	fins := []FinalizeCall{
		{"s1", at(100), at(200), 201, "m1"},
		{"s1", at(150), at(210), 200, "m1"},
		{"s1", at(90), at(95), 409, ""},
	}
	final := Final{
		Status: map[string]string{"s1": "finalized", "s2": "expired"},
		MOCs:   map[string][]string{"s1": {"m1"}},
		Parts:  map[PartKey]string{p1: "c"},
	}
	reads := []PartRead{{p1, "b", at(32), at(35)}, {p1, "b", at(46), at(50)}}
	return puts, fins, final, reads
}

func TestAHealthyHistoryHasNoViolation(t *testing.T) {
	t.Parallel()
	for _, winner := range []string{"c", "d"} {
		puts, fins, final := history()
		final.Parts[p1] = winner
		if v := Check(puts, nil, fins, final, nil); len(v) != 0 {
			t.Errorf("overlapping writes, %s landing last: %v", winner, v)
		}
		_, _, _, reads := historyWithReads()
		reads = append(reads, PartRead{p1, winner, at(85), at(88)})
		if v := Check(puts, reads, fins, final, nil); len(v) != 0 {
			t.Errorf("overlapping writes, %s landing last, GET listing it: %v", winner, v)
		}
	}
	// An unanswered write may land, or not.
	for _, landed := range []string{"c", "u"} {
		puts, fins, final := history()
		puts = append(puts, PartPut{p1, "u", at(65), at(90), 0})
		final.Parts[p1] = landed
		if v := Check(puts, nil, fins, final, nil); len(v) != 0 {
			t.Errorf("unanswered write, final %s: %v", landed, v)
		}
	}
}

// Each kind of violation, planted in the healthy history, is reported (and
// only that kind).
func TestPlantedViolationsAreFound(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		plant func(puts *[]PartPut, fins *[]FinalizeCall, final *Final, cut *[]Window)
		kind  string
	}{
		{"lost acknowledged part", func(_ *[]PartPut, _ *[]FinalizeCall, f *Final, _ *[]Window) { f.Parts[p1] = "" }, LostPart},
		{"bytes nobody sent", func(_ *[]PartPut, _ *[]FinalizeCall, f *Final, _ *[]Window) { f.Parts[p1] = "zzz" }, LostPart},
		{"refused write landed", func(_ *[]PartPut, _ *[]FinalizeCall, f *Final, _ *[]Window) { f.Parts[p1] = "e" }, LostPart},
		{"stale part", func(_ *[]PartPut, _ *[]FinalizeCall, f *Final, _ *[]Window) { f.Parts[p1] = "b" }, StalePart},
		{"duplicate MOC", func(_ *[]PartPut, _ *[]FinalizeCall, f *Final, _ *[]Window) { f.MOCs["s1"] = []string{"m1", "m2"} }, DuplicateMOC},
		{"finalized without MOC", func(_ *[]PartPut, fins *[]FinalizeCall, f *Final, _ *[]Window) {
			delete(f.MOCs, "s1")
			*fins = (*fins)[2:]
		}, MissingMOC},
		{"answer names another MOC", func(_ *[]PartPut, fins *[]FinalizeCall, _ *Final, _ *[]Window) { (*fins)[1].MocID = "m9" }, FinalizeAnswer},
		{"stuck in finalizing", func(_ *[]PartPut, _ *[]FinalizeCall, f *Final, _ *[]Window) { f.Status["s2"] = "finalizing" }, StuckSession},
		{"leftover upload", func(_ *[]PartPut, _ *[]FinalizeCall, f *Final, _ *[]Window) {
			f.LeftoverUploads = []string{"sessions/s2/f2 upload-1"}
		}, Leftover},
		{"unreferenced object", func(_ *[]PartPut, _ *[]FinalizeCall, f *Final, _ *[]Window) {
			f.Unreferenced = []string{"sessions/s2/x.pdf"}
		}, Leftover},
		{"500 outside a database cut", func(p *[]PartPut, _ *[]FinalizeCall, _ *Final, cut *[]Window) {
			(*p)[4].Status = 500
			*cut = []Window{{at(500), at(600)}}
		}, UnexpectedAnswer},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			puts, fins, final, reads := historyWithReads()
			var cut []Window
			tc.plant(&puts, &fins, &final, &cut)
			v := Check(puts, reads, fins, final, cut)
			if len(v) != 1 || v[0].Kind != tc.kind {
				t.Fatalf("= %v; want one %s", v, tc.kind)
			}
		})
	}
}

// A GET is a read of each part's register: a listing that no linearization
// of the writes explains is reported (and only that).
func TestPlantedStaleReadsAreFound(t *testing.T) {
	t.Parallel()
	for name, read := range map[string]PartRead{
		"GET lists an older version after a 200":                    {p1, "a", at(33), at(34)},
		"GET lists nothing after a 200":                             {p1, "", at(33), at(34)},
		"GET lists bytes nobody sent":                               {p1, `unknown:"0badc0de"`, at(33), at(34)},
		"GET lists what the object does not hold, after everything": {p1, "d", at(95), at(96)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			puts, fins, final, reads := historyWithReads()
			v := Check(puts, append(reads, read), fins, final, nil)
			if len(v) != 1 || v[0].Kind != StaleRead {
				t.Fatalf("= %v; want one %s", v, StaleRead)
			}
		})
	}
}

// A 500 while PostgreSQL was cut off is what the contract allows then.
func TestA500DuringADatabaseCutIsAllowed(t *testing.T) {
	t.Parallel()
	puts, fins, final := history()
	puts[4].Status = 500
	if v := Check(puts, nil, fins, final, []Window{{at(75), at(85)}}); len(v) != 0 {
		t.Fatalf("= %v", v)
	}
}

// Creates and reads are held to their own lists of answers.
func TestOtherCallsOutsideTheContractAreFound(t *testing.T) {
	t.Parallel()
	calls := []Call{{"create", at(0), at(10), 201}, {"create", at(20), at(30), 429}, {"get", at(40), at(50), 410},
		{"get", at(60), at(70), 0}, {"create", at(80), at(90), 500}}
	cut := []Window{{at(85), at(95)}}
	if v := CheckAnswers(calls, cut); len(v) != 0 {
		t.Fatalf("contract answers: %v", v)
	}
	for _, bad := range []Call{{"create", at(0), at(10), 200}, {"get", at(0), at(10), 409}, {"get", at(0), at(10), 500}} {
		if v := CheckAnswers([]Call{bad}, cut); len(v) != 1 || v[0].Kind != UnexpectedAnswer {
			t.Errorf("%+v: %v; want one %s", bad, v, UnexpectedAnswer)
		}
	}
}

func TestAReplicaOverItsMemoryLimitIsFound(t *testing.T) {
	t.Parallel()
	budget := int64(64 << 20)
	peaks := map[string]int64{"replica-0#1": budget + MemoryHeadroom, "replica-1#1": budget + MemoryHeadroom + 1}
	v := CheckMemory(peaks, budget)
	if len(v) != 1 || v[0].Kind != Memory || !strings.Contains(v[0].Detail, "replica-1#1") {
		t.Fatalf("= %v; want replica-1#1 over its limit", v)
	}
}
