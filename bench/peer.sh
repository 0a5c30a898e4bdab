#!/usr/bin/env bash
# Tool-call latency of this server next to Alpaca's official alpaca-mcp-server, over stdio, on one local Alpaca
# emulator, through the shared peer harness (../../shared/peer/bench_peer.py; its README sets up the venvs).
#
#   bench/peer.sh [-n N]
#
# Runs the peer, then this server (.venv/bin/catalyst-mcp serve on a fresh temporary data dir), both with the
# same -n, prints both tables and ends with one line:
#   summary: order_ratio=… order_requests=… connect_ratio=… read_ratio=… floor_ratio=…
# order_ratio = our order p50 / the peer's, order_requests = our emulator requests per order, connect_ratio = our
# connect / the peer's, read_ratio = our positions (get_portfolio) p50 / the peer's (get_all_positions),
# floor_ratio = the floor's order p50 / the peer's: bench/floor_server.py, this server with two tools doing only
# what no check_risk + execute_trade can do without (a read under the lane each, three durable commits, the
# submit), run third.
# Env: PEER_PYTHON, BENCH_PYTHON (default $HOME/.venvs/{peer,bench}/bin/python), PEER_DIR (the harness's dir).
set -euo pipefail

usage() {
    echo "usage: bench/peer.sh [-n N]   (timed calls per role, default 200)" >&2
    exit 2
}

calls=200
while [[ $# -gt 0 ]]; do
    case "$1" in
        -n)
            [[ $# -ge 2 ]] || usage
            calls="$2"
            shift 2
            ;;
        -n*)
            calls="${1#-n}"
            shift
            ;;
        -h | --help) usage ;;
        *) usage ;;
    esac
done
[[ "$calls" =~ ^[1-9][0-9]*$ ]] || usage

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
peer_dir="${PEER_DIR:-$here/../../shared/peer}"
harness="$peer_dir/bench_peer.py"
server="$root/.venv/bin/catalyst-mcp"
ours_python="$root/.venv/bin/python"
export PEER_PYTHON="${PEER_PYTHON:-$HOME/.venvs/peer/bin/python}"
BENCH_PYTHON="${BENCH_PYTHON:-$HOME/.venvs/bench/bin/python}"

if [[ ! -x "$PEER_PYTHON" || ! -x "$BENCH_PYTHON" ]]; then
    {
        echo "peer.sh: missing venv(s): PEER_PYTHON=$PEER_PYTHON BENCH_PYTHON=$BENCH_PYTHON"
        echo "set them up once (see $peer_dir/README.md):"
        echo "  python3 -m venv ~/.venvs/peer && ~/.venvs/peer/bin/pip install alpaca-mcp-server==2.4.0"
        echo "  python3 -m venv ~/.venvs/bench && ~/.venvs/bench/bin/pip install mcp==2.3.0"
    } >&2
    exit 2
fi
if [[ ! -f "$harness" ]]; then
    echo "peer.sh: the peer harness is not at $harness (set PEER_DIR)" >&2
    exit 2
fi
if [[ ! -x "$server" ]]; then
    echo "peer.sh: $server is missing: python3 -m venv .venv && .venv/bin/pip install -e ." >&2
    exit 2
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/catalyst-peer.XXXXXX")"
data="$work/data"
mkdir -m 700 "$data"
cleanup() {
    # The server leaves its embedded PostgreSQL running under the data dir: stop it before removing the dir.
    if [[ -d "$data/pg" ]]; then
        "$ours_python" -c 'import pathlib, sys
from catalyst_mcp.store.embedded import stop_embedded_postgres
stop_embedded_postgres(pathlib.Path(sys.argv[1]))' "$data" >/dev/null 2>&1 ||
            echo "peer.sh: could not stop the embedded PostgreSQL in $data" >&2
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# Runs the harness with the given arguments, shows its output and keeps it in $work/$label.out.
run_harness() {
    local label="$1"
    shift
    local status=0
    "$BENCH_PYTHON" "$harness" -n "$calls" "$@" 2>&1 | tee "$work/$label.out" || status=$?
    if [[ $status -ne 0 ]]; then
        echo "peer.sh: the $label run failed (exit $status)" >&2
        exit 1
    fi
    echo
}

ours_env=(
    --env "CATALYST_DATA_DIR=$data" --env "HOME=$data" --env CATALYST_BROKER=alpaca
    --env 'CATALYST_ALPACA_URL={url}' --env 'CATALYST_ALPACA_DATA_URL={url}'
    --env APCA_API_KEY_ID=bench-key --env APCA_API_SECRET_KEY=bench-secret
    --env CATALYST_RISK__DUPLICATE_WINDOW_SECONDS=0 --env CATALYST_RISK__MAX_ORDERS_PER_MINUTE=100000
    --env CATALYST_RISK__MAX_TRADES_PER_DAY=100000 --env CATALYST_RISK__MAX_POSITION_VALUE=10000000
    --env CATALYST_RISK__MAX_POSITION_PCT_OF_EQUITY=100 --env CATALYST_RISK__MIN_REWARD_RISK=0
)
run_harness peer
run_harness ours --label ours --server-cmd "$server serve" "${ours_env[@]}" \
    --call account=get_portfolio --call positions=get_portfolio --call orders=get_orders \
    --call 'order=check_risk:{"symbol":"AAPL","side":"buy","quantity":"1","order_type":"market","stop_loss":"185"}' \
    --call 'order=execute_trade:{"approval_id":"{prev[approval_id]}"}'
# The floor: the same server with two tools that do only what no check_risk + execute_trade can skip.
run_harness floor --label floor --server-cmd "$ours_python $here/floor_server.py" "${ours_env[@]}" \
    --connect-runs 1 \
    --call 'order=floor_check:{"symbol":"AAPL","side":"buy","quantity":"1","stop_loss":"185"}' \
    --call 'order=floor_execute:{"approval_id":"{prev[approval_id]}"}'

# The value of KEY on the harness's last "summary:" line of a run.
summary_value() {
    awk -v key="$2" '
        /^summary: / { line = $0 }
        END {
            n = split(line, parts, " ")
            for (i = 2; i <= n; i++) if (index(parts[i], key "=") == 1) { print substr(parts[i], length(key) + 2); exit }
        }' "$work/$1.out"
}

# The last column (emu req) of a role's row in a run's table.
emu_requests() {
    awk -v role="$2" '$1 == role && NF >= 7 { value = $NF } END { print value }' "$work/$1.out"
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "nan" }'
}

require() {
    if [[ -z "$2" ]]; then
        echo "peer.sh: could not read $1 from the harness output" >&2
        exit 1
    fi
}

peer_order=$(summary_value peer peer_order_p50_ms)
peer_read=$(summary_value peer peer_positions_p50_ms)
peer_connect=$(summary_value peer peer_connect_ms)
ours_order=$(summary_value ours ours_order_p50_ms)
ours_read=$(summary_value ours ours_positions_p50_ms)
ours_connect=$(summary_value ours ours_connect_ms)
ours_order_requests=$(emu_requests ours order)
floor_order=$(summary_value floor floor_order_p50_ms)
for pair in "peer order p50:$peer_order" "peer positions p50:$peer_read" "peer connect:$peer_connect" \
    "our order p50:$ours_order" "our positions p50:$ours_read" "our connect:$ours_connect" \
    "our emu req per order:$ours_order_requests" "floor order p50:$floor_order"; do
    require "${pair%%:*}" "${pair#*:}"
done

echo "summary: order_ratio=$(ratio "$ours_order" "$peer_order") order_requests=$ours_order_requests" \
    "connect_ratio=$(ratio "$ours_connect" "$peer_connect") read_ratio=$(ratio "$ours_read" "$peer_read")" \
    "floor_ratio=$(ratio "$floor_order" "$peer_order")"
