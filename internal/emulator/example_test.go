package emulator_test

import (
	"fmt"
	"net/http"

	"github.com/azbilling/worker/internal/emulator"
)

// A price sheet download that is throttled once, then runs for one poll.
func Example() {
	srv := emulator.Start(emulator.Options{})
	defer srv.Close()
	srv.Script("T000940677",
		emulator.Throttled(http.StatusTooManyRequests, "x-ms-ratelimit-microsoft.consumption-retry-after", "3"),
		emulator.Accepted("2"),
		emulator.OK())
	token := srv.IssueToken("my-tenant", emulator.DefaultAudience)

	call := func(method, url string) *http.Response {
		req, _ := http.NewRequest(method, url, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := srv.Client().Do(req)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		return resp
	}
	start := srv.URL() + "/providers/Microsoft.Billing/billingAccounts/" +
		"7c05a543-80ff-571e-9f98-1063b3b53cf2:99ad03ad-2d1b-4889-a452-090ad407d25f_2019-05-31" +
		"/billingProfiles/2USN-TPCD-BG7-TGB/invoices/T000940677" +
		"/providers/Microsoft.CostManagement/pricesheets/default/download?api-version=2023-11-01"
	call(http.MethodPost, start)                      // 429
	resp := call(http.MethodPost, start)              // 202
	call(http.MethodGet, resp.Header.Get("Location")) // 200

	for _, c := range srv.CallsFor("T000940677") {
		fmt.Println(c.Operation, c.Phase, c.Status, c.RetryAfter, c.Accepted, c.Tenant)
	}
	// Output:
	// pricesheet-download start 429 3 false my-tenant
	// pricesheet-download start 202 2 true my-tenant
	// pricesheet-download poll 200  false my-tenant
}
