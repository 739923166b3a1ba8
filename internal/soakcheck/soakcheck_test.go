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
	return puts, fins, final
}

func TestAHealthyHistoryHasNoViolation(t *testing.T) {
	t.Parallel()
	for _, winner := range []string{"c", "d"} {
		puts, fins, final := history()
		final.Parts[p1] = winner
		if v := Check(puts, fins, final, nil); len(v) != 0 {
			t.Errorf("overlapping writes, %s landing last: %v", winner, v)
		}
	}
	// An unanswered write may land, or not.
	for _, landed := range []string{"c", "u"} {
		puts, fins, final := history()
		puts = append(puts, PartPut{p1, "u", at(65), at(90), 0})
		final.Parts[p1] = landed
		if v := Check(puts, fins, final, nil); len(v) != 0 {
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
			puts, fins, final := history()
			var cut []Window
			tc.plant(&puts, &fins, &final, &cut)
			v := Check(puts, fins, final, cut)
			if len(v) != 1 || v[0].Kind != tc.kind {
				t.Fatalf("= %v; want one %s", v, tc.kind)
			}
		})
	}
}

// A 500 while PostgreSQL was cut off is what the contract allows then.
func TestA500DuringADatabaseCutIsAllowed(t *testing.T) {
	t.Parallel()
	puts, fins, final := history()
	puts[4].Status = 500
	if v := Check(puts, fins, final, []Window{{at(75), at(85)}}); len(v) != 0 {
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
