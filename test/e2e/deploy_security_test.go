package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

const operatorSA = "system:serviceaccount:upload-operator-system:upload-operator-controller-manager"

// The operator's RBAC, applied as config/default ships it, grants what it needs
// and nothing more: Leases only in its own namespace; sessions, their status
// and finalizers; Events; reviews; no Secrets, no Pods, no plain update of
// sessions. Asked of the real API server with SubjectAccessReviews, as is what
// tenants get from the editor and viewer roles.
func TestOperatorRoleIsLeastPrivilege(t *testing.T) {
	out := mustKubectl(t, "kustomize", "config/default")
	if o, err := kubectl(t, "create", "namespace", "upload-operator-system"); err != nil && !strings.Contains(o, "AlreadyExists") {
		t.Fatal(o)
	}
	if res, err := kubectlStdin(t, out, "apply", "--server-side", "--field-manager=rbac-test", "--force-conflicts", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s", err, res)
	}
	cs, err := kubernetes.NewForConfig(stack.Kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		verb, group, resource, subresource, namespace string
		allowed                                       bool
	}{
		{"update", "coordination.k8s.io", "leases", "", "upload-operator-system", true},
		{"create", "coordination.k8s.io", "leases", "", "upload-operator-system", true},
		{"update", "coordination.k8s.io", "leases", "", "kube-system", false},
		{"create", "coordination.k8s.io", "leases", "", "default", false},
		{"delete", "coordination.k8s.io", "leases", "", "kube-node-lease", false},
		{"create", "uploads.mocs.dev", "uploadsessions", "", "team-a", true},
		{"assign", "uploads.mocs.dev", "uploadsessions", "owner", "", true},
		{"patch", "uploads.mocs.dev", "uploadsessions", "status", "team-a", true},
		{"update", "uploads.mocs.dev", "uploadsessions", "finalizers", "team-a", true},
		{"update", "uploads.mocs.dev", "uploadsessions", "", "team-a", false},
		{"create", "authentication.k8s.io", "tokenreviews", "", "", true},
		{"create", "authorization.k8s.io", "subjectaccessreviews", "", "", true},
		{"create", "", "events", "", "team-a", true},
		{"get", "", "secrets", "", "upload-operator-system", false},
		{"list", "", "secrets", "", "upload-operator-system", false},
		{"get", "", "secrets", "", "team-a", false},
		{"create", "", "secrets", "", "team-a", false},
		{"update", "", "configmaps", "", "upload-operator-system", false},
		{"create", "", "configmaps", "", "team-a", false},
		{"list", "", "pods", "", "team-a", false},
		{"create", "", "serviceaccounts", "token", "team-a", false},
	} {
		allowed := accessAllowed(t, cs, operatorSA, []string{"system:serviceaccounts", "system:serviceaccounts:upload-operator-system"},
			authzv1.ResourceAttributes{Verb: tc.verb, Group: tc.group, Resource: tc.resource, Subresource: tc.subresource, Namespace: tc.namespace})
		if allowed != tc.allowed {
			t.Errorf("%s %s/%s %s in %q: allowed=%v, want %v", tc.verb, tc.resource, tc.subresource, tc.group, tc.namespace, allowed, tc.allowed)
		}
	}

	// Its own certificate: the CA's Secret and the published ConfigMap by
	// name, in its own namespace; no other Secret.
	for _, tc := range []struct {
		verb, resource, namespace, name string
		allowed                         bool
	}{
		{"get", "secrets", "upload-operator-system", "upload-operator-tls-ca", true},
		{"update", "secrets", "upload-operator-system", "upload-operator-tls-ca", false},
		{"get", "secrets", "upload-operator-system", "upload-operator-env", false},
		{"get", "secrets", "team-a", "upload-operator-tls-ca", false},
		{"create", "secrets", "upload-operator-system", "", true},
		{"get", "configmaps", "upload-operator-system", "upload-operator-ca", true},
		{"update", "configmaps", "upload-operator-system", "upload-operator-ca", true},
		{"update", "configmaps", "upload-operator-system", "kube-root-ca.crt", false},
		{"update", "configmaps", "team-a", "upload-operator-ca", false},
	} {
		allowed := accessAllowed(t, cs, operatorSA, []string{"system:serviceaccounts", "system:serviceaccounts:upload-operator-system"},
			authzv1.ResourceAttributes{Verb: tc.verb, Resource: tc.resource, Namespace: tc.namespace, Name: tc.name})
		if allowed != tc.allowed {
			t.Errorf("%s %s %q in %q: allowed=%v, want %v", tc.verb, tc.resource, tc.name, tc.namespace, allowed, tc.allowed)
		}
	}

	// Tenants get sessions through the built-in roles: the editor role is
	// picked by the aggregation selectors of edit and admin, the viewer role by
	// view's. envtest runs no kube-controller-manager, which folds the picked
	// rules into those roles, so the rules are checked by binding the two roles
	// directly in a namespace.
	picks := func(builtin string) map[string]bool {
		role, err := cs.RbacV1().ClusterRoles().Get(context.Background(), builtin, metav1.GetOptions{})
		must(t, err)
		if role.AggregationRule == nil {
			t.Fatalf("the built-in %s ClusterRole has no aggregation rule", builtin)
		}
		picked := map[string]bool{}
		for _, sel := range role.AggregationRule.ClusterRoleSelectors {
			s, err := metav1.LabelSelectorAsSelector(&sel)
			must(t, err)
			roles, err := cs.RbacV1().ClusterRoles().List(context.Background(), metav1.ListOptions{LabelSelector: s.String()})
			must(t, err)
			for _, r := range roles.Items {
				picked[r.Name] = true
			}
		}
		return picked
	}
	const editor, viewer = "upload-operator-uploadsession-editor-role", "upload-operator-uploadsession-viewer-role"
	edit, admin, view := picks("edit"), picks("admin"), picks("view")
	if !edit[editor] || !admin[editor] || view[editor] {
		t.Errorf("%s: aggregated into edit %v, admin %v, view %v; want edit and admin only", editor, edit[editor], admin[editor], view[editor])
	}
	if !view[viewer] || edit[viewer] || admin[viewer] {
		t.Errorf("%s: aggregated into view %v, edit %v, admin %v; want view only (edit has view's rules)", viewer, view[viewer], edit[viewer], admin[viewer])
	}
	const tenantNS = "rbac-tenants"
	if o, err := kubectl(t, "create", "namespace", tenantNS); err != nil && !strings.Contains(o, "AlreadyExists") {
		t.Fatal(o)
	}
	for user, role := range map[string]string{"tenant-editor": editor, "tenant-viewer": viewer} {
		mustKubectl(t, "-n", tenantNS, "create", "rolebinding", user, "--clusterrole="+role, "--user="+user)
		t.Cleanup(func() { _, _ = kubectl(t, "-n", tenantNS, "delete", "rolebinding", user) })
	}
	// The authorizer sees new bindings through its informers, a moment later.
	waitFor(t, 10*time.Second, "the tenant bindings to take effect", func() (bool, string) {
		return accessAllowed(t, cs, "tenant-viewer", nil, authzv1.ResourceAttributes{Verb: "list", Group: "uploads.mocs.dev",
			Resource: "uploadsessions", Namespace: tenantNS}) &&
			accessAllowed(t, cs, "tenant-editor", nil, authzv1.ResourceAttributes{Verb: "list", Group: "uploads.mocs.dev",
				Resource: "uploadsessions", Namespace: tenantNS}), "not allowed yet"
	})
	for _, tc := range []struct {
		user, verb, subresource, namespace string
		allowed                            bool
	}{
		{"tenant-editor", "create", "", tenantNS, true},
		{"tenant-editor", "update", "", tenantNS, true},
		{"tenant-editor", "patch", "", tenantNS, true},
		{"tenant-editor", "delete", "", tenantNS, true},
		{"tenant-editor", "watch", "", tenantNS, true},
		{"tenant-editor", "get", "status", tenantNS, true},
		{"tenant-editor", "patch", "status", tenantNS, false},
		{"tenant-editor", "assign", "owner", tenantNS, false},
		{"tenant-editor", "assign", "owner", "", false},
		{"tenant-editor", "create", "", "team-a", false},
		{"tenant-viewer", "get", "", tenantNS, true},
		{"tenant-viewer", "list", "", tenantNS, true},
		{"tenant-viewer", "get", "status", tenantNS, true},
		{"tenant-viewer", "create", "", tenantNS, false},
		{"tenant-viewer", "delete", "", tenantNS, false},
		{"tenant-viewer", "list", "", "team-a", false},
	} {
		allowed := accessAllowed(t, cs, tc.user, nil, authzv1.ResourceAttributes{Verb: tc.verb, Group: "uploads.mocs.dev",
			Resource: "uploadsessions", Subresource: tc.subresource, Namespace: tc.namespace})
		if allowed != tc.allowed {
			t.Errorf("%s: %s uploadsessions/%s in %q: allowed=%v, want %v", tc.user, tc.verb, tc.subresource, tc.namespace, allowed, tc.allowed)
		}
	}
}

// accessAllowed asks the API server whether user (in groups) may do what attrs describe.
func accessAllowed(t *testing.T, cs kubernetes.Interface, user string, groups []string, attrs authzv1.ResourceAttributes) bool {
	t.Helper()
	sar, err := cs.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), &authzv1.SubjectAccessReview{
		Spec: authzv1.SubjectAccessReviewSpec{User: user, Groups: groups, ResourceAttributes: &attrs},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return sar.Status.Allowed
}

// The network policy lets the upload API be reached only from namespaces
// labelled for it (never from any pod that sets a label), and limits egress
// to DNS and the ports of the API server, PostgreSQL, Redis and S3.
func TestNetworkPolicyNarrowsIngressAndEgress(t *testing.T) {
	out := mustKubectl(t, "kustomize", "config/default")
	var np networkingv1.NetworkPolicy
	for _, doc := range strings.Split(out, "\n---\n") {
		if strings.Contains(doc, "kind: NetworkPolicy") {
			if err := yaml.Unmarshal([]byte(doc), &np); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !strings.Contains(strings.Join(policyTypes(np), ","), "Egress") {
		t.Fatalf("policy types %v: egress is not limited", np.Spec.PolicyTypes)
	}
	for _, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 0 || rule.Ports[0].Port.String() != "upload-api" {
			continue
		}
		for _, peer := range rule.From {
			if peer.PodSelector != nil || peer.NamespaceSelector == nil || len(peer.NamespaceSelector.MatchLabels) == 0 {
				t.Fatalf("upload API peer %+v: want a labelled namespace only", peer)
			}
		}
	}
	allowed := map[string]bool{"53": true, "443": true, "6443": true, "5432": true, "6379": true}
	for _, rule := range np.Spec.Egress {
		if len(rule.Ports) == 0 {
			t.Fatalf("an egress rule without ports: %+v", rule)
		}
		for _, p := range rule.Ports {
			if !allowed[p.Port.String()] {
				t.Errorf("egress to port %s", p.Port.String())
			}
		}
	}
}

func policyTypes(np networkingv1.NetworkPolicy) []string {
	var out []string
	for _, p := range np.Spec.PolicyTypes {
		out = append(out, string(p))
	}
	return out
}

// The optional TLS component (cert-manager) adds the Certificate and mounts its
// Secret into the Deployment, which the API server accepts.
func TestTLSComponent(t *testing.T) {
	out := mustKubectl(t, "kustomize", "config/tls")
	for _, want := range []string{"kind: Certificate", "name: TLS_CERT_FILE", "secretName: upload-operator-upload-api-tls",
		"upload-operator-upload-api.upload-operator-system.svc", "upload-operator-metrics.upload-operator-system.svc",
		"name: METRICS_CERT_DIR", "name: TLS_CA_CONFIGMAP"} {
		if !strings.Contains(out, want) {
			t.Errorf("config/tls lacks %q", want)
		}
	}
	// One source of certificates: the operator refuses its own CA beside
	// cert-manager's files.
	if strings.Contains(out, "TLS_CA_SECRET") {
		t.Error("config/tls keeps TLS_CA_SECRET beside TLS_CERT_FILE")
	}
	var deployment string
	for _, doc := range strings.Split(out, "\n---\n") {
		if strings.Contains(doc, "kind: Deployment") {
			deployment = doc
		}
	}
	if o, err := kubectl(t, "create", "namespace", "upload-operator-system"); err != nil && !strings.Contains(o, "AlreadyExists") {
		t.Fatal(o)
	}
	if res, err := kubectlStdin(t, deployment, "apply", "--server-side", "--dry-run=server", "--field-manager=tls-test", "--force-conflicts", "-f", "-"); err != nil {
		t.Fatalf("server-side dry run of the TLS Deployment: %v\n%s", err, res)
	}
}

// Base images are pinned by digest and the deployed image is a version, never
// a tag that moves under a running cluster.
func TestImagesArePinned(t *testing.T) {
	df, err := os.ReadFile(filepath.Join(repo, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	froms := 0
	for _, l := range strings.Split(string(df), "\n") {
		if f := strings.Fields(l); len(f) > 1 && strings.EqualFold(f[0], "FROM") {
			froms++
			if !digest.MatchString(f[1]) {
				t.Errorf("%q is not pinned by digest", l)
			}
		}
	}
	if froms == 0 {
		t.Fatal("no FROM in the Dockerfile")
	}
	out := mustKubectl(t, "kustomize", "config/default")
	for _, l := range strings.Split(out, "\n") {
		if img, ok := strings.CutPrefix(strings.TrimSpace(l), "image: "); ok {
			if strings.HasSuffix(img, ":latest") || !strings.Contains(img[strings.LastIndex(img, "/")+1:], ":") {
				t.Errorf("deployed image %q: want a version", img)
			}
		}
	}
}

var digest = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)

// config/default serves TLS with the operator's own CA, for the names its
// Services really have: every Service config/default renders is in
// TLS_DNS_NAMES, so a client or Prometheus verifies by the name it dials.
func TestDefaultTLSNamesTheServices(t *testing.T) {
	var names, services []string
	for _, m := range parseManifests(t, mustKubectl(t, "kustomize", "config/default")) {
		switch m.kind() {
		case "Service":
			ns, _ := dig(m.obj, "metadata", "namespace").(string)
			services = append(services, m.name()+"."+ns+".svc")
		case "Deployment":
			containers, _ := dig(m.obj, "spec", "template", "spec", "containers").([]any)
			for _, c := range containers {
				env, _ := dig(c, "env").([]any)
				for _, e := range env {
					if n, _ := dig(e, "name").(string); n == "TLS_DNS_NAMES" {
						v, _ := dig(e, "value").(string)
						names = strings.Split(v, ",")
					}
				}
			}
		}
	}
	if len(services) < 2 {
		t.Fatalf("services %v", services)
	}
	for _, svc := range services {
		if !slices.Contains(names, svc) || !slices.Contains(names, svc+".cluster.local") {
			t.Errorf("Service %s is not in TLS_DNS_NAMES %v", svc, names)
		}
	}
}
