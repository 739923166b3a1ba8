/*
 * A part as a register (ADR 0001, "Parts"; internal/uploads StorePart,
 * internal/store BeginPartWrite/RecordPart, session.ChooseSlot; finalize's
 * completeness and completion).
 *
 * Three PUTs of one part, with different bytes (values 1, 2, 3), race each
 * other and a finalize. A PUT registers before its first byte goes to S3 and
 * gets a slot (an S3 part number of the part's K) that is neither the
 * register's nor another PUT's in flight nor quarantined, if one is free; its
 * S3 write may succeed at once, succeed while an earlier attempt of it lingers
 * on its way and lands at any later moment, or fail with such an attempt
 * still on its way; its record makes the register point at its slot, if the
 * session still takes parts. Every slot a PUT wrote stays quarantined (an
 * attempt of it may still land there); the model assumes, as the design does,
 * that late attempts land within the quarantine (15 minutes) and that a part
 * gets fewer PUTs within it than it has slots. The finalize takes the lock
 * (from then on no PUT registers or records), reads the register, checks S3's
 * listing of its slot, and completes with the register's ETag: S3 refuses a
 * part whose bytes changed since.
 *
 * Properties:
 *   1. an answer other than 200 changes nothing the session holds: once
 *      every attempt has landed, the slot the register points at holds the
 *      register's bytes (the contract; and, the design's own invariant, no PUT
 *      ever writes the register's slot, so that holds at every moment);
 *   2. the finalized object holds the register's bytes, and those are the
 *      bytes of the last PUT answered 200 (GET lists the register).
 *
 * Mutants (hack/model/check.sh):
 *   ONE_SLOT       the design before: one S3 part number per part, every
 *                  acknowledged ETag accepted at finalize
 *   NO_REGISTRATION  slots chosen without registering (two PUTs in flight
 *                  may share one)
 *   NO_QUARANTINE  a slot is free again as soon as its PUT ended
 */

#define K 3
#define NPUT 3

mtype = { ACTIVE, FINALIZING, FINALIZED };

mtype status = ACTIVE;
/* PostgreSQL: the register and the registrations */
byte regSlot;                /* 0: nothing acknowledged */
byte regVal;
bool inFlight[K + 1];
bool quarantined[K + 1];
bool everAcked[NPUT + 1];    /* ONE_SLOT: the acknowledged ETags it remembered */
byte lastOK;                 /* the bytes of the last 200 */
/* S3 */
bool uploadOpen = true;
byte s3[K + 1];              /* the bytes each slot holds */
byte object;                 /* the completed object's part */
byte lingering[NPUT + 1];    /* the slot a late attempt of PUT v will land in, 0: none */

#define holdsRegister (regSlot == 0 || !uploadOpen || s3[regSlot] == regVal)

/* S3 stores bytes v in slot s while the upload is open. */
inline land(s, v) {
	if :: uploadOpen -> s3[s] = v :: else -> skip fi;
#ifndef ONE_SLOT
	assert(holdsRegister)                                /* property 1, at every moment */
#endif
}

proctype Put(byte v) {
	byte slot, j;
	atomic {   /* register, and take a slot: refused (409) once finalize holds the lock, 429 when none is free */
		if
		:: status == ACTIVE ->
#ifdef ONE_SLOT
			slot = 1
#else
			j = 1;
			do
			:: j <= K && (inFlight[j] || quarantined[j] || j == regSlot) -> j++
			:: j <= K && !(inFlight[j] || quarantined[j] || j == regSlot) -> slot = j; break
			:: j > K -> break
			od;
			if
			:: slot == 0 -> goto done
			:: else ->
#ifndef NO_REGISTRATION
				inFlight[slot] = true
#else
				skip
#endif
			fi
#endif
		:: else -> goto done
		fi }
	if   /* the S3 write */
	:: atomic { land(slot, v) }
	:: atomic { lingering[v] = slot; land(slot, v) }            /* attempt 1 lingers, attempt 2 lands */
	:: atomic { lingering[v] = slot; inFlight[slot] = false;    /* fails; attempt 1 may still land */
		quarantined[slot] = true; goto done }
	fi;
	atomic {   /* the record: the 200, if the session still takes parts */
		inFlight[slot] = false;
#ifndef NO_QUARANTINE
		quarantined[slot] = true;
#endif
		if
		:: status == ACTIVE -> regSlot = slot; regVal = v; lastOK = v; everAcked[v] = true
		:: else -> skip
		fi;
#ifndef ONE_SLOT
		assert(holdsRegister)                                /* property 1, at every moment */
#endif
		}
done:
	skip
}

/* A late attempt of PUT v lands, at any moment. */
proctype Late(byte v) {
	atomic { lingering[v] != 0 -> land(lingering[v], v); lingering[v] = 0 }
}

proctype Finalize() {
	byte planSlot, planVal, tries;
again:
	atomic { status == ACTIVE -> status = FINALIZING }   /* the lock: no PUT registers or records any more */
	atomic {   /* plan: the register, and S3's listing of its slot */
#ifdef ONE_SLOT
		if
		:: s3[1] != 0 && everAcked[s3[1]] -> planSlot = 1; planVal = s3[1]
		:: else -> planSlot = 0
		fi
#else
		if
		:: regSlot != 0 && s3[regSlot] == regVal -> planSlot = regSlot; planVal = regVal
		:: else -> planSlot = 0
		fi
#endif
	}
	if
	:: planSlot == 0 -> atomic { status = ACTIVE; tries++ }   /* INCOMPLETE_UPLOAD: released */
		if :: tries < 2 -> goto again :: else -> goto done fi
	:: else -> skip
	fi;
	atomic {   /* the completion names the slot and the ETag it listed: S3 refuses changed bytes */
		if
		:: s3[planSlot] == planVal ->
			object = planVal; uploadOpen = false; status = FINALIZED;
			assert(object == regVal && object == lastOK)          /* property 2 */
		:: else -> status = ACTIVE; tries++   /* InvalidPart: listed again by the next attempt */
		fi }
	if :: status == ACTIVE && tries < 2 -> goto again :: else -> skip fi;
done:
	skip
}

init {
	atomic {
		run Put(1); run Put(2); run Put(3);
		run Late(1); run Late(2); run Late(3);
		run Finalize(); run Quiescence()
	}
}

/* Property 1, once every attempt has landed and nothing can move. */
proctype Quiescence() {
	timeout ->
	assert(lingering[1] == 0 && lingering[2] == 0 && lingering[3] == 0);
	assert(holdsRegister)
}
