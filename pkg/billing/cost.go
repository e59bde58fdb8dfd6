package billing

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/azbilling/worker/pkg/messages"
)

// APIVersion20250301 is the Cost Management api-version of the cost data
// kinds.
const APIVersion20250301 = "2025-03-01"

// Result shapes of the cost data kinds. Each is a long-running
// operation's status resource: a status (still running, done, no data,
// failed) and, when done, its links.
const (
	// ShapeCostDetails is CostDetailsOperationResults: {status, manifest:
	// {blobs: [{blobLink, byteCount}]...}, validTill, error}.
	ShapeCostDetails ResultShape = "CostDetailsOperationResults"
	// ShapeReservationDetails is ReservationDetailsOperationResults:
	// {status, properties: {reportUrl, validUntil}}.
	ShapeReservationDetails ResultShape = "ReservationDetailsOperationResults"
	// ShapeBenefitUtilization is BenefitUtilizationSummariesOperationStatus:
	// {status: Complete, properties: {reportUrl, secondaryReportUrl, validUntil}}.
	ShapeBenefitUtilization ResultShape = "BenefitUtilizationSummariesOperationStatus"
	// ShapeAccountPriceSheet is the EA price sheet's OperationStatus:
	// {status, properties: {downloadUrl, validTill, downloadFileProperties}}.
	ShapeAccountPriceSheet ResultShape = "PricesheetOperationStatus"
)

const costManagement = "/providers/Microsoft.CostManagement/"

var costOperations = []*Operation{
	{
		Kind: messages.KindCostDetails, Name: "GenerateCostDetailsReport_CreateOperation",
		Method: http.MethodPost, APIVersion: APIVersion20250301, LongRunning: true, Result: ShapeCostDetails, NoContent: true,
		path: func(p messages.Params) string { return costScope(p) + costManagement + "generateCostDetailsReport" },
		body: costDetailsBody,
	},
	{
		Kind: messages.KindReservationDetails, Name: "GenerateReservationDetailsReport_ByBillingProfileId",
		Method: http.MethodPost, APIVersion: APIVersion20250301, LongRunning: true, Result: ShapeReservationDetails,
		path: func(p messages.Params) string {
			return billingScope(p) + costManagement + "generateReservationDetailsReport"
		},
		query: func(p messages.Params, q url.Values) {
			q.Set("startDate", p.PeriodStartDate)
			q.Set("endDate", p.PeriodEndDate)
		},
	},
	{
		Kind: messages.KindBenefitUtilization, Name: "GenerateBenefitUtilizationSummariesReport_GenerateByBillingAccount",
		Method: http.MethodPost, APIVersion: APIVersion20250301, LongRunning: true, Result: ShapeBenefitUtilization,
		path: func(p messages.Params) string {
			return benefitScope(p) + costManagement + "generateBenefitUtilizationSummariesReport"
		},
		body: benefitBody,
	},
	{
		Kind: messages.KindAccountPriceSheet, Name: "PriceSheet_DownloadByBillingAccount",
		Method: http.MethodPost, APIVersion: APIVersion20250301, LongRunning: true, Result: ShapeAccountPriceSheet,
		path: func(p messages.Params) string {
			return billingAccounts + seg(p.BillingAccountName) + "/billingPeriods/" + seg(p.BillingPeriod) +
				costManagement + "pricesheets/default/download"
		},
	},
}

func init() {
	for _, op := range costOperations {
		operations[op.Kind] = op
	}
}

// costScope is a cost details report's scope: a subscription, or a billing
// account narrowed to a billing profile (and invoice section) or a customer.
func costScope(p messages.Params) string {
	if p.SubscriptionID != "" {
		return "/subscriptions/" + seg(p.SubscriptionID)
	}
	s := billingAccounts + seg(p.BillingAccountName)
	switch {
	case p.CustomerName != "":
		s += "/customers/" + seg(p.CustomerName)
	case p.BillingProfileName != "":
		s += "/billingProfiles/" + seg(p.BillingProfileName)
		if p.InvoiceSectionName != "" {
			s += "/invoiceSections/" + seg(p.InvoiceSectionName)
		}
	}
	return s
}

// billingScope is a billing account, or one of its billing profiles.
func billingScope(p messages.Params) string {
	s := billingAccounts + seg(p.BillingAccountName)
	if p.BillingProfileName != "" {
		s += "/billingProfiles/" + seg(p.BillingProfileName)
	}
	return s
}

// benefitScope is a benefit utilization report's scope.
func benefitScope(p messages.Params) string {
	switch {
	case p.ReservationOrderID != "":
		s := "/providers/Microsoft.Capacity/reservationorders/" + seg(p.ReservationOrderID)
		if p.ReservationID != "" {
			s += "/reservations/" + seg(p.ReservationID)
		}
		return s
	case p.SavingsPlanOrderID != "":
		s := "/providers/Microsoft.BillingBenefits/savingsPlanOrders/" + seg(p.SavingsPlanOrderID)
		if p.SavingsPlanID != "" {
			s += "/savingsPlans/" + seg(p.SavingsPlanID)
		}
		return s
	}
	return billingScope(p)
}

// costDetailsRequest is GenerateCostDetailsReportRequestDefinition.
type costDetailsRequest struct {
	Metric        string           `json:"metric"`
	TimePeriod    *costDetailsTime `json:"timePeriod,omitempty"`
	BillingPeriod string           `json:"billingPeriod,omitempty"`
	InvoiceID     string           `json:"invoiceId,omitempty"`
}

type costDetailsTime struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

func costDetailsBody(p messages.Params) any {
	r := costDetailsRequest{Metric: p.Metric, BillingPeriod: p.BillingPeriod, InvoiceID: p.InvoiceName}
	if r.Metric == "" {
		r.Metric = messages.MetricActualCost
	}
	if p.PeriodStartDate != "" {
		r.TimePeriod = &costDetailsTime{Start: p.PeriodStartDate, End: p.PeriodEndDate}
	}
	return r
}

// benefitRequest is BenefitUtilizationSummariesRequest; its dates are
// date-times.
type benefitRequest struct {
	Grain     string `json:"grain"`
	StartDate string `json:"startDate"`
	EndDate   string `json:"endDate"`
	Kind      string `json:"kind,omitempty"`
}

func benefitBody(p messages.Params) any {
	return benefitRequest{Grain: p.Grain, StartDate: p.PeriodStartDate + "T00:00:00Z", EndDate: p.PeriodEndDate + "T00:00:00Z", Kind: p.BenefitKind}
}

// reportState is what a report's status says.
type reportState int

const (
	reportPending reportState = iota + 1
	reportDone
	reportNoData
	reportFailed
)

// reportStatus reads a report's status. Cost details say Completed,
// benefit utilization reports Complete; an absent status is taken as done
// (the link decides). Unknown values are refused: polling them forever
// would only end at the deadline.
func reportStatus(status string) (reportState, bool) {
	switch strings.ToLower(status) {
	case "", "completed", "complete", "succeeded":
		return reportDone, true
	case "nodatafound":
		return reportNoData, true
	case "failed":
		return reportFailed, true
	case "running", "inprogress", "queued", "notstarted", "accepted":
		return reportPending, true
	}
	return 0, false
}

// costBody is the union of the cost data kinds' status resources.
type costBody struct {
	Status   string `json:"status"`
	Manifest *struct {
		ManifestVersion string `json:"manifestVersion"`
		DataFormat      string `json:"dataFormat"`
		BlobCount       int    `json:"blobCount"`
		ByteCount       int64  `json:"byteCount"`
		CompressData    bool   `json:"compressData"`
		Blobs           []struct {
			BlobLink  string `json:"blobLink"`
			ByteCount int64  `json:"byteCount"`
		} `json:"blobs"`
	} `json:"manifest"`
	ValidTill  string `json:"validTill"`
	Properties *struct {
		ReportURL              string          `json:"reportUrl"`
		SecondaryReportURL     string          `json:"secondaryReportUrl"`
		ValidUntil             string          `json:"validUntil"`
		DownloadURL            string          `json:"downloadUrl"`
		ExpiryTime             string          `json:"expiryTime"`
		ValidTill              string          `json:"validTill"`
		DownloadFileProperties json.RawMessage `json:"downloadFileProperties"`
	} `json:"properties"`
}

// parseCost decodes the 200 of a cost data kind.
func parseCost(shape ResultShape, body []byte) (Result, error) {
	bad := func(format string, args ...any) (Result, error) {
		return Result{}, &MalformedError{Status: http.StatusOK, Reason: fmt.Sprintf(format, args...)}
	}
	var b costBody
	if err := json.Unmarshal(body, &b); err != nil {
		return bad("not a %s: %v", shape, jsonProblem(err))
	}
	state, ok := reportStatus(b.Status)
	if !ok {
		return bad("%s with an unknown status %q", shape, clipValue(b.Status))
	}
	switch state {
	case reportPending:
		return Result{Pending: true}, nil
	case reportFailed:
		ae := ParseError(http.StatusOK, nil, body)
		if ae.Code == "" {
			ae.Code = "Failed"
		}
		if ae.Message == "" || ae.Message == http.StatusText(http.StatusOK) {
			ae.Message = "the report failed"
		}
		return Result{Failed: &ae}, nil
	case reportNoData:
		if shape != ShapeCostDetails {
			return bad("%s with status NoDataFound", shape)
		}
		return Result{NoData: true}, nil
	}
	switch shape {
	case ShapeCostDetails:
		return costDetailsResult(b)
	case ShapeAccountPriceSheet:
		if b.Properties == nil {
			return bad("%s without properties", shape)
		}
		pr := b.Properties
		res := Result{URL: pr.DownloadURL}
		var err error
		if res.ValidTill, err = optionalTime("validTill", pr.ValidTill); err != nil {
			return bad("%v", err)
		}
		if res.ExpiryTime, err = optionalTime("expiryTime", pr.ExpiryTime); err != nil {
			return bad("%v", err)
		}
		if res.ExpiryTime == nil {
			// The link's validity, when Azure gives no expiryTime.
			res.ExpiryTime = res.ValidTill
		}
		if p := strings.TrimSpace(string(pr.DownloadFileProperties)); p != "" && p != "null" {
			if p[0] != '{' {
				return bad("downloadFileProperties is not an object")
			}
			res.DownloadFileProperties = json.RawMessage(p)
		}
		res, err = checkURL(res, shape)
		if err != nil {
			return Result{}, err
		}
		res.Files = []messages.ReportFile{{URL: res.URL, ExpiryTime: res.ExpiryTime}}
		return res, nil
	default: // the reservation and benefit reports
		if b.Properties == nil {
			return bad("%s without properties", shape)
		}
		pr := b.Properties
		exp, err := optionalTime("validUntil", pr.ValidUntil)
		if err != nil {
			return bad("%v", err)
		}
		res, err := checkURL(Result{URL: pr.ReportURL, ExpiryTime: exp}, shape)
		if err != nil {
			return Result{}, err
		}
		if pr.SecondaryReportURL != "" {
			if _, err := checkURL(Result{URL: pr.SecondaryReportURL}, shape); err != nil {
				return bad("%s with a secondary report URL that is not an absolute http(s) URL", shape)
			}
			res.SecondaryURL = pr.SecondaryReportURL
		}
		res.Files = []messages.ReportFile{{URL: res.URL, ExpiryTime: exp}}
		return res, nil
	}
}

// costDetailsResult reads a completed cost details report's manifest.
func costDetailsResult(b costBody) (Result, error) {
	bad := func(format string, args ...any) (Result, error) {
		return Result{}, &MalformedError{Status: http.StatusOK, Reason: fmt.Sprintf(format, args...)}
	}
	m := b.Manifest
	if m == nil || len(m.Blobs) == 0 {
		return bad("%s completed without a manifest of blobs", ShapeCostDetails)
	}
	exp, err := optionalTime("validTill", b.ValidTill)
	if err != nil {
		return bad("%v", err)
	}
	res := Result{ExpiryTime: exp, Manifest: &messages.ReportManifest{
		ManifestVersion: m.ManifestVersion, DataFormat: m.DataFormat, BlobCount: m.BlobCount,
		ByteCount: m.ByteCount, CompressData: m.CompressData,
	}}
	for i, blob := range m.Blobs {
		if _, err := checkURL(Result{URL: blob.BlobLink}, ShapeCostDetails); err != nil {
			return bad("manifest.blobs[%d] without an absolute http(s) blobLink", i)
		}
		if blob.ByteCount < 0 {
			return bad("manifest.blobs[%d] with a negative byteCount", i)
		}
		res.Files = append(res.Files, messages.ReportFile{URL: blob.BlobLink, ByteCount: blob.ByteCount, ExpiryTime: exp})
	}
	if len(res.Files) == 1 {
		// One file: the event's url is that file, archived as any other.
		res.URL = res.Files[0].URL
	}
	return res, nil
}
