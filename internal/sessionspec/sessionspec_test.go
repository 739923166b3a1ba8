package sessionspec

import (
	"reflect"
	"slices"
	"testing"

	"github.com/google/uuid"
	"k8s.io/utils/ptr"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// TestAResourceGivesBackTheRequestItWasBuiltFrom: what the upload API creates
// and what either activation reads from it are the same session, normalized
// once (media type, checksum spelling, the default transfer). A field one side
// forgets shows here.
func TestAResourceGivesBackTheRequestItWasBuiltFrom(t *testing.T) {
	t.Parallel()
	id := uuid.New()
	sha := "ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789"
	tests := []struct {
		name string
		in   uploads.Request
		want uploads.Request
	}{
		{
			name: "proxy by default, media type without parameters",
			in: uploads.Request{Owner: "system:serviceaccount:t:a", Files: []session.File{
				{Name: "a.pdf", ContentType: "Application/PDF; charset=binary", SizeBytes: 10}}},
			want: uploads.Request{Owner: "system:serviceaccount:t:a", Transfer: "proxy", Files: []session.File{
				{Name: "a.pdf", ContentType: "application/pdf", SizeBytes: 10}}},
		},
		{
			name: "direct, a part size and checksums in one spelling",
			in: uploads.Request{Owner: "o", Transfer: "direct", PartSizeBytes: ptr.To[int64](8 << 20), Files: []session.File{
				{Name: "m.ldr", ContentType: "application/x-ldraw", SizeBytes: 1 << 30,
					Checksum: &session.FileChecksum{CRC64NVME: "AAAAAAAAAAA=", SHA256: sha}},
				{Name: "b.png", ContentType: "image/png", SizeBytes: 1, Checksum: &session.FileChecksum{}}}},
			want: uploads.Request{Owner: "o", Transfer: "direct", PartSizeBytes: ptr.To[int64](8 << 20), Files: []session.File{
				{Name: "m.ldr", ContentType: "application/x-ldraw", SizeBytes: 1 << 30,
					Checksum: &session.FileChecksum{CRC64NVME: "AAAAAAAAAAA=", SHA256: "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"}},
				{Name: "b.png", ContentType: "image/png", SizeBytes: 1}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.in.SessionID, tc.in.Namespace, tc.in.MaxActive = id, "uploads", 3
			us := Resource(tc.in)
			if us.Name != id.String() || us.Namespace != "uploads" || us.Labels[uploadsv1.SessionIDLabel] != id.String() ||
				us.Annotations[uploadsv1.CreatedByAPIAnnotation] != "true" || !slices.Contains(us.Finalizers, uploadsv1.Finalizer) {
				t.Fatalf("resource metadata = %+v", us.ObjectMeta)
			}
			us.UID = "the-api-servers-uid"
			got := Request(us, id)
			tc.want.SessionID, tc.want.Namespace, tc.want.Name, tc.want.UID = id, "uploads", id.String(), "the-api-servers-uid"
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Request(Resource(req)) =\n %+v\nwant\n %+v", got, tc.want)
			}
		})
	}
}
