// Package console is the worker's operations console: a small web server
// that shows what the worker is doing (backlog, operations waiting on
// Azure, outcomes, dead letters) from NATS alone, through pkg/client, and
// that can replay or delete a dead letter when write actions are enabled.
//
// Pages are rendered on the server from html/template (everything shown is
// escaped), with the stylesheet and the one small script embedded in the
// binary: no CDN, no build step. The script refreshes the parts of a page
// marked data-refresh by fetching their HTML again; without it the pages
// still work, only not live. A strict Content-Security-Policy allows no
// inline script and nothing from another origin.
//
// Safe by default: cmd/console listens on loopback, write actions are off,
// and when on they need the operator's token (a login that sets an
// HttpOnly, SameSite=Strict cookie) or a header set by an authenticating
// proxy, and pass net/http's CrossOriginProtection (a cross-site form post
// is refused). A SAS URL's sig is shown only as the completed operation's
// link, and can be hidden there too (Options.HideSig).
package console

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/azbilling/worker/pkg/client"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Defaults of Options.
const (
	DefaultAddr          = "127.0.0.1:8090"
	DefaultPageSize      = 50
	DefaultRefresh       = 2 * time.Second
	DefaultOverviewCache = time.Second
)

// Options configure a console.
type Options struct {
	// Client reads and writes through the worker's contract; required.
	Client *client.Client
	// Write enables the write actions (replay and delete a dead letter).
	// Default false: the console only reads.
	Write bool
	// Token, when Write is on, is what an operator logs in with. Either
	// Token or AuthHeader is required with Write.
	Token string
	// AuthHeader, when Write is on, names a request header that an
	// authenticating proxy in front of the console sets to the user's
	// name (and strips from what clients send): a write action needs it
	// non-empty. It takes the place of the token.
	AuthHeader string
	// HideSig hides the sig of the completed operation's link too (the
	// only place it is shown otherwise).
	HideSig bool
	// NoDownloads turns off the download of archived documents (on by
	// default, read-only mode included: it is a read).
	NoDownloads bool
	// TraceURL, when set, links an operation's trace id to the operator's
	// tracing backend: an http or https URL in which {trace_id} is
	// replaced by the trace id (escaped), for example
	// https://jaeger.internal/trace/{trace_id}.
	TraceURL string
	// PageSize is how many operations or dead letters a page lists
	// (default DefaultPageSize).
	PageSize int
	// Refresh is how often the live parts of a page refresh (default
	// DefaultRefresh).
	Refresh time.Duration
	// OverviewCache is how long one reading of the bucket serves the
	// overview to every viewer (default DefaultOverviewCache).
	OverviewCache time.Duration
	// Logger (default: discard).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (o *Options) validate() error {
	var errs []error
	if o.Client == nil {
		errs = append(errs, errors.New("console: Client is required"))
	}
	if o.Write && o.Token == "" && o.AuthHeader == "" {
		errs = append(errs, errors.New("console: write actions need a token or an auth proxy header"))
	}
	if !o.Write && (o.Token != "" || o.AuthHeader != "") {
		errs = append(errs, errors.New("console: a token or an auth proxy header is only for write actions, which are off"))
	}
	if err := checkTraceURL(o.TraceURL); err != nil {
		errs = append(errs, err)
	}
	if o.PageSize < 0 || o.Refresh < 0 || o.OverviewCache < 0 {
		errs = append(errs, errors.New("console: page size, refresh and overview cache cannot be negative"))
	}
	return errors.Join(errs...)
}

// Server is the console's HTTP handler.
type Server struct {
	o       Options
	pages   map[string]*template.Template
	mux     *http.ServeMux
	session string // the cookie value a login with the token sets

	mu       sync.Mutex
	overview *overview // the last reading, shared while fresh
}

// New returns a console.
func New(o Options) (*Server, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.PageSize == 0 {
		o.PageSize = DefaultPageSize
	}
	if o.Refresh == 0 {
		o.Refresh = DefaultRefresh
	}
	if o.OverviewCache == 0 {
		o.OverviewCache = DefaultOverviewCache
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{o: o}
	if o.Token != "" {
		mac := hmac.New(sha256.New, []byte(o.Token))
		mac.Write([]byte("billing-console session"))
		s.session = hex.EncodeToString(mac.Sum(nil))
	}
	var err error
	if s.pages, err = parsePages(o); err != nil {
		return nil, err
	}
	s.routes()
	return s, nil
}

// ServeHTTP serves the console.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	s.mux.ServeHTTP(w, r)
}

func (s *Server) routes() {
	static, _ := fs.Sub(staticFS, "static")
	s.mux = http.NewServeMux()
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	s.mux.HandleFunc("GET /{$}", s.handleOverview)
	s.mux.HandleFunc("GET /live/overview", s.handleOverviewLive)
	s.mux.HandleFunc("GET /operations", s.handleOperations)
	s.mux.HandleFunc("GET /operations/{id}", s.handleOperation)
	s.mux.HandleFunc("GET /live/operations/{id}", s.handleOperationLive)
	s.mux.HandleFunc("GET /operations/{id}/document", s.handleDocument)
	s.mux.HandleFunc("GET /collections", s.handleCollections)
	s.mux.HandleFunc("GET /collections/{id}", s.handleCollection)
	s.mux.HandleFunc("GET /live/collections/{id}", s.handleCollectionLive)
	s.mux.HandleFunc("GET /schedules", s.handleSchedules)
	s.mux.HandleFunc("GET /coverage", s.handleCoverage)
	s.mux.HandleFunc("GET /deadletters", s.handleDeadLetters)
	s.mux.HandleFunc("GET /deadletters/{seq}", s.handleDeadLetter)
	s.mux.HandleFunc("GET /login", s.handleLoginForm)

	// Every state-changing request passes the cross-origin check: a form
	// posted from another site (or another port of this host) is refused
	// before it is read.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.o.Logger.WarnContext(r.Context(), "console: cross-origin request refused", "path", r.URL.Path,
			"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"))
		s.refuse(w, r, http.StatusForbidden, "This request came from another site and was refused (cross-site request forgery protection).")
	}))
	post := func(pattern string, h http.HandlerFunc) {
		s.mux.Handle(pattern, cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			h(w, r)
		})))
	}
	post("POST /login", s.handleLogin)
	post("POST /logout", s.handleLogout)
	post("POST /deadletters/{seq}/replay", s.writeAction(s.handleReplay))
	post("POST /deadletters/{seq}/delete", s.writeAction(s.handleDelete))
}

// maxForm bounds a posted form: an edited payload and a little more (the
// worker refuses a request above its max-request-bytes anyway).
const maxForm = 4 << 20

// sessionCookie names the cookie a login sets.
const sessionCookie = "billing_console_session"

// writer names who may write with r ("" when nobody: writes off, no
// login, no proxy header).
func (s *Server) writer(r *http.Request) string {
	if !s.o.Write {
		return ""
	}
	if s.o.AuthHeader != "" {
		if u := r.Header.Get(s.o.AuthHeader); u != "" {
			return u
		}
	}
	if s.session != "" {
		if c, err := r.Cookie(sessionCookie); err == nil && subtle.ConstantTimeCompare([]byte(c.Value), []byte(s.session)) == 1 {
			return "operator (token)"
		}
	}
	return ""
}

// writeAction wraps a handler that changes something: refused when
// writes are off or the request is not authorized.
func (s *Server) writeAction(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch {
		case !s.o.Write:
			s.refuse(w, r, http.StatusForbidden, "Write actions are off in this console (start it with --write).")
		case s.writer(r) == "":
			msg := "This action needs the operator token: log in first."
			if s.session == "" {
				msg = "This action needs a user set by the authenticating proxy (header " + s.o.AuthHeader + ")."
			}
			s.refuse(w, r, http.StatusUnauthorized, msg)
		default:
			h(w, r)
		}
	}
}

func (s *Server) handleLoginForm(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "login", s.page(r, "Log in", nil))
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	if s.session == "" {
		s.refuse(w, r, http.StatusNotFound, "This console has no token to log in with.")
		return
	}
	token := r.PostFormValue("token")
	if subtle.ConstantTimeCompare([]byte(token), []byte(s.o.Token)) != 1 {
		s.o.Logger.WarnContext(r.Context(), "console: login refused", "remote", r.RemoteAddr)
		p := s.page(r, "Log in", nil)
		p.Error = "That is not the token."
		s.render(w, r, http.StatusUnauthorized, "login", p)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: s.session, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/deadletters", http.StatusSeeOther)
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// refuse answers with an error page.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, status int, msg string) {
	p := s.page(r, http.StatusText(status), nil)
	p.Error = msg
	s.render(w, r, status, "error", p)
}

// Listen opens addr for Serve.
func Listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("console listener: %w", err)
	}
	return l, nil
}

// Serve serves the console on l until ctx is done, then shuts down
// (waiting up to 5 s for requests in flight).
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shut); err != nil {
		return err
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
