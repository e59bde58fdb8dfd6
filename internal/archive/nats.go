package archive

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/azbilling/worker/pkg/messages"
)

// ObjectStore keeps documents in a NATS JetStream Object Store bucket: each
// object is its chunks (messages) and a metadata message published only
// after the last chunk is stored, so a Put that fails (its chunks are
// purged) or whose process dies (its chunks stay, under no name) leaves no
// object visible.
//
// Put publishes the chunks itself, with at most putWindow of them
// unacknowledged, rather than through the client's ObjectStore.Put: that
// one keeps up to 4,000 chunks (500 MiB) in flight per put, and the server
// drops a stream's input past 128 MiB queued ("429 too many requests").
// Measured: ten 200 MiB puts at once from one worker on 2 cores failed so
// (BENCHMARKS.md, section 6). The objects are the client's own format: its
// Get, GetInfo, List and Delete read them.
type ObjectStore struct {
	obs    jetstream.ObjectStore
	pub    jetstream.JetStream
	bucket string
}

// putWindow chunks of objChunkSize may be unacknowledged per put: 2 MiB.
const (
	objChunkSize = 128 << 10
	putWindow    = 16
)

var _ Store = (*ObjectStore)(nil)

// NewObjectStore returns the store of obs, the bucket named bucket, of
// the JetStream js.
func NewObjectStore(js jetstream.JetStream, obs jetstream.ObjectStore, bucket string) *ObjectStore {
	// A chunk whose acknowledgement never comes (lost in a reconnect)
	// fails the put after putAckTimeout instead of holding it.
	pub, err := jetstream.New(js.Conn(), jetstream.WithPublishAsyncTimeout(putAckTimeout))
	if err != nil {
		pub = js
	}
	return &ObjectStore{obs: obs, pub: pub, bucket: bucket}
}

// putAckTimeout bounds the wait for one chunk's acknowledgement.
const putAckTimeout = 30 * time.Second

// Kind is messages.StoreNATS.
func (s *ObjectStore) Kind() string { return messages.StoreNATS }

// Bucket is the Object Store bucket's name.
func (s *ObjectStore) Bucket() string { return s.bucket }

// Put stores r under name unless the name is taken. The object store has no
// conditional put: the name is looked up first; the operation's claim keeps
// two workers from archiving one document at once.
func (s *ObjectStore) Put(ctx context.Context, name string, meta Meta, r io.Reader) (Object, error) {
	info, err := s.obs.GetInfo(ctx, name)
	switch {
	case err == nil:
		return sameContent(objectOf(info), r)
	case !errors.Is(err, jetstream.ErrObjectNotFound):
		return Object{}, fmt.Errorf("look up object %s: %w", name, err)
	}
	h := newHashing(r)
	info, err = s.put(ctx, jetstream.ObjectMeta{
		Name: name,
		Metadata: map[string]string{
			metaContentType: meta.ContentType, metaSource: meta.Source, metaRequestID: meta.RequestID,
		},
	}, h)
	if err != nil {
		// A failed put has purged its chunks; its metadata may still have
		// been stored (a publish whose acknowledgement was lost): the name
		// was free before, so whatever it shows now is this failed put's.
		if _, gerr := s.obs.GetInfo(ctx, name); gerr == nil {
			_ = s.obs.Delete(ctx, name)
		}
		return Object{}, fmt.Errorf("put object %s: %w", name, err)
	}
	// The server's time of the metadata, as GetInfo reports it later (the
	// client's Put sets its own clock's).
	if stored, err := s.obs.GetInfo(ctx, name); err == nil && stored.NUID == info.NUID {
		info = stored
	}
	obj := objectOf(info)
	if obj.SHA256 != h.sum() {
		// The store hashed other bytes than were read: cannot happen.
		return Object{}, fmt.Errorf("put object %s: %w", name, ErrDigestMismatch)
	}
	return obj, nil
}

// put writes an object as the client's ObjectStore.Put does (chunks on
// $O.<bucket>.C.<nuid>, then the metadata on $O.<bucket>.M.<name> with a
// subject rollup), with at most putWindow chunks unacknowledged. On
// failure the chunks sent are purged (when the credentials allow it; they
// are under no name either way).
func (s *ObjectStore) put(ctx context.Context, meta jetstream.ObjectMeta, r *hashing) (*jetstream.ObjectInfo, error) {
	meta.Opts = &jetstream.ObjectMetaOptions{ChunkSize: objChunkSize}
	id := nuid.Next()
	chunkSubj := "$O." + s.bucket + ".C." + id
	var (
		bufs    [putWindow][]byte
		pending []jetstream.PubAckFuture
		size    uint64
		chunks  uint32
	)
	wait := func(f jetstream.PubAckFuture) error {
		select {
		case <-f.Ok():
			return nil
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	fail := func(err error) (*jetstream.ObjectInfo, error) {
		// Let the chunks still in flight land (or fail) before purging.
		for _, f := range pending {
			_ = wait(f)
		}
		if st, serr := s.pub.Stream(context.WithoutCancel(ctx), "OBJ_"+s.bucket); serr == nil {
			_ = st.Purge(context.WithoutCancel(ctx), jetstream.WithPurgeSubject(chunkSubj))
		}
		return nil, err
	}
	for i := 0; ; i++ {
		if len(pending) == putWindow {
			f := pending[0]
			pending = pending[1:]
			if err := wait(f); err != nil {
				return fail(err)
			}
		}
		buf := bufs[i%putWindow]
		if buf == nil {
			buf = make([]byte, objChunkSize)
			bufs[i%putWindow] = buf
		}
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			m := nats.NewMsg(chunkSubj)
			m.Data = buf[:n]
			f, perr := s.pub.PublishMsgAsync(m)
			if perr != nil {
				return fail(perr)
			}
			pending = append(pending, f)
			size += uint64(n)
			chunks++
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return fail(err)
		}
	}
	for len(pending) > 0 {
		f := pending[0]
		pending = pending[1:]
		if err := wait(f); err != nil {
			return fail(err)
		}
	}
	info := &jetstream.ObjectInfo{ObjectMeta: meta, Bucket: s.bucket, NUID: id, Size: size, Chunks: chunks, Digest: jetstream.GetObjectDigestValue(r.h)}
	data, err := json.Marshal(info)
	if err != nil {
		return fail(err)
	}
	mm := nats.NewMsg("$O." + s.bucket + ".M." + base64.URLEncoding.EncodeToString([]byte(meta.Name)))
	mm.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	mm.Data = data
	if _, err := s.pub.PublishMsg(ctx, mm); err != nil {
		return fail(err)
	}
	return info, nil
}

// Open reads the named object; the reader fails at its end when the
// content does not match its digest.
func (s *ObjectStore) Open(ctx context.Context, name string) (io.ReadCloser, Object, error) {
	res, err := s.obs.Get(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, Object{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return nil, Object{}, fmt.Errorf("get object %s: %w", name, err)
	}
	info, err := res.Info()
	if err != nil {
		_ = res.Close()
		return nil, Object{}, fmt.Errorf("get object %s: %w", name, err)
	}
	obj := objectOf(info)
	return struct {
		io.Reader
		io.Closer
	}{VerifyingReader(res, obj.SHA256), res}, obj, nil
}

// transient: the server dropped input (429: a stream's queue full), was
// unavailable (503), or did not answer in time.
func (s *ObjectStore) transient(err error) bool {
	var api *jetstream.APIError
	if errors.As(err, &api) && api.ErrorCode == jetstream.ErrorCode(10167) { // too many requests: the stream's queue is full
		return true
	}
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrConnectionReconnecting)
}

// objectOf describes an Object Store object.
func objectOf(info *jetstream.ObjectInfo) Object {
	return Object{
		Name: info.Name,
		Meta: Meta{
			ContentType: info.Metadata[metaContentType], Source: info.Metadata[metaSource], RequestID: info.Metadata[metaRequestID],
		},
		Size: int64(info.Size), SHA256: digestHex(info.Digest), StoredAt: info.ModTime.UTC(),
	}
}

// digestHex turns the Object Store's digest ("SHA-256=" and URL-safe
// base64) into hex; "" when it is not one.
func digestHex(d string) string {
	b64, ok := strings.CutPrefix(d, "SHA-256=")
	if !ok {
		return ""
	}
	b, err := base64.URLEncoding.DecodeString(b64)
	if err != nil {
		return ""
	}
	return hex.EncodeToString(b)
}

// sameContent reads r to its end and returns stored when r had the same
// content, else ErrExists.
func sameContent(stored Object, r io.Reader) (Object, error) {
	sum, n, err := drain(r)
	if err != nil {
		return Object{}, err
	}
	if sum != stored.SHA256 || n != stored.Size {
		return Object{}, fmt.Errorf("%w: %s (stored: %d bytes, SHA-256 %s; this one: %d bytes, %s)", ErrExists, stored.Name, stored.Size, stored.SHA256, n, sum)
	}
	return stored, nil
}
