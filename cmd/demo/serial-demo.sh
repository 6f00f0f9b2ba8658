#!/usr/bin/env bash
# make demo: a real QEMU guest whose serial port is a TLS chardev that
# requires client certificates, the virtconsole proxy in front of it with a
# static token file, and "virtconsole serial" connected through the proxy.
#
# Everything lives in ./demo (certificates, token, logs) and every process
# the demo starts is stopped when it ends.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=bin/virtconsole
work=demo
mkdir -p "$work"
[ -x "$bin" ] || go build -o "$bin" ./cmd/virtconsole

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

# free_port prints a TCP port on 127.0.0.1 that nobody listens on.
free_port() {
	local p
	for _ in $(seq 1 200); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	echo "demo: no free port found" >&2
	exit 1
}

# wait_log waits until file $1 contains the text $2.
wait_log() {
	for _ in $(seq 1 300); do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "demo: no '$2' in $1:" >&2
	cat "$1" >&2
	exit 1
}

echo "==> minting certificates in $work/pki"
"$bin" certs create --dir "$work/pki" --host 127.0.0.1 --host localhost --force >/dev/null

# The guest: a tiny Linux with a shell on its serial port when the kernel
# and busybox are installed (.ci/install-deps installs them), else no OS at
# all (the firmware's messages).
guest=(-m 64)
if kernel=$(go run ./cmd/demo/mkguest -o "$work/initrd.gz" 2>"$work/mkguest.log"); then
	guest=(-m 128 -kernel "$kernel" -initrd "$work/initrd.gz" -append "console=ttyS0 quiet")
	what="a tiny Linux guest (a shell on its serial port)"
else
	what="a guest with no OS (firmware messages only; $(cat "$work/mkguest.log"))"
fi

serial_port=$(free_port)
echo "==> starting QEMU, $what: serial port on a TLS chardev at 127.0.0.1:$serial_port (client certificates required)"
# wait=on: the guest starts only when the proxy connects, so the demo
# shows the guest's first bytes.
qemu-system-x86_64 -accel tcg "${guest[@]}" -nodefaults -display none -machine pc,graphics=off \
	-object "tls-creds-x509,id=tls0,endpoint=server,dir=$work/pki,verify-peer=on" \
	-chardev "socket,id=s0,host=127.0.0.1,port=$serial_port,server=on,wait=on,tls-creds=tls0" \
	-serial chardev:s0 >"$work/qemu.log" 2>&1 &
pids+=($!)
# Not a connection probe: QEMU would take it as the console's one client.
wait_log "$work/qemu.log" "waiting for connection"

echo "==> writing a random token to $work/token and the token file $work/tokens.json"
umask 077
token=$("$bin" token new)
printf '%s\n' "$token" >"$work/token"
printf '{"%s": {"type": "serial", "address": "127.0.0.1:%s", "insecure": false}}\n' "$token" "$serial_port" >"$work/tokens.json"

echo "==> starting the proxy (log: $work/proxy.log)"
"$bin" server proxy --listen 127.0.0.1:0 --tls-dir "$work/pki" \
	--connect-tls-dir "$work/pki" --tokens "$work/tokens.json" 2>"$work/proxy.log" &
pids+=($!)
wait_log "$work/proxy.log" "proxy listening"
proxy_port=$(sed -n 's/.*proxy listening" address=127.0.0.1:\([0-9]*\).*/\1/p' "$work/proxy.log")

cmd=("$bin" serial --proxy "wss://127.0.0.1:$proxy_port" --ca-file "$work/pki/ca-cert.pem" --token-file "$work/token")
echo "==> ${cmd[*]}"
if [ -t 0 ]; then
	echo "    (type commands into the guest once it has booted; Ctrl+] leaves)"
	"${cmd[@]}"
else
	# Not a terminal: let the guest boot, type a command, show the answer.
	{ sleep 10; printf 'echo hello from the guest; uname -sr\n'; sleep 3; } | "${cmd[@]}"
fi
echo
echo "==> proxy log:"
sed 's/^/    /' "$work/proxy.log"
