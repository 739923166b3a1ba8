package session

import (
	"testing"
	"time"
)

func TestSlotsPerPart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ parts, want int }{
		{1, MaxSlotsPerPart}, {1024, 9 - 1}, {1250, 8}, {1251, 7}, {5000, 2}, {5001, 1}, {10000, 1}, {0, 1},
	} {
		if got := SlotsPerPart(tc.parts); got != tc.want {
			t.Errorf("SlotsPerPart(%d) = %d, want %d", tc.parts, got, tc.want)
		}
		if tc.parts > 0 && SlotsPerPart(tc.parts)*tc.parts > MaxParts {
			t.Errorf("SlotsPerPart(%d) = %d uses more than %d S3 part numbers", tc.parts, SlotsPerPart(tc.parts), MaxParts)
		}
	}
}

// A PUT never gets the register's slot (unless the part has only one) nor
// one another PUT in flight writes; a free slot beats a quarantined one, and
// of quarantined ones the one released first is taken.
func TestChooseSlot(t *testing.T) {
	t.Parallel()
	now := time.Now()
	q := func(slot int, until time.Duration) SlotUse { return SlotUse{S3PartNumber: slot, Until: now.Add(until)} }
	fly := func(slot int) SlotUse { return SlotUse{S3PartNumber: slot, InFlight: true} }
	for _, tc := range []struct {
		name           string
		n, k, register int
		busy           []SlotUse
		want           int
		wantOK         bool
	}{
		{"first PUT of part 1", 1, 4, 0, nil, 1, true},
		{"first PUT of part 3", 3, 4, 0, nil, 9, true},
		{"the register's slot is skipped", 3, 4, 9, nil, 10, true},
		{"a slot in flight is skipped", 3, 4, 9, []SlotUse{fly(10)}, 11, true},
		{"free beats quarantined", 3, 4, 10, []SlotUse{q(9, time.Hour)}, 11, true},
		{"every other slot quarantined: the first released", 2, 3, 4, []SlotUse{q(5, 2*time.Hour), q(6, time.Hour)}, 6, true},
		{"every other slot in flight", 2, 3, 4, []SlotUse{fly(5), fly(6)}, 0, false},
		{"one slot: written over when nothing is in flight", 7, 1, 7, nil, 7, true},
		{"one slot, in flight", 7, 1, 7, []SlotUse{fly(7)}, 0, false},
		{"one slot, quarantined", 7, 1, 0, []SlotUse{q(7, time.Hour)}, 7, true},
	} {
		got, ok := ChooseSlot(tc.n, tc.k, tc.register, tc.busy)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("%s: ChooseSlot = %d, %v; want %d, %v", tc.name, got, ok, tc.want, tc.wantOK)
		}
	}
}
