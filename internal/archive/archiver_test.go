package archive_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/archive"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/pkg/messages"
)

// link asks the emulator for invoice's summary and returns its download
// link (a SAS-style URL with a sig).
func link(t *testing.T, emu *emulator.Server, invoice string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, emu.URL()+"/providers/Microsoft.Billing/billingAccounts/12345678/invoices/"+invoice+
		"/downloadSummary?api-version=2024-04-01", nil)
	req.Header.Set("Authorization", "Bearer "+emu.IssueToken("t", emulator.DefaultAudience))
	resp, err := emu.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct{ URL string }
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(r.URL, "sig=") {
		t.Fatalf("%d %v %q", resp.StatusCode, err, r.URL)
	}
	return r.URL
}

func summary(invoice string) messages.Request {
	return messages.Request{Version: 1, ID: "r-" + invoice, Kind: messages.KindInvoiceSummary,
		Params: messages.Params{BillingAccountName: "12345678", InvoiceName: invoice}}
}

func TestArchiver(t *testing.T) {
	t.Parallel()
	emu := emulator.Start(emulator.Options{Default: []emulator.Reply{emulator.OK()}})
	t.Cleanup(emu.Close)
	store := natsStore(t)
	a := &archive.Archiver{Store: store, HTTP: emu.Client(), IdleTimeout: 300 * time.Millisecond}
	ctx := context.Background()
	sig := func(l string) string { u, _ := url.Parse(l); return u.Query().Get("sig") }

	t.Run("stored, the source recorded without the signature", func(t *testing.T) {
		emu.SetDownload("G100000001", emulator.Download{Size: 700 << 10})
		l := link(t, emu, "G100000001")
		obj, err := a.Archive(ctx, summary("G100000001"), l)
		if err != nil {
			t.Fatal(err)
		}
		r, stored, err := store.Open(ctx, obj.Name)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, r)
		r.Close()
		if err != nil || n != 700<<10 || obj.Size != n || obj.ContentType != "application/pdf" {
			t.Fatalf("%+v: %d bytes, %v", obj, n, err)
		}
		if strings.Contains(stored.Source, "?") || strings.Contains(stored.Source, sig(l)) || !strings.HasSuffix(stored.Source, "/G100000001_summary.pdf") || stored.RequestID != "r-G100000001" {
			t.Errorf("metadata %+v", stored.Meta)
		}
	})
	for _, tc := range []struct {
		name, invoice string
		d             emulator.Download
		kind          archive.FailureKind
		text          string
	}{
		{"expired link: Expired", "G100000002", emulator.Download{Size: 1 << 10, Expired: 1}, archive.Expired, "403"},
		{"reset mid-body: Transient", "G100000003", emulator.Download{Size: 1 << 20, Resets: 1, ResetAfter: 300 << 10}, archive.Transient, "unexpected EOF"},
		{"a body idle past the idle timeout: Transient", "G100000004", emulator.Download{Size: 1 << 20, Delay: 2 * time.Second}, archive.Transient, "no data for the idle timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			emu.SetDownload(tc.invoice, tc.d)
			l := link(t, emu, tc.invoice)
			_, err := a.Archive(ctx, summary(tc.invoice), l)
			var ae *archive.Error
			if !errors.As(err, &ae) || ae.Kind != tc.kind || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("%v, want kind %d with %q", err, tc.kind, tc.text)
			}
			if strings.Contains(err.Error(), sig(l)) {
				t.Errorf("the signature in %q", err)
			}
			if _, _, err := store.Open(ctx, messages.ObjectName(summary(tc.invoice), l)); !errors.Is(err, archive.ErrNotFound) {
				t.Errorf("after the failure: %v", err)
			}
		})
	}
}
