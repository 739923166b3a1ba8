/*
 * The finalize protocol of upload-operator as a Promela model, checked
 * exhaustively by spin (hack/model/check.sh, run by `make test`).
 *
 * Modelled at the granularity of one PostgreSQL statement or one S3 call
 * (internal/uploads, internal/store):
 *   - the lease: acquire (TryLock), renew (the heartbeat renews once per tick
 *     while its replica runs; the holder also renews right before each S3
 *     completion, its fence), takeover once the lock is stale on PostgreSQL's
 *     clock, release on failure;
 *   - S3 completion of each file with the parts the holder listed: the call is
 *     in flight between the fence and its landing, so it can land after its
 *     holder paused, lost the lock or died;
 *   - the commit, which checks the lease before it writes;
 *   - a client PUTting the last part (an S3 write, then the record that
 *     acknowledges it only while the session is active and unlocked), and a
 *     second PUT of a part with other bytes at any moment, racing the listing
 *     and the completions;
 *   - a delete, or the expiry, racing all of it;
 *   - faults until FAULTS_UNTIL: replica 1, which serves an HTTP finalize, may
 *     pause (a GC pause, a partition: no step and no renewal, but its
 *     in-flight S3 call still lands) and may die for good. Replica 2 is the
 *     reconciler: it takes over stale locks and retries until the session is
 *     final.
 *
 * Properties (assertions; a violation is an error trail):
 *   1. at most one MOC per session;
 *   2. a committed MOC holds, for every part, bytes a PUT was acknowledged
 *      for, never a version whose PUT was refused;
 *   3. a live holder is never overtaken: one that runs and has not paused
 *      since it last renewed (a paused one's lease may run out, rightly);
 *   4. once faults stop and nothing can move, the session is final (finalized,
 *      expired, deleted or failed), no lock is held, a finalized session has
 *      one MOC and no open upload, and any other holds nothing in S3.
 *
 * Mutants (hack/model/check.sh; each must break the property it names):
 *   NO_RENEW         the lock before the lease (finalizing_at written once,
 *                    never renewed) (3)
 *   IGNORE_ACKED     the listing takes whatever S3 holds, acknowledged or
 *                    not (2)
 *   COMMIT_NO_FENCE  the commit does not check the lease (an overtaken
 *                    holder commits its stale plan)
 *   SKIP_ABORT       a delete or an expiry removes nothing from S3 (4)
 *
 * What the finer steps of the end of a session do (renewals that fail or
 * land late, the commit as a transaction, completion and its record, failing
 * and removing, expiry on PostgreSQL's clock, a direct session's listing) is
 * in lifecycle.pml; parts as registers with slots and late attempts in
 * register.pml. This model keeps each part's acknowledged versions as a set
 * and one S3 part number per part: the register is checked in register.pml.
 */

#define NF 2                 /* files */
#define NP 2                 /* parts per file */
#define NPARTS 4             /* NF * NP */
#define STALE 2              /* a lock strictly older than this is stale */
#define EXPIRES 5            /* expiresAt */
#define MAXT 6               /* the model's clock stops here */
#define FAULTS_UNTIL 2       /* faults stop after this tick */

mtype = { ACTIVE, FINALIZING, FINALIZED, EXPIRED, DELETING, DELETED, FAILED };
mtype = { OK, INVALIDPART, NOSUCHUPLOAD };

/* PostgreSQL */
mtype status = ACTIVE;
byte clk;                    /* PostgreSQL's clock: staleness is judged on it */
byte token;                  /* finalize_token, 0: no lock */
byte lockAt;                 /* finalizing_at */
byte nextToken = 1;
byte mocs;
byte acked[NPARTS];          /* bit v set: a PUT of version v was acknowledged */
bool completed[NF];          /* completed_etag recorded */
/* S3 */
bool uploadOpen[NF];
byte s3part[NPARTS];         /* the version S3 holds (0: none) */
bool object[NF];
byte objpart[NPARTS];        /* the versions inside the completed object */
/* replicas 1 and 2 */
bool alive[3];
bool paused[3];
bool fenced[3];              /* its lease ended: it must stop */
byte held[3];                /* the token it holds, 0: none */
bool lapsed[3];              /* paused since its last renewal: its lease may have run out */
byte plan[2 * NPARTS];       /* the versions each replica listed */

#define stale        (clk - lockAt > STALE)
#define lockFree     (token == 0 || stale)
#define go(r)        (alive[r] && !paused[r])
#define holds(r)     (held[r] != 0 && token == held[r])
#define live(r)      (alive[r] && !paused[r] && !lapsed[r] && !fenced[r] && holds(r))
#define PLAN(r, i)   plan[(r - 1) * NPARTS + (i)]
#define final        (status == FINALIZED || status == EXPIRED || status == DELETED || status == FAILED)

/* One heartbeat of replica r, at each tick of the clock while it runs: renew
 * if the lock is still its own, else its lease has ended. */
#ifdef NO_RENEW
#define heartbeat(r) if :: go(r) && held[r] != 0 && token != held[r] -> fenced[r] = true :: else -> skip fi
#else
#define heartbeat(r) if :: go(r) && held[r] != 0 && !fenced[r] -> if :: token == held[r] -> lockAt = clk; lapsed[r] = false :: else -> fenced[r] = true fi :: else -> skip fi
#endif

proctype Clock() {
	do
	:: atomic { clk < MAXT -> clk++; heartbeat(1); heartbeat(2) }
	:: atomic { clk == MAXT || (final && held[1] == 0 && held[2] == 0 && clk > FAULTS_UNTIL) -> break }
	od
}

/* Replica 1 pauses (and resumes later) or dies, once, before FAULTS_UNTIL. */
proctype Faults() {
	if
	:: atomic { clk <= FAULTS_UNTIL -> alive[1] = false }
	:: atomic { clk <= FAULTS_UNTIL -> paused[1] = true; lapsed[1] = true }
		atomic { paused[1] = false }
	:: skip
	fi
}

/* A PUT of version v of part i: the S3 write, then the guarded record. */
inline put(i, v) {
	atomic { if :: uploadOpen[i / NP] -> s3part[i] = v :: else -> skip fi }
	atomic {
		if
		:: status == ACTIVE && lockFree && uploadOpen[i / NP] && s3part[i] == v -> acked[i] = acked[i] | (1 << v)
		:: else -> skip
		fi }
}

/* Parts 0..2 were acknowledged before. The client sends the last part, and
 * sends part 0 or 3 again with other bytes (version 2), in either order, at
 * any moment. */
proctype Client() {
	byte i;
	bool lastFirst;
	if :: i = 0 :: i = 3 fi;
	if :: lastFirst = true :: lastFirst = false fi;
	if
	:: lastFirst -> put(3, 1); put(i, 2)
	:: !lastFirst -> put(i, 2); put(3, 1)
	fi
}

proctype Finalizer(byte r) {
	byte p;
	byte f;
	bool missing;
	mtype result;
	bool tried;
	byte triedAt = 255;

try:
	if
	:: atomic { go(r) && (status == ACTIVE || status == FINALIZING) && lockFree && triedAt != clk ->
		assert(!(token != 0 && ((token == held[1] && live(1)) || (token == held[2] && live(2)))));  /* property 3 */
		token = nextToken; nextToken++; held[r] = token; lockAt = clk; fenced[r] = false; lapsed[r] = false;
		status = FINALIZING }
	:: atomic { go(r) && r == 2 && !final && !((status == ACTIVE || status == FINALIZING) && lockFree) && triedAt != clk ->
		triedAt = clk }
		goto try                 /* the reconciler waits (a live lock, a delete) and looks again */
	:: atomic { final || !alive[r] || (r == 1 && tried) || clk == MAXT -> triedAt = 0; goto finish }
	fi;
	tried = true;

list:
	atomic { go(r) && !fenced[r] ->
		missing = false;
		p = 0;
		do
		:: p < NPARTS ->
			if
			:: completed[p / NP] -> skip
#ifdef IGNORE_ACKED
			:: !completed[p / NP] && uploadOpen[p / NP] && s3part[p] != 0 ->
#else
			:: !completed[p / NP] && uploadOpen[p / NP] && s3part[p] != 0 && (acked[p] & (1 << s3part[p])) != 0 ->
#endif
				PLAN(r, p) = s3part[p]
			:: else -> missing = true
			fi;
			p++
		:: else -> break
		od }
	if
	:: atomic { go(r) && missing ->            /* INCOMPLETE_UPLOAD: release the lock */
		if :: holds(r) -> token = 0; status = ACTIVE :: else -> skip fi;
		held[r] = 0; triedAt = clk; missing = false;
		PLAN(r, 0) = 0; PLAN(r, 1) = 0; PLAN(r, 2) = 0; PLAN(r, 3) = 0 }
		goto try
	:: atomic { go(r) && !missing -> f = 0 }
	:: atomic { !alive[r] || fenced[r] -> goto stop }
	fi;

complete:
	if
	:: f == NF -> goto commit
	:: f < NF && completed[f] -> f++; goto complete
	:: f < NF && !completed[f] -> skip
	fi;
	if                                         /* the fence: renew right before the call */
#ifndef NO_RENEW
	:: atomic { go(r) && !fenced[r] && holds(r) -> lockAt = clk; lapsed[r] = false }
#else
	:: atomic { go(r) && !fenced[r] && holds(r) -> skip }
#endif
	:: atomic { go(r) && !fenced[r] && !holds(r) -> fenced[r] = true; goto stop }
	:: atomic { !alive[r] || fenced[r] -> goto stop }
	fi;
	atomic {                                   /* the call lands, whatever became of its holder */
		if
		:: uploadOpen[f] && s3part[f * NP] == PLAN(r, f * NP) && s3part[f * NP + 1] == PLAN(r, f * NP + 1) ->
			object[f] = true; objpart[f * NP] = PLAN(r, f * NP); objpart[f * NP + 1] = PLAN(r, f * NP + 1);
			uploadOpen[f] = false; result = OK
		:: uploadOpen[f] && !(s3part[f * NP] == PLAN(r, f * NP) && s3part[f * NP + 1] == PLAN(r, f * NP + 1)) ->
			result = INVALIDPART
		:: !uploadOpen[f] -> result = NOSUCHUPLOAD
		fi }
	if
	:: atomic { go(r) && !fenced[r] && (result == OK || (result == NOSUCHUPLOAD && object[f])) -> completed[f] = true; f++; result = 0 }
		goto complete                          /* done, or recognised: an earlier holder completed it */
	:: atomic { go(r) && !fenced[r] && result == INVALIDPART -> result = 0 }
		goto list                              /* a part changed after the listing: list again */
	:: atomic { go(r) && !fenced[r] && result == NOSUCHUPLOAD && !object[f] ->
		if                                     /* the upload is lost: fail the session, if still ours */
		:: holds(r) -> token = 0; status = FAILED;
			uploadOpen[0] = false; uploadOpen[1] = false; object[0] = false; object[1] = false
		:: else -> skip
		fi }
		goto stop
	:: atomic { !alive[r] || fenced[r] -> goto stop }
	fi;

commit:
	if
	:: atomic { go(r) && !fenced[r] ->
		if
		:: status == FINALIZED -> skip                            /* replay */
#ifndef COMMIT_NO_FENCE
		:: status != FINALIZED && !holds(r) -> fenced[r] = true   /* the lease check fails: write nothing */
		:: status != FINALIZED && holds(r) ->
#else
		:: status != FINALIZED ->
#endif
			assert(mocs == 0);                                    /* property 1 */
			assert(completed[0] && completed[1] && object[0] && object[1]);
			p = 0;
			do                                                    /* property 2 */
			:: p < NPARTS -> assert(objpart[p] != 0 && (acked[p] & (1 << objpart[p])) != 0); p++
			:: else -> break
			od;
			mocs++; status = FINALIZED; token = 0
		fi }
	:: atomic { !alive[r] || fenced[r] }
	fi;

stop:
	atomic { held[r] = 0; PLAN(r, 0) = 0; PLAN(r, 1) = 0; PLAN(r, 2) = 0; PLAN(r, 3) = 0; result = 0; f = 0 }
	if
	:: r == 2 && alive[r] -> fenced[r] = false; goto try    /* the reconciler carries on */
	:: else -> skip
	fi;
finish:
	skip
}

/* A delete at any moment (claimed only while no live lock is held), or the
 * expiry of an active, unlocked session at expiresAt; each then aborts every
 * upload and deletes every object. */
proctype Ender() {
	if
	:: atomic { status != FINALIZED && status != FAILED && lockFree -> status = DELETING; token = 0 }
	:: atomic { clk >= EXPIRES && status == ACTIVE && lockFree -> status = EXPIRED; token = 0 }
	:: atomic { status == FINALIZED || status == FAILED -> goto done }
	fi;
	atomic {   /* abort every upload, then delete every object (and, for a delete, the rows) */
#ifndef SKIP_ABORT
		uploadOpen[0] = false; uploadOpen[1] = false; object[0] = false; object[1] = false;
#endif
		if :: status == DELETING -> status = DELETED :: else -> skip fi }
done:
	skip
}

init {
	atomic {
		uploadOpen[0] = true; uploadOpen[1] = true;
		s3part[0] = 1; s3part[1] = 1; s3part[2] = 1;
		acked[0] = 2; acked[1] = 2; acked[2] = 2;   /* version 1 of parts 0..2 acknowledged */
		alive[1] = true; alive[2] = true;
		run Clock(); run Faults(); run Client(); run Ender();
		run Finalizer(1); run Finalizer(2); run Quiescence()
	}
}

/* Property 4, at quiescence. */
proctype Quiescence() {
	timeout ->
#ifdef REACH_FINALIZED
	assert(status != FINALIZED);   /* vacuity: each end must be reached (hack/model/check.sh) */
#endif
#ifdef REACH_EXPIRED
	assert(status != EXPIRED);
#endif
#ifdef REACH_DELETED
	assert(status != DELETED);
#endif
#ifdef REACH_FAILED
	assert(status != FAILED);
#endif
	assert(final);
	assert(token == 0);
	assert(status == FINALIZED || (!uploadOpen[0] && !uploadOpen[1] && !object[0] && !object[1]));
	assert(status != FINALIZED || (mocs == 1 && !uploadOpen[0] && !uploadOpen[1]))
}
