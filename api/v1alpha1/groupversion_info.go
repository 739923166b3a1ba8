// Package v1alpha1 contains the UploadSession API of the uploads.mocs.dev group.
// +kubebuilder:object:generate=true
// +groupName=uploads.mocs.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of the objects in this package.
	GroupVersion = schema.GroupVersion{Group: "uploads.mocs.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package with a scheme. It is
	// apimachinery's, so importing this package pulls in nothing else.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &UploadSession{}, &UploadSessionList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
