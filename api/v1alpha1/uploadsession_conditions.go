package v1alpha1

// Condition types.
const (
	// ConditionUploadsReady is True once every S3 multipart upload of the session exists.
	ConditionUploadsReady = "UploadsReady"
	// ConditionFinalized is True once the MOC is committed; while a requested
	// finalize cannot proceed it is False with the reason why.
	ConditionFinalized = "Finalized"
)

// Condition reasons (also used as Event reasons).
const (
	ReasonCreatingUploads    = "CreatingUploads"
	ReasonUploadsCreated     = "UploadsCreated"
	ReasonUploadLost         = "MultipartUploadLost"
	ReasonInvalidSpec        = "InvalidSpec"
	ReasonNotRequested       = "NotRequested"
	ReasonFinalizing         = "Finalizing"
	ReasonFinalizeSucceeded  = "FinalizeSucceeded"
	ReasonSlugConflict       = "SlugConflict"
	ReasonIncompleteUpload   = "IncompleteUpload"
	ReasonFinalizeInProgress = "FinalizeInProgress"
	ReasonS3Unavailable      = "S3Unavailable"
	ReasonFinalizeFailed     = "FinalizeFailed"
	ReasonExpired            = "Expired"
	ReasonUploadsAborted     = "UploadsAborted"
	// ReasonSessionIDTaken: the session-id label names a session that belongs
	// to another resource or owner; nothing is done to that session.
	ReasonSessionIDTaken = "SessionIDTaken"
)
