package billing

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestCheckLocation(t *testing.T) {
	t.Parallel()
	const pricesheet = "/providers/Microsoft.Billing/billingAccounts/a:b_2019-05-31/billingProfiles/p/providers/Microsoft.CostManagement/operationResults/6f2d?sessiontoken=0:000000&api-version=2023-11-01&OperationType=PriceSheet"
	cases := []struct {
		endpoint, loc string
		want          string // the URL to poll; "" for a rejection
		reason        string // part of the rejection's reason
	}{
		// The same host: an explicit default port is no port.
		{"https://management.azure.com", "https://management.azure.com:443" + pricesheet, "https://management.azure.com:443" + pricesheet, ""},
		{"https://management.azure.com", "https://management.azure.com" + pricesheet, "https://management.azure.com" + pricesheet, ""},
		{"https://management.azure.com:443", "https://management.azure.com/x?api-version=1", "https://management.azure.com/x?api-version=1", ""},
		{"https://management.azure.com", "HTTPS://Management.Azure.COM/x", "https://Management.Azure.COM/x", ""},
		{"https://management.chinacloudapi.cn", "https://management.chinacloudapi.cn:443/x", "https://management.chinacloudapi.cn:443/x", ""},
		{"https://127.0.0.1:8443", "https://127.0.0.1:8443/x", "https://127.0.0.1:8443/x", ""},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080/x", "http://127.0.0.1:8080/x", ""}, // an http emulator, when allowed
		{"http://localhost", "http://localhost:80/x", "http://localhost:80/x", ""},
		// Relative URLs resolve against the endpoint; a fragment is dropped.
		{"https://management.azure.com", "/providers/x?api-version=1", "https://management.azure.com/providers/x?api-version=1", ""},
		{"https://management.azure.com", "https://management.azure.com/x#top", "https://management.azure.com/x", ""},

		// Another host, port or scheme, or user info: the token does not go there.
		{"https://management.azure.com", "https://management.azure.com:8443/x", "", "not on the ARM endpoint's host"},
		{"https://management.azure.com:8443", "https://management.azure.com/x", "", "not on the ARM endpoint's host"},
		{"https://management.azure.com", "https://evil.example/x", "", "not on the ARM endpoint's host"},
		{"https://management.azure.com", "https://management.azure.com.evil.example/x", "", "not on the ARM endpoint's host"},
		{"https://management.azure.com", "https://management.azure.com@evil.example/x", "", "user info"},
		{"https://management.azure.com", "https://user:hunter2@management.azure.com/x", "", "user info"},
		{"https://management.azure.com", "https://user@management.azure.com/x", "", "user info"},
		{"https://management.azure.com", "//evil.example/x", "", "not on the ARM endpoint's host"},
		{"https://management.azure.com", "http://management.azure.com/x", "", "scheme is http"},
		{"https://management.azure.com", "http://management.azure.com:443/x", "", "scheme is http"},
		{"https://management.azure.com", "ftp://management.azure.com/x", "", "scheme is ftp"},
		{"https://127.0.0.1:8443", "http://127.0.0.1:8443/x", "", "scheme is http"},
		{"http://127.0.0.1:8080", "https://127.0.0.1:8080/x", "", "scheme is https"},
		{"https://127.0.0.1:8443", "https://localhost:8443/x", "", "not on the ARM endpoint's host"},
		{"https://127.0.0.1:8443", "https://[::1]:8443/x", "", "not on the ARM endpoint's host"},
		{"https://management.azure.com", "https://management.azure.com/%zz", "", "not a URL"},
		{"https://management.azure.com", "https://management.azure.com/" + strings.Repeat("a", MaxLocationLen), "", "longer than 16 KiB"},
	}
	for _, c := range cases {
		ep, err := url.Parse(c.endpoint)
		if err != nil {
			t.Fatal(err)
		}
		got, err := CheckLocation(ep, c.loc)
		if c.want != "" {
			if err != nil || got.String() != c.want {
				t.Errorf("CheckLocation(%s, %.80s) = %v, %v; want %s", c.endpoint, c.loc, got, err, c.want)
			}
			continue
		}
		var le *LocationError
		if err == nil || !errors.As(err, &le) || !errors.Is(err, ErrLocationRejected) || !strings.Contains(le.Reason, c.reason) {
			t.Errorf("CheckLocation(%s, %.80s) = %v, %v; want a rejection for %q", c.endpoint, c.loc, got, err, c.reason)
		}
	}
}

// The rejection names the URL without its credentials: user info and SAS
// signatures are masked.
func TestLocationErrorRedacts(t *testing.T) {
	t.Parallel()
	ep, _ := url.Parse("https://management.azure.com")
	for _, loc := range []string{
		"https://admin:hunter2@evil.example/x?sig=c2VjcmV0LXNpZw%3D%3D&sv=2024",
		"http://evil.example/x?sv=2024&sig=c2VjcmV0LXNpZw%3D%3D",
		"https://evil.example/" + strings.Repeat("a", MaxLocationLen) + "?sig=c2VjcmV0LXNpZw%3D%3D",
		"https://evil.example/?sig=c2VjcmV0LXNpZw==&x=%zz",
	} {
		_, err := CheckLocation(ep, loc)
		if err == nil {
			t.Fatalf("%.60s accepted", loc)
		}
		for _, secret := range []string{"hunter2", "c2VjcmV0LXNpZw"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%q shows %s", err, secret)
			}
		}
	}
}
