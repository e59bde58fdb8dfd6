package client

import (
	"fmt"
	"strings"

	"github.com/azbilling/worker/pkg/messages"
)

// writeEstate adds a discovery listing's items and an estate's scopes to
// Human's text.
func writeEstate(b *strings.Builder, c *messages.Completed) {
	if c.Kind.Discovers() {
		fmt.Fprintf(b, "\n  items:      %d", len(c.Items))
		for _, it := range c.Items {
			what := it.AgreementType
			if what == "" {
				what = it.State + it.Status
			}
			fmt.Fprintf(b, "\n  item:       %s %q (%s)", it.Name, it.DisplayName, what)
		}
	}
	e := c.Estate
	if e == nil {
		return
	}
	fmt.Fprintf(b, "\n  scopes:     %d: %d completed, %d failed, %d skipped", e.Scopes, e.Completed, e.Failed, e.Skipped)
	fmt.Fprintf(b, "\n  documents:  %d: %d completed, %d failed", e.Documents, e.DocumentsCompleted, e.DocumentsFailed)
	for _, s := range e.Children {
		switch s.Outcome {
		case messages.OutcomeSkipped:
			fmt.Fprintf(b, "\n  skipped:    %s %s %q: %s", s.Scope, s.ID, s.DisplayName, s.Message)
		case messages.OutcomeFailed:
			fmt.Fprintf(b, "\n  failed:     %s %s %q, collection %s (%s): %s", s.Scope, s.ID, s.DisplayName, s.CollectionID, s.Code, s.Message)
		default:
			fmt.Fprintf(b, "\n  scope:      %s %s %q, collection %s: %d documents, %d failed", s.Scope, s.ID, s.DisplayName, s.CollectionID, s.Documents, s.Failed)
		}
	}
}
