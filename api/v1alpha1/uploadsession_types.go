package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SessionIDLabel carries the session's UUID, the id clients use over HTTP and
// the primary key of its upload_sessions row.
const SessionIDLabel = "uploads.mocs.dev/session-id"

// Finalizer keeps a session's resource until what its session holds in S3
// (multipart uploads, objects of an unfinished finalize) is removed, or, for a
// finalized session, until its finalize has ended. Sessions created over HTTP
// carry it from the start.
const Finalizer = "uploads.mocs.dev/abort-uploads"

// CorrelationIDAnnotation carries the correlation id of the last upload API
// request that touched the session, so the reconciler's log lines for it carry
// the same id. Only well-formed ids are used (anyone who may edit the resource
// can write it).
const CorrelationIDAnnotation = "uploads.mocs.dev/correlation-id"

// LastActivityAnnotation is bumped by the upload API (batched) when parts
// arrive or a finalize happens over HTTP: the change wakes the reconciler,
// which then reads progress and state from PostgreSQL.
const LastActivityAnnotation = "uploads.mocs.dev/last-activity"

// CreatedByAPIAnnotation marks a resource the upload API created for a
// session it is activating itself; a delete that finds no rows for such a
// young resource waits for that activation to end before it lets go.
const CreatedByAPIAnnotation = "uploads.mocs.dev/created-by-api"

// Phase is where an UploadSession is in its life.
// +kubebuilder:validation:Enum=Pending;Active;Finalizing;Finalized;Expired;Failed
type Phase string

const (
	// PhasePending: accepted, S3 multipart uploads not all created yet.
	PhasePending Phase = "Pending"
	// PhaseActive: every S3 multipart upload exists; parts may be uploaded.
	PhaseActive Phase = "Active"
	// PhaseFinalizing: a finalize holds the session's lock.
	PhaseFinalizing Phase = "Finalizing"
	// PhaseFinalized: the MOC exists; terminal.
	PhaseFinalized Phase = "Finalized"
	// PhaseExpired: expiresAt passed before finalization; uploads aborted; terminal.
	PhaseExpired Phase = "Expired"
	// PhaseFailed: something that cannot be recovered (an S3 multipart upload lost); terminal.
	PhaseFailed Phase = "Failed"
)

// Terminal reports whether no further transition can happen from the phase.
func (p Phase) Terminal() bool {
	return p == PhaseFinalized || p == PhaseExpired || p == PhaseFailed
}

// TransferMode is how a session's part bytes reach S3.
type TransferMode string

// Transfer modes.
const (
	// TransferProxy: parts go through the operator's part endpoint.
	TransferProxy TransferMode = "proxy"
	// TransferDirect: parts go from the client to S3 with presigned URLs.
	TransferDirect TransferMode = "direct"
)

// UploadSessionSpec is what a client asks for: which files will be uploaded, by
// whom, and (optionally) that the session be finalized into a MOC.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.partSizeBytes) || (has(self.partSizeBytes) && self.partSizeBytes == oldSelf.partSizeBytes)",message="partSizeBytes is immutable"
type UploadSessionSpec struct {
	// Owner is the Kubernetes user the session belongs to, as the TokenReview API
	// names it (for a ServiceAccount: system:serviceaccount:<namespace>:<name>).
	// Only the owner (or an admin) may upload parts to and finalize the session
	// over HTTP, and the finalized MOC belongs to the owner. Immutable.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="owner is immutable"
	Owner string `json:"owner"`

	// Files are the files that will be uploaded, in order. Each becomes one S3
	// multipart upload and, on finalize, one moc_files row. Immutable.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="files are immutable"
	// +listType=atomic
	Files []FileSpec `json:"files"`

	// PartSizeBytes is the size of every part but the last of each file. When
	// omitted the operator picks max(8 MiB, ceil(largest file / 10000)) rounded up
	// to a whole MiB. It must be at least 5 MiB (the S3 minimum), at most 5 GiB,
	// and large enough for every file to fit in 10,000 parts. Immutable.
	// +optional
	// +kubebuilder:validation:Minimum=5242880
	// +kubebuilder:validation:Maximum=5368709120
	PartSizeBytes *int64 `json:"partSizeBytes,omitempty"`

	// Transfer is how part bytes travel. "proxy" (the default): clients PUT
	// parts to the operator's upload API, which streams them to S3. "direct":
	// clients ask the upload API for a presigned S3 UploadPart URL per part and
	// PUT the bytes to S3 themselves; the operator still owns the session, its
	// multipart uploads, expiry, delete and finalize. Immutable.
	// +optional
	// +kubebuilder:default=proxy
	// +kubebuilder:validation:Enum=proxy;direct
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="transfer is immutable"
	Transfer TransferMode `json:"transfer,omitempty"`

	// Finalize, once set, asks the operator to finalize the session: complete
	// every S3 multipart upload and record the MOC in one transaction. While parts
	// are missing or the title's slug is taken, the session stays Active and the
	// Finalized condition says why.
	// +optional
	Finalize *FinalizeSpec `json:"finalize,omitempty"`
}

// FileSpec describes one file of a session.
type FileSpec struct {
	// Name is the file's name (no path separators), e.g. "castle-instructions.pdf".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	Name string `json:"name"`

	// ContentType is the file's media type; it must be one the operator allows
	// (ALLOWED_CONTENT_TYPES: PDF, images, LDraw/Studio models and zip by default).
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=255
	ContentType string `json:"contentType"`

	// SizeBytes is the exact size of the file; it fixes the number and size of its parts.
	// +kubebuilder:validation:Minimum=1
	SizeBytes int64 `json:"sizeBytes"`

	// Checksum is the whole file's checksum, verified at finalize (proxied
	// sessions only): a file whose bytes do not match is not finalized.
	// +optional
	Checksum *FileChecksum `json:"checksum,omitempty"`
}

// FileChecksum is a whole-file checksum declared for a file.
type FileChecksum struct {
	// CRC64NVME as S3 writes it: the base64 of its 8 big-endian bytes.
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9+/]{11}=$`
	// +optional
	CRC64NVME string `json:"crc64nvme,omitempty"`
	// SHA256 in hexadecimal (64 digits).
	// +kubebuilder:validation:Pattern=`^[0-9a-fA-F]{64}$`
	// +optional
	SHA256 string `json:"sha256,omitempty"`
}

// FinalizeSpec is the MOC to create from the session.
type FinalizeSpec struct {
	// Title of the MOC, 1–200 characters without control characters; its slug
	// (lowercase ASCII and dashes; "moc" for a title without ASCII letters or
	// digits) must be free for the owner.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=200
	// +kubebuilder:validation:Pattern=`^[^\x00-\x1f\x7f-\x9f]*$`
	Title string `json:"title"`

	// Description of the MOC, up to 2,000 characters without control characters.
	// +optional
	// +kubebuilder:validation:MaxLength=2000
	// +kubebuilder:validation:Pattern=`^[^\x00-\x1f\x7f-\x9f]*$`
	Description string `json:"description,omitempty"`
}

// FileStatus is the upload progress of one file.
type FileStatus struct {
	// FileID is the file's UUID, used in part upload paths.
	FileID string `json:"fileId"`
	// Name of the file, as in the spec.
	Name string `json:"name"`
	// SizeBytes of the file, as in the spec.
	SizeBytes int64 `json:"sizeBytes"`
	// PartCount is how many parts the file is split into.
	PartCount int32 `json:"partCount"`
	// PartsReceived is how many distinct parts have been stored.
	PartsReceived int32 `json:"partsReceived"`
	// BytesReceived is the total size of the parts stored.
	BytesReceived int64 `json:"bytesReceived"`
}

// UploadSessionStatus is what the operator observed and did.
type UploadSessionStatus struct {
	// SessionID is the session's UUID (also the label uploads.mocs.dev/session-id
	// and the id in the HTTP API).
	// +optional
	SessionID string `json:"sessionId,omitempty"`

	// Phase is a summary of where the session is; Conditions hold the detail.
	// +optional
	Phase Phase `json:"phase,omitempty"`

	// PhaseReason is a short, human-readable reason for the current phase.
	// +optional
	PhaseReason string `json:"phaseReason,omitempty"`

	// PartSizeBytes is the part size in effect.
	// +optional
	PartSizeBytes int64 `json:"partSizeBytes,omitempty"`

	// ExpiresAt is when an unfinalized session expires and its uploads are aborted.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// Files is the progress of each file, in spec order.
	// +optional
	// +listType=atomic
	Files []FileStatus `json:"files,omitempty"`

	// FileCount is the number of files in the session.
	// +optional
	FileCount int32 `json:"fileCount,omitempty"`

	// Progress summarises received bytes and parts, e.g. "12.0MiB/40.0MiB (3/8 parts)".
	// +optional
	Progress string `json:"progress,omitempty"`

	// FinalizingAt is when the current finalize took the lock.
	// +optional
	FinalizingAt *metav1.Time `json:"finalizingAt,omitempty"`

	// FinalizedAt is when the MOC was committed.
	// +optional
	FinalizedAt *metav1.Time `json:"finalizedAt,omitempty"`

	// MocID is the id of the moc_instructions row once finalized.
	// +optional
	MocID string `json:"mocId,omitempty"`

	// Slug is the MOC's slug once finalized.
	// +optional
	Slug string `json:"slug,omitempty"`

	// SuggestedSlug is the first free slug when spec.finalize.title's slug is taken.
	// +optional
	SuggestedSlug string `json:"suggestedSlug,omitempty"`

	// ObservedGeneration is the spec generation the status reflects.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready (a summary of the others), UploadsReady (all S3
	// multipart uploads exist) and Finalized (with reasons such as
	// SlugConflict or IncompleteUpload while it cannot proceed).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// UploadSession is one upload of a MOC's files: created by a manifest or over
// the operator's HTTP API, filled part by part, finalized into catalog rows.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=us,categories=mocs
// +kubebuilder:printcolumn:name="Owner",type=string,JSONPath=`.spec.owner`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Files",type=integer,JSONPath=`.status.fileCount`
// +kubebuilder:printcolumn:name="Progress",type=string,JSONPath=`.status.progress`
// +kubebuilder:printcolumn:name="MOC",type=string,JSONPath=`.status.slug`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`,priority=1
// +kubebuilder:printcolumn:name="Session",type=string,JSONPath=`.status.sessionId`,priority=1
// +kubebuilder:printcolumn:name="Transfer",type=string,JSONPath=`.spec.transfer`,priority=1
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.phaseReason`,priority=1
// +kubebuilder:printcolumn:name="Expires",type=string,format=date-time,JSONPath=`.status.expiresAt`,priority=1
type UploadSession struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   UploadSessionSpec   `json:"spec,omitempty"`
	Status UploadSessionStatus `json:"status,omitempty"`
}

// UploadSessionList is a list of UploadSessions.
// +kubebuilder:object:root=true
type UploadSessionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []UploadSession `json:"items"`
}
