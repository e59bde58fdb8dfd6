// Package emulator is a scriptable stand-in for the Azure services the worker talks to: the
// Azure Billing / Cost Management operations of docs/azure.md (five, then the rest of the family), served on Azure Resource Manager paths,
// and a minimal Entra ID (Azure AD) token endpoint that guards them. It runs in-process on top
// of net/http/httptest for integration tests and dev mode, or as its own process
// (cmd/emulator) for multi-process tests.
//
// # What it emulates
//
// ARM, under /providers/Microsoft.Billing/billingAccounts/:
//
//	#1 POST default/billingSubscriptions/{sub}/invoices/{invoice}/download   api-version=2020-05-01, downloadToken required
//	#2 POST {account}/invoices/{invoice}/downloadSummary                     api-version=2024-04-01
//	#3 POST default/billingSubscriptions/{sub}/downloadDocuments             api-version=2024-04-01, JSON body
//	#4 POST {account}/billingProfiles/{profile}/invoices/{invoice}/providers/Microsoft.CostManagement/pricesheets/default/download
//	                                                                          api-version=2023-11-01
//	#5 GET  {account}/invoices/{invoice}                                     api-version=2024-04-01
//
// and the rest of the family (docs/azure.md), all 2024-04-01 but the price sheet:
//
//	POST {account}/invoices/{invoice}/download[?documentName=]               Download By Billing Account
//	POST {account}/downloadDocuments                                         Download Documents By Billing Account (JSON body)
//	POST default/billingSubscriptions/{sub}/invoices/{invoice}/download[?documentName=]
//	                                                                          Download By Billing Subscription (#1's path, told apart by api-version)
//	POST {account}/invoices/{invoice}/transactionsDownload                   Transactions Download By Invoice (result without expiryTime)
//	POST {account}/billingProfiles/{profile}/providers/Microsoft.CostManagement/pricesheets/default/download
//	                                                                          Price Sheet - Download By Billing Profile (2023-11-01; downloadFileProperties)
//	GET  {account}/invoices[?periodStartDate=&periodEndDate=&top=]           List By Billing Account
//	GET  default/billingSubscriptions/{sub}/invoices[?...]                   List By Billing Subscription
//
// The listings serve invoices made up from the scope's name and the period (the same every
// time): DefaultInvoicesPerMonth a month, each with a mix of documents (Invoice, TaxReceipt,
// CreditNote, Summary, Transactions, VoidNote, a kind the specification does not list, and
// now and then a document named MissingDocumentPrefix+... whose download answers 404
// DocumentNotFound), statuses including PastDue, DefaultPageSize to a page with a nextLink
// (SetListing changes both). SetUnnamedDocuments adds what Azure's listings sometimes have:
// Invoice documents without a name, tax receipts without one, and ENF documents with only an
// externalUrl (ExternalDocumentURL).
//
// Requests are checked as Azure would: a bearer token issued by this emulator for
// Options.Audience (else 401 with a WWW-Authenticate header), the exact api-version, the
// parameter patterns of docs/azure.md and #3's body (else 400 with an ARM ErrorResponse naming the
// parameter in "target"), the method (405) and the path (404). Operations #1 to #4 are ARM
// long-running operations: a 202 carries a Location on this server (with the shapes Azure uses,
// #4's always with an explicit port) that the client polls with GET until a 200 carries the
// result: a SAS-style download URL on this server (/_emulator/blobs/...) that can itself be
// fetched. #5 answers with a realistic Invoice resource.
//
// The token endpoint serves /{tenant}/v2.0/.well-known/openid-configuration and
// /{tenant}/oauth2/v2.0/token (client credentials, with a client secret or a client assertion),
// enough for azidentity's ClientSecretCredential, ClientAssertionCredential and
// WorkloadIdentityCredential pointed at it with cloud.Configuration.ActiveDirectoryAuthorityHost
// set to Server.URL()+"/" and DisableInstanceDiscovery set. Tokens are opaque random strings
// that only this server knows. A Client with an Assertion accepts that federated token only, so a
// test can check that a workload identity credential presents the content of its token file.
//
// # Scripting
//
// What Azure answers is scripted per invoice name with a sequence of Replies:
//
//	srv.Script("G123456789",
//		emulator.Throttled(429, "x-ms-ratelimit-microsoft.consumption-retry-after", "3"),
//		emulator.Accepted("2"),
//		emulator.Accepted("2").After(time.Second),
//		emulator.OK())
//
// Each ARM call of an operation on that invoice takes the next reply: the start call (the POST,
// or #5's GET) and its retries take the first ones, then every GET of the Location the next.
// Once the script is exhausted its last reply repeats for polls, and the next start call begins
// the script again, so a second download of the same invoice behaves like the first. Operations
// (#1 to #5) keep separate positions: fetching an invoice with #5 does not advance the script of
// #2 for the same invoice. #3 (and the documents zip by billing account) is scripted by the
// invoiceName of its first document. The document downloads with a documentName keep one
// position per document, and look for a script named "{invoice}/{documentName}" before the
// invoice's. A billing profile's price sheet is scripted by the last hyphen-separated part of
// the profile's name (PROFILE-G123456789 follows G123456789's script), and a listing by the
// billing account or subscription listed; its first page is its start call, the pages after it
// (Call.Phase "page") its polls. Invoices without a script of their own follow the default script (Options.Default, SetDefault): one 202
// with Retry-After "1", then 200.
//
// Every ARM call is logged (Calls, CallsFor), including the ones rejected for auth or
// validation, and so is every token request (TokenRequests). SetTokenFailure makes the token
// endpoint fail or hang.
//
// # Control API
//
// Other processes drive the emulator over HTTP, without auth, under /_emulator/:
//
//	PUT  /_emulator/scripts/{invoiceName}  body: []Reply (JSON; an empty list removes the script)
//	PUT  /_emulator/default                body: []Reply (an empty list restores Options.Default)
//	GET  /_emulator/calls[?invoiceName=]   -> []Call
//	GET  /_emulator/token-requests         -> []TokenRequest
//	PUT  /_emulator/listing                body: {"pageSize": n, "invoicesPerMonth": n, "unnamed": bool} (0 keeps a value; unnamed: documents without a name or external)
//	POST /_emulator/reset
//	PUT  /_emulator/token-failure          body: {"mode": "ok" | "unavailable" | "hang"}
//	GET  /_emulator/token?tenant=&audience= -> {"access_token", "token_type", "expires_in"}
//	PUT  /_emulator/budget                 body: {"rate": 20, "burst": 40} (calls per second; zeros: unlimited),
//	                                       optional "steps": [{"after": 30, "rate": 10, "burst": 20}] (seconds
//	                                       from the next call on: the budget changes mid-run), "noRemaining":
//	                                       true (no remaining-budget header in any answer)
//	GET  /_emulator/budget                 -> []BucketStats
//
// # Throttling
//
// With a Budget (Options.Budget, SetBudget, PUT /_emulator/budget) every tenant has a token bucket
// per class of call, shared by all clients: Microsoft.Billing writes (the POSTs) and reads (the
// GETs), and Cost Management's calls. Every answer carries the remaining budget as Azure sends it
// (x-ms-ratelimit-remaining-tenant-writes or -reads; for Cost Management
// x-ms-ratelimit-microsoft.costmanagement-qpu-remaining); a call that finds its bucket empty is
// answered 429 with Retry-After (Resource Manager) or the consumption and qpu retry-after headers
// (Cost Management), in whole seconds until a token is back; a rejected call takes no token. The
// call log names the class charged (Call.Budget) and marks a call that came before the wait the
// bucket's last 429 announced had ended (Call.Early).
//
// Replies travel as JSON with the field names of Reply's tags; a delay is a Go duration string
// such as "1.5s".
package emulator
