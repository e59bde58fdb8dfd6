// Package config is cmd/worker's configuration: every setting as a flag and
// a BILLING_* environment variable, their validation, and the wiring built
// from them (the NATS connection, TLS, credentials and Azure clients). The
// worker library itself takes worker.Options; the defaults of its settings
// are the worker package's.
package config

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/azbilling/worker/internal/throttle"
	"github.com/azbilling/worker/internal/worker"
	"github.com/azbilling/worker/pkg/messages"
	"github.com/azbilling/worker/pkg/poll"
)

// Config holds every setting of cmd/worker. Every field is a setting with a
// flag and an environment variable (Settings lists them, with defaults).
type Config struct {
	// NATS connection.
	NATSURL       string // nats://127.0.0.1:4222
	NATSCredsFile string // none: a .creds file (JWT + NKey seed)
	NATSCAFile    string // none: CA bundle to verify the NATS server
	NATSCertFile  string // none: client certificate for mutual TLS
	NATSKeyFile   string // none: its key
	NATSName      string // billing-worker: connection name shown by the server

	// JetStream layout.
	Prefix             string        // billing: first token of every subject, and of stream/bucket names
	Replicas           int           // 1: replicas of every stream and the bucket (3 in a cluster)
	AckWait            time.Duration // 60s: redelivery delay of an unacknowledged message
	MaxAckPending      int           // 1000: per consumer, messages handed out but not acknowledged
	MaxDeliver         int           // 10: deliveries before a message that keeps failing is dead-lettered
	DuplicateWindow    time.Duration // 2m: Nats-Msg-Id de-duplication window of the work stream
	EventsMaxAge       time.Duration // 168h: how long events are kept
	StateTTL           time.Duration // 168h: how long an operation's state is kept after its last change
	DeadLetterMaxBytes int64         // 1073741824: size bound of the dead-letter stream; the oldest make room

	// Requests and operations.
	Concurrency     int           // 64: messages handled at once by one worker
	MaxRequestBytes int           // 65536: largest request message (headers included) the work stream takes
	DefaultDeadline time.Duration // 1h: operation deadline when the request sets none
	MaxDeadline     time.Duration // 24h: a request's deadline is capped at acceptance + this
	HTTPTimeout     time.Duration // 30s: bound of one Azure call, token included
	MaxBadAnswers   int           // 3: malformed success answers in a row before bad_response
	MaxUnanswered   int           // 3: first calls sent without an answer before interrupted
	DrainTimeout    time.Duration // 45s: on shutdown, how long in-flight work may take
	WakeOverdue     time.Duration // 30s: a wake-up not fired this long after it fell due is scheduled again
	PollLead        time.Duration // 300ms: a wake-up is scheduled this long before its poll is due
	PollHoldMax     time.Duration // 1s: a wake-up early by at most this much is held in the worker until due
	// Collections.
	MaxDocuments     int           // 10000: documents of one collection; more fails with too_many before any download
	CollectionWindow int           // 16: a collection's children in flight at once
	EstateWindow     int           // 4: an estate's collections in flight at once
	CoverageGrace    time.Duration // 120h: after a month ends, when its coverage should be complete
	// 64: every collection's children in flight at once, all replicas
	CollectionsInFlight int
	// Recurring schedules.
	ScheduleCatchUp int // 13: missed fires of a schedule that one fire also starts

	// Polling policy (package poll).
	PollMinWait     time.Duration // 1s: floor of every wait, Retry-After: 0 included
	PollMaxWait     time.Duration // 15m: ceiling of a Retry-After
	PollDefaultWait time.Duration // 15s: wait after a 202 without Retry-After
	BackoffInitial  time.Duration // 1s: first backoff after a throttle or error without hint
	BackoffMax      time.Duration // 2m: backoff cap

	// Shared throttle (package throttle).
	Throttle                    bool          // true: one pause and token bucket per scope for every replica
	ThrottleBillingWrites       throttle.Rate // 10/1s: rate of the billing.writes scopes
	ThrottleBillingWritesBurst  int           // 200: burst of the billing.writes scopes
	ThrottleBillingReads        throttle.Rate // 25/1s: rate of the billing.reads scopes
	ThrottleBillingReadsBurst   int           // 250: burst of the billing.reads scopes
	ThrottleCostManagement      throttle.Rate // 60/1m: rate of the costmanagement.requests scopes
	ThrottleCostManagementBurst int           // 12: burst of the costmanagement.requests scopes

	// Azure.
	AzureCloud               string // public: public, china, usgov or custom
	ARMEndpoint              string // the cloud's: ARM endpoint override (Azure Stack, private link, emulator)
	ARMAudience              string // the cloud's: token audience override
	AuthorityHost            string // the cloud's: Entra ID authority override
	AzureCredential          string // default: credential type of the default profile
	AzureTenantID            string // none (azidentity reads AZURE_TENANT_ID)
	AzureClientID            string // none (azidentity reads AZURE_CLIENT_ID)
	AzureClientSecretFile    string // none: file holding the client secret
	AzureCertificateFile     string // none: PEM or PKCS#12 client certificate
	AzureFederatedTokenFile  string // none (azidentity reads AZURE_FEDERATED_TOKEN_FILE)
	AzureProfilesFile        string // none: JSON file of named credential profiles; replaces the single profile above
	AllowHTTP                bool   // false: allow a plain-http ARM endpoint (a local emulator only)
	DisableInstanceDiscovery bool   // false: skip Entra ID instance discovery (Azure Stack, private clouds, emulator)

	// Archive.
	ArchiveStore       string // nats: none, nats or azblob
	ArchiveBucket      string // none: the Object Store bucket (<prefix>_archive) or the Blob Storage container
	ArchiveDefault     bool   // true: archive every request that does not opt out; false: only those that ask
	ArchiveMaxAttempts int    // 5: failed downloads before download_failed
	ArchiveMaxRelinks  int    // 2: new links asked of Azure after expired ones
	ArchiveAccountURL  string // none: Blob service URL, with the default profile's credential (azblob)
	ArchiveConnFile    string // none: file holding a Blob Storage connection string (azblob; Azurite)

	// Process.
	HealthAddr string // :8080: liveness/readiness/metrics listener; empty disables it
	LogLevel   string // info: debug, info, warn or error
}

// Setting describes one configuration setting.
type Setting struct {
	Flag, Env, Default, Usage string
	value                     func(*Config) flag.Value
	text                      bool // a text setting, which an empty value empties
}

// Settings lists every setting of Config, in documentation order.
var Settings = []Setting{
	str("nats-url", "nats://127.0.0.1:4222", "NATS server URL(s), comma-separated", func(c *Config) *string { return &c.NATSURL }),
	str("nats-creds", "", "NATS credentials file (JWT and NKey seed)", func(c *Config) *string { return &c.NATSCredsFile }),
	str("nats-ca", "", "CA bundle that verifies the NATS server's TLS certificate", func(c *Config) *string { return &c.NATSCAFile }),
	str("nats-cert", "", "client certificate for NATS mutual TLS", func(c *Config) *string { return &c.NATSCertFile }),
	str("nats-key", "", "key of the NATS client certificate", func(c *Config) *string { return &c.NATSKeyFile }),
	str("nats-name", "billing-worker", "connection name the NATS server shows", func(c *Config) *string { return &c.NATSName }),
	str("prefix", messages.DefaultPrefix, "first token of every subject and of stream and bucket names", func(c *Config) *string { return &c.Prefix }),
	integer("replicas", worker.DefaultReplicas, "replicas of the streams and the state bucket (3 on a NATS cluster)", func(c *Config) *int { return &c.Replicas }),
	dur("ack-wait", worker.DefaultAckWait, "redelivery delay of an unacknowledged message; must exceed http-timeout plus up to 10s (a claim)", func(c *Config) *time.Duration { return &c.AckWait }),
	integer("max-ack-pending", worker.DefaultMaxAckPending, "per consumer, messages handed out and not yet acknowledged", func(c *Config) *int { return &c.MaxAckPending }),
	integer("max-deliver", worker.DefaultMaxDeliver, "deliveries of a message that keeps failing before it is dead-lettered", func(c *Config) *int { return &c.MaxDeliver }),
	dur("duplicate-window", worker.DefaultDuplicateWindow, "Nats-Msg-Id de-duplication window of the work and events streams", func(c *Config) *time.Duration { return &c.DuplicateWindow }),
	dur("events-max-age", worker.DefaultEventsMaxAge, "how long events are kept in the events stream", func(c *Config) *time.Duration { return &c.EventsMaxAge }),
	bytesize("deadletter-max-bytes", worker.DefaultDeadLetterMaxBytes, "size bound of the dead-letter stream; when full, the oldest dead letters make room", func(c *Config) *int64 { return &c.DeadLetterMaxBytes }),
	dur("state-ttl", worker.DefaultStateTTL, "how long an operation's state is kept after its last change", func(c *Config) *time.Duration { return &c.StateTTL }),
	integer("concurrency", worker.DefaultConcurrency, "messages one worker handles at once", func(c *Config) *int { return &c.Concurrency }),
	integer("max-request-bytes", worker.DefaultMaxRequestBytes, "largest request message, headers included: the work stream refuses larger ones at publish time (1024 to 1048576)", func(c *Config) *int { return &c.MaxRequestBytes }),
	dur("default-deadline", worker.DefaultOperationDeadline, "deadline of an operation whose request sets none", func(c *Config) *time.Duration { return &c.DefaultDeadline }),
	dur("max-deadline", worker.DefaultMaxDeadline, "a request's deadline is capped at acceptance plus this", func(c *Config) *time.Duration { return &c.MaxDeadline }),
	dur("http-timeout", worker.DefaultHTTPTimeout, "bound of one Azure call, getting the token included", func(c *Config) *time.Duration { return &c.HTTPTimeout }),
	integer("max-bad-answers", worker.DefaultMaxBadAnswers, "malformed success answers in a row before failing with bad_response", func(c *Config) *int { return &c.MaxBadAnswers }),
	integer("max-unanswered-calls", worker.DefaultMaxUnanswered, "first calls (the POST that starts an operation) sent without getting an answer (timeout, reset, worker stopped) before failing with interrupted", func(c *Config) *int { return &c.MaxUnanswered }),
	dur("drain-timeout", worker.DefaultDrainTimeout, "on shutdown, how long in-flight work may still take", func(c *Config) *time.Duration { return &c.DrainTimeout }),
	dur("wake-overdue-after", worker.DefaultWakeOverdue, "a wake-up the NATS server has not fired this long after it fell due is scheduled again (bounds every wait and deadline)", func(c *Config) *time.Duration { return &c.WakeOverdue }),
	dur("poll-lead", worker.DefaultPollLead, "a wake-up is scheduled this long before its poll is due, to absorb the NATS server's scheduler, and held in the worker the rest of the way (at most poll-hold-max)", func(c *Config) *time.Duration { return &c.PollLead }),
	dur("poll-hold-max", worker.DefaultPollHoldMax, "a wake-up that arrives at most this long before its poll is due is held in the worker until due; an earlier one goes back to waiting (poll-lead to 10s)", func(c *Config) *time.Duration { return &c.PollHoldMax }),
	integer("max-documents", worker.DefaultMaxDocuments, "documents of one collection: one that lists more fails with too_many before any download (1 to 100000)", func(c *Config) *int { return &c.MaxDocuments }),
	integer("schedule-catch-up", worker.DefaultScheduleCatchUp, "missed fires of a recurring schedule that its next fire also starts, the latest first (1 to 1000; the server fires once after downtime)", func(c *Config) *int { return &c.ScheduleCatchUp }),
	integer("collection-window", worker.DefaultCollectionWindow, "a collection's children (downloads) in flight at once; the next is requested when one ends", func(c *Config) *int { return &c.CollectionWindow }),
	dur("coverage-grace", worker.DefaultCoverageGrace, "how long after a month ends every known scope's documents of it should be archived: the coverage metric counts the scope-months not complete by then (at most 672h)", func(c *Config) *time.Duration { return &c.CoverageGrace }),
	integer("estate-window", worker.DefaultEstateWindow, "an estate's collections (one per billing account or subscription) in flight at once; the next starts when one ends", func(c *Config) *int { return &c.EstateWindow }),
	integer("collections-in-flight", worker.DefaultCollectionsInFlight, "the children in flight of all collections together, across replicas (1 to 100000): the global window, handed out fewest-held first; single requests never wait for it", func(c *Config) *int { return &c.CollectionsInFlight }),
	dur("poll-min-wait", poll.DefaultPolicy().MinWait, "floor of every wait between calls (Retry-After: 0 included)", func(c *Config) *time.Duration { return &c.PollMinWait }),
	dur("poll-max-wait", poll.DefaultPolicy().MaxWait, "ceiling of a Retry-After", func(c *Config) *time.Duration { return &c.PollMaxWait }),
	dur("poll-default-wait", poll.DefaultPolicy().DefaultPollWait, "wait after a 202 that carries no Retry-After", func(c *Config) *time.Duration { return &c.PollDefaultWait }),
	dur("backoff-initial", poll.DefaultPolicy().InitialBackoff, "first backoff after a throttle or an error without a hint", func(c *Config) *time.Duration { return &c.BackoffInitial }),
	dur("backoff-max", poll.DefaultPolicy().MaxBackoff, "cap of the backoff", func(c *Config) *time.Duration { return &c.BackoffMax }),
	boolean("throttle", true, "share one throttle per scope (credential profile and class of call) between all replicas: pauses on 429/503 and a token bucket; false: each operation backs off alone", func(c *Config) *bool { return &c.Throttle }),
	rate("throttle-billing-writes", defaultLimit(throttle.BillingWrites).Rate, "rate of the billing.writes scopes (the POST that starts a download), calls/period, for all replicas together", func(c *Config) *throttle.Rate { return &c.ThrottleBillingWrites }),
	integer("throttle-billing-writes-burst", defaultLimit(throttle.BillingWrites).Burst, "burst of the billing.writes scopes", func(c *Config) *int { return &c.ThrottleBillingWritesBurst }),
	rate("throttle-billing-reads", defaultLimit(throttle.BillingReads).Rate, "rate of the billing.reads scopes (GET of an invoice or of a Location), calls/period, for all replicas together", func(c *Config) *throttle.Rate { return &c.ThrottleBillingReads }),
	integer("throttle-billing-reads-burst", defaultLimit(throttle.BillingReads).Burst, "burst of the billing.reads scopes", func(c *Config) *int { return &c.ThrottleBillingReadsBurst }),
	rate("throttle-costmanagement", defaultLimit(throttle.CostManagement).Rate, "rate of the costmanagement.requests scopes (every price sheet call), calls/period, for all replicas together", func(c *Config) *throttle.Rate { return &c.ThrottleCostManagement }),
	integer("throttle-costmanagement-burst", defaultLimit(throttle.CostManagement).Burst, "burst of the costmanagement.requests scopes", func(c *Config) *int { return &c.ThrottleCostManagementBurst }),
	str("azure-cloud", "public", "Azure cloud: public, china, usgov or custom", func(c *Config) *string { return &c.AzureCloud }),
	str("arm-endpoint", "", "ARM endpoint, overriding the cloud's", func(c *Config) *string { return &c.ARMEndpoint }),
	str("arm-audience", "", "token audience, overriding the cloud's", func(c *Config) *string { return &c.ARMAudience }),
	str("authority-host", "", "Entra ID authority host, overriding the cloud's", func(c *Config) *string { return &c.AuthorityHost }),
	str("azure-credential", "default", "credential type: default, workload-identity, managed-identity, client-secret, client-certificate, azure-cli", func(c *Config) *string { return &c.AzureCredential }),
	str("azure-tenant-id", "", "tenant id for client-secret, client-certificate, workload-identity, azure-cli and default (else azidentity reads AZURE_TENANT_ID)", func(c *Config) *string { return &c.AzureTenantID }),
	str("azure-client-id", "", "client id for client-secret, client-certificate, workload-identity and managed-identity (a user-assigned identity; else azidentity reads AZURE_CLIENT_ID)", func(c *Config) *string { return &c.AzureClientID }),
	str("azure-client-secret-file", "", "file holding the client secret (client-secret)", func(c *Config) *string { return &c.AzureClientSecretFile }),
	str("azure-certificate-file", "", "PEM or PKCS#12 client certificate with its key (client-certificate)", func(c *Config) *string { return &c.AzureCertificateFile }),
	str("azure-federated-token-file", "", "federated token file (else AZURE_FEDERATED_TOKEN_FILE)", func(c *Config) *string { return &c.AzureFederatedTokenFile }),
	str("azure-profiles-file", "", "JSON file of named credential profiles (replaces the single profile above)", func(c *Config) *string { return &c.AzureProfilesFile }),
	boolean("allow-http", false, "allow a plain-http ARM endpoint: a local emulator only", func(c *Config) *bool { return &c.AllowHTTP }),
	boolean("disable-instance-discovery", false, "skip Entra ID instance discovery (Azure Stack, private clouds, emulator)", func(c *Config) *bool { return &c.DisableInstanceDiscovery }),
	str("archive-store", worker.ArchiveNATS, "where documents are archived: none, nats (the NATS JetStream Object Store) or azblob (Azure Blob Storage)", func(c *Config) *string { return &c.ArchiveStore }),
	str("archive-bucket", "", "the Object Store bucket (default <prefix>_archive) or the Blob Storage container (required for azblob)", func(c *Config) *string { return &c.ArchiveBucket }),
	boolean("archive-default", true, "archive every request that does not opt out (archive: false); false: only requests that ask (archive: true)", func(c *Config) *bool { return &c.ArchiveDefault }),
	integer("archive-max-attempts", worker.DefaultArchiveMaxAttempts, "failed downloads (resets, timeouts, 5xx) before the completion event goes out with archive error download_failed", func(c *Config) *int { return &c.ArchiveMaxAttempts }),
	integer("archive-max-relinks", worker.DefaultArchiveMaxRelinks, "new links asked of Azure when a link expired before its download finished, before archive error link_expired", func(c *Config) *int { return &c.ArchiveMaxRelinks }),
	str("archive-account-url", "", "Blob service URL of the archive's storage account (azblob), reached with the default credential profile", func(c *Config) *string { return &c.ArchiveAccountURL }),
	str("archive-connection-string-file", "", "file holding a Blob Storage connection string (azblob), instead of archive-account-url: a local Azurite", func(c *Config) *string { return &c.ArchiveConnFile }),
	str("health-addr", ":8080", "listen address of /livez, /readyz and /metrics; empty disables", func(c *Config) *string { return &c.HealthAddr }),
	str("log-level", "info", "debug, info, warn or error", func(c *Config) *string { return &c.LogLevel }),
}

// EnvPrefix starts the environment variable of every setting.
const EnvPrefix = "BILLING_"

func envName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// DefaultConfig returns the configuration with every default.
func DefaultConfig() Config {
	var c Config
	for _, s := range Settings {
		if err := s.value(&c).Set(s.Default); err != nil {
			panic(fmt.Sprintf("default of %s: %v", s.Flag, err))
		}
	}
	return c
}

// Bind registers every setting on fs, with the environment's value (read
// through lookup, as os.LookupEnv) as the flag's default. A variable set
// but empty empties a text setting (BILLING_HEALTH_ADDR= disables the
// health listener) and leaves the others at their defaults. It returns
// every environment value that does not parse.
func (c *Config) Bind(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	var errs []error
	for _, s := range Settings {
		if err := s.bind(c, fs, lookup); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// bind registers s on fs, as Bind does.
func (s Setting) bind(c *Config, fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	var errs []error
	v := s.value(c)
	if err := v.Set(s.Default); err != nil {
		errs = append(errs, fmt.Errorf("default of -%s: %w", s.Flag, err))
	}
	if e, ok := lookup(s.Env); ok && (e != "" || s.text) {
		if err := v.Set(e); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", s.Env, e, err))
		}
	}
	fs.Var(v, s.Flag, fmt.Sprintf("%s (env %s)", s.Usage, s.Env))
	return errors.Join(errs...)
}

// Worker returns the worker's options the configuration describes.
func (c *Config) Worker() worker.Options {
	p := poll.DefaultPolicy()
	p.MinWait, p.MaxWait, p.DefaultPollWait = c.PollMinWait, c.PollMaxWait, c.PollDefaultWait
	p.InitialBackoff, p.MaxBackoff = c.BackoffInitial, c.BackoffMax
	return worker.Options{
		Prefix: c.Prefix, Replicas: c.Replicas, AckWait: c.AckWait, MaxAckPending: c.MaxAckPending,
		MaxDeliver: c.MaxDeliver, DuplicateWindow: c.DuplicateWindow, EventsMaxAge: c.EventsMaxAge,
		StateTTL: c.StateTTL, DeadLetterMaxBytes: c.DeadLetterMaxBytes, Concurrency: c.Concurrency,
		MaxRequestBytes: c.MaxRequestBytes, DefaultDeadline: c.DefaultDeadline, MaxDeadline: c.MaxDeadline,
		HTTPTimeout: c.HTTPTimeout, MaxBadAnswers: c.MaxBadAnswers, MaxUnanswered: c.MaxUnanswered,
		DrainTimeout: c.DrainTimeout, WakeOverdue: c.WakeOverdue, Policy: p,
		MaxDocuments: c.MaxDocuments, CollectionWindow: c.CollectionWindow, EstateWindow: c.EstateWindow, ScheduleCatchUp: c.ScheduleCatchUp,
		CoverageGrace: c.CoverageGrace, CollectionsInFlight: c.CollectionsInFlight,
		PollLead: c.PollLead, PollHoldMax: c.PollHoldMax,
		Throttle: worker.ThrottleOptions{Shared: c.Throttle, Limits: map[throttle.Class]throttle.Limit{
			throttle.BillingWrites:  {Rate: c.ThrottleBillingWrites, Burst: c.ThrottleBillingWritesBurst},
			throttle.BillingReads:   {Rate: c.ThrottleBillingReads, Burst: c.ThrottleBillingReadsBurst},
			throttle.CostManagement: {Rate: c.ThrottleCostManagement, Burst: c.ThrottleCostManagementBurst},
		}},
		Archive: worker.ArchiveOptions{
			Store: c.ArchiveStore, Bucket: c.ArchiveBucket, OnRequestOnly: !c.ArchiveDefault,
			MaxAttempts: c.ArchiveMaxAttempts, MaxRelinks: c.ArchiveMaxRelinks,
		},
	}
}

// Validate returns every problem of the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.NATSURL == "" {
		errs = append(errs, errors.New("nats-url is required"))
	}
	if c.Prefix == "" {
		errs = append(errs, errors.New("prefix is required"))
	}
	// Zero means "the default" to the worker, never here: a setting is
	// given explicitly, and zero is a mistake.
	for _, z := range []struct {
		name string
		zero bool
	}{
		{"replicas", c.Replicas == 0}, {"concurrency", c.Concurrency == 0}, {"max-ack-pending", c.MaxAckPending == 0},
		{"max-deliver", c.MaxDeliver == 0}, {"max-bad-answers", c.MaxBadAnswers == 0}, {"max-unanswered-calls", c.MaxUnanswered == 0},
		{"max-documents", c.MaxDocuments == 0}, {"collection-window", c.CollectionWindow == 0}, {"estate-window", c.EstateWindow == 0},
		{"coverage-grace", c.CoverageGrace == 0}, {"collections-in-flight", c.CollectionsInFlight == 0},
		{"http-timeout", c.HTTPTimeout == 0}, {"ack-wait", c.AckWait == 0}, {"drain-timeout", c.DrainTimeout == 0}, {"wake-overdue-after", c.WakeOverdue == 0},
		{"poll-lead", c.PollLead == 0}, {"poll-hold-max", c.PollHoldMax == 0},
		{"default-deadline", c.DefaultDeadline == 0}, {"duplicate-window", c.DuplicateWindow == 0},
		{"max-deadline", c.MaxDeadline == 0}, {"state-ttl", c.StateTTL == 0}, {"events-max-age", c.EventsMaxAge == 0},
		{"deadletter-max-bytes", c.DeadLetterMaxBytes == 0}, {"max-request-bytes", c.MaxRequestBytes == 0},
		{"poll-max-wait", c.PollMaxWait == 0}, {"poll-default-wait", c.PollDefaultWait == 0},
		{"backoff-initial", c.BackoffInitial == 0}, {"backoff-max", c.BackoffMax == 0},
		{"throttle-billing-writes-burst", c.ThrottleBillingWritesBurst == 0}, {"throttle-billing-reads-burst", c.ThrottleBillingReadsBurst == 0},
		{"throttle-costmanagement-burst", c.ThrottleCostManagementBurst == 0},
		{"archive-max-attempts", c.ArchiveMaxAttempts == 0}, {"archive-max-relinks", c.ArchiveMaxRelinks == 0},
	} {
		if z.zero {
			errs = append(errs, fmt.Errorf("%s must not be zero", z.name))
		}
	}
	if err := c.Worker().Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// value adapts a typed field to flag.Value.
type value[T any] struct {
	p      *T
	parse  func(string) (T, error)
	format func(T) string
}

func (v value[T]) Set(s string) error {
	x, err := v.parse(s)
	if err != nil {
		return err
	}
	*v.p = x
	return nil
}

func (v value[T]) String() string {
	if v.p == nil {
		return ""
	}
	return v.format(*v.p)
}

func str(name, def, usage string, field func(*Config) *string) Setting {
	return Setting{Flag: name, Env: envName(name), Default: def, Usage: usage, text: true, value: func(c *Config) flag.Value {
		return value[string]{p: field(c), parse: func(s string) (string, error) { return s, nil }, format: func(s string) string { return s }}
	}}
}

func integer(name string, def int, usage string, field func(*Config) *int) Setting {
	return Setting{Flag: name, Env: envName(name), Default: strconv.Itoa(def), Usage: usage, value: func(c *Config) flag.Value {
		return value[int]{p: field(c), parse: strconv.Atoi, format: strconv.Itoa}
	}}
}

func bytesize(name string, def int64, usage string, field func(*Config) *int64) Setting {
	format := func(v int64) string { return strconv.FormatInt(v, 10) }
	return Setting{Flag: name, Env: envName(name), Default: format(def), Usage: usage, value: func(c *Config) flag.Value {
		return value[int64]{p: field(c), parse: func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }, format: format}
	}}
}

func boolean(name string, def bool, usage string, field func(*Config) *bool) Setting {
	return Setting{Flag: name, Env: envName(name), Default: strconv.FormatBool(def), Usage: usage, value: func(c *Config) flag.Value {
		return boolValue{value[bool]{p: field(c), parse: strconv.ParseBool, format: strconv.FormatBool}}
	}}
}

// boolValue lets "-allow-http" stand for "-allow-http=true".
type boolValue struct{ value[bool] }

func (boolValue) IsBoolFlag() bool { return true }

func dur(name string, def time.Duration, usage string, field func(*Config) *time.Duration) Setting {
	return Setting{Flag: name, Env: envName(name), Default: def.String(), Usage: usage, value: func(c *Config) flag.Value {
		return value[time.Duration]{p: field(c), parse: time.ParseDuration, format: time.Duration.String}
	}}
}

func rate(name string, def throttle.Rate, usage string, field func(*Config) *throttle.Rate) Setting {
	return Setting{Flag: name, Env: envName(name), Default: def.String(), Usage: usage, value: func(c *Config) flag.Value {
		return value[throttle.Rate]{p: field(c), parse: throttle.ParseRate, format: throttle.Rate.String}
	}}
}

func defaultLimit(c throttle.Class) throttle.Limit { return throttle.DefaultLimits()[c] }
