/*
 * The end of a session, step by step: what finalize.pml makes atomic or
 * leaves out. One file, whose parts are all acknowledged; two replicas; a
 * clock that is PostgreSQL's (internal/uploads, internal/store, controllers).
 *
 *   - The lease judged on its holder's window, stored with the lock (replica 1
 *     holds on a 4-tick window, replica 2 judges with its own 1-tick one, as
 *     during a rolling change of STALE_LOCK_AFTER); renewals that succeed,
 *     fail, or are sent and land a tick later; a holder that checks, before
 *     every step, that its last successful renewal was *sent* less than three
 *     quarters of its window ago, and otherwise stops.
 *   - S3's completion and the record of it (SetCompletedETag) as two steps;
 *     the record can fail, and the finalize then releases its lock.
 *   - A lost upload (aborted behind the operator's back): FailLocked, then the
 *     removal from S3, as two steps the replica can die between; the removal
 *     is recorded as pending by FailLocked and by the expiry.
 *   - The commit as a transaction: SELECT … FOR UPDATE, then the writes; a
 *     replica that dies or is cut off from PostgreSQL in between leaves the
 *     row locked (every other write of the row waits) until the server ends
 *     the idle transaction (idle_in_transaction_session_timeout).
 *   - The declarative finalize's completeness view (MissingParts) as a direct
 *     session reads it: S3's listing while the upload is open, else the
 *     completed object.
 *   - Expiry on PostgreSQL's clock: the lease is taken only before expiresAt,
 *     the expiry only after it (a stale finalizing session included).
 *
 * Faults until FAULTS_UNTIL: replica 1 (an HTTP finalize) may die, or be cut
 * off from PostgreSQL (its S3 calls still land); the upload may be lost.
 * Replica 2, the reconciler, runs the declared finalize and everything that
 * finishes what others left: takeover, expiry, pending removals.
 *
 * Properties (assertions):
 *   1. at most one MOC;
 *   2. a holder that is overtaken has stopped working: no two finalizes act
 *      under one lock;
 *   3. a MOC is committed only under a lock taken before expiresAt;
 *   4. MissingParts never reports missing a file S3 holds whole (an open
 *      upload with every part, or the completed object);
 *   5. at quiescence: the session is final, no lock and no row lock is held,
 *      no removal is pending, and a session that is not finalized holds
 *      nothing in S3 (neither this file nor the session's others).
 *
 * Mutants (-D…, hack/model/check.sh; each must break the property it names):
 *   CALLER_WINDOW       the judge ages a lock on its own window (2)
 *   STOP_WHEN_STALE     a cut-off holder works until its lock is stale (2)
 *   REPLICA_CLOCK       the lease checks expiry on replica 1's slow clock (3)
 *   LIST_GONE_IS_EMPTY  a gone upload lists no parts, object or not (4)
 *   NO_PENDING_REMOVAL  failing or expiring records no pending removal (5)
 *   NO_IDLE_TIMEOUT     a transaction left idle holds the row for good (5)
 *   EXPIRE_ACTIVE_ONLY  a finalizing session whose holder stopped after
 *                       expiresAt is never expired (5)
 *
 * Time: an S3 call (the completion) takes less than a tick, a quarter of
 * replica 1's window (the clock does not pass a call in flight by more than a
 * tick), and so does the server's idle-transaction timeout; a replica in the
 * middle of a finalize that nothing holds up takes its next step before the
 * clock moves (a slow replica 1 within the next tick), and the reconciler looks at the
 * session at least once per tick.
 */

#define W1 4                 /* replica 1's stale window */
#define SAFE1 3              /* three quarters of it: replica 1 stops after */
#define W2 1                 /* replica 2's stale window */
#define SAFE2 1
#define EXPIRES 9            /* expiresAt */
#define MAXT 16              /* the clock stops here */
#define FAULTS_UNTIL 3

mtype = { ACTIVE, FINALIZING, FINALIZED, EXPIRED, FAILED };

/* PostgreSQL */
mtype status = ACTIVE;
byte clk;
byte token;                  /* finalize_token, 0: no lock */
byte lockAt;                 /* finalizing_at */
byte lockWin;                /* finalize_stale_after_us: the holder's window */
byte nextToken = 1;
byte mocs;
bool completed;              /* completed_etag recorded */
bool pending;                /* s3_removal_pending */
byte rowLock;                /* replica holding SELECT … FOR UPDATE in an open transaction, 0: none */
/* S3 */
bool uploadOpen = true;
bool object;
bool other = true;           /* what the session's other files hold (their uploads, or objects) */
bool recognised;             /* a finalize found the file completed by one whose record failed */
/* replicas 1 and 2 */
bool alive[3];
bool cut[3];                 /* cut off from PostgreSQL */
bool slow;                   /* replica 1's steps may lag a tick behind the clock (a GC pause, a slow S3) */
byte lastStep[3];            /* when it last took a step of its finalize */
byte seen = 255;             /* the tick at which the reconciler last looked */
byte held[3];                /* token it holds, 0: none */
byte lastOK[3];              /* when its last successful renewal (or the lock) was sent */
byte lateSent[3];            /* a renewal on its way, sent at lateSent-1 (0: none) */
byte takenAt[3];             /* when it took its lock */
bool flight[3];              /* its S3 completion is on its way */
byte flightAt[3];            /* when it sent it */
bool stopped[3];             /* its finalize ended */

#define pg(r)        (alive[r] && !cut[r])
#define free(r)      (rowLock == 0 || rowLock == r)
#define W(r)         (r == 1 -> W1 : W2)
#define SAFE(r)      (r == 1 -> SAFE1 : SAFE2)
#ifdef CALLER_WINDOW
#define staleFor(r)  (clk - lockAt > W(r))
#else
#define staleFor(r)  (clk - lockAt > lockWin)
#endif
#define lockFree(r)  (token == 0 || staleFor(r))
#define holds(r)     (held[r] != 0 && token == held[r])
#ifdef STOP_WHEN_STALE
#define inTime(r)    (clk - lastOK[r] <= W(r))
#else
#define inTime(r)    (clk - lastOK[r] < SAFE(r))
#endif
/* r may take its next step of a finalize: alive, within its lease's time */
#define step(r)      (alive[r] && !stopped[r] && inTime(r))
#define working(r)   (flight[r] || (alive[r] && !stopped[r] && held[r] != 0 && inTime(r)))
#ifdef REPLICA_CLOCK
#define unexpired(r) (r == 1 -> clk < EXPIRES + 1 : clk < EXPIRES)   /* replica 1's clock a tick slow */
#else
#define unexpired(r) (clk < EXPIRES)
#endif
#define final        (status == FINALIZED || status == EXPIRED || status == FAILED)
/* A replica in the middle of a finalize that nothing holds up takes its next
 * step before the clock moves on (replica 1 only while it is not slow). */
#define urgent(r)    (held[r] != 0 && !stopped[r] && alive[r] && pg(r) && free(r) && !(r == 1 && slow && clk == lastStep[1]))
/* A transaction whose client went silent: the server ends it within
 * idle_in_transaction_session_timeout, less than a tick (a quarter window). */
#ifdef NO_IDLE_TIMEOUT
#define idleTx       false
#else
#define idleTx       (rowLock != 0 && !pg(rowLock))
#endif

/* The heartbeat of holder r at a tick: a renewal that succeeds now, fails,
 * or is sent now and lands later (it is stamped when it lands). */
inline heartbeat(r) {
	if
	:: pg(r) && holds(r) && free(r) && !stopped[r] -> lockAt = clk; lastOK[r] = clk
	:: pg(r) && holds(r) && !stopped[r] && lateSent[r] == 0 -> lateSent[r] = clk + 1
	:: else -> skip   /* failed, or not holding */
	fi
}

proctype Clock() {
	do
	:: atomic { clk < MAXT && seen == clk && !urgent(1) && !urgent(2) && !idleTx &&
		    !(flight[1] && clk > flightAt[1]) && !(flight[2] && clk > flightAt[2]) ->
		clk++; heartbeat(1); heartbeat(2) }
	:: atomic { clk == MAXT || (final && !pending && rowLock == 0 && clk > FAULTS_UNTIL) -> break }
	od
}

/* A late renewal lands: it counts only if the lock is still the sender's. */
proctype Late(byte r) {
end:
	do
	:: atomic { lateSent[r] != 0 && pg(r) && free(r) ->
		if
		:: holds(r) -> lockAt = clk; if :: lateSent[r] - 1 > lastOK[r] -> lastOK[r] = lateSent[r] - 1 :: else -> skip fi
		:: else -> skip
		fi;
		lateSent[r] = 0 }
	:: atomic { lateSent[r] != 0 && !pg(r) -> lateSent[r] = 0 }
	od
}

/* Replica 1 dies, is cut off from PostgreSQL, or becomes slow, at any moment
 * before FAULTS_UNTIL. */
proctype Faults() {
	if
	:: atomic { clk <= FAULTS_UNTIL -> alive[1] = false }
	:: atomic { clk <= FAULTS_UNTIL -> cut[1] = true }
	:: atomic { clk <= FAULTS_UNTIL -> slow = true }
	:: skip
	fi
}

/* The file's upload is aborted behind the operator's back (a bucket lifecycle
 * rule), independently. */
proctype Loss() {
	if
	:: atomic { clk <= FAULTS_UNTIL && uploadOpen && !object -> uploadOpen = false }
	:: skip
	fi
}

/* PostgreSQL ends a transaction whose client went silent (died or cut off). */
proctype Server() {
end:
	do
#ifndef NO_IDLE_TIMEOUT
	:: atomic { rowLock != 0 && !pg(rowLock) ->
#ifdef REACH_IDLE_TX
		assert(false);
#endif
		rowLock = 0 }
#else
	:: false
#endif
	od
}

/* Remove what a failed or expired session holds in S3, then the record of it. */
inline removeAndClear(r) {
	atomic { alive[r] -> uploadOpen = false; object = false; other = false }
	atomic { pg(r) && free(r) -> pending = false }
}

/* One finalize by replica r, from the lock to its end. */
inline finalize(r) {
	atomic {   /* TryLock: taken, or refused (held, expired, blocked or unreachable: an answer, not a wait) */
		if
		:: pg(r) && free(r) && (status == ACTIVE || status == FINALIZING) && lockFree(r) && unexpired(r) ->
			/* property 2: whoever held the lock before has stopped working */
			assert(!(token != 0 && ((token == held[1] && working(1)) || (token == held[2] && working(2)))));
			token = nextToken; nextToken++; held[r] = token; lockAt = clk; lockWin = W(r); lastOK[r] = clk;
			takenAt[r] = clk; stopped[r] = false; status = FINALIZING; lastStep[r] = clk
		:: else -> goto stop
		fi }
	if   /* plan: the upload is open, or completed (recognised), or lost */
	:: atomic { step(r) && !completed && uploadOpen -> lastStep[r] = clk; skip }
	:: atomic { step(r) && (completed || (!uploadOpen && object)) -> lastStep[r] = clk; recognised = recognised || !completed }
	:: atomic { step(r) && !completed && !uploadOpen && !object -> lastStep[r] = clk; goto fail }
	:: atomic { !step(r) -> goto stop }
	fi;
	if   /* S3 completion, fenced by a renewal right before it; the call is then on its way */
	:: atomic { step(r) && !completed && uploadOpen && pg(r) && free(r) && holds(r) ->
		lastStep[r] = clk; lockAt = clk; lastOK[r] = clk; flight[r] = true; flightAt[r] = clk }
		atomic {   /* it lands, whatever became of its sender */
			if :: uploadOpen -> uploadOpen = false; object = true :: else -> skip fi;
			flight[r] = false }
	:: atomic { step(r) && (completed || !uploadOpen) -> lastStep[r] = clk; skip }
	:: atomic { step(r) && !completed && uploadOpen && !(pg(r) && free(r) && holds(r)) -> lastStep[r] = clk; goto stop }
	:: atomic { !step(r) -> goto stop }
	fi;
	if   /* the record of the completion: it may fail; then release and end */
	:: atomic { step(r) && pg(r) -> lastStep[r] = clk; completed = true }
	:: atomic { step(r) && !completed -> lastStep[r] = clk; goto release }
	:: atomic { !step(r) -> goto stop }
	fi;
	if   /* the commit, first statement: the fence, holding the row */
	:: atomic { step(r) && pg(r) && rowLock == 0 -> lastStep[r] = clk;
		if :: holds(r) -> rowLock = r :: else -> goto stop fi }
	:: atomic { !step(r) -> goto stop }
	fi;
	if   /* the writes and COMMIT: the process may be gone or cut off before */
	:: atomic { alive[r] && pg(r) && rowLock == r -> lastStep[r] = clk;
		assert(mocs == 0);                     /* property 1 */
		assert(takenAt[r] < EXPIRES);          /* property 3 */
		mocs++; status = FINALIZED; token = 0; rowLock = 0; goto stop }
	:: atomic { rowLock != r -> goto stop }  /* rolled back by the server */
	fi;
release:
	atomic { pg(r) && free(r) -> if :: holds(r) -> token = 0; status = ACTIVE :: else -> skip fi }
	goto stop;
fail:
	atomic { pg(r) && free(r) ->
		if
		:: holds(r) -> token = 0; status = FAILED;
#ifndef NO_PENDING_REMOVAL
			pending = true
#endif
		:: else -> goto stop
		fi }
	removeAndClear(r);
stop:
	atomic { held[r] = 0; stopped[r] = true }
}

/* Replica 1: one HTTP finalize. */
proctype HTTP() {
	finalize(1);
}

/* Replica 2: the reconciler, with spec.finalize set. It looks at the session
 * once per tick at least (the clock waits for it): the declared finalize once
 * MissingParts has nothing missing, a takeover once the lock is stale, the
 * expiry, a removal that was cut off. */
#define canCheck     (status == ACTIVE && unexpired(2) && rowLock == 0)
#define canTake      (status == FINALIZING && lockFree(2) && unexpired(2))
#ifdef EXPIRE_ACTIVE_ONLY
#define canExpire    (status == ACTIVE && !unexpired(2) && lockFree(2) && rowLock == 0)
#else
#define canExpire    ((status == ACTIVE || status == FINALIZING) && !unexpired(2) && lockFree(2) && rowLock == 0)
#endif
#define canRemove    (final && pending && rowLock == 0)

proctype Reconciler() {
	bool missing;
	bool go;
end:
	do
	:: atomic { !go && seen != clk && canCheck ->   /* MissingParts, no lock */
#ifdef LIST_GONE_IS_EMPTY
		missing = !completed && !uploadOpen;
#else
		missing = !completed && !uploadOpen && !object;
#endif
		assert(!(missing && (uploadOpen || object)));    /* property 4 */
		go = !missing; seen = clk }
	:: atomic { !go && seen != clk && canTake -> go = true; seen = clk }
	:: go -> go = false; finalize(2)
	:: atomic { !go && seen != clk && canExpire ->
		token = 0; status = EXPIRED; seen = clk;
#ifndef NO_PENDING_REMOVAL
		pending = true
#endif
		}
		removeAndClear(2)
	:: atomic { !go && seen != clk && canRemove -> seen = clk }
		removeAndClear(2)
	:: atomic { !go && seen != clk && !canCheck && !canTake && !canExpire && !canRemove -> seen = clk }   /* nothing to do now */
	od
}

init {
	atomic {
		alive[1] = true; alive[2] = true;
		run Clock(); run Faults(); run Loss(); run Server(); run Late(1); run Late(2); run HTTP(); run Reconciler(); run Quiescence()
	}
}

/* Property 5, once nothing can move. The REACH_ builds (hack/model/check.sh)
 * claim an end is never reached: each must be refuted, or the properties
 * above hold only because the model never gets there. */
proctype Quiescence() {
	timeout ->
#ifdef REACH_FINALIZED
	assert(status != FINALIZED);
#endif
#ifdef REACH_EXPIRED
	assert(status != EXPIRED);
#endif
#ifdef REACH_FAILED
	assert(status != FAILED);
#endif
#ifdef REACH_RECOGNISED
	assert(!(status == FINALIZED && recognised));
#endif
	assert(final);
	assert(token == 0);
	assert(rowLock == 0);
	assert(!pending);
	assert(status == FINALIZED || (!uploadOpen && !object && !other));
	assert(status != FINALIZED || mocs == 1)
}
