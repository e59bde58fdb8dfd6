package config

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/azbilling/worker/internal/archive"
	"github.com/azbilling/worker/internal/azauth"
	"github.com/azbilling/worker/internal/worker"
	"github.com/azbilling/worker/pkg/client"
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
		conn, rerr := c.archiveConnectionString()
		if rerr != nil {
			return nil, rerr
		}
		store, err = archive.NewBlobStoreFromConnectionString(conn, c.ArchiveBucket, opts)
	case c.ArchiveAccountURL != "":
		cred, cerr := c.archiveCredential(deps)
		if cerr != nil {
			return nil, cerr
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

// ArchiveReaderSettings are the settings a reader of documents archived in
// Azure Blob Storage takes (cmd/console): the archive's account and the
// credential the worker reaches it with, under the worker's names and
// variables, so that one set of BILLING_* variables serves both.
var ArchiveReaderSettings = []string{
	"archive-account-url", "archive-connection-string-file",
	"azure-cloud", "arm-endpoint", "arm-audience", "authority-host",
	"azure-credential", "azure-tenant-id", "azure-client-id", "azure-client-secret-file",
	"azure-certificate-file", "azure-federated-token-file", "azure-profiles-file",
	"disable-instance-discovery",
}

// BindSettings is Bind for the named settings only (ArchiveReaderSettings,
// say); the others keep their defaults.
func (c *Config) BindSettings(fs *flag.FlagSet, lookup func(string) (string, bool), names []string) error {
	var errs []error
	found := 0
	for _, s := range Settings {
		if !slices.Contains(names, s.Flag) {
			continue
		}
		found++
		if err := s.bind(c, fs, lookup); err != nil {
			errs = append(errs, err)
		}
	}
	if found != len(names) {
		errs = append(errs, fmt.Errorf("config: %d of the settings %v are unknown", len(names)-found, names))
	}
	return errors.Join(errs...)
}

// ArchiveBlobOpener returns what opens the containers of the archive's
// storage account for reading (pkg/client's Fetch): the account at
// archive-account-url with the default credential profile's credential,
// or the one of the connection string in archive-connection-string-file.
// It is nil when neither is set. Nothing is created or written: read
// access to the blobs is enough.
func (c *Config) ArchiveBlobOpener(deps AzureDeps) (client.BlobOpener, error) {
	switch {
	case c.ArchiveConnFile != "" && c.ArchiveAccountURL != "":
		return nil, errors.New("give archive-account-url or archive-connection-string-file, not both")
	case c.ArchiveConnFile != "":
		conn, err := c.archiveConnectionString()
		if err != nil {
			return nil, err
		}
		if _, err := container.NewClientFromConnectionString(conn, "probe", nil); err != nil {
			return nil, errors.New("archive-connection-string-file: not a Blob Storage connection string")
		}
		return client.BlobConnectionString(conn), nil
	case c.ArchiveAccountURL != "":
		cred, err := c.archiveCredential(deps)
		if err != nil {
			return nil, err
		}
		return client.BlobAccount(c.ArchiveAccountURL, cred), nil
	}
	return nil, nil
}

// archiveConnectionString reads archive-connection-string-file.
func (c *Config) archiveConnectionString() (string, error) {
	conn, err := os.ReadFile(c.ArchiveConnFile)
	if err != nil {
		return "", fmt.Errorf("archive-connection-string-file: %w", err)
	}
	return strings.TrimSpace(string(conn)), nil
}

// archiveCredential is the default credential profile's credential, which
// the archive's storage account is reached with.
func (c *Config) archiveCredential(deps AzureDeps) (azcore.TokenCredential, error) {
	ps, err := c.ProfileSet()
	if err != nil {
		return nil, err
	}
	cl, err := azauth.ResolveCloud(c.AzureCloud, c.ARMEndpoint, c.ARMAudience, c.AuthorityHost)
	if err != nil {
		return nil, err
	}
	cred, err := azauth.NewCredential(ps.Profiles[ps.Default], azauth.Options{
		Cloud: cl, Transport: deps.Transport, DisableInstanceDiscovery: c.DisableInstanceDiscovery,
	})
	if err != nil {
		return nil, fmt.Errorf("archive credential: %w", err)
	}
	return cred, nil
}
