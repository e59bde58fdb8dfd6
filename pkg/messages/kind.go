package messages

// Kind names one of the Azure operations the worker drives.
type Kind string

// The request kinds, one per Azure operation (see docs/contract.md for the
// parameters each one takes).
const (
	// KindSubscriptionInvoice downloads a billing subscription's invoice
	// (Microsoft.Billing 2020-05-01, Invoices - Download Billing Subscription Invoice).
	KindSubscriptionInvoice Kind = "subscription-invoice"
	// KindInvoiceSummary downloads the summary of an invoice of a billing
	// account (Microsoft.Billing 2024-04-01, Invoices - Download Summary By Billing Account).
	KindInvoiceSummary Kind = "invoice-summary"
	// KindSubscriptionDocuments downloads documents of a billing subscription
	// as one zip (Microsoft.Billing 2024-04-01, Invoices - Download Documents By Billing Subscription).
	KindSubscriptionDocuments Kind = "subscription-documents"
	// KindInvoicePriceSheet downloads the price sheet of an invoice
	// (Microsoft.CostManagement 2023-11-01, Price Sheet - Download By Invoice).
	KindInvoicePriceSheet Kind = "invoice-pricesheet"
	// KindInvoice reads an invoice of a billing account; its completion event
	// carries the invoice instead of a URL (Microsoft.Billing 2024-04-01,
	// Invoices - Get By Billing Account).
	KindInvoice Kind = "invoice"

	// The rest of the download family (docs/azure.md, "The rest of the
	// family"): the operations a collection routes its documents to, and the
	// listings it starts from.

	// KindAccountDocument downloads one document of an invoice of a billing
	// account; without documentName, the invoice itself (Microsoft.Billing
	// 2024-04-01, Invoices - Download By Billing Account).
	KindAccountDocument Kind = "account-document"
	// KindAccountDocuments downloads documents of a billing account as one
	// zip (Microsoft.Billing 2024-04-01, Invoices - Download Documents By
	// Billing Account).
	KindAccountDocuments Kind = "account-documents"
	// KindSubscriptionDocument downloads one document of an invoice of a
	// billing subscription (Microsoft.Billing 2024-04-01, Invoices - Download
	// By Billing Subscription).
	KindSubscriptionDocument Kind = "subscription-document"
	// KindInvoiceTransactions downloads the transactions of an invoice of an
	// EA billing account (Microsoft.Billing 2024-04-01, Transactions -
	// Transactions Download By Invoice).
	KindInvoiceTransactions Kind = "invoice-transactions"
	// KindProfilePriceSheet downloads the current price sheet of a billing
	// profile (Microsoft.CostManagement 2023-11-01, Price Sheet - Download By
	// Billing Profile).
	KindProfilePriceSheet Kind = "profile-pricesheet"
	// KindAccountInvoices lists the invoices of a billing account in a
	// period, every page; its completion event carries them
	// (Microsoft.Billing 2024-04-01, Invoices - List By Billing Account).
	KindAccountInvoices Kind = "account-invoices"
	// KindSubscriptionInvoices lists the invoices of a billing subscription
	// in a period (Microsoft.Billing 2024-04-01, Invoices - List By Billing
	// Subscription).
	KindSubscriptionInvoices Kind = "subscription-invoices"

	// Cost data (docs/azure.md, "Cost data"): Cost Management reports
	// beside the invoices.

	// KindCostDetails generates a cost details report of a scope for a
	// month at most, an EA billing period or an MCA invoice; its completion
	// event lists every file of the report's manifest
	// (Microsoft.CostManagement 2025-03-01, Generate Cost Details Report).
	KindCostDetails Kind = "cost-details"
	// KindReservationDetails generates the reservation details report of a
	// billing account or profile for a period (Microsoft.CostManagement
	// 2025-03-01, Generate Reservation Details Report).
	KindReservationDetails Kind = "reservation-details"
	// KindBenefitUtilization generates the benefit utilization summaries
	// report of reservations or savings plans (Microsoft.CostManagement
	// 2025-03-01, Generate Benefit Utilization Summaries Report).
	KindBenefitUtilization Kind = "benefit-utilization"
	// KindAccountPriceSheet downloads the price sheet of an EA billing
	// account for one billing period, a zip (Microsoft.CostManagement
	// 2025-03-01, Price Sheet - Download By Billing Account).
	KindAccountPriceSheet Kind = "account-pricesheet"
)

// Kinds lists every kind, in the order of docs/azure.md (#1 to #5).
var Kinds = []Kind{
	KindSubscriptionInvoice,
	KindInvoiceSummary,
	KindSubscriptionDocuments,
	KindInvoicePriceSheet,
	KindInvoice,
	KindAccountDocument,
	KindAccountDocuments,
	KindSubscriptionDocument,
	KindInvoiceTransactions,
	KindProfilePriceSheet,
	KindAccountInvoices,
	KindSubscriptionInvoices,
	KindCollection,
	KindCostDetails,
	KindReservationDetails,
	KindBenefitUtilization,
	KindAccountPriceSheet,
	KindBillingAccounts,
	KindBillingProfiles,
	KindCustomers,
	KindSubscriptions,
	KindEstate,
}

// Valid reports whether k is one of Kinds.
func (k Kind) Valid() bool {
	_, ok := kindParams[k]
	return ok
}

// param names one field of Params.
type param string

const (
	pSubscriptionID     param = "subscriptionId"
	pBillingAccountName param = "billingAccountName"
	pBillingProfileName param = "billingProfileName"
	pInvoiceName        param = "invoiceName"
	pDownloadToken      param = "downloadToken"
	pDocuments          param = "documents"
	pDocumentName       param = "documentName"
	pPeriodStartDate    param = "periodStartDate"
	pPeriodEndDate      param = "periodEndDate"
	pDocumentKinds      param = "documentKinds"
	// The cost data kinds' (cost.go).
	pInvoiceSectionName param = "invoiceSectionName"
	pCustomerName       param = "customerName"
	pMetric             param = "metric"
	pBillingPeriod      param = "billingPeriod"
	pGrain              param = "grain"
	pBenefitKind        param = "benefitKind"
	pReservationOrderID param = "reservationOrderId"
	pReservationID      param = "reservationId"
	pSavingsPlanOrderID param = "savingsPlanOrderId"
	pSavingsPlanID      param = "savingsPlanId"
	// An estate's filters (estate.go).
	pIncludeAccounts    param = "includeAccounts"
	pExcludeAccounts    param = "excludeAccounts"
	pAgreementTypes     param = "agreementTypes"
	pAccountNamePattern param = "accountNamePattern"
)

// allParams lists every parameter, in the order problems are reported.
var allParams = []param{pSubscriptionID, pBillingAccountName, pBillingProfileName, pInvoiceName, pDownloadToken, pDocuments,
	pDocumentName, pPeriodStartDate, pPeriodEndDate, pDocumentKinds,
	pInvoiceSectionName, pCustomerName, pMetric, pBillingPeriod, pGrain, pBenefitKind,
	pReservationOrderID, pReservationID, pSavingsPlanOrderID, pSavingsPlanID,
	pIncludeAccounts, pExcludeAccounts, pAgreementTypes, pAccountNamePattern}

// kindParams lists, per kind, the parameters it requires; every other
// parameter is refused for that kind.
var kindParams = map[Kind][]param{
	KindSubscriptionInvoice:   {pSubscriptionID, pInvoiceName, pDownloadToken},
	KindInvoiceSummary:        {pBillingAccountName, pInvoiceName},
	KindSubscriptionDocuments: {pSubscriptionID, pDocuments},
	KindInvoicePriceSheet:     {pBillingAccountName, pBillingProfileName, pInvoiceName},
	KindInvoice:               {pBillingAccountName, pInvoiceName},
	KindAccountDocument:       {pBillingAccountName, pInvoiceName},
	KindAccountDocuments:      {pBillingAccountName, pDocuments},
	KindSubscriptionDocument:  {pSubscriptionID, pInvoiceName},
	KindInvoiceTransactions:   {pBillingAccountName, pInvoiceName},
	KindProfilePriceSheet:     {pBillingAccountName, pBillingProfileName},
	KindAccountInvoices:       {pBillingAccountName},
	KindSubscriptionInvoices:  {pSubscriptionID},
	KindCollection:            {},
	KindCostDetails:           {},
	KindReservationDetails:    {pBillingAccountName, pPeriodStartDate, pPeriodEndDate},
	KindBenefitUtilization:    {pGrain, pPeriodStartDate, pPeriodEndDate},
	KindAccountPriceSheet:     {pBillingAccountName, pBillingPeriod},
	KindBillingAccounts:       {},
	KindBillingProfiles:       {pBillingAccountName},
	KindCustomers:             {pBillingAccountName},
	KindSubscriptions:         {},
	KindEstate:                {pPeriodStartDate, pPeriodEndDate},
}

// kindOptional lists, per kind, the parameters it takes but does not
// require.
var kindOptional = map[Kind][]param{
	KindAccountDocument:      {pDocumentName},
	KindSubscriptionDocument: {pDocumentName},
	KindAccountInvoices:      {pPeriodStartDate, pPeriodEndDate},
	KindSubscriptionInvoices: {pPeriodStartDate, pPeriodEndDate},
	// A collection's rules are its own (validateCollection).
	KindCollection: {pBillingAccountName, pSubscriptionID, pPeriodStartDate, pPeriodEndDate, pDocumentKinds},
	// A scope and one of three periods; validateCostDetails says which go
	// together.
	KindCostDetails: {pSubscriptionID, pBillingAccountName, pBillingProfileName, pInvoiceSectionName, pCustomerName,
		pMetric, pPeriodStartDate, pPeriodEndDate, pBillingPeriod, pInvoiceName},
	KindReservationDetails: {pBillingProfileName},
	// One scope: a billing account (and profile), a reservation order (and
	// reservation) or a savings plan order (and savings plan).
	KindBenefitUtilization: {pBillingAccountName, pBillingProfileName, pBenefitKind,
		pReservationOrderID, pReservationID, pSavingsPlanOrderID, pSavingsPlanID},
	KindCustomers: {pBillingProfileName},
	KindEstate:    {pDocumentKinds, pIncludeAccounts, pExcludeAccounts, pAgreementTypes, pAccountNamePattern},
}

// Lists reports whether the kind lists invoices (a paged GET); its
// completion event carries the invoices instead of a URL.
func (k Kind) Lists() bool { return k == KindAccountInvoices || k == KindSubscriptionInvoices }

// ReturnsURL reports whether the kind's completion event carries a download
// URL: every kind but KindInvoice, whose event carries the invoice, and the
// listings, whose event carries the invoices.
func (k Kind) ReturnsURL() bool {
	return k != KindInvoice && !k.Lists() && k != KindCollection && !k.Discovers() && k != KindEstate
}
