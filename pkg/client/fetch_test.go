package client_test

import (
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/azbilling/worker/pkg/client"
)

// The Blob Storage openers name the container asked for under the
// account, and refuse a connection string that names no account.
func TestBlobOpeners(t *testing.T) {
	conn := "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;" +
		"AccountKey=bm90IGEgcmVhbCBhY2NvdW50IGtleQ==;" +
		"BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
	c, err := client.BlobConnectionString(conn)("billing-archive")
	if err != nil || c.URL() != "http://127.0.0.1:10000/devstoreaccount1/billing-archive" {
		t.Errorf("connection string: %v %v", c, err)
	}
	if _, err := client.BlobConnectionString("not a connection string")("billing-archive"); err == nil {
		t.Error("a bad connection string was taken")
	}
	var cred azcore.TokenCredential
	cred, err = azidentity.NewClientSecretCredential("tenant", "client", "secret", nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err = client.BlobAccount("https://account.blob.core.windows.net/", cred)("docs")
	if err != nil || c.URL() != "https://account.blob.core.windows.net/docs" {
		t.Errorf("account URL: %v %v", c, err)
	}
}
