#!/bin/sh
# Deploy a version of the web service, but only once a person approves this exact command.
#
# Run it from the checkout, with signoff started by `make run` in another terminal and the
# two `export` lines its first start printed pasted into this shell (examples/README.md):
#
#   examples/run_deploy.sh 1.4
#   examples/run_deploy.sh 1.4 5s
#
# The first asks to deploy web 1.4 and waits for a person to approve or deny it in the web
# inbox. The second gives the approvers 5 seconds (the policy may bound how long); when
# nobody decides by then, the default policy denies it.
#
# `signoff run` asks for approval of the command line and the working directory, waits,
# checks the signed receipt, and runs the command only when exactly that was approved; its
# exit code is then the command's own. Ctrl-C while waiting cancels the request. The deploy
# here only prints what it would do: the script writes no files.
set -u

version="${1:?usage: run_deploy.sh VERSION [HOW_LONG_THE_APPROVERS_HAVE]}"
within="${2:-}"

# signoff from the PATH (after `pipx install .`), else the checkout's .venv (`make run`).
signoff=signoff
if ! command -v signoff >/dev/null 2>&1; then
    signoff="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/signoff"
    if [ ! -x "$signoff" ]; then
        echo "signoff is neither on the PATH nor in .venv: run make install first" >&2
        exit 2
    fi
    echo "signoff is not on the PATH; using $signoff" >&2
fi

set -- --action deploy.web --title "Deploy web $version to production"
if [ -n "$within" ]; then
    set -- "$@" --timeout "$within"
fi

# Ctrl-C reaches signoff too, which cancels the request and exits 4; this trap keeps the
# shell from stopping before it has said so.
trap : INT

status=0
"$signoff" run "$@" -- sh -c 'echo "web $1 is live"' deploy "$version" || status=$?

case "$status" in
    0) echo "deployed web $version" ;;
    # 1: a person denied it, or its deadline passed with nobody deciding (the default
    # policy then denies); 3: the deadline passed under a policy with `on_timeout: expire`.
    # signoff's own line above says which.
    1 | 3) echo "not deployed: denied, or nobody decided in time" >&2 ;;
    4) echo "not deployed: cancelled" >&2 ;;
    *) echo "not deployed: signoff or the deploy failed (exit $status)" >&2 ;;
esac
exit "$status"
