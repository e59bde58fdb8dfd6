package emulator

import (
	"encoding/json"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"
	"time"
)

// Operation names, as logged in Call.Operation.
const (
	OpInvoiceDownload    = "invoice-download"    // #1
	OpInvoiceSummary     = "invoice-summary"     // #2
	OpDocumentsDownload  = "documents-download"  // #3
	OpPricesheetDownload = "pricesheet-download" // #4
	OpInvoiceGet         = "invoice-get"         // #5
	// The rest of the family (docs/azure.md, "The rest of the family").
	OpAccountDocument         = "account-document-download"      // Invoices - Download By Billing Account
	OpAccountDocuments        = "account-documents-download"     // Invoices - Download Documents By Billing Account
	OpSubscriptionDocument    = "subscription-document-download" // Invoices - Download By Billing Subscription (2024-04-01)
	OpTransactionsDownload    = "transactions-download"          // Transactions - Transactions Download By Invoice
	OpProfilePricesheet       = "profile-pricesheet-download"    // Price Sheet - Download By Billing Profile
	OpAccountInvoiceList      = "account-invoice-list"           // Invoices - List By Billing Account
	OpSubscriptionInvoiceList = "subscription-invoice-list"      // Invoices - List By Billing Subscription
	// Cost data (docs/azure.md, "Cost data"), all Cost Management's.
	OpCostDetails        = "cost-details-report"         // Generate Cost Details Report
	OpReservationDetails = "reservation-details-report"  // Generate Reservation Details Report
	OpBenefitUtilization = "benefit-utilization-report"  // Generate Benefit Utilization Summaries Report
	OpAccountPricesheet  = "account-pricesheet-download" // Price Sheet - Download By Billing Account (EA)
)

// operations lists every operation name.
var operations = [...]string{OpBillingAccountList, OpBillingProfileList, OpCustomerList, OpSubscriptionList, OpInvoiceDownload, OpInvoiceSummary, OpDocumentsDownload, OpPricesheetDownload, OpInvoiceGet,
	OpAccountDocument, OpAccountDocuments, OpSubscriptionDocument, OpTransactionsDownload, OpProfilePricesheet,
	OpAccountInvoiceList, OpSubscriptionInvoiceList, OpCostDetails, OpReservationDetails, OpBenefitUtilization, OpAccountPricesheet}

// listing reports whether op is one of the paged listings (GET, not long-running).
func listing(op string) bool { return op == OpAccountInvoiceList || op == OpSubscriptionInvoiceList }

// Call phases.
const (
	PhaseStart = "start" // the POST of #1-#4, the GET of #5
	PhasePoll  = "poll"  // a GET of an operation's Location
	PhasePage  = "page"  // a GET of a listing's nextLink
)

// Call is one logged ARM call.
type Call struct {
	Time      time.Time `json:"time"`
	Method    string    `json:"method"`
	Path      string    `json:"path"`
	Query     string    `json:"query"`
	Host      string    `json:"host"`
	Operation string    `json:"operation"` // one of the Op constants; empty when the path matched none
	Phase     string    `json:"phase"`     // PhaseStart or PhasePoll
	// InvoiceName is the invoice the call is about; for a listing, the billing account or
	// subscription listed; for a billing profile's price sheet, the last hyphen-separated part
	// of the profile's name. Scripts are looked up by it.
	InvoiceName string `json:"invoiceName"`
	// DocumentName is the documentName of a document download, when it names one.
	DocumentName string `json:"documentName,omitempty"`
	OpID         string `json:"opId,omitempty"`
	Status       int    `json:"status"`               // 0: the connection was reset
	RetryAfter   string `json:"retryAfter,omitempty"` // the Retry-After (or throttle header) answered, raw
	Tenant       string `json:"tenant,omitempty"`     // the tenant of the caller's token
	Accepted     bool   `json:"accepted"`             // a start call that created an operation (200 or 202)
	Budget       string `json:"budget,omitempty"`     // the budget class charged (BudgetWrites...), when a Budget is set
	Early        bool   `json:"early,omitempty"`      // it came before the end of the wait its bucket's last 429 announced
}

// armPrefix is where the emulated operations live.
const armPrefix = "/providers/Microsoft.Billing/billingAccounts/"

// Parameter patterns of docs/azure.md ("Parameter patterns").
var (
	guidPattern = regexp.MustCompile(`^[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}$`)
	// Billing 2024-04-01.
	billingAccountPattern = regexp.MustCompile(`^([0-9]+|([Pp][Cc][Nn]\.[A-Za-z0-9]+)|[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}(:[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}_[0-9]{4}(-[0-9]{2}){2})?)$`)
	invoiceNamePattern    = regexp.MustCompile(`^(H[0-9]-[A-Z0-9]+)$|^(?:([GHT]|HT){1}[A-Z0-9]{9})$|^(?:[D]{1}[A-Z0-9]{9})$|^(?:E{1}[B-Z0-9]{1}[A-Z0-9]{8})$|^(?:EA[A-Z0-9]{8})$`)
	// Cost Management 2023-11-01 (unanchored in the spec; anchored here).
	cmBillingAccountPattern = regexp.MustCompile(`^([A-Za-z0-9]+(-[A-Za-z0-9]+)+):([A-Za-z0-9]+(-[A-Za-z0-9]+)+)_[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
	cmBillingProfilePattern = regexp.MustCompile(`^([A-Za-z0-9]+(-[A-Za-z0-9]+)+)$`)
	cmInvoiceNamePattern    = regexp.MustCompile(`^[A-Za-z0-9]+$`)
	// Billing 2020-05-01 has no patterns; these keep the values bounded and path/query safe.
	legacyInvoiceNamePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,100}$`)
	downloadTokenPattern     = regexp.MustCompile(`^[\x21-\x7e]+$`) // and at most maxDownloadToken long
)

const maxDownloadToken = 1024

// route is one ARM path shape. Start routes name their operation; the operation-results routes
// (op == "") find theirs by the last path segment.
type route struct {
	op     string
	method string
	// prefix is where segs start; empty: armPrefix.
	prefix     string
	segs       []string // below prefix; "{name}" binds a parameter
	apiVersion string
	patterns   map[string]*regexp.Regexp
}

var routes = []route{
	{
		op: OpInvoiceDownload, method: http.MethodPost, apiVersion: "2020-05-01",
		segs:     strings.Split("default/billingSubscriptions/{subscriptionId}/invoices/{invoiceName}/download", "/"),
		patterns: map[string]*regexp.Regexp{"subscriptionId": guidPattern, "invoiceName": legacyInvoiceNamePattern},
	},
	{
		op: OpInvoiceSummary, method: http.MethodPost, apiVersion: "2024-04-01",
		segs:     strings.Split("{billingAccountName}/invoices/{invoiceName}/downloadSummary", "/"),
		patterns: map[string]*regexp.Regexp{"billingAccountName": billingAccountPattern, "invoiceName": invoiceNamePattern},
	},
	{
		op: OpDocumentsDownload, method: http.MethodPost, apiVersion: "2024-04-01",
		segs:     strings.Split("default/billingSubscriptions/{subscriptionId}/downloadDocuments", "/"),
		patterns: map[string]*regexp.Regexp{"subscriptionId": guidPattern},
	},
	{
		op: OpPricesheetDownload, method: http.MethodPost, apiVersion: "2023-11-01",
		segs: strings.Split("{billingAccountName}/billingProfiles/{billingProfileName}/invoices/{invoiceName}"+
			"/providers/Microsoft.CostManagement/pricesheets/default/download", "/"),
		patterns: map[string]*regexp.Regexp{
			"billingAccountName": cmBillingAccountPattern, "billingProfileName": cmBillingProfilePattern, "invoiceName": cmInvoiceNamePattern,
		},
	},
	{
		op: OpInvoiceGet, method: http.MethodGet, apiVersion: "2024-04-01",
		segs:     strings.Split("{billingAccountName}/invoices/{invoiceName}", "/"),
		patterns: map[string]*regexp.Regexp{"billingAccountName": billingAccountPattern, "invoiceName": invoiceNamePattern},
	},
	{
		op: OpAccountDocument, method: http.MethodPost, apiVersion: "2024-04-01",
		segs:     strings.Split("{billingAccountName}/invoices/{invoiceName}/download", "/"),
		patterns: map[string]*regexp.Regexp{"billingAccountName": billingAccountPattern, "invoiceName": invoiceNamePattern},
	},
	{
		op: OpAccountDocuments, method: http.MethodPost, apiVersion: "2024-04-01",
		segs:     strings.Split("{billingAccountName}/downloadDocuments", "/"),
		patterns: map[string]*regexp.Regexp{"billingAccountName": billingAccountPattern},
	},
	{
		// The path of #1 in another api-version: matchRoute prefers the route of the
		// request's api-version.
		op: OpSubscriptionDocument, method: http.MethodPost, apiVersion: "2024-04-01",
		segs:     strings.Split("default/billingSubscriptions/{subscriptionId}/invoices/{invoiceName}/download", "/"),
		patterns: map[string]*regexp.Regexp{"subscriptionId": guidPattern, "invoiceName": invoiceNamePattern},
	},
	{
		op: OpTransactionsDownload, method: http.MethodPost, apiVersion: "2024-04-01",
		segs:     strings.Split("{billingAccountName}/invoices/{invoiceName}/transactionsDownload", "/"),
		patterns: map[string]*regexp.Regexp{"billingAccountName": billingAccountPattern, "invoiceName": invoiceNamePattern},
	},
	{
		op: OpProfilePricesheet, method: http.MethodPost, apiVersion: "2023-11-01",
		segs: strings.Split("{billingAccountName}/billingProfiles/{billingProfileName}"+
			"/providers/Microsoft.CostManagement/pricesheets/default/download", "/"),
		patterns: map[string]*regexp.Regexp{"billingAccountName": cmBillingAccountPattern, "billingProfileName": cmBillingProfilePattern},
	},
	{
		op: OpAccountInvoiceList, method: http.MethodGet, apiVersion: "2024-04-01",
		segs:     strings.Split("{billingAccountName}/invoices", "/"),
		patterns: map[string]*regexp.Regexp{"billingAccountName": billingAccountPattern},
	},
	{
		op: OpSubscriptionInvoiceList, method: http.MethodGet, apiVersion: "2024-04-01",
		segs:     strings.Split("default/billingSubscriptions/{subscriptionId}/invoices", "/"),
		patterns: map[string]*regexp.Regexp{"subscriptionId": guidPattern},
	},
	{method: http.MethodGet, segs: strings.Split("{billingAccountName}/invoices/{invoiceName}/operationResults/{operation}", "/")},
	{method: http.MethodGet, segs: strings.Split("default/billingSubscriptions/{subscriptionId}/operationResults/{operation}", "/")},
	{method: http.MethodGet, segs: strings.Split("{billingAccountName}/operationResults/{operation}", "/")},
	{method: http.MethodGet, segs: strings.Split("{billingAccountName}/billingProfiles/{billingProfileName}/providers/Microsoft.CostManagement/operationResults/{operation}", "/")},
}

// matchRoute finds the route whose shape p has, whatever the method. Literal segments compare
// case-insensitively, as ARM does. When two operations share a path in different api-versions,
// the one of apiVersion wins; else the first.
func matchRoute(p, apiVersion string) (*route, map[string]string) {
	var found *route
	var foundParams map[string]string
	for i := range routes {
		rt := &routes[i]
		prefix := rt.prefix
		if prefix == "" {
			prefix = armPrefix
		}
		if len(p) < len(prefix) || !strings.EqualFold(p[:len(prefix)], prefix) {
			continue
		}
		if params, ok := rt.match(strings.Split(p[len(prefix):], "/")); ok {
			if found == nil || rt.apiVersion == apiVersion && found.apiVersion != apiVersion {
				found, foundParams = rt, params
			}
		}
	}
	if found == nil {
		return matchCostPoll(p)
	}
	return found, foundParams
}

func (rt *route) match(segs []string) (map[string]string, bool) {
	if len(segs) != len(rt.segs) {
		return nil, false
	}
	params := map[string]string{}
	for i, want := range rt.segs {
		switch name, ok := paramName(want); {
		case segs[i] == "":
			return nil, false
		case ok:
			params[name] = segs[i]
		case !strings.EqualFold(segs[i], want):
			return nil, false
		}
	}
	return params, true
}

// paramName returns name for a "{name}" segment.
func paramName(seg string) (string, bool) {
	if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
		return seg[1 : len(seg)-1], true
	}
	return "", false
}

// operation is one started operation: what its Location and result are made of. take gives
// it its id when the start call is accepted; it does not change after that.
type operation struct {
	id                                             string
	op                                             string // one of the Op constants
	apiVersion                                     string
	invoiceName                                    string
	documentName                                   string // of a document download, when named
	subscriptionID, billingAccount, billingProfile string
	// The cost data operations': where the operation lives (its scope's
	// path), the name it is scripted by, the api-version its Location
	// names (Azure's may differ from the call's), and its request.
	scope, key, pollAPIVersion string
	cost                       costRequest
}

// scriptKey is the name the operation's script is looked up by (Call.InvoiceName).
func (o *operation) scriptKey() string {
	switch {
	case o.key != "":
		return o.key
	case o.op == OpProfilePricesheet:
		return o.billingProfile[strings.LastIndex(o.billingProfile, "-")+1:]
	case o.op == OpAccountInvoiceList:
		return o.billingAccount
	case o.op == OpSubscriptionInvoiceList:
		return o.subscriptionID
	case discovery(o.op) && o.billingAccount != "":
		return o.op + "/" + o.billingAccount
	case discovery(o.op):
		return o.op
	}
	return o.invoiceName
}

// trackName is the name of the operation's position in its script: one per document of an
// invoice, so that the documents of one invoice are downloaded independently.
func (o *operation) trackName() string {
	if o.documentName != "" {
		return o.scriptKey() + "/" + o.documentName
	}
	return o.scriptKey()
}

// pollTarget is the path and query of the operation's Location, in the shapes of docs/azure.md
// ("The long-running protocol").
func (o *operation) pollTarget() (p, query string) {
	query = "api-version=" + o.apiVersion
	switch o.op {
	case OpInvoiceDownload:
		p = armPrefix + "default/billingSubscriptions/" + o.subscriptionID + "/operationResults/invoiceDownload_" + o.id
	case OpInvoiceSummary:
		p = armPrefix + o.billingAccount + "/operationResults/invoiceSummaryDownload_" + o.id
	case OpDocumentsDownload:
		p = armPrefix + "default/billingSubscriptions/" + o.subscriptionID + "/operationResults/documentsDownload_" + o.id
	case OpPricesheetDownload, OpProfilePricesheet:
		p = armPrefix + o.billingAccount + "/billingProfiles/" + o.billingProfile + "/providers/Microsoft.CostManagement/operationResults/" + o.id
		query = "sessiontoken=0:000000&api-version=" + o.apiVersion + "&OperationType=PriceSheet"
	case OpAccountDocument:
		p = armPrefix + o.billingAccount + "/invoices/" + o.invoiceName + "/operationResults/invoiceDownload_" + o.id
	case OpAccountDocuments:
		p = armPrefix + o.billingAccount + "/operationResults/invoiceDownload_" + o.id
	case OpSubscriptionDocument:
		p = armPrefix + "default/billingSubscriptions/" + o.subscriptionID + "/operationResults/invoiceDownload_" + o.id
	case OpTransactionsDownload:
		p = armPrefix + o.billingAccount + "/operationResults/transactionsDownload_" + o.id
	case OpCostDetails, OpReservationDetails, OpBenefitUtilization, OpAccountPricesheet:
		return o.costPollTarget()
	}
	return p, query
}

// costManagement reports whether the operation is Cost Management's (its Location names the
// port, its 202 carries OData-EntityId).
func (o *operation) costManagement() bool {
	switch o.op {
	case OpPricesheetDownload, OpProfilePricesheet, OpCostDetails, OpReservationDetails, OpBenefitUtilization, OpAccountPricesheet:
		return true
	}
	return false
}

// location is the absolute Location URL of the operation on scheme://host, the address the
// client used. Cost Management's always names the port, as Azure's does
// ("https://management.azure.com:443/...").
func (o *operation) location(scheme, host string) string {
	if o.costManagement() {
		if _, _, err := net.SplitHostPort(host); err != nil {
			port := "443"
			if scheme == "http" {
				port = "80"
			}
			host = net.JoinHostPort(strings.Trim(host, "[]"), port)
		}
	}
	p, query := o.pollTarget()
	return scheme + "://" + host + p + "?" + query
}

// exchange is one ARM request being answered, with its log entry.
type exchange struct {
	w     http.ResponseWriter
	r     *http.Request
	query url.Values
	call  Call
	// principal is the client id the caller's token was issued to.
	principal string
}

// serveARM answers everything that is not the token endpoint, a blob or the control API.
func (s *Server) serveARM(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("x-ms-request-id", newGUID())
	corr := r.Header.Get("x-ms-correlation-request-id")
	if corr == "" {
		corr = newGUID()
	}
	h.Set("x-ms-correlation-request-id", corr)

	x := &exchange{w: w, r: r, query: r.URL.Query(), call: Call{
		Time: s.now(), Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Host: r.Host,
	}}
	rt, params := matchRoute(r.URL.Path, x.query.Get("api-version"))
	switch {
	case rt == nil:
	case rt.op == "":
		x.call.Phase = PhasePoll
	default:
		x.call.Operation, x.call.Phase = rt.op, PhaseStart
		x.call.InvoiceName = (&operation{op: rt.op, invoiceName: params["invoiceName"], billingAccount: params["billingAccountName"],
			billingProfile: params["billingProfileName"], subscriptionID: params["subscriptionId"]}).scriptKey()
		if (listing(rt.op) || discovery(rt.op)) && x.query.Has(skipTokenParam) {
			x.call.Phase = PhasePage
		}
	}
	if !s.authenticate(x) {
		return
	}
	switch {
	case rt == nil:
		s.reject(x, http.StatusNotFound, "NotFound", "",
			"The path '%s' is not one of the emulated Microsoft.Billing operations.", r.URL.Path)
	case r.Method != rt.method:
		h.Set("Allow", rt.method)
		s.reject(x, http.StatusMethodNotAllowed, "MethodNotAllowed", "",
			"The HTTP method '%s' is not supported on this path; use %s.", r.Method, rt.method)
	case !s.charge(x):
	case rt.op == "":
		s.poll(x, params["operation"])
	default:
		s.begin(x, rt, params)
	}
}

// authenticate checks the bearer token, notes its tenant, and answers 401 when it is not one
// this server issued, unexpired, for Options.Audience.
func (s *Server) authenticate(x *exchange) bool {
	scheme, token, _ := strings.Cut(x.r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return s.deny(x, "InvalidAuthenticationToken", "Authentication failed. The 'Authorization' header is missing or is not a bearer token.")
	}
	info, ok := s.lookupToken(token)
	if !ok {
		return s.deny(x, "InvalidAuthenticationToken", "The access token is invalid: it was not issued by this emulator.")
	}
	x.call.Tenant, x.principal = info.tenant, info.clientID
	if now := s.now(); !now.Before(info.expires) {
		return s.deny(x, "ExpiredAuthenticationToken", fmt.Sprintf(
			"The access token expiry UTC time '%s' is earlier than current UTC time '%s'.",
			info.expires.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)))
	}
	if !sameAudience(info.audience, s.opts.Audience) {
		allowed := strings.TrimSuffix(s.opts.Audience, "/")
		return s.deny(x, "InvalidAuthenticationToken", fmt.Sprintf(
			"The access token has been obtained for wrong audience or resource '%s'. It should exactly match with one of the allowed audiences '%s','%s/'.",
			info.audience, allowed, allowed))
	}
	return true
}

// deny answers 401 with a WWW-Authenticate challenge that points at this server's authority.
func (s *Server) deny(x *exchange, code, message string) bool {
	tenant := x.call.Tenant
	if tenant == "" {
		tenant = "common"
	}
	//nolint:gocritic // HTTP's quoted-string around the values, not Go's %q quoting
	x.w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer authorization_uri="%s/%s", error="invalid_token", error_description="%s"`,
		s.base(x.r), tenant, message))
	s.reject(x, http.StatusUnauthorized, code, "", "%s", message)
	return false
}

// reject logs the call with status and answers an ErrorResponse.
func (s *Server) reject(x *exchange, status int, code, target, format string, args ...any) {
	x.call.Status = status
	s.record(x.call)
	writeRaw(x.w, status, jsonType, marshal(errorBody(status, code, fmt.Sprintf(format, args...), target)))
}

// record appends a call to the log.
func (s *Server) record(c Call) {
	s.mu.Lock()
	s.st.calls = append(s.st.calls, c)
	s.mu.Unlock()
	s.logCall(c)
}

func (s *Server) logCall(c Call) {
	s.logf("emulator: %s %s -> %d (%s %s invoice=%q op=%s tenant=%s)",
		c.Method, c.Path, c.Status, c.Operation, c.Phase, c.InvoiceName, c.OpID, c.Tenant)
}

// checkAPIVersion answers 400 unless the query carries api-version want.
func (s *Server) checkAPIVersion(x *exchange, want string) bool {
	switch got := x.query.Get("api-version"); got {
	case want:
		return true
	case "":
		s.reject(x, http.StatusBadRequest, "MissingApiVersionParameter", "api-version",
			"The api-version query parameter (?api-version=) is required for all requests.")
	default:
		s.reject(x, http.StatusBadRequest, "InvalidApiVersionParameter", "api-version",
			"The api-version '%s' is invalid. The supported versions are '%s'.", got, want)
	}
	return false
}

// begin answers the first call of an operation: validation, then the script's next reply.
func (s *Server) begin(x *exchange, rt *route, params map[string]string) {
	if !s.checkAPIVersion(x, rt.apiVersion) {
		return
	}
	for _, seg := range rt.segs {
		name, ok := paramName(seg)
		if re := rt.patterns[name]; ok && re != nil && !re.MatchString(params[name]) {
			s.reject(x, http.StatusBadRequest, "InvalidParameter", name,
				"The value '%s' of parameter '%s' does not match the pattern '%s'.", params[name], name, re)
			return
		}
	}
	op := &operation{
		op:             rt.op,
		apiVersion:     rt.apiVersion,
		invoiceName:    params["invoiceName"],
		subscriptionID: params["subscriptionId"],
		billingAccount: params["billingAccountName"],
		billingProfile: params["billingProfileName"],
	}
	switch rt.op {
	case OpAccountDocument, OpSubscriptionDocument:
		if x.query.Has("documentName") {
			doc := x.query.Get("documentName")
			if doc == "" || len(doc) > maxDocumentName || !printableText(doc) {
				s.reject(x, http.StatusBadRequest, "InvalidParameter", "documentName",
					"The query parameter 'documentName' must be 1 to %d printable characters.", maxDocumentName)
				return
			}
			op.documentName, x.call.DocumentName = doc, doc
			if missingDocument(doc) {
				s.reject(x, http.StatusNotFound, "DocumentNotFound", "documentName",
					"The document '%s' of invoice '%s' was not found.", doc, op.invoiceName)
				return
			}
		}
	case OpAccountInvoiceList, OpSubscriptionInvoiceList:
		if !s.listingRefused(x, op) {
			s.list(x, op)
		}
		return
	case OpBillingAccountList, OpBillingProfileList, OpCustomerList, OpSubscriptionList:
		s.discover(x, op)
		return
	case OpCostDetails, OpReservationDetails, OpBenefitUtilization, OpAccountPricesheet:
		if !s.beginCost(x, op, params) {
			return
		}
	case OpInvoiceDownload:
		if token := x.query.Get("downloadToken"); len(token) > maxDownloadToken || !downloadTokenPattern.MatchString(token) {
			s.reject(x, http.StatusBadRequest, "InvalidParameter", "downloadToken",
				"The query parameter 'downloadToken' is required: 1 to 1024 printable characters without spaces.")
			return
		}
	case OpDocumentsDownload, OpAccountDocuments:
		invoice, target, problem := readDocuments(x)
		if problem != "" {
			s.reject(x, http.StatusBadRequest, "InvalidRequestContent", target, "%s", problem)
			return
		}
		op.invoiceName, x.call.InvoiceName = invoice, invoice
	}
	s.answer(x, op, s.take(x, op, true))
}

// readDocuments checks #3's body, a non-empty JSON array of {documentName, invoiceName}, and
// returns the first invoiceName, or the target and text of the problem.
func readDocuments(x *exchange) (invoice, target, problem string) {
	if mt, _, err := mime.ParseMediaType(x.r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return "", "", "The request content type must be application/json."
	}
	var docs []struct {
		DocumentName string `json:"documentName"`
		InvoiceName  string `json:"invoiceName"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(x.w, x.r.Body, 1<<20)).Decode(&docs); err != nil {
		return "", "parameters", "The request content is not a JSON array of documents: " + err.Error()
	}
	if len(docs) == 0 {
		return "", "parameters", "The request content must list at least one document."
	}
	for i, d := range docs {
		if d.InvoiceName == "" {
			return "", fmt.Sprintf("parameters[%d].invoiceName", i), fmt.Sprintf("Document %d has no invoiceName.", i)
		}
	}
	return docs[0].InvoiceName, "", ""
}

// poll answers a GET of an operation's Location with the script's next reply.
func (s *Server) poll(x *exchange, name string) {
	s.mu.Lock()
	op := s.st.ops[name]
	s.mu.Unlock()
	if op == nil {
		s.reject(x, http.StatusNotFound, "NotFound", "", "The operation '%s' was not found.", name)
		return
	}
	if p, _ := op.pollTarget(); !strings.EqualFold(x.r.URL.Path, p) {
		s.reject(x, http.StatusNotFound, "NotFound", "", "The operation '%s' was not found at this path.", name)
		return
	}
	x.call.Operation, x.call.InvoiceName, x.call.DocumentName, x.call.OpID = op.op, op.scriptKey(), op.documentName, op.id
	want := op.apiVersion
	if op.pollAPIVersion != "" {
		want = op.pollAPIVersion
	}
	if !s.checkAPIVersion(x, want) {
		return
	}
	s.answer(x, op, s.take(x, op, false))
}

// take plays the next reply of the operation's script and logs the call. A start call
// answered 200 or 202 creates the operation: it gets an id and, when it is 202, a Location.
// The reply is returned with its status normalised.
func (s *Server) take(x *exchange, op *operation, start bool) Reply {
	key := trackKey{op.op, op.trackName()}
	s.mu.Lock()
	t := s.st.tracks[key]
	if t == nil || start && t.exhausted() {
		replies, own := s.st.scripts[op.trackName()]
		if !own {
			replies, own = s.st.scripts[op.scriptKey()]
		}
		if !own {
			replies = s.st.def
		}
		t = &track{replies: replies, own: own}
		s.st.tracks[key] = t
	}
	rep := t.take()
	switch {
	case rep.Status == 0:
		rep.Status = http.StatusOK
	case rep.Status == http.StatusAccepted && (op.op == OpInvoiceGet || listing(op.op) || discovery(op.op)):
		rep.Status = http.StatusOK // #5 and the listings are not long-running
	}
	if !rep.Reset { // a reset is logged with status 0
		x.call.Status = rep.Status
		x.call.RetryAfter = rep.retryAfter()
	}
	if start && !rep.Reset && (rep.Status == http.StatusOK || rep.Status == http.StatusAccepted) {
		op.id = newGUID()
		x.call.Accepted, x.call.OpID = true, op.id
		if rep.Status == http.StatusAccepted {
			p, _ := op.pollTarget()
			s.st.ops[path.Base(p)] = op
		}
	}
	s.st.calls = append(s.st.calls, x.call)
	s.mu.Unlock()
	s.logCall(x.call)
	return rep
}

// answer sends a reply after its delay: a reset, a raw body, the result (200), a Location
// (202) or an ErrorResponse (4xx, 5xx).
func (s *Server) answer(x *exchange, op *operation, rep Reply) {
	if !s.wait(x.r, time.Duration(rep.Delay)) {
		panic(http.ErrAbortHandler) // the client left or the server is closing
	}
	if rep.Reset {
		resetConn(x.w)
		return
	}
	h := x.w.Header()
	var contentType string
	var body []byte
	switch {
	case rep.Body != nil:
		body = []byte(*rep.Body)
		if len(body) > 0 {
			contentType = jsonType
		}
	case rep.Status == http.StatusOK && rep.Report != "":
		contentType, body = jsonType, marshal(s.reportStatus(op, rep))
	case rep.Status == http.StatusOK:
		contentType, body = jsonType, marshal(s.result(op, x.r))
	case rep.Status >= 400:
		contentType, body = jsonType, marshal(errorBody(rep.Status, rep.ErrorCode, rep.ErrorMessage, rep.ErrorTarget))
	}
	if rep.Status == http.StatusAccepted && !rep.NoLocation {
		loc := rep.Location
		if loc == "" {
			loc = op.location(s.scheme(), x.r.Host)
		}
		h.Set("Location", loc)
		if op.costManagement() {
			h.Set("OData-EntityId", op.id)
		}
	}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	for k, v := range rep.Header {
		h.Set(k, v)
	}
	writeRaw(x.w, rep.Status, "", body)
}

// resetConn drops the connection with a TCP reset instead of answering.
func resetConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // not hijackable (HTTP/2): aborting resets the stream
	}
	raw := conn
	if tc, ok := conn.(interface{ NetConn() net.Conn }); ok {
		raw = tc.NetConn()
	}
	if tcp, ok := raw.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0) // best effort: a plain close is still a failure for the client
	}
	raw.Close()
}

// ErrorResponse shapes.
type errorResponse struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string        `json:"code"`
	Message string        `json:"message"`
	Target  string        `json:"target,omitempty"`
	Details []errorDetail `json:"details"`
}

// errorBody builds an ErrorResponse; an empty code or message is derived from the status.
func errorBody(status int, code, message, target string) errorResponse {
	text := http.StatusText(status)
	if code == "" {
		code = strings.ReplaceAll(text, " ", "")
	}
	if message == "" {
		message = text + "."
	}
	return errorResponse{Error: errorDetail{Code: code, Message: message, Target: target, Details: []errorDetail{}}}
}
