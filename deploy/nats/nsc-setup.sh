#!/bin/sh
# One-time NATS security set-up for the billing worker, with nsc
# (https://github.com/nats-io/nsc) in operator (JWT) mode:
#
#   operator billing-operator (with a signing key), system account SYS,
#   account BILLING with JetStream, users billing-worker,
#   billing-submitter, billing-scheduler and billing-console with the
#   permissions of permissions.yaml.
#
#   deploy/nats/nsc-setup.sh [OUTDIR]        (default ./nats-secrets)
#
# It writes, into OUTDIR (keep it out of git; the .creds files are secrets):
#   auth.conf               operator JWT, system account, and the SYS and BILLING
#                           account JWTs to preload, for the NATS Helm chart (ConfigMap nats-auth)
#   billing-worker.creds    the worker's credentials (Secret billing-worker-nats)
#   billing-submitter.creds credentials for an upstream system
#   billing-scheduler.creds credentials for the tools that manage schedules
#   billing-console.creds   the operations console's (Secret billing-console-nats, key console.creds)
#   billing-account         the BILLING account's public key (KEDA's "account")
#
# deploy/k8s/README.md shows what to do with each. The permission lists
# below must equal permissions.yaml (a test in deploy/k8s checks).
set -eu
out="${1:-nats-secrets}"
mkdir -p "$out"
umask 077

nsc add operator --name billing-operator --sys --generate-signing-key
# The servers' address as nsc sees it, for `nsc push` (through a port-forward).
nsc edit operator --require-signing-keys --account-jwt-server-url nats://127.0.0.1:4222

nsc add account --name BILLING
nsc edit account --name BILLING --sk generate \
  --js-mem-storage 512M --js-disk-storage 50G --js-streams=-1 --js-consumer=-1

nsc add user --account BILLING --name billing-worker \
  --allow-pub '$JS.API.INFO' \
  --allow-pub '$JS.API.STREAM.CREATE.BILLING_WORK' \
  --allow-pub '$JS.API.STREAM.CREATE.BILLING_EVENTS' \
  --allow-pub '$JS.API.STREAM.CREATE.BILLING_DEADLETTER' \
  --allow-pub '$JS.API.STREAM.CREATE.KV_billing_operations' \
  --allow-pub '$JS.API.STREAM.CREATE.KV_billing_throttle' \
  --allow-pub '$JS.API.STREAM.CREATE.KV_billing_collections' \
  --allow-pub '$JS.API.STREAM.UPDATE.BILLING_WORK' \
  --allow-pub '$JS.API.STREAM.UPDATE.BILLING_EVENTS' \
  --allow-pub '$JS.API.STREAM.UPDATE.BILLING_DEADLETTER' \
  --allow-pub '$JS.API.STREAM.UPDATE.KV_billing_operations' \
  --allow-pub '$JS.API.STREAM.UPDATE.KV_billing_throttle' \
  --allow-pub '$JS.API.STREAM.UPDATE.KV_billing_collections' \
  --allow-pub '$JS.API.STREAM.CREATE.KV_billing_schedules' \
  --allow-pub '$JS.API.STREAM.UPDATE.KV_billing_schedules' \
  --allow-pub '$JS.API.STREAM.CREATE.KV_billing_coverage' \
  --allow-pub '$JS.API.STREAM.UPDATE.KV_billing_coverage' \
  --allow-pub '$JS.API.CONSUMER.CREATE.BILLING_WORK.requests.>' \
  --allow-pub '$JS.API.CONSUMER.CREATE.BILLING_WORK.polls.>' \
  --allow-pub '$JS.API.CONSUMER.CREATE.BILLING_WORK.ended.>' \
  --allow-pub '$JS.API.CONSUMER.INFO.BILLING_WORK.requests' \
  --allow-pub '$JS.API.CONSUMER.INFO.BILLING_WORK.polls' \
  --allow-pub '$JS.API.CONSUMER.INFO.BILLING_WORK.ended' \
  --allow-pub '$JS.API.CONSUMER.MSG.NEXT.BILLING_WORK.requests' \
  --allow-pub '$JS.API.CONSUMER.MSG.NEXT.BILLING_WORK.polls' \
  --allow-pub '$JS.API.CONSUMER.MSG.NEXT.BILLING_WORK.ended' \
  --allow-pub '$JS.API.CONSUMER.CREATE.BILLING_WORK.fires.>' \
  --allow-pub '$JS.API.CONSUMER.INFO.BILLING_WORK.fires' \
  --allow-pub '$JS.API.CONSUMER.MSG.NEXT.BILLING_WORK.fires' \
  --allow-pub '$JS.ACK.BILLING_WORK.>' \
  --allow-pub '$JS.ACK.*.*.BILLING_WORK.>' \
  --allow-pub '$JS.API.STREAM.INFO.BILLING_WORK' \
  --allow-pub '$JS.API.STREAM.INFO.BILLING_EVENTS' \
  --allow-pub '$JS.API.STREAM.INFO.BILLING_DEADLETTER' \
  --allow-pub '$JS.API.STREAM.MSG.GET.BILLING_EVENTS' \
  --allow-pub '$JS.API.STREAM.MSG.GET.BILLING_WORK' \
  --allow-pub '$JS.API.STREAM.MSG.DELETE.BILLING_WORK' \
  --allow-pub '$JS.API.DIRECT.GET.KV_billing_operations.>' \
  --allow-pub '$KV.billing_operations.>' \
  --allow-pub '$JS.API.DIRECT.GET.KV_billing_throttle.>' \
  --allow-pub '$KV.billing_throttle.>' \
  --allow-pub '$JS.API.DIRECT.GET.KV_billing_collections.>' \
  --allow-pub '$KV.billing_collections.>' \
  --allow-pub '$JS.API.DIRECT.GET.KV_billing_schedules.>' \
  --allow-pub '$KV.billing_schedules.>' \
  --allow-pub '$JS.API.DIRECT.GET.KV_billing_coverage.>' \
  --allow-pub '$KV.billing_coverage.>' \
  --allow-pub '$JS.API.CONSUMER.CREATE.KV_billing_coverage.>' \
  --allow-pub '$JS.API.CONSUMER.DELETE.KV_billing_coverage.*' \
  --allow-pub 'billing.requests.>' \
  --allow-pub '$JS.API.STREAM.CREATE.OBJ_billing_archive' \
  --allow-pub '$JS.API.STREAM.UPDATE.OBJ_billing_archive' \
  --allow-pub '$JS.API.DIRECT.GET.OBJ_billing_archive.>' \
  --allow-pub '$O.billing_archive.>' \
  --allow-pub 'billing.events.>' \
  --allow-pub 'billing.deadletter.>' \
  --allow-pub 'billing.internal.>' \
  --allow-sub '_INBOX.>'

nsc add user --account BILLING --name billing-submitter \
  --allow-pub 'billing.requests.>' \
  --allow-sub '_INBOX.>' \
  --allow-sub 'billing.events.>'

nsc add user --account BILLING --name billing-scheduler \
  --allow-pub '$JS.API.STREAM.INFO.BILLING_WORK' \
  --allow-pub '$JS.API.STREAM.INFO.KV_billing_schedules' \
  --allow-pub '$JS.API.DIRECT.GET.KV_billing_schedules.>' \
  --allow-pub '$KV.billing_schedules.>' \
  --allow-pub '$JS.API.CONSUMER.CREATE.KV_billing_schedules.>' \
  --allow-pub '$JS.API.CONSUMER.DELETE.KV_billing_schedules.*' \
  --allow-pub '$JS.API.STREAM.INFO.KV_billing_operations' \
  --allow-pub '$JS.API.DIRECT.GET.KV_billing_operations.>' \
  --allow-pub '$JS.API.STREAM.INFO.KV_billing_coverage' \
  --allow-pub '$JS.API.CONSUMER.CREATE.KV_billing_coverage.>' \
  --allow-pub '$JS.API.CONSUMER.DELETE.KV_billing_coverage.*' \
  --allow-pub 'billing.internal.cron.*' \
  --allow-pub 'billing.requests.>' \
  --allow-sub '_INBOX.>'

nsc add user --account BILLING --name billing-console \
  --allow-pub '$JS.API.STREAM.INFO.BILLING_WORK' \
  --allow-pub '$JS.API.STREAM.INFO.BILLING_EVENTS' \
  --allow-pub '$JS.API.STREAM.INFO.BILLING_DEADLETTER' \
  --allow-pub '$JS.API.STREAM.INFO.KV_billing_operations' \
  --allow-pub '$JS.API.CONSUMER.LIST.BILLING_WORK' \
  --allow-pub '$JS.API.STREAM.MSG.GET.BILLING_EVENTS' \
  --allow-pub '$JS.API.STREAM.MSG.GET.BILLING_DEADLETTER' \
  --allow-pub '$JS.API.DIRECT.GET.KV_billing_operations.>' \
  --allow-pub '$JS.API.CONSUMER.CREATE.KV_billing_operations.>' \
  --allow-pub '$JS.API.CONSUMER.MSG.NEXT.KV_billing_operations.>' \
  --allow-pub '$JS.API.CONSUMER.CREATE.BILLING_DEADLETTER.*' \
  --allow-pub '$JS.API.CONSUMER.MSG.NEXT.BILLING_DEADLETTER.>' \
  --allow-pub '$JS.API.STREAM.INFO.KV_billing_throttle' \
  --allow-pub '$JS.API.CONSUMER.CREATE.KV_billing_throttle.>' \
  --allow-pub '$JS.API.CONSUMER.DELETE.KV_billing_throttle.*' \
  --allow-pub '$JS.API.STREAM.INFO.KV_billing_collections' \
  --allow-pub '$JS.API.DIRECT.GET.KV_billing_collections.>' \
  --allow-pub '$JS.API.STREAM.INFO.KV_billing_schedules' \
  --allow-pub '$JS.API.DIRECT.GET.KV_billing_schedules.>' \
  --allow-pub '$JS.API.CONSUMER.CREATE.KV_billing_schedules.>' \
  --allow-pub '$JS.API.CONSUMER.DELETE.KV_billing_schedules.*' \
  --allow-pub '$JS.API.STREAM.INFO.KV_billing_coverage' \
  --allow-pub '$JS.API.CONSUMER.CREATE.KV_billing_coverage.>' \
  --allow-pub '$JS.API.CONSUMER.DELETE.KV_billing_coverage.*' \
  --allow-pub '$JS.API.STREAM.INFO.OBJ_billing_archive' \
  --allow-pub '$JS.API.DIRECT.GET.OBJ_billing_archive.>' \
  --allow-pub '$JS.API.CONSUMER.CREATE.OBJ_billing_archive.>' \
  --allow-pub '$JS.API.CONSUMER.DELETE.OBJ_billing_archive.*' \
  --allow-pub '$JS.FC.OBJ_billing_archive.>' \
  --allow-pub '$JS.FC.*.*.OBJ_billing_archive.>' \
  --allow-pub 'billing.requests.>' \
  --allow-pub '$JS.API.STREAM.MSG.DELETE.BILLING_DEADLETTER' \
  --allow-sub '_INBOX.>'

nsc generate creds --account BILLING --name billing-worker > "$out/billing-worker.creds"
nsc generate creds --account BILLING --name billing-console > "$out/billing-console.creds"
nsc generate creds --account BILLING --name billing-submitter > "$out/billing-submitter.creds"
nsc generate creds --account BILLING --name billing-scheduler > "$out/billing-scheduler.creds"
nsc describe account --name BILLING --field sub | tr -d '"' > "$out/billing-account"

# Server side (ConfigMap nats-auth, included by deploy/nats/values.yaml):
# the trusted operator, the system account, and the accounts the full
# resolver starts with. Later account changes: `nsc push` (see the README).
sys=$(nsc describe account --name SYS --field sub | tr -d '"')
acc=$(cat "$out/billing-account")
{
  echo "# Generated by deploy/nats/nsc-setup.sh."
  echo "operator: $(nsc describe operator --raw)"
  echo "system_account: $sys"
  echo "resolver_preload: {"
  echo "  $sys: $(nsc describe account --name SYS --raw)"
  echo "  $acc: $(nsc describe account --name BILLING --raw)"
  echo "}"
} > "$out/auth.conf"

echo "wrote $out: auth.conf billing-worker.creds billing-submitter.creds billing-scheduler.creds billing-console.creds billing-account"
