package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/azbilling/worker/internal/archive"
	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/pkg/messages"
)

// This file is the runner's side of the archive: the store set up with the
// streams, the download carried out with its claim renewed, and the
// archive metric. The decisions are in package operation (Archived).

// The archive stores (ArchiveOptions.Store).
const (
	ArchiveNone      = "none"
	ArchiveNATS      = messages.StoreNATS
	ArchiveAzureBlob = messages.StoreAzureBlob
)

// Defaults of ArchiveOptions.
const (
	DefaultArchiveMaxAttempts = 5
	DefaultArchiveMaxRelinks  = 2
)

// ArchiveOptions configure the archive of documents. The zero value
// archives nothing.
type ArchiveOptions struct {
	// Store is ArchiveNone (or empty), ArchiveNATS or ArchiveAzureBlob.
	Store string
	// Bucket is the Object Store bucket (default: the layout's
	// ArchiveBucket) or the Blob Storage container (required).
	Bucket string
	// Blob is the Azure Blob Storage store, when Store is
	// ArchiveAzureBlob (the caller builds it: it needs a credential).
	Blob archive.Store
	// OnRequestOnly archives only the requests that ask (archive: true);
	// by default every request that does not opt out is archived.
	OnRequestOnly bool
	// MaxAttempts failed downloads end an archive with download_failed;
	// defaults to DefaultArchiveMaxAttempts.
	MaxAttempts int
	// MaxRelinks new links asked of Azure after expired ones; defaults to
	// DefaultArchiveMaxRelinks.
	MaxRelinks int
	// IdleTimeout cuts a download that yields nothing this long; defaults
	// to HTTPTimeout.
	IdleTimeout time.Duration
}

func (a ArchiveOptions) enabled() bool { return a.Store != "" && a.Store != ArchiveNone }

func (a ArchiveOptions) validate() error {
	switch a.Store {
	case "", ArchiveNone, ArchiveNATS, ArchiveAzureBlob:
	default:
		return fmt.Errorf("archive-store must be none, nats or azblob, not %q", a.Store)
	}
	if a.MaxAttempts < 0 || a.MaxRelinks < 0 || a.IdleTimeout < 0 {
		return errors.New("archive-max-attempts, archive-max-relinks and archive-idle-timeout must not be negative")
	}
	return nil
}

// archivePolicy is the machine's view of the options (after defaults).
func (a ArchiveOptions) policy() operation.ArchivePolicy {
	return operation.ArchivePolicy{
		Store: a.enabled(), Default: !a.OnRequestOnly,
		MaxAttempts: max(a.MaxAttempts, 1), MaxRelinks: a.MaxRelinks,
	}
}

func (a ArchiveOptions) withDefaults(httpTimeout time.Duration) ArchiveOptions {
	if a.MaxAttempts == 0 {
		a.MaxAttempts = DefaultArchiveMaxAttempts
	}
	if a.MaxRelinks == 0 {
		a.MaxRelinks = DefaultArchiveMaxRelinks
	}
	if a.IdleTimeout == 0 {
		a.IdleTimeout = httpTimeout
	}
	return a
}

// WithDownloader makes the worker download documents with d (default: a
// client trusting the system's CAs). Tests and dev mode pass one that
// trusts the emulator.
func WithDownloader(d archive.Doer) Option { return func(w *Worker) { w.download = d } }

// ensureArchive sets up the archive store: the Object Store bucket, with
// the streams' replicas, for ArchiveNATS.
func (w *Worker) ensureArchive(ctx context.Context) error {
	a := w.cfg.Archive
	var store archive.Store
	switch a.Store {
	case ArchiveNATS:
		bucket := a.Bucket
		if bucket == "" {
			bucket = w.subj.ArchiveBucket()
		}
		obs, err := w.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      bucket,
			Description: "Archived billing documents, named by kind, scope, invoice and file",
			Storage:     jetstream.FileStorage,
			Replicas:    w.cfg.Replicas,
		})
		if err != nil {
			return fmt.Errorf("object store %s: %w", bucket, err)
		}
		store = archive.NewObjectStore(w.js, obs, bucket)
	case ArchiveAzureBlob:
		if a.Blob == nil {
			return errors.New("archive store azblob: no Blob Storage store was given (ArchiveOptions.Blob)")
		}
		store = a.Blob
	default:
		return nil
	}
	w.archiver = &archive.Archiver{Store: store, HTTP: w.download, IdleTimeout: a.IdleTimeout}
	return nil
}

// Archive returns the worker's archive store (nil when it has none, or
// before Run set it up).
func (w *Worker) Archive() archive.Store {
	if w.archiver == nil {
		return nil
	}
	return w.archiver.Store
}

// archive downloads the document of st (stored claimed for it at revision
// rev) into the archive, renewing the claim (and the message's ack
// deadline) while it lasts, and returns the machine's step for the outcome
// with the revision it is to be stored over. When the shutdown cut the
// download off, or the claim was lost, the step hands the message back:
// the operation is archived again once the claim expires.
func (w *Worker) archive(ctx context.Context, msg jetstream.Msg, st operation.State, rev uint64, log *slog.Logger) (operation.Step, uint64) {
	// No store, the deadline, an expired link: no download (the machine
	// says).
	if step, skip := w.machine.SkipArchive(st, w.archiver != nil, w.now()); skip {
		return step, rev
	}
	ctx, span := w.tracer.Start(ctx, "archive "+string(st.Request.Kind), trace.WithAttributes(
		attrRequestID.String(st.Request.ID), attribute.String("billing.archive.store", w.archiver.Store.Kind()),
		attribute.String("billing.archive.bucket", w.archiver.Store.Bucket()),
		attribute.String("billing.archive.name", messages.ObjectName(st.Request, archiveLink(st.Archiving.Event))),
	))
	defer span.End()
	dl, cancel := context.WithDeadline(ctx, st.Deadline)
	defer cancel()

	// The claim lasts ClaimDuration; renew it at a third of that while the
	// download runs. cur, rev and lost are the heartbeat's until it ends.
	var (
		cur  = st
		lost error
	)
	stop := make(chan struct{})
	beats := make(chan struct{})
	go func() {
		defer close(beats)
		t := time.NewTicker(w.cfg.ClaimDuration() / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			next := w.machine.Reclaim(cur, w.now()).Next
			r, _, err := w.put(dl, next, rev)
			if err == nil {
				cur, rev = *next, r
				_ = w.settle(msg, operation.Step{Action: operation.KeepAlive})
			} else if errors.Is(err, errConflict) {
				lost = err
				cancel()
			}
		}
	}()
	start := w.now()
	var (
		obj   *messages.Archive
		files []*messages.Archive
		err   error
	)
	if ev := st.Archiving.Event; ev.URL == "" && len(ev.Files) > 1 {
		obj, files, err = w.archiver.ArchiveFiles(dl, st.Request, ev.Manifest, ev.Files)
	} else {
		obj, err = w.archiver.Archive(dl, st.Request, ev.URL)
	}
	close(stop)
	<-beats
	if lost != nil || err != nil && ctx.Err() != nil {
		log.WarnContext(ctx, "archive cut off; it is taken over once the claim expires", "lost_claim", lost != nil)
		return w.machine.Interrupted(), rev
	}
	a := operation.ArchiveAnswer{Outcome: operation.Archived, Object: obj, Files: files}
	if err != nil {
		_ = w.m.refusedWrite(ctx, writeArchive, err)
		a = answerOfArchive(err)
		span.SetStatus(codes.Error, a.Error)
		w.am.attempt(ctx, st.Request.Kind, string(a.Code))
		log.WarnContext(ctx, "archive attempt failed", "error", a.Error, "attempt", st.Archiving.Attempts+1)
	} else {
		span.SetAttributes(attribute.Int64("billing.archive.size", obj.Size))
		w.am.attempt(ctx, st.Request.Kind, "")
		var size int64
		for _, f := range files {
			size += f.Size
		}
		if files == nil {
			size = obj.Size
		}
		span.SetAttributes(attribute.Int("billing.archive.files", max(len(files), 1)))
		w.am.bytes.Add(ctx, size, metric.WithAttributes(kindAttr(st.Request.Kind)))
		log.InfoContext(ctx, "document archived", "store", obj.Store, "bucket", obj.Bucket, "name", obj.Name,
			"size", obj.Size, "sha256", obj.SHA256, "files", max(len(files), 1), "took", w.now().Sub(start).String())
	}
	return w.machine.Archived(cur, a, w.now()), rev
}

// archiveLink is the link an archive is named after: the document's, or
// for a report of several files its manifest.
func archiveLink(ev messages.Completed) string {
	if ev.URL == "" && len(ev.Files) > 1 {
		return messages.ManifestFile
	}
	return ev.URL
}

// answerOfArchive describes a failed archive for the machine.
func answerOfArchive(err error) operation.ArchiveAnswer {
	a := operation.ArchiveAnswer{Outcome: operation.ArchiveRetry, Code: messages.ArchiveDownloadFailed, Error: err.Error()}
	var ae *archive.Error
	if errors.As(err, &ae) {
		switch ae.Kind {
		case archive.Expired:
			a.Outcome, a.Code = operation.LinkExpired, messages.ArchiveLinkExpired
		case archive.Refused:
			a.Outcome = operation.ArchiveFailed
		case archive.StoreFailed:
			a.Outcome, a.Code = operation.ArchiveFailed, messages.ArchiveStoreFailed
		case archive.Conflict:
			a.Outcome, a.Code = operation.ArchiveFailed, messages.ArchiveConflict
		}
	}
	return a
}

// archiveInstruments are the archive's metrics.
type archiveInstruments struct {
	attempts metric.Int64Counter
	failures metric.Int64Counter
	bytes    metric.Int64Counter
}

func newArchiveInstruments(mp metric.MeterProvider) (*archiveInstruments, error) {
	m := mp.Meter(instrumentationName)
	var in archiveInstruments
	var err, e error
	in.attempts, e = m.Int64Counter("billing.archive.attempts", metric.WithDescription("Archive attempts (downloads into the archive store), by kind and error code (empty: stored)."), metric.WithUnit("{attempt}"))
	err = errors.Join(err, e)
	in.failures, e = m.Int64Counter("billing.archive.failures", metric.WithDescription("Completion events sent with an archive error instead of an archive, by kind and archive error code."), metric.WithUnit("{request}"))
	err = errors.Join(err, e)
	in.bytes, e = m.Int64Counter("billing.archive.bytes", metric.WithDescription("Bytes of documents stored in the archive, by kind."), metric.WithUnit("By"))
	return &in, errors.Join(err, e)
}

func (in *archiveInstruments) attempt(ctx context.Context, k messages.Kind, code string) {
	in.attempts.Add(ctx, 1, metric.WithAttributes(kindAttr(k), attrCode.String(code)))
}

// ended counts an operation that completed with an archive error.
func (in *archiveInstruments) ended(ctx context.Context, st *operation.State) {
	if c := st.Completed; c != nil && c.Archive != nil && c.Archive.Error != nil {
		in.failures.Add(ctx, 1, metric.WithAttributes(kindAttr(st.Request.Kind), attrCode.String(string(c.Archive.Error.Code))))
	}
}
