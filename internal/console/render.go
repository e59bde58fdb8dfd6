package console

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/azbilling/worker/internal/version"
	"github.com/azbilling/worker/pkg/client"
)

// page is what every template gets.
type page struct {
	Title   string
	Path    string
	Now     time.Time
	Prefix  string
	Version string
	// Write is true when write actions are on; Writer names who is
	// authorized for them in this request ("" when nobody); Login is
	// true when a token login is possible.
	Write  bool
	Writer string
	Login  bool
	// Downloads is true when archived documents can be downloaded.
	Downloads bool
	// RefreshMS is the live refresh period.
	RefreshMS int64
	Error     string
	Data      any
}

func (s *Server) page(r *http.Request, title string, data any) *page {
	return &page{Title: title, Path: r.URL.Path, Now: s.o.Now(), Prefix: s.o.Client.Layout().Prefix,
		Version: version.String(), Write: s.o.Write, Writer: s.writer(r), Login: s.session != "", Downloads: !s.o.NoDownloads,
		RefreshMS: s.o.Refresh.Milliseconds(), Data: data}
}

// parsePages parses each page with the layout and the shared parts.
func parsePages(o Options) (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"time":     func(t time.Time) string { return fmtTime(t) },
		"clock":    func(t time.Time) string { return t.UTC().Format("15:04:05") },
		"minute":   func(t time.Time) string { return t.UTC().Format("15:04") },
		"rel":      relative,
		"dur":      fmtDuration,
		"since":    func(now, t time.Time) string { return fmtDuration(now.Sub(t)) },
		"phases":   func() []client.Phase { return phases },
		"terminal": func(p client.Phase) bool { return p.Terminal() },
		"count":    func(m map[client.Phase]int, p client.Phase) int { return m[p] },
		"add":      func(a, b int) int { return a + b },
		"bytes":    fmtBytes,
		"base":     fileName,
		"zoned":    zoneTime,
		"learned":  client.LearnedText,
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, name := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(name, "templates/"), ".html")
		if base == "layout" || strings.HasPrefix(base, "_") {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/_*.html", name)
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		pages[base] = t
	}
	return pages, nil
}

// render writes a whole page. It renders into a buffer first, so that a
// template error gives a clean 500 rather than half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, p *page) {
	s.write(w, r, status, name, "layout.html", p)
}

// renderFragment writes one template of a page: the live part that the
// script fetches again.
func (s *Server) renderFragment(w http.ResponseWriter, r *http.Request, name, fragment string, p *page) {
	s.write(w, r, http.StatusOK, name, fragment, p)
}

func (s *Server) write(w http.ResponseWriter, r *http.Request, status int, name, tmpl string, p *page) {
	t, ok := s.pages[name]
	if !ok {
		http.Error(w, "no such page", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, tmpl, p); err != nil {
		s.o.Logger.ErrorContext(r.Context(), "console: render", "page", name, "error", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000Z")
}

// relative says how far t is from now: "in 3s", "2m ago".
func relative(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := t.Sub(now)
	if d >= 0 {
		return "in " + fmtDuration(d)
	}
	return fmtDuration(-d) + " ago"
}

// fmtDuration rounds d for reading: 850ms, 12s, 3m05s, 2h10m.
func fmtDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + fmtDuration(-d)
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

func fmtBytes(n uint64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
