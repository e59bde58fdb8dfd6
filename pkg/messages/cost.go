package messages

import (
	"fmt"
	"regexp"
	"time"
)

// The values of the cost data kinds' enumerated parameters.
const (
	MetricActualCost    = "ActualCost"
	MetricAmortizedCost = "AmortizedCost"
	GrainDaily          = "Daily"
	GrainMonthly        = "Monthly"
	BenefitReservation  = "Reservation"
	BenefitSavingsPlan  = "SavingsPlan"
)

var (
	// costSegmentPattern is a Cost Management scope's segment: the
	// specification gives no pattern for these; MCA ids carry ':' and
	// '_' (an account "GUID:GUID_YYYY-MM-DD"), and nothing else a path
	// segment could be confused by passes.
	costSegmentPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)
	billingPeriodPat   = regexp.MustCompile(`^[0-9]{4}(0[1-9]|1[0-2])$`)
	// costInvoicePattern is an MCA invoice id as Cost Management takes it.
	costInvoicePattern = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)
)

// costParams is the comparable part of Params the cost data kinds add.
type costParams struct {
	invoiceSection, customer, metric, billingPeriod, grain, benefitKind string
	reservationOrder, reservation, savingsPlanOrder, savingsPlan        string
}

func (p Params) costParams() costParams {
	return costParams{p.InvoiceSectionName, p.CustomerName, p.Metric, p.BillingPeriod, p.Grain, p.BenefitKind,
		p.ReservationOrderID, p.ReservationID, p.SavingsPlanOrderID, p.SavingsPlanID}
}

func (p Params) costParamMap() map[param]string {
	return map[param]string{
		pInvoiceSectionName: p.InvoiceSectionName, pCustomerName: p.CustomerName, pMetric: p.Metric,
		pBillingPeriod: p.BillingPeriod, pGrain: p.Grain, pBenefitKind: p.BenefitKind,
		pReservationOrderID: p.ReservationOrderID, pReservationID: p.ReservationID,
		pSavingsPlanOrderID: p.SavingsPlanOrderID, pSavingsPlanID: p.SavingsPlanID,
	}
}

// validateCost checks the parameters of a cost data kind (the parameters
// it does not take are refused before).
func (p Params) validateCost(k Kind, v *validator) {
	if p.SubscriptionID != "" {
		v.match("params.subscriptionId", p.SubscriptionID, guidPattern, "a GUID")
	}
	for _, f := range []struct {
		name  param
		value string
	}{
		{pBillingAccountName, p.BillingAccountName}, {pBillingProfileName, p.BillingProfileName},
		{pInvoiceSectionName, p.InvoiceSectionName}, {pCustomerName, p.CustomerName},
		{pReservationOrderID, p.ReservationOrderID}, {pReservationID, p.ReservationID},
		{pSavingsPlanOrderID, p.SavingsPlanOrderID}, {pSavingsPlanID, p.SavingsPlanID},
	} {
		if f.value != "" {
			v.match("params."+string(f.name), f.value, costSegmentPattern, "letters, digits, '-', '_', '.' or ':'")
		}
	}
	switch k {
	case KindCostDetails:
		p.validateCostDetails(v)
	case KindReservationDetails:
		validateDates(p.PeriodStartDate, p.PeriodEndDate, v)
	case KindBenefitUtilization:
		p.validateBenefitUtilization(v)
	case KindAccountPriceSheet:
		if p.BillingPeriod != "" {
			v.match("params.billingPeriod", p.BillingPeriod, billingPeriodPat, "YYYYMM")
		}
	}
}

// validateCostDetails checks a cost details report's scope (a billing
// subscription, or a billing account narrowed to a profile, an invoice
// section or a customer) and its one period: a time period of at most a
// month, an EA billing period, or an MCA invoice.
func (p Params) validateCostDetails(v *validator) {
	switch {
	case p.SubscriptionID == "" && p.BillingAccountName == "":
		v.add("params.subscriptionId", "required", "a cost details report needs a scope: subscriptionId or billingAccountName")
	case p.SubscriptionID != "" && (p.BillingAccountName != "" || p.BillingProfileName != "" || p.InvoiceSectionName != "" || p.CustomerName != ""):
		v.add("params.subscriptionId", "not_allowed", "a subscription's scope takes no billing account, profile, invoice section or customer")
	case p.BillingAccountName == "" && (p.BillingProfileName != "" || p.InvoiceSectionName != "" || p.CustomerName != ""):
		v.add("params.billingAccountName", "required", "a billing profile, invoice section or customer scope needs billingAccountName")
	case p.InvoiceSectionName != "" && p.BillingProfileName == "":
		v.add("params.billingProfileName", "required", "an invoice section's scope needs its billingProfileName")
	case p.CustomerName != "" && (p.BillingProfileName != "" || p.InvoiceSectionName != ""):
		v.add("params.customerName", "not_allowed", "a customer's scope is the billing account's customer: no billing profile or invoice section")
	}
	if p.Metric != "" && p.Metric != MetricActualCost && p.Metric != MetricAmortizedCost {
		v.add("params.metric", "enum", fmt.Sprintf("%q must be %s or %s", clip(p.Metric), MetricActualCost, MetricAmortizedCost))
	}
	period := p.PeriodStartDate != "" || p.PeriodEndDate != ""
	n := 0
	for _, set := range []bool{period, p.BillingPeriod != "", p.InvoiceName != ""} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		v.add("params.periodStartDate", "required", "a cost details report needs one of periodStartDate and periodEndDate, billingPeriod, or invoiceName")
	case n > 1:
		v.add("params.billingPeriod", "not_allowed", "a cost details report takes one of periodStartDate and periodEndDate, billingPeriod, or invoiceName")
	case period:
		if p.PeriodStartDate == "" {
			v.add("params.periodStartDate", "required", "is required with periodEndDate")
		}
		if p.PeriodEndDate == "" {
			v.add("params.periodEndDate", "required", "is required with periodStartDate")
		}
		from, to, ok := validateDates(p.PeriodStartDate, p.PeriodEndDate, v)
		if ok && !to.Before(from.AddDate(0, 1, 0)) {
			v.add("params.periodEndDate", "format", fmt.Sprintf("a cost details report covers at most a month: %s is a month or more after %s", p.PeriodEndDate, p.PeriodStartDate))
		}
	case p.BillingPeriod != "":
		v.match("params.billingPeriod", p.BillingPeriod, billingPeriodPat, "YYYYMM")
	default:
		v.match("params.invoiceName", p.InvoiceName, costInvoicePattern, "an MCA invoice id")
		if p.BillingProfileName == "" && p.CustomerName == "" {
			v.add("params.invoiceName", "not_allowed", "an invoice's cost details are asked at a billing profile's or customer's scope (billingProfileName or customerName)")
		}
	}
}

// validateBenefitUtilization checks a benefit utilization report: one
// scope, the benefit kind at a billing scope, a grain and dates.
func (p Params) validateBenefitUtilization(v *validator) {
	billing := p.BillingAccountName != ""
	reservation := p.ReservationOrderID != ""
	savings := p.SavingsPlanOrderID != ""
	n := 0
	for _, set := range []bool{billing, reservation, savings} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		v.add("params.billingAccountName", "required", "a benefit utilization report needs a scope: billingAccountName, reservationOrderId or savingsPlanOrderId")
	case n > 1:
		v.add("params.reservationOrderId", "not_allowed", "a benefit utilization report takes one scope: billingAccountName, reservationOrderId or savingsPlanOrderId")
	}
	switch {
	case p.BillingProfileName != "" && !billing:
		v.add("params.billingProfileName", "not_allowed", "billingProfileName narrows a billing account's scope")
	case p.ReservationID != "" && !reservation:
		v.add("params.reservationId", "not_allowed", "reservationId narrows a reservation order's scope")
	case p.SavingsPlanID != "" && !savings:
		v.add("params.savingsPlanId", "not_allowed", "savingsPlanId narrows a savings plan order's scope")
	}
	switch {
	case billing && p.BenefitKind == "":
		v.add("params.benefitKind", "required", "is required at a billing account's scope: Reservation or SavingsPlan")
	case !billing && p.BenefitKind != "":
		v.add("params.benefitKind", "not_allowed", "a reservation or savings plan order's scope says the benefit kind")
	case p.BenefitKind != "" && p.BenefitKind != BenefitReservation && p.BenefitKind != BenefitSavingsPlan:
		v.add("params.benefitKind", "enum", fmt.Sprintf("%q must be %s or %s", clip(p.BenefitKind), BenefitReservation, BenefitSavingsPlan))
	}
	if p.Grain != "" && p.Grain != GrainDaily && p.Grain != GrainMonthly {
		v.add("params.grain", "enum", fmt.Sprintf("%q must be %s or %s", clip(p.Grain), GrainDaily, GrainMonthly))
	}
	validateDates(p.PeriodStartDate, p.PeriodEndDate, v)
}

// validateDates checks a period both of whose ends are required (a
// missing one is reported before, by the kind's required parameters or
// by the caller): ISO dates, the start not after the end.
func validateDates(start, end string, v *validator) (from, to time.Time, ok bool) {
	validatePeriod(start, end, v)
	var err1, err2 error
	from, err1 = time.Parse(time.DateOnly, start)
	to, err2 = time.Parse(time.DateOnly, end)
	return from, to, err1 == nil && err2 == nil && !to.Before(from)
}
