// Package version tells which build of the worker and its tools this is.
package version

import "runtime/debug"

// Version is set at link time (-ldflags "-X
// github.com/azbilling/worker/internal/version.Version=v1.2.3"); when it is
// not, String falls back to the module version or the VCS revision that Go
// records in the binary.
var Version = ""

// String returns the version of this build: Version, else the main
// module's version, else the VCS revision (with "+dirty" for a modified
// tree), else "devel".
func String() string {
	if Version != "" {
		return Version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return "devel"
	}
	return rev + dirty
}
