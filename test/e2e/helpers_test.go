package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
)

// kubectl runs the real kubectl against the test control plane.
func kubectl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runTool(t, "kubectl", nil, args...)
}

// runTool runs bin in the repository against the test control plane (with
// env added): its output, and on failure its error output too.
func runTool(t *testing.T, bin string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = repo
	cmd.Env = append(append(os.Environ(), "KUBECONFIG="+stack.Kubeconfig), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String() + errb.String(), err
	}
	return out.String(), nil
}

func mustKubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := kubectl(t, args...)
	if err != nil {
		t.Fatalf("kubectl %v: %v\n%s", args, err, out)
	}
	return out
}

// waitFor polls get until cond holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s; last state: %s", timeout, what, last)
}

// waitPhase waits until the session reaches phase and returns it.
func waitPhase(t *testing.T, ns, name string, phase uploadsv1.Phase) *uploadsv1.UploadSession {
	t.Helper()
	us := &uploadsv1.UploadSession{}
	waitFor(t, 60*time.Second, name+" to be "+string(phase), func() (bool, string) {
		if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, us); err != nil {
			return false, err.Error()
		}
		return us.Status.Phase == phase, string(us.Status.Phase) + " " + us.Status.PhaseReason
	})
	return us
}

func kubectlStdin(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("kubectl", args...)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "KUBECONFIG="+stack.Kubeconfig)
	cmd.Stdin = bytes.NewBufferString(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func findCond(us *uploadsv1.UploadSession, typ string) *metav1.Condition {
	return meta.FindStatusCondition(us.Status.Conditions, typ)
}

// must fails the test on err: for the reads a check depends on, whose error
// would otherwise leave the checked value at its zero (and often "passing") value.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// noMultipartUploads fails the test if S3 lists a multipart upload under
// prefix, or cannot list them.
func noMultipartUploads(t *testing.T, prefix string) {
	t.Helper()
	ups, err := stack.S3.Client().ListMultipartUploads(context.Background(), prefix)
	if err != nil {
		t.Fatalf("list multipart uploads under %s: %v", prefix, err)
	}
	if len(ups) != 0 {
		t.Errorf("multipart uploads left under %s: %v", prefix, ups)
	}
}

// waitEvent waits for an Event about the resource ns/name with reason.
func waitEvent(t *testing.T, ns, name, reason string) {
	t.Helper()
	waitFor(t, 10*time.Second, reason+" event about "+name, func() (bool, string) {
		var evs eventsv1.EventList
		if err := k8s.List(context.Background(), &evs, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		for _, e := range evs.Items {
			if e.Regarding.Name == name && e.Reason == reason {
				return true, ""
			}
		}
		return false, "no event yet"
	})
}
