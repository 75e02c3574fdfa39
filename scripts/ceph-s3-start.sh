#!/usr/bin/env bash
# Start a throw-away single-node Ceph (1 mon + 1 memstore OSD + radosgw/beast)
# on 127.0.0.1, everything under $S3_DIR (default ${TMPDIR:-/tmp}/ceph-s3), no systemd.
# Prints endpoint / keys and writes $S3_DIR/env (sourceable) and $S3_DIR/pids.
# Stop:  stop.sh beside this file   (kills the PIDs listed in $S3_DIR/pids)
set -euo pipefail
S3_DIR=${S3_DIR:-${TMPDIR:-/tmp}/ceph-s3}
RGW_PORT=${RGW_PORT:-7480}
MON_PORT_V2=${MON_PORT_V2:-3300}
MON_PORT_V1=${MON_PORT_V1:-6789}
ACCESS_KEY=${ACCESS_KEY:-ciaccesskey}
SECRET_KEY=${SECRET_KEY:-cisecretkey1234567890}
MEM_BYTES=${MEM_BYTES:-8589934592}   # advertised memstore capacity (RAM used only as data is written)
T0=$(date +%s%N)
el() { echo $(( ($(date +%s%N) - T0) / 1000000 ))ms; }
die() { echo "start.sh: $* (logs: $S3_DIR/log)" >&2; exit 1; }
# wait_for SECONDS CMD... : poll CMD every 0.1 s
wait_for() { local end=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do [ "$(date +%s)" -lt $end ] || return 1; sleep 0.1; done; }
# stop a previous instance started from the same dir
[ -f "$S3_DIR/pids" ] && S3_DIR=$S3_DIR "$(dirname "$0")/ceph-s3-stop.sh"

# 1. install (idempotent; ~20 s on a fresh bookworm box incl. download)
if ! command -v radosgw >/dev/null || ! command -v ceph-osd >/dev/null || ! command -v ceph-mon >/dev/null || ! command -v curl >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends radosgw ceph-mon ceph-osd ceph-common curl >/dev/null
  echo "installed ceph in $(el)" >&2
fi

for port in $RGW_PORT $MON_PORT_V2 $MON_PORT_V1; do
  (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && die "port $port already in use"
done

# 2. fresh config
rm -rf "$S3_DIR"; mkdir -p "$S3_DIR"/{mon.a,osd.0,rgw,run,log}
FSID=$(cat /proc/sys/kernel/random/uuid)
CONF=$S3_DIR/ceph.conf
cat >"$CONF" <<EOF
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$MON_PORT_V2,v1:127.0.0.1:$MON_PORT_V1]
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
keyring = /dev/null
ms mon client mode = crc
ms mon service mode = crc
ms mon cluster mode = crc
ms client mode = crc
ms service mode = crc
ms cluster mode = crc
run dir = $S3_DIR/run
admin socket = $S3_DIR/run/\$name.asok
log file = $S3_DIR/log/\$name.log
pid file = $S3_DIR/run/\$name.pid
log to stderr = false
err to stderr = true
crash dir = $S3_DIR/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 2
mon data avail crit = 1
paxos propose interval = 0.1
paxos min wait = 0.01
mon warn on insecure global id reclaim allowed = false
[mon]
mon data = $S3_DIR/mon.\$id
[osd]
osd data = $S3_DIR/osd.\$id
osd objectstore = memstore
memstore device bytes = $MEM_BYTES
osd crush update on start = true
[client.rgw.a]
rgw data = $S3_DIR/rgw
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw dns name = 127.0.0.1
rgw enable usage log = false
rgw thread pool size = 64
# reclaim deleted/overwritten tail objects quickly (memstore keeps them in RAM)
rgw gc obj min wait = 5
rgw gc processor period = 15
rgw gc processor max time = 15
EOF
: >"$S3_DIR/pids"

# 3. monitor
monmaptool --create --clobber --fsid "$FSID" \
  --addv a "[v2:127.0.0.1:$MON_PORT_V2,v1:127.0.0.1:$MON_PORT_V1]" "$S3_DIR/monmap" >/dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$S3_DIR/monmap"
ceph-mon -c "$CONF" -i a
C="ceph -c $CONF --connect-timeout 20"
wait_for 30 $C mon stat || die "mon did not start"
cat "$S3_DIR/run/mon.a.pid" >>"$S3_DIR/pids"; echo >>"$S3_DIR/pids"; echo "mon up $(el)" >&2

# 4. one memstore OSD
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
OSD_ID=$($C osd new "$OSD_UUID")
ceph-osd -c "$CONF" -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID" >"$S3_DIR/log/osd-mkfs.out" 2>&1 || die "osd mkfs failed"
ceph-osd -c "$CONF" -i "$OSD_ID" 2>>"$S3_DIR/log/osd-start.err" || die "osd start failed"
osd_up() { $C osd dump | grep -q "^osd.$OSD_ID up"; }
wait_for 60 osd_up || die "osd did not come up"
cat "$S3_DIR/run/osd.$OSD_ID.pid" >>"$S3_DIR/pids"; echo >>"$S3_DIR/pids"; echo "osd up $(el)" >&2

# 5. radosgw (creates its pools on first start)
timeout 90 radosgw -c "$CONF" -n client.rgw.a || die "radosgw failed"  # forks once connected
rgw_ok() { kill -0 "$(cat "$S3_DIR/run/client.rgw.a.pid")" && curl -sf "http://127.0.0.1:$RGW_PORT/" | grep -q ListAllMyBucketsResult; }
wait_for 60 rgw_ok || die "radosgw not answering"
cat "$S3_DIR/run/client.rgw.a.pid" >>"$S3_DIR/pids"; echo >>"$S3_DIR/pids"; echo "rgw up $(el)" >&2
sed -i '/^$/d' "$S3_DIR/pids"

# 6. S3 user with fixed keys
radosgw-admin -c "$CONF" user create --uid=ci --display-name=CI \
  --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >/dev/null || die "user create failed"

cat >"$S3_DIR/env" <<EOF
export S3_ENDPOINT=http://127.0.0.1:$RGW_PORT
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_DEFAULT_REGION=us-east-1
EOF
echo "S3_ENDPOINT=http://127.0.0.1:$RGW_PORT"
echo "AWS_ACCESS_KEY_ID=$ACCESS_KEY"
echo "AWS_SECRET_ACCESS_KEY=$SECRET_KEY"
echo "PIDS=$(tr '\n' ' ' <"$S3_DIR/pids")(stop with: kill \$(cat $S3_DIR/pids))"
echo "ready in $(el)"
