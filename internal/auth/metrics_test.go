package auth

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// A scraper every few seconds costs one TokenReview and one
// SubjectAccessReview a minute, not one of each per scrape. (The access
// review's answer comes from client-go's fake clientset here; the filter
// against a real API server is in test/e2e's metrics test.)
func TestMetricsAccessDecisionsAreCached(t *testing.T) {
	t.Parallel()
	var sars atomic.Int32
	client := fake.NewClientset()
	client.PrependReactor("create", "subjectaccessreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		sars.Add(1)
		return true, &authzv1.SubjectAccessReview{Status: authzv1.SubjectAccessReviewStatus{Allowed: true}}, nil
	})
	tok := jwt("prometheus")
	rev := &countingReviewer{users: map[string]User{tok: {Name: "system:serviceaccount:monitoring:prometheus"}}}
	filter := MetricsFilter(&Authenticator{Reviewer: rev, TTL: time.Minute, RequireJWT: true}, client)
	h, err := filter(logr.Discard(), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("scrape %d: %d", i+1, rec.Code)
		}
	}
	if rev.calls != 1 || sars.Load() != 1 {
		t.Fatalf("5 scrapes made %d token reviews and %d access reviews; want 1 and 1", rev.calls, sars.Load())
	}
}
