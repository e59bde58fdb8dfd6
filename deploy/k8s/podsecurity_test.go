package k8s

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// TestPodSecurityRestricted evaluates every Deployment's pod template of
// every kustomization and chart rendering with the Pod Security Admission
// controller's own checks, at the restricted level of the newest
// Kubernetes release they know: what a namespace labelled
// pod-security.kubernetes.io/enforce=restricted admits.
func TestPodSecurityRestricted(t *testing.T) {
	t.Parallel()
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	level := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	for _, dir := range withCharts(kustomizations) {
		for _, o := range render(t, dir).find("Deployment", "") {
			d := o.typed.(*appsv1.Deployment)
			res := policy.AggregateCheckResults(eval.EvaluatePod(level, &d.Spec.Template.ObjectMeta, &d.Spec.Template.Spec))
			if !res.Allowed {
				t.Errorf("%s: Deployment %s violates the restricted Pod Security Standard: %s", dir, d.Name, strings.Join(res.ForbiddenDetails, "; "))
			}
		}
	}
}
