package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/azbilling/worker/internal/archive"
	"github.com/azbilling/worker/internal/azauth"
	"github.com/azbilling/worker/internal/worker"
)

// ArchiveBlob returns the Azure Blob Storage archive the configuration
// describes (nil when archive-store is not azblob), its container created
// if missing: the account at archive-account-url with the default
// credential profile's credential, or the account of the connection
// string in archive-connection-string-file.
func (c *Config) ArchiveBlob(ctx context.Context, deps AzureDeps) (archive.Store, error) {
	if c.ArchiveStore != worker.ArchiveAzureBlob {
		return nil, nil
	}
	if c.ArchiveBucket == "" {
		return nil, errors.New("archive-store azblob needs archive-bucket: the container")
	}
	opts := &container.ClientOptions{}
	if deps.Transport != nil {
		opts.Transport = deps.Transport
	}
	var (
		store *archive.BlobStore
		err   error
	)
	switch {
	case c.ArchiveConnFile != "" && c.ArchiveAccountURL != "":
		return nil, errors.New("give archive-account-url or archive-connection-string-file, not both")
	case c.ArchiveConnFile != "":
		conn, rerr := os.ReadFile(c.ArchiveConnFile)
		if rerr != nil {
			return nil, fmt.Errorf("archive-connection-string-file: %w", rerr)
		}
		store, err = archive.NewBlobStoreFromConnectionString(strings.TrimSpace(string(conn)), c.ArchiveBucket, opts)
	case c.ArchiveAccountURL != "":
		ps, perr := c.ProfileSet()
		if perr != nil {
			return nil, perr
		}
		cl, cerr := azauth.ResolveCloud(c.AzureCloud, c.ARMEndpoint, c.ARMAudience, c.AuthorityHost)
		if cerr != nil {
			return nil, cerr
		}
		cred, cerr := azauth.NewCredential(ps.Profiles[ps.Default], azauth.Options{
			Cloud: cl, Transport: deps.Transport, DisableInstanceDiscovery: c.DisableInstanceDiscovery,
		})
		if cerr != nil {
			return nil, fmt.Errorf("archive credential: %w", cerr)
		}
		store, err = archive.NewBlobStoreFromURL(c.ArchiveAccountURL, c.ArchiveBucket, cred, opts)
	default:
		return nil, errors.New("archive-store azblob needs archive-account-url or archive-connection-string-file")
	}
	if err != nil {
		return nil, err
	}
	if err := store.Ensure(ctx); err != nil {
		return nil, err
	}
	return store, nil
}
