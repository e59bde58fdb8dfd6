package messages

// CoverageBucket is the key-value bucket of coverage: the billing scopes
// known, and per scope and month what its latest collection found.
func (s Layout) CoverageBucket() string { return s.Prefix + "_coverage" }
