package devstack

import "github.com/azbilling/worker/internal/emulator"

// WorkerEnv returns the environment that points a worker process
// (cmd/worker) at the emulator with the stack's identity: caFile holds the
// emulator's certificate (written with WriteCACert; Go reads it through
// SSL_CERT_FILE) and secretFile the client secret registered for
// DevClientID in the emulator.
func WorkerEnv(emu *emulator.Server, caFile, secretFile string) []string {
	return []string{
		"SSL_CERT_FILE=" + caFile,
		"BILLING_AZURE_CLOUD=custom",
		"BILLING_ARM_ENDPOINT=" + emu.URL(),
		"BILLING_ARM_AUDIENCE=" + DevAudience,
		"BILLING_AUTHORITY_HOST=" + emu.URL() + "/",
		"BILLING_AZURE_CREDENTIAL=client-secret",
		"BILLING_AZURE_TENANT_ID=" + DevTenant,
		"BILLING_AZURE_CLIENT_ID=" + DevClientID,
		"BILLING_AZURE_CLIENT_SECRET_FILE=" + secretFile,
		"BILLING_DISABLE_INSTANCE_DISCOVERY=true",
	}
}
