#!/bin/sh
# Deploy a version of the web service, but only once a person approves this exact command.
#
#   export SIGNOFF_URL=http://127.0.0.1:8080 SIGNOFF_API_KEY=so_...
#   examples/run_deploy.sh 1.4
#
# `signoff run` asks for approval of the command line and the working directory, waits,
# checks the signed receipt, and runs the command only when exactly that was approved; its
# exit code is then the command's own. Ctrl-C while waiting cancels the request.
set -u

version="${1:?usage: run_deploy.sh VERSION}"

status=0
signoff run --action deploy.web --title "Deploy web $version to production" \
    -- sh -c 'echo "web $1 is live" > deployed.txt' deploy "$version" || status=$?

case "$status" in
    0) echo "deployed web $version" ;;
    1) echo "not deployed: denied" >&2 ;;
    3) echo "not deployed: nobody decided in time" >&2 ;;
    4) echo "not deployed: cancelled" >&2 ;;
    *) echo "not deployed: signoff or the deploy failed (exit $status)" >&2 ;;
esac
exit "$status"
