#!/bin/sh
# The pod spec's args of the original container arrive here as "$@"; carrier has no use for them.
exec nginx -c /etc/gefyra-carrier/nginx.conf
