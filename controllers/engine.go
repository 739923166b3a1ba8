package controllers

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"

	"github.com/mocs-dev/upload-operator/internal/store"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// Engine is what the reconciler asks of the upload engine
// (*uploads.Service). Every step goes through it, never to PostgreSQL or S3
// directly, so the rules the HTTP API follows (locks, idempotent activation,
// what counts as complete) are the reconciler's too.
type Engine interface {
	// CheckBinding tells whether the session belongs to this resource
	// (uploads.ErrBoundElsewhere when another resource holds it).
	CheckBinding(ctx context.Context, id uuid.UUID, ref uploads.ResourceRef) error
	// Activate records the session and creates its S3 multipart uploads;
	// idempotent.
	Activate(ctx context.Context, req uploads.Request) (uploads.Active, error)
	// Session reads the session as PostgreSQL has it.
	Session(ctx context.Context, id uuid.UUID) (store.Session, error)
	// ActiveSessions counts an owner's sessions not finalized, expired or failed.
	ActiveSessions(ctx context.Context, owner string) (int, error)
	// MissingParts lists, per file, the part numbers not acknowledged yet.
	MissingParts(ctx context.Context, id uuid.UUID) (map[string][]int, error)
	// Progress is what each file of the session has received.
	Progress(ctx context.Context, sess store.Session) (map[uuid.UUID]store.FileProgress, error)
	// Finalize runs the one finalize implementation (the HTTP API's too).
	Finalize(ctx context.Context, req uploads.FinalizeRequest) (uploads.FinalizeResult, error)
	// Now is the session clock (expiry, retention); tests step a fake one.
	// Finalize locks are aged on PostgreSQL's clock instead.
	Now() time.Time
	// StaleAfter is how old a finalize lock must be to be taken over.
	StaleAfter() time.Duration
	// RestoreMOC makes sure the MOC a resource reports is in PostgreSQL,
	// making it again if PostgreSQL lost it (true); it never removes anything.
	RestoreMOC(ctx context.Context, id, mocID uuid.UUID) (bool, error)
	// MOC reads the MOC a finalized session became.
	MOC(ctx context.Context, id uuid.UUID) (store.MOC, error)
	// Expire aborts the session's uploads and marks it expired; false when a
	// finalize holds the session.
	Expire(ctx context.Context, log logr.Logger, id uuid.UUID) (bool, error)
	// FinishRemoval removes what a failed or expired session still holds in
	// S3 when its removal is pending (cut off before), and records it done.
	FinishRemoval(ctx context.Context, log logr.Logger, sess store.Session) error
	// Discard removes what an unfinalized session holds.
	Discard(ctx context.Context, log logr.Logger, id uuid.UUID) error
}

var _ Engine = (*uploads.Service)(nil)
