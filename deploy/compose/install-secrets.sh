#!/bin/sh
# Run once by compose's secrets-init service (as root, no network): copy each
# service's own secrets from the operator's directory (/in, read-only) into that
# service's volume (/out/<volume>), owned by the service user, private keys 0600.
# Every service then sees only its own identity, the CA, and what it needs.
#
# /in layout (see k8s/README.md):
#   tls/ca.crt, tls/<identity>.crt, tls/<identity>.key   apkfarm certs init /in/tls
#   keys/<name>.rsa [keys/retired/<name>.rsa]            apk signing keys (signer only)
#   tls/scheduler-jobtoken.key, tls/scheduler-jobtoken.pub     Ed25519 job-token key pair (also from certs init)
set -eu
in=/in
out=/out
uid=10001

need() {
    [ -f "$1" ] || { echo "secrets-init: missing $1 ($2)" >&2; exit 1; }
}

for identity in scheduler fetcher signer indexer ${BUILDER_IDENTITIES:?}; do
    dir="$out/tls-$identity"
    need "$in/tls/ca.crt" "run: apkfarm certs init DIR"
    need "$in/tls/$identity.crt" "apkfarm certs init makes one per identity"
    need "$in/tls/$identity.key" "apkfarm certs init makes one per identity"
    find "$dir" -mindepth 1 -delete
    install -o "$uid" -g "$uid" -m 0444 "$in/tls/ca.crt" "$in/tls/$identity.crt" "$dir/"
    install -o "$uid" -g "$uid" -m 0600 "$in/tls/$identity.key" "$dir/"
done

# The signer's apk keys: replaced as a whole so a removed key is gone.
ls "$in"/keys/*.rsa >/dev/null 2>&1 || { echo "secrets-init: no $in/keys/*.rsa (apk signing key)" >&2; exit 1; }
find "$out/signer-keys" -mindepth 1 -delete
cp -R "$in/keys/." "$out/signer-keys/"
chown -R "$uid:$uid" "$out/signer-keys"
find "$out/signer-keys" -type d -exec chmod 0700 {} +
find "$out/signer-keys" -type f -name '*.rsa' -exec chmod 0600 {} +
find "$out/signer-keys" -type f ! -name '*.rsa' -exec chmod 0644 {} +

need "$in/tls/scheduler-jobtoken.key" "Ed25519 private key of the scheduler's job tokens"
need "$in/tls/scheduler-jobtoken.pub" "its public key, for the signer"
install -o "$uid" -g "$uid" -m 0600 "$in/tls/scheduler-jobtoken.key" "$out/job-token-key/"
install -o "$uid" -g "$uid" -m 0444 "$in/tls/scheduler-jobtoken.pub" "$out/job-token-pub/"
echo "secrets-init: installed secrets for scheduler fetcher signer indexer $BUILDER_IDENTITIES"
