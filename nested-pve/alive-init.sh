#!/bin/busybox sh
# shellcheck shell=dash
# /init of the "alive" guest's initramfs (busybox only). Every second it checks that a memory
# buffer still holds what it wrote one round earlier, rewrites it for the next sequence number and
# prints one line on the serial port:
#
#     PVELAB-ALIVE seq=<n> sum=<sha256 of the buffer> check=<init|ok|FAIL>
#
# A live migration that keeps the guest alive and its memory intact shows consecutive seq numbers
# and check=ok across the move; a restart shows seq=1 again, corrupted memory shows check=FAIL.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev

buf_kib=32768
read -r cmdline </proc/cmdline
for arg in $cmdline; do
    case "$arg" in
        pvelab.buf_kib=*) buf_kib="${arg#pvelab.buf_kib=}" ;;
    esac
done

seq=0
expected=""
while :; do
    if [ -z "$expected" ]; then
        check=init
    elif [ "$(sha256sum /buffer | cut -d ' ' -f 1)" = "$expected" ]; then
        check=ok
    else
        check=FAIL
    fi
    seq=$((seq + 1))
    yes "pvelab-alive-$seq" | head -c $((buf_kib * 1024)) >/buffer
    expected="$(sha256sum /buffer | cut -d ' ' -f 1)"
    echo "PVELAB-ALIVE seq=$seq sum=$expected check=$check" >/dev/ttyS0
    sleep 1
done
