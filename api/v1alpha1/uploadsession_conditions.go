package v1alpha1

// Condition types.
const (
	// ConditionReady summarises the others for tools that read one condition
	// (kstatus, Argo CD, Flux, `kubectl wait --for=condition=Ready`): True
	// while the session is where its spec asks it to be (Active and accepting
	// parts with no finalize requested, or Finalized); False with the reason
	// of the condition that holds it back otherwise.
	ConditionReady = "Ready"
	// ConditionUploadsReady is True once every S3 multipart upload of the session exists.
	ConditionUploadsReady = "UploadsReady"
	// ConditionFinalized is True once the MOC is committed; while a requested
	// finalize cannot proceed it is False with the reason why.
	ConditionFinalized = "Finalized"
)

// Condition reasons (also used as Event reasons).
const (
	ReasonCreatingUploads   = "CreatingUploads"
	ReasonUploadsCreated    = "UploadsCreated"
	ReasonUploadLost        = "MultipartUploadLost"
	ReasonInvalidSpec       = "InvalidSpec"
	ReasonNotRequested      = "NotRequested"
	ReasonFinalizing        = "Finalizing"
	ReasonFinalizeSucceeded = "FinalizeSucceeded"
	ReasonSlugConflict      = "SlugConflict"
	ReasonIncompleteUpload  = "IncompleteUpload"
	// ReasonChecksumMismatch: a file is not the one its declared whole-file
	// checksum describes; the message names the file and what to send again.
	ReasonChecksumMismatch   = "ChecksumMismatch"
	ReasonFinalizeInProgress = "FinalizeInProgress"
	ReasonS3Unavailable      = "S3Unavailable"
	ReasonFinalizeFailed     = "FinalizeFailed"
	ReasonExpired            = "Expired"
	ReasonUploadsAborted     = "UploadsAborted"
	// ReasonMOCRestored: PostgreSQL had lost the committed MOC (a failover)
	// and the operator made it again from the objects in S3 (same mocId).
	ReasonMOCRestored = "MOCRestored"
	// ReasonMOCMissing: PostgreSQL has no MOC for a session this resource
	// reports Finalized, and it could not be made again yet; nothing in S3 is
	// removed while this lasts.
	ReasonMOCMissing = "MOCMissing"
	// ReasonAcceptingParts: Ready is True because the session is Active and
	// no finalize is requested.
	ReasonAcceptingParts = "AcceptingParts"
	// ReasonFinalizeRequested: Ready is False because spec.finalize asks for
	// a finalize that has not completed yet.
	ReasonFinalizeRequested = "FinalizeRequested"
	// ReasonSessionIDTaken: the session-id label names a session that belongs
	// to another resource or owner; nothing is done to that session.
	ReasonSessionIDTaken = "SessionIDTaken"
	// ReasonNotAllowed: a declared session's owner is in none of
	// UPLOAD_ALLOWED_GROUPS; it stays Pending.
	ReasonNotAllowed = "NotAllowed"
	// ReasonQuotaExceeded: a declared session's owner is over the
	// active-session cap or the creation rate; it stays Pending and is
	// activated once there is room.
	ReasonQuotaExceeded = "QuotaExceeded"
)
