// Package sessionspec is where an UploadSession resource and the engine's
// request meet: the upload API builds the resource of a session it creates
// here, and both the upload API and the reconciler activate a session from
// its resource's spec through Request, so the two activations cannot differ.
// ADR 0002 (docs/adr/0002-session-creation.md) tells who writes what.
package sessionspec

import (
	"cmp"

	"github.com/google/uuid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/store"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// Resource is the resource of a session the upload API creates for req (a
// request it has validated): named after the session id, in req.Namespace,
// labelled with the id and marked as the API's. It carries the finalizer from
// the start, so a delete that comes before the first reconcile still goes
// through the reconciler, which removes whatever the activation creates.
func Resource(req uploads.Request) *uploadsv1.UploadSession {
	id := req.SessionID.String()
	us := &uploadsv1.UploadSession{
		ObjectMeta: metav1.ObjectMeta{Name: id, Namespace: req.Namespace,
			Labels:      map[string]string{uploadsv1.SessionIDLabel: id},
			Annotations: map[string]string{uploadsv1.CreatedByAPIAnnotation: "true"},
			Finalizers:  []string{uploadsv1.Finalizer}},
		Spec: uploadsv1.UploadSessionSpec{Owner: req.Owner, PartSizeBytes: req.PartSizeBytes,
			Transfer: uploadsv1.TransferMode(cmp.Or(req.Transfer, store.TransferProxy))},
	}
	for _, f := range req.Files {
		spec := uploadsv1.FileSpec{Name: f.Name, ContentType: session.MediaType(f.ContentType), SizeBytes: f.SizeBytes}
		if c := session.NormalizeChecksum(f.Checksum); c != nil {
			spec.Checksum = &uploadsv1.FileChecksum{CRC64NVME: c.CRC64NVME, SHA256: c.SHA256}
		}
		us.Spec.Files = append(us.Spec.Files, spec)
	}
	return us
}

// Request is the one translation of a resource's spec into the engine's
// request for session id (the reconciler's sessionID rule picks it).
func Request(us *uploadsv1.UploadSession, id uuid.UUID) uploads.Request {
	files := make([]session.File, len(us.Spec.Files))
	for i, f := range us.Spec.Files {
		files[i] = session.File{Name: f.Name, ContentType: f.ContentType, SizeBytes: f.SizeBytes}
		if f.Checksum != nil {
			files[i].Checksum = &session.FileChecksum{CRC64NVME: f.Checksum.CRC64NVME, SHA256: f.Checksum.SHA256}
		}
	}
	return uploads.Request{
		SessionID: id, Owner: us.Spec.Owner, Files: files, PartSizeBytes: us.Spec.PartSizeBytes,
		Transfer: string(us.Spec.Transfer), Namespace: us.Namespace, Name: us.Name, UID: string(us.UID),
	}
}
