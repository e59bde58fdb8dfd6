package emulator

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultAudience is the ARM audience tokens must be issued for unless Options.Audience says
// otherwise.
const DefaultAudience = "https://management.azure.com"

// Options configures a Server. The zero value is usable.
type Options struct {
	// Audience is the ARM audience that tokens must be issued for (scope "<Audience>/.default");
	// one trailing slash is ignored when comparing. Default DefaultAudience.
	Audience string
	// TokenLifetime is the lifetime of issued tokens (expires_in). Default 1h.
	TokenLifetime time.Duration
	// Clients maps client IDs to registered clients. Empty: any client ID with any non-empty
	// secret or assertion gets a token.
	Clients map[string]Client
	// Default is the script of invoices without one of their own. Default: one 202 with
	// Retry-After "1", then 200.
	Default []Reply
	// PlainHTTP serves http instead of https. Default: TLS with a self-signed certificate
	// (httptest's for Start, one generated for the listen address for Listen). azidentity
	// refuses an authority on plain HTTP: get tokens from IssueToken or /_emulator/token then.
	PlainHTTP bool
	// Budget throttles every tenant's calls per class like Azure (see Budget); zero: unlimited.
	Budget Budget
	// Logf, when set, receives one line per ARM call and token request, and the HTTP server's
	// own errors. Default: silent.
	Logf func(format string, args ...any)
	// Download is what the download links serve unless SetDownload says
	// otherwise for an invoice. Default: a small document, served at once.
	Download Download
}

// Client is an application registered with the token endpoint.
type Client struct {
	// Tenant is the tenant the client lives in; empty: any tenant.
	Tenant string
	// Secret is the client secret. Empty: the client authenticates with client assertions
	// (workload identity federated tokens) and any non-empty assertion is accepted, unless
	// Assertion is set.
	Secret string
	// Assertion, when set (and Secret is empty), is the only client assertion accepted: the
	// content of the federated token file a workload identity credential must present.
	Assertion string
}

// Server is a running emulator. Its methods are safe for concurrent use.
type Server struct {
	opts      Options
	ts        *httptest.Server
	url       string
	closing   chan struct{} // closed by Close: ends delays and hanging token requests
	closeOnce sync.Once

	// clockSkew (nanoseconds) moves the emulator's clock forward, for tests of expiry.
	clockSkew atomic.Int64

	tokMu  sync.RWMutex
	tokens map[string]tokenInfo

	mu sync.Mutex
	st state

	budget budgets

	// estate is what the discovery listings serve (SetEstate).
	estate *Estate
}

// state is everything Reset forgets.
type state struct {
	scripts      map[string][]Reply
	def          []Reply
	tracks       map[trackKey]*track
	ops          map[string]*operation // by the last segment of the operation's Location path
	blobs        map[blobKey]time.Time // download URLs handed out, to their expiry
	calls        []Call
	tokenReqs    []TokenRequest
	tokenFailure TokenFailure
	dl           downloads
	listing      listingSettings
	costReports  map[string]CostReport
}

func newState(def []Reply) state {
	return state{
		scripts:     map[string][]Reply{},
		def:         def,
		tracks:      map[trackKey]*track{},
		ops:         map[string]*operation{},
		blobs:       map[blobKey]time.Time{},
		dl:          newDownloads(),
		costReports: map[string]CostReport{},
		listing:     listingSettings{PageSize: DefaultPageSize, InvoicesPerMonth: DefaultInvoicesPerMonth},
	}
}

// Start starts an emulator on 127.0.0.1 and a random port.
func Start(opts Options) *Server {
	s := newServer(opts)
	s.start(httptest.NewUnstartedServer(s.handler()))
	return s
}

// Listen starts an emulator on addr ("host:port"). Unless opts.PlainHTTP, it serves a
// certificate generated for localhost, the loopback addresses, addr's host and this machine's
// host name.
func Listen(addr string, opts Options) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("emulator: %w", err)
	}
	s := newServer(opts)
	ts := httptest.NewUnstartedServer(s.handler())
	ts.Listener.Close()
	ts.Listener = l
	if !opts.PlainHTTP {
		host, _, _ := net.SplitHostPort(addr)
		cert, err := selfSignedCert(host)
		if err != nil {
			l.Close()
			return nil, err
		}
		ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	s.start(ts)
	return s, nil
}

func newServer(opts Options) *Server {
	if opts.Audience == "" {
		opts.Audience = DefaultAudience
	}
	if opts.TokenLifetime <= 0 {
		opts.TokenLifetime = time.Hour
	}
	if len(opts.Default) == 0 {
		opts.Default = defaultScript()
	}
	opts.Default = cloneReplies(opts.Default)
	return &Server{
		opts:    opts,
		closing: make(chan struct{}),
		tokens:  map[string]tokenInfo{},
		st:      newState(opts.Default),
		budget:  budgets{b: opts.Budget, buckets: map[bucketKey]*bucket{}},
	}
}

func (s *Server) start(ts *httptest.Server) {
	errLog := io.Discard
	if s.opts.Logf != nil {
		errLog = logfWriter(s.opts.Logf)
	}
	ts.Config.ErrorLog = log.New(errLog, "", 0)
	if s.opts.PlainHTTP {
		ts.Start()
	} else {
		ts.StartTLS()
	}
	s.ts = ts
	// httptest's URL names the bound address; an unspecified one (":8443", "0.0.0.0:8443") is
	// not something a client can dial, so name the loopback address instead.
	host, port, _ := net.SplitHostPort(ts.Listener.Addr().String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	s.url = s.scheme() + "://" + net.JoinHostPort(host, port)
}

// logfWriter adapts Options.Logf to the io.Writer of the HTTP server's error log.
type logfWriter func(format string, args ...any)

func (f logfWriter) Write(p []byte) (int, error) {
	f("emulator: %s", bytes.TrimSuffix(p, []byte("\n")))
	return len(p), nil
}

// URL is the base URL of the server, e.g. https://127.0.0.1:41235. ARM paths, the token
// endpoint (as ActiveDirectoryAuthorityHost, with a trailing slash) and the control API all
// live under it.
func (s *Server) URL() string { return s.url }

// Client returns an HTTP client that trusts the server's certificate.
func (s *Server) Client() *http.Client { return s.ts.Client() }

// CertPool returns a pool holding the server's certificate, or nil for PlainHTTP.
func (s *Server) CertPool() *x509.CertPool {
	cert := s.ts.Certificate()
	if cert == nil {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// WriteCACert writes the server's certificate as PEM to path, so that other processes can
// trust it (SSL_CERT_FILE).
func (s *Server) WriteCACert(path string) error {
	cert := s.ts.Certificate()
	if cert == nil {
		return errors.New("emulator: no certificate: the server speaks plain HTTP")
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("emulator: %w", err)
	}
	return nil
}

// Close stops the server. Delayed answers and hanging token requests are cut off.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.ts.Close()
	})
}

// Script sets the script of the operations on invoiceName (for downloadDocuments: the
// invoiceName of the first document). It takes effect at the next ARM call for that invoice,
// from its first reply, also for operations already running. No replies removes the script,
// leaving the invoice to the default one.
func (s *Server) Script(invoiceName string, replies ...Reply) {
	replies = cloneReplies(replies)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(replies) == 0 {
		delete(s.st.scripts, invoiceName)
	} else {
		s.st.scripts[invoiceName] = replies
	}
	for k := range s.st.tracks {
		if k.invoice == invoiceName || strings.HasPrefix(k.invoice, invoiceName+"/") {
			delete(s.st.tracks, k)
		}
	}
}

// SetDefault sets the script of invoices without one of their own, from the next ARM call on.
// No replies restores Options.Default.
func (s *Server) SetDefault(replies ...Reply) {
	if len(replies) == 0 {
		replies = s.opts.Default
	}
	replies = cloneReplies(replies)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.def = replies
	for k, t := range s.st.tracks {
		if !t.own {
			delete(s.st.tracks, k)
		}
	}
}

// Calls returns a copy of the log of ARM calls, in the order they were answered.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call{}, s.st.calls...)
}

// CallsFor returns the logged ARM calls for invoiceName.
func (s *Server) CallsFor(invoiceName string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	calls := []Call{}
	for _, c := range s.st.calls {
		if c.InvoiceName == invoiceName {
			calls = append(calls, c)
		}
	}
	return calls
}

// TokenRequests returns a copy of the log of token requests.
func (s *Server) TokenRequests() []TokenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]TokenRequest{}, s.st.tokenReqs...)
}

// SetTokenFailure sets how the token endpoint answers from now on.
func (s *Server) SetTokenFailure(f TokenFailure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.tokenFailure = f
}

// Reset forgets the logs of calls and token requests, the scripts, the default script set by
// SetDefault, the running operations and the download URLs handed out, ends a token
// failure, and fills the budget's buckets. Issued tokens stay valid.
func (s *Server) Reset() {
	s.mu.Lock()
	s.st = newState(s.opts.Default)
	s.mu.Unlock()
	s.budget.mu.Lock()
	s.budget.buckets = map[bucketKey]*bucket{} // full again; the budget stays
	s.budget.start = time.Time{}               // its steps start again at the next call
	s.budget.mu.Unlock()
}

// now is the emulator's clock: the wall clock, moved forward in tests of expiry.
func (s *Server) now() time.Time {
	return time.Now().Add(time.Duration(s.clockSkew.Load()))
}

func (s *Server) scheme() string {
	if s.opts.PlainHTTP {
		return "http"
	}
	return "https"
}

// base is the scheme://host[:port] the client addressed, for the absolute URLs of answers.
func (s *Server) base(r *http.Request) string { return s.scheme() + "://" + r.Host }

// wait sleeps for d unless the request is abandoned or the server closes; it reports whether
// the full time passed.
func (s *Server) wait(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
	case <-s.closing:
	}
	return false
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

// handler routes the emulator's endpoints; everything else is taken for ARM.
func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", s.serveOpenIDConfig)
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", s.serveToken)
	mux.HandleFunc("GET "+blobPrefix+"{id}/{file}", s.serveBlob)
	s.controlRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, controlPrefix) {
			http.Error(w, "emulator: no such control endpoint (or wrong method)", http.StatusNotFound)
			return
		}
		s.serveARM(w, r)
	})
	return mux
}

// selfSignedCert makes a CA-style self-signed certificate (so it can be trusted on its own)
// for localhost, the loopback addresses, host (when given and not unspecified) and this
// machine's host name.
func selfSignedCert(host string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("emulator: certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("emulator: certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Azure Billing emulator"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	names := []string{host}
	if h, err := os.Hostname(); err == nil {
		names = append(names, h)
	}
	for _, name := range names {
		switch ip := net.ParseIP(name); {
		case ip == nil && name != "" && !slices.Contains(tmpl.DNSNames, name):
			tmpl.DNSNames = append(tmpl.DNSNames, name)
		case ip != nil && !ip.IsUnspecified() && !slices.ContainsFunc(tmpl.IPAddresses, ip.Equal):
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("emulator: certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
