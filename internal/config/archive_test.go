package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A reader of the archive binds only the archive's account and credential
// settings, from the worker's variables; the others are not flags.
func TestBindSettingsArchiveReader(t *testing.T) {
	t.Parallel()
	env := map[string]string{"BILLING_ARCHIVE_ACCOUNT_URL": "https://archive.blob.core.windows.net/",
		"BILLING_AZURE_CREDENTIAL": "managed-identity", "BILLING_CONCURRENCY": "8"}
	var c Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	if err := c.BindSettings(fs, lookupIn(env), ArchiveReaderSettings); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"-azure-client-id", "00000000-0000-0000-0000-000000000001"}); err != nil {
		t.Fatal(err)
	}
	if c.ArchiveAccountURL != "https://archive.blob.core.windows.net/" || c.AzureCredential != "managed-identity" ||
		c.AzureClientID == "" || c.AzureCloud != "public" || c.Concurrency != 0 {
		t.Errorf("config %+v", c)
	}
	if fs.Lookup("concurrency") != nil || fs.Lookup("archive-store") != nil {
		t.Error("a setting not asked for is bound")
	}
	open, err := c.ArchiveBlobOpener(AzureDeps{})
	if err != nil || open == nil {
		t.Fatalf("opener %v, %v", open, err)
	}
	if cc, err := open("billing-archive"); err != nil || !strings.HasPrefix(cc.URL(), "https://archive.blob.core.windows.net/billing-archive") {
		t.Errorf("container %v, %v", cc, err)
	}
	if err := c.BindSettings(flag.NewFlagSet("t", flag.ContinueOnError), lookupIn(nil), []string{"archive-account-url", "no-such-setting"}); err == nil {
		t.Error("an unknown setting accepted")
	}
}

// Without an account the reader has no opener; a connection string file is
// read and checked, and its text never appears in an error.
func TestArchiveBlobOpener(t *testing.T) {
	t.Parallel()
	if open, err := (&Config{}).ArchiveBlobOpener(AzureDeps{}); open != nil || err != nil {
		t.Errorf("no account: %v, %v", open, err)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("AccountKey=c2VjcmV0;nothing else"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (&Config{ArchiveConnFile: bad}).ArchiveBlobOpener(AzureDeps{}); err == nil || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Errorf("a malformed connection string: %v", err)
	}
	good := filepath.Join(dir, "good")
	conn := "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=c2VjcmV0;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
	if err := os.WriteFile(good, []byte(conn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open, err := (&Config{ArchiveConnFile: good}).ArchiveBlobOpener(AzureDeps{})
	if err != nil {
		t.Fatal(err)
	}
	if cc, err := open("docs"); err != nil || cc.URL() != "http://127.0.0.1:10000/devstoreaccount1/docs" {
		t.Errorf("container %v, %v", cc, err)
	}
}
