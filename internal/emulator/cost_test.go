package emulator

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"testing"
	"time"
)

// costCall is a valid call starting a cost data operation scripted by key.
func costCall(op, key string) request {
	jsonBody := map[string]string{"Content-Type": "application/json"}
	switch op {
	case OpCostDetails:
		return request{method: http.MethodPost, header: jsonBody,
			path: armPrefix + mcaAccount + "/billingProfiles/" + cmProfile + "/providers/Microsoft.CostManagement/generateCostDetailsReport?api-version=2025-03-01",
			body: `{"metric":"ActualCost","invoiceId":"` + key + `"}`}
	case OpReservationDetails:
		return request{method: http.MethodPost,
			path: armPrefix + eaAccount + "/billingProfiles/PROF-" + key + "/providers/Microsoft.CostManagement/generateReservationDetailsReport?api-version=2025-03-01&startDate=2026-01-01&endDate=2026-01-31"}
	case OpBenefitUtilization:
		return request{method: http.MethodPost, header: jsonBody,
			path: "/providers/Microsoft.Capacity/reservationorders/" + key + "/providers/Microsoft.CostManagement/generateBenefitUtilizationSummariesReport?api-version=2025-03-01",
			body: `{"grain":"Daily","startDate":"2026-01-01T00:00:00Z","endDate":"2026-01-31T00:00:00Z"}`}
	default:
		return request{method: http.MethodPost,
			path: armPrefix + "PCN." + key + "/billingPeriods/202601/providers/Microsoft.CostManagement/pricesheets/default/download?api-version=2025-03-01"}
	}
}

// Each cost data operation answers 202 with a Location of its own shape and api-version, and
// its poll the finished status resource.
func TestCostOperationsLocationsAndResults(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	for _, tc := range []struct {
		op, results, apiVersion, status string
	}{
		{OpCostDetails, "/costDetailsOperationResults/", "2025-03-01", "Completed"},
		{OpReservationDetails, "/reservationDetailsOperationResults/", "2019-11-01", "Completed"},
		{OpBenefitUtilization, "/benefitUtilizationSummariesOperationResults/", "2025-03-01", "Complete"},
		{OpAccountPricesheet, "/providers/Microsoft.CostManagement/operationResults/", "2023-09-01", "Completed"},
	} {
		key := "K" + strings.ReplaceAll(tc.op, "-", "")
		b.srv.Script(key, Accepted("2"), OK())
		resp, body := b.call(t, costCall(tc.op, key))
		if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Retry-After") != "2" {
			t.Fatalf("%s: %d %s", tc.op, resp.StatusCode, body)
		}
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil || !strings.Contains(loc.Path, tc.results) || loc.Query().Get("api-version") != tc.apiVersion {
			t.Errorf("%s: Location %s", tc.op, resp.Header.Get("Location"))
		}
		if c := lastCall(t, b.srv); c.Operation != tc.op || c.InvoiceName != key || !c.Accepted {
			t.Errorf("%s: call %+v", tc.op, c)
		}
		// The call's api-version in place of the Location's is refused.
		q := loc.Query()
		q.Set("api-version", "2025-03-01")
		if tc.apiVersion != "2025-03-01" {
			wrong := *loc
			wrong.RawQuery = q.Encode()
			r, body := send(t, b.srv.Client(), http.MethodGet, wrong.String(), b.token, "", nil)
			wantError(t, r, body, http.StatusBadRequest, "InvalidApiVersionParameter", "api-version")
		}
		resp, body = send(t, b.srv.Client(), http.MethodGet, loc.String(), b.token, "", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s poll: %d %s", tc.op, resp.StatusCode, body)
		}
		var got struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal(body, &got); err != nil || got.Status != tc.status {
			t.Errorf("%s: status %q (%v) in %s", tc.op, got.Status, err, body)
		}
	}
}

// A cost details report's manifest lists blobs of the sizes set, each served at that size, made
// on the fly; NoDataFound, 204 and Failed answer as scripted.
func TestCostDetailsManifestBlobs(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	sizes := []int64{3 << 20, 17, 1 << 16}
	b.srv.SetCostReport("MANY", CostReport{BlobSizes: sizes})
	b.srv.Script("MANY", OK())
	resp, body := b.call(t, costCall(OpCostDetails, "MANY"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var res costDetailsResult
	if err := json.Unmarshal(body, &res); err != nil || res.Manifest == nil {
		t.Fatalf("%v: %s", err, body)
	}
	m := res.Manifest
	if m.BlobCount != 3 || len(m.Blobs) != 3 || m.ByteCount != 3<<20+17+1<<16 || m.DataFormat != "Csv" || res.ValidTill == "" ||
		m.RequestContext.RequestBody.InvoiceID != "MANY" {
		t.Errorf("manifest = %+v", m)
	}
	for i, blob := range m.Blobs {
		resp, data := send(t, b.srv.Client(), http.MethodGet, blob.BlobLink, "", "", nil)
		if resp.StatusCode != http.StatusOK || int64(len(data)) != sizes[i] || blob.ByteCount != sizes[i] {
			t.Errorf("blob %d: %d, %d bytes, announced %d, want %d", i, resp.StatusCode, len(data), blob.ByteCount, sizes[i])
		}
		sum := sha256.Sum256(data)
		u, err := url.Parse(blob.BlobLink)
		if err != nil {
			t.Fatal(err)
		}
		file := path.Base(u.Path)
		want := sha256.New()
		_, _ = io.Copy(want, Document(file, sizes[i]))
		if hex.EncodeToString(sum[:]) != hex.EncodeToString(want.Sum(nil)) {
			t.Errorf("blob %d is not the generated document of %s", i, file)
		}
	}

	failed := Report(ReportFailed)
	failed.ErrorCode = "TooLarge"
	for name, tc := range map[string]struct {
		reply  Reply
		status int
		body   string
	}{
		"no data": {Report(ReportNoData), http.StatusOK, `"status":"NoDataFound"`},
		"204":     {NoContent(), http.StatusNoContent, ""},
		"failed":  {failed, http.StatusOK, `"code":"TooLarge"`},
	} {
		key := "K" + strings.ReplaceAll(name, " ", "")
		b.srv.Script(key, tc.reply)
		resp, body := b.call(t, costCall(OpCostDetails, key))
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.body) || tc.body == "" && len(body) != 0 {
			t.Errorf("%s: %d %s", name, resp.StatusCode, body)
		}
	}
}

// The blob links of a report expire with validTill, as storage links do.
func TestCostDetailsLinksExpire(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	b.srv.Script("EXP", OK())
	_, body := b.call(t, costCall(OpCostDetails, "EXP"))
	var res costDetailsResult
	if err := json.Unmarshal(body, &res); err != nil || res.Manifest == nil {
		t.Fatalf("%v: %s", err, body)
	}
	b.srv.clockSkew.Add(int64(2 * time.Hour))
	resp, _ := send(t, b.srv.Client(), http.MethodGet, res.Manifest.Blobs[0].BlobLink, "", "", nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("an expired link answered %d", resp.StatusCode)
	}
}

// Requests Azure would refuse are refused with 400 and the problem.
func TestCostOperationsRefuseBadRequests(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	detailsPath := armPrefix + eaAccount + "/providers/Microsoft.CostManagement/generateCostDetailsReport?api-version=2025-03-01"
	jsonBody := map[string]string{"Content-Type": "application/json"}
	for name, req := range map[string]request{
		"two periods":       {method: http.MethodPost, path: detailsPath, header: jsonBody, body: `{"billingPeriod":"202601","timePeriod":{"start":"2026-01-01","end":"2026-01-31"}}`},
		"no period":         {method: http.MethodPost, path: detailsPath, header: jsonBody, body: `{"metric":"ActualCost"}`},
		"over a month":      {method: http.MethodPost, path: detailsPath, header: jsonBody, body: `{"timePeriod":{"start":"2026-01-01","end":"2026-02-01"}}`},
		"invoice at ea":     {method: http.MethodPost, path: detailsPath, header: jsonBody, body: `{"invoiceId":"G1"}`},
		"bad metric":        {method: http.MethodPost, path: detailsPath, header: jsonBody, body: `{"metric":"Usage","billingPeriod":"202601"}`},
		"reservation dates": {method: http.MethodPost, path: armPrefix + eaAccount + "/providers/Microsoft.CostManagement/generateReservationDetailsReport?api-version=2025-03-01&startDate=2026-02-01&endDate=2026-01-01"},
		"benefit no kind":   {method: http.MethodPost, path: armPrefix + eaAccount + "/providers/Microsoft.CostManagement/generateBenefitUtilizationSummariesReport?api-version=2025-03-01", header: jsonBody, body: `{"grain":"Daily","startDate":"2026-01-01T00:00:00Z","endDate":"2026-01-31T00:00:00Z"}`},
	} {
		resp, body := b.call(t, req)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d %s", name, resp.StatusCode, body)
		}
	}
	// The EA price sheet is absent from 2023-11-01.
	resp, body := b.call(t, request{method: http.MethodPost,
		path: armPrefix + eaAccount + "/billingPeriods/202601/providers/Microsoft.CostManagement/pricesheets/default/download?api-version=2023-11-01"})
	wantError(t, resp, body, http.StatusBadRequest, "InvalidApiVersionParameter", "api-version")
	// A resource group's scope answers 404.
	resp, body = b.call(t, request{method: http.MethodPost, header: jsonBody, body: `{"billingPeriod":"202601"}`,
		path: "/subscriptions/" + testSub + "/resourceGroups/rg/providers/Microsoft.CostManagement/generateCostDetailsReport?api-version=2025-03-01"})
	wantError(t, resp, body, http.StatusNotFound, "NotFound", "")
}

// The cost data operations are charged to Cost Management's budget, with its
// QPU headers, and throttled with its retry headers.
func TestCostOperationsBudget(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{Budget: Budget{Rate: 0.001, Burst: 2}})
	for i, op := range []string{OpCostDetails, OpReservationDetails} {
		b.srv.Script("B"+strconv.Itoa(i), OK())
		resp, body := b.call(t, costCall(op, "B"+strconv.Itoa(i)))
		if resp.StatusCode != http.StatusOK || resp.Header.Get("x-ms-ratelimit-microsoft.costmanagement-qpu-consumed") != "1" ||
			resp.Header.Get("x-ms-ratelimit-microsoft.costmanagement-qpu-remaining") != "QueriesPerBucket:"+strconv.Itoa(1-i) {
			t.Errorf("%s: %d %v %s", op, resp.StatusCode, resp.Header, body)
		}
		if c := lastCall(t, b.srv); c.Budget != BudgetCostManagement {
			t.Errorf("%s charged to %q", op, c.Budget)
		}
	}
	resp, _ := b.call(t, costCall(OpBenefitUtilization, "B3"))
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after") == "" || resp.Header.Get("Retry-After") != "" {
		t.Errorf("throttled: %d %v", resp.StatusCode, resp.Header)
	}
}
