#!/bin/sh
# Write the broker's configuration from the environment, then run the server
# binary itself (Debian's wrapper would log to a file).
set -eu
{
    echo "listeners.tcp.default = 5672"
    echo "prometheus.tcp.port = 15692"
    if [ -n "${RABBITMQ_DEFAULT_USER:-}" ]; then
        echo "default_user = ${RABBITMQ_DEFAULT_USER}"
        echo "default_pass = ${RABBITMQ_DEFAULT_PASS:?RABBITMQ_DEFAULT_PASS must be set with RABBITMQ_DEFAULT_USER}"
    else
        # Only guest exists: let it in from other containers.
        echo "loopback_users.guest = false"
    fi
} >"${RABBITMQ_CONFIG_FILE}"
exec /usr/lib/rabbitmq/bin/rabbitmq-server "$@"
