package controllers

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/units"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// patchStatus applies mutate to the status and patches it with an optimistic
// lock, so a stale view never overwrites a newer status.
func (r *UploadSessionReconciler) patchStatus(ctx context.Context, us *uploadsv1.UploadSession, mutate func(*uploadsv1.UploadSessionStatus)) error {
	orig := us.DeepCopy()
	mutate(&us.Status)
	us.Status.ObservedGeneration = us.Generation
	if err := r.Status().Patch(ctx, us, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("patch status of %s/%s: %w", us.Namespace, us.Name, err)
	}
	return nil
}

// setPhase sets the phase and its human-readable reason together.
func setPhase(st *uploadsv1.UploadSessionStatus, phase uploadsv1.Phase, reason string) {
	st.Phase = phase
	st.PhaseReason = reason
}

func setCondition(st *uploadsv1.UploadSessionStatus, gen int64, typ string, ok bool, reason, msg string) {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen,
	})
}

// applyActive copies what activation recorded into the status.
func applyActive(st *uploadsv1.UploadSessionStatus, act uploads.Active) {
	st.SessionID = act.Session.ID.String()
	st.PartSizeBytes = act.Session.PartSizeBytes
	exp := metav1.NewTime(act.Session.ExpiresAt)
	st.ExpiresAt = &exp
	st.FileCount = int32(len(act.Files)) //nolint:gosec // at most 100 files
	prev := map[string]uploadsv1.FileStatus{}
	for _, f := range st.Files {
		prev[f.FileID] = f
	}
	st.Files = st.Files[:0]
	for _, f := range act.Files {
		fs := prev[f.ID.String()]
		fs.FileID, fs.Name, fs.SizeBytes, fs.PartCount = f.ID.String(), f.Name, f.SizeBytes, int32(f.PartCount) //nolint:gosec // at most 10,000
		st.Files = append(st.Files, fs)
	}
	st.Progress = progress(st.Files)
}

// progress renders the Progress column: bytes and parts received of the total.
func progress(files []uploadsv1.FileStatus) string {
	var got, total int64
	var gotParts, parts int32
	for _, f := range files {
		got += f.BytesReceived
		total += f.SizeBytes
		gotParts += f.PartsReceived
		parts += f.PartCount
	}
	pct := 0
	if total > 0 {
		pct = int(got * 100 / total)
	}
	return fmt.Sprintf("%d%% %s/%s (%d/%d parts)", pct, units.Bytes(got, ""), units.Bytes(total, ""), gotParts, parts)
}
