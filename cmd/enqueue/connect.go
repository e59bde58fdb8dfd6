package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/spf13/pflag"

	"github.com/azbilling/worker/pkg/client"
)

// connFlags are the NATS connection options, named as the nats CLI names
// them.
type connFlags struct {
	server, natsURL        string // --server/-s; --nats-url, the old name
	context                string
	creds, nkey            string
	tlsCA, tlsCert, tlsKey string
	user, password, token  string // from a context only
}

func (f *connFlags) bind(fs *pflag.FlagSet) {
	fs.StringVarP(&f.server, "server", "s", "", "NATS server URL(s), comma separated (env NATS_URL, BILLING_NATS_URL; default "+nats.DefaultURL+")")
	fs.StringVar(&f.natsURL, "nats-url", "", "the old name of --server")
	_ = fs.MarkHidden("nats-url")
	fs.StringVar(&f.context, "context", "", "nats CLI context to connect with (env NATS_CONTEXT): ~/.config/nats/context/NAME.json")
	fs.StringVar(&f.creds, "creds", "", "NATS user credentials file (env NATS_CREDS, BILLING_NATS_CREDS)")
	fs.StringVar(&f.nkey, "nkey", "", "NATS user NKey seed file (env NATS_NKEY)")
	fs.StringVar(&f.tlsCA, "tlsca", "", "CA certificate(s) to trust for the server's TLS certificate (env NATS_CA)")
	fs.StringVar(&f.tlsCert, "tlscert", "", "TLS client certificate (env NATS_CERT)")
	fs.StringVar(&f.tlsKey, "tlskey", "", "TLS client key (env NATS_KEY)")
}

// natsContext is a nats CLI context file, the fields enqueue uses.
type natsContext struct {
	URL      string `json:"url"`
	User     string `json:"user"`
	Password string `json:"password"`
	Token    string `json:"token"`
	Creds    string `json:"creds"`
	NKey     string `json:"nkey"`
	Cert     string `json:"cert"`
	Key      string `json:"key"`
	CA       string `json:"ca"`
}

// contextPath is where the nats CLI keeps the context named name.
func contextPath(getenv func(string) string, name string) (string, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return "", usagef("--context %q: not a context name", name)
	}
	dir := getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home := getenv("HOME")
		if home == "" {
			var err error
			if home, err = os.UserHomeDir(); err != nil {
				return "", fmt.Errorf("--context %s: %w", name, err)
			}
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "nats", "context", name+".json"), nil
}

func loadContext(getenv func(string) string, name string) (natsContext, error) {
	var c natsContext
	p, err := contextPath(getenv, name)
	if err != nil {
		return c, err
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return c, usagef("--context %s: no such nats context (%s)", name, p)
	} else if err != nil {
		return c, fmt.Errorf("--context %s: %w", name, err)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("--context %s: %s: %w", name, p, err)
	}
	return c, nil
}

// settings resolves the connection settings: a flag, else its environment
// variable, else the context's field, else the default.
func (a *app) settings() (connFlags, error) {
	f := a.conn
	first := func(vs ...string) string {
		for _, v := range vs {
			if v != "" {
				return v
			}
		}
		return ""
	}
	name := first(f.context, a.getenv("NATS_CONTEXT"))
	var ctx natsContext
	if name != "" {
		var err error
		if ctx, err = loadContext(a.getenv, name); err != nil {
			return f, err
		}
	}
	f.context = name
	f.server = first(f.server, f.natsURL, a.getenv("NATS_URL"), a.getenv("BILLING_NATS_URL"), ctx.URL, nats.DefaultURL)
	f.creds = first(f.creds, a.getenv("NATS_CREDS"), a.getenv("BILLING_NATS_CREDS"), ctx.Creds)
	f.nkey = first(f.nkey, a.getenv("NATS_NKEY"), ctx.NKey)
	f.tlsCA = first(f.tlsCA, a.getenv("NATS_CA"), ctx.CA)
	f.tlsCert = first(f.tlsCert, a.getenv("NATS_CERT"), ctx.Cert)
	f.tlsKey = first(f.tlsKey, a.getenv("NATS_KEY"), ctx.Key)
	f.user, f.password, f.token = ctx.User, ctx.Password, ctx.Token
	return f, nil
}

// natsOptions returns the connection options for the settings; a TLS file
// that cannot be used is an error here, before any connection is tried.
func natsOptions(f connFlags) ([]nats.Option, error) {
	opts := []nats.Option{nats.Name("enqueue")}
	if f.creds != "" {
		opts = append(opts, nats.UserCredentials(f.creds))
	}
	if f.nkey != "" {
		o, err := nats.NkeyOptionFromSeed(f.nkey)
		if err != nil {
			return nil, fmt.Errorf("--nkey %s: %w", f.nkey, err)
		}
		opts = append(opts, o)
	}
	if f.user != "" {
		opts = append(opts, nats.UserInfo(f.user, f.password))
	}
	if f.token != "" {
		opts = append(opts, nats.Token(f.token))
	}
	tc, err := tlsConfig(f)
	if err != nil {
		return nil, err
	}
	if tc != nil {
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}

// tlsConfig returns the TLS configuration for --tlsca, --tlscert and
// --tlskey, or nil when none is given.
func tlsConfig(f connFlags) (*tls.Config, error) {
	if f.tlsCA == "" && f.tlsCert == "" && f.tlsKey == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.tlsCA != "" {
		pem, err := os.ReadFile(f.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("--tlsca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tlsca %s: no PEM certificate in the file", f.tlsCA)
		}
		tc.RootCAs = pool
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, usagef("--tlscert and --tlskey go together")
	}
	if f.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("--tlscert %s, --tlskey %s: %w", f.tlsCert, f.tlsKey, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func (a *app) connect() (*nats.Conn, *client.Client, error) {
	f, err := a.settings()
	if err != nil {
		return nil, nil, err
	}
	opts, err := natsOptions(f)
	if err != nil {
		return nil, nil, err
	}
	nc, err := nats.Connect(f.server, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", redact(f.server), err)
	}
	c, err := client.New(nc, a.prefix)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, c, nil
}

// redact drops the user information from server URLs for messages.
func redact(servers string) string {
	parts := strings.Split(servers, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if s := strings.Index(p, "://"); s >= 0 && s < at {
				parts[i] = p[:s+3] + "[redacted]" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}
