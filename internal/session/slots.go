package session

import "time"

// Parts are registers (ADR 0001, "Parts"). Every PUT of part n writes one of
// the part's own S3 part numbers, its slots: (n-1)*k+1 … n*k for a file with k
// slots per part. The register points at the slot holding the acknowledged
// version, and a PUT never writes that slot (nor one another PUT in flight
// holds), so a PUT that is refused, fails, or has an attempt lingering on its
// way to S3 cannot replace acknowledged bytes. Completing a file with one slot
// per part, in part order, is in ascending S3 part numbers, as S3 requires;
// the object's ETag still counts the file's parts.

// MaxSlotsPerPart bounds the slots of a part: as many PUTs of one part may be
// in flight at once, less one (the register's slot).
const MaxSlotsPerPart = 8

// SlotsPerPart is how many slots each part of a file with partCount parts
// gets: up to MaxSlotsPerPart while the file stays within S3's 10,000 part
// numbers. A file of more than 5,000 parts (only with MAX_FILE_SIZE_BYTES
// above 40 GiB) gets one, and a re-send then writes over the acknowledged
// bytes (finalize's ETag check still never completes the wrong ones).
func SlotsPerPart(partCount int) int {
	if partCount <= 0 {
		return 1
	}
	return max(1, min(MaxSlotsPerPart, MaxParts/partCount))
}

// S3PartNumber is slot j (1-based) of part n with k slots per part.
func S3PartNumber(n, j, k int) int { return (n-1)*k + j }

// SlotUse is a registered PUT of a part: the slot it writes, and whether it
// is still in flight or a failed one whose slot is quarantined until Until
// (a late attempt of it may still land there).
type SlotUse struct {
	S3PartNumber int
	InFlight     bool
	Until        time.Time
}

// ChooseSlot picks the slot a new PUT of part n writes (k slots per part),
// given the register's slot (0: nothing acknowledged yet) and the registered
// PUTs of the part that are still busy. A free slot comes first; else the
// quarantined slot whose quarantine ends first (a lingering attempt that lands
// after it is caught by finalize's ETag check). ok is false when every slot
// is the register's or in flight: the part has as many PUTs in flight as it
// can take. With one slot per part the register's slot is written over once
// no other PUT is in flight.
func ChooseSlot(n, k, register int, busy []SlotUse) (int, bool) {
	inFlight := map[int]bool{}
	quarantined := map[int]time.Time{}
	for _, u := range busy {
		if u.InFlight {
			inFlight[u.S3PartNumber] = true
		} else if t, ok := quarantined[u.S3PartNumber]; !ok || u.Until.After(t) {
			quarantined[u.S3PartNumber] = u.Until
		}
	}
	best, bestUntil := 0, time.Time{}
	for j := 1; j <= k; j++ {
		slot := S3PartNumber(n, j, k)
		if inFlight[slot] || (slot == register && k > 1) {
			continue
		}
		until, q := quarantined[slot]
		if !q {
			return slot, true
		}
		if best == 0 || until.Before(bestUntil) {
			best, bestUntil = slot, until
		}
	}
	return best, best != 0
}
