#!/usr/bin/env bash
# Assembles the image's root file system (a distroless-style base taken from
# this build host) into OUT, for deploy/Containerfile:
#
#   deploy/rootfs.sh BINARY OUT
#
# OUT/rootfs/   everything owned by root: /usr/bin/clickgate, the ELF
#               interpreter and the shared libraries the binary names (none
#               when it is truly static), CA certificates, /etc/passwd and
#               /etc/group with the user clickgate (65532), nsswitch.conf,
#               /etc/clickgate (where the configuration is mounted), /tmp
# OUT/state/    the state directory, copied to /var/lib/clickgate owned by 65532
#
# The image's binary is built with -tags nochdb (deploy/image.sh), without the
# embedded chDB engine, whose loader (purego's dlopen) would link libc even with
# CGO_ENABLED=0: it is static, and no library is copied. Given a dynamic binary,
# its ELF loader and libraries are copied too. chdb:// is not available in the
# image.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 BINARY OUT" >&2
  exit 2
fi
bin=$1
out=$2
root=$out/rootfs

rm -rf "$out"
mkdir -p "$root/usr/bin" "$root/etc/ssl/certs" "$root/etc/clickgate" "$root/tmp" "$out/state"
chmod 1777 "$root/tmp"
chmod 0700 "$out/state"
install -m 0755 "$bin" "$root/usr/bin/clickgate"

# The ELF interpreter and the libraries, at the paths the loader looks them
# up at (ldd resolves them as the loader would); nothing when static.
if ldd_out=$(ldd "$bin" 2>&1); then
  while read -r lib; do
    [ -n "$lib" ] || continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done < <(printf '%s\n' "$ldd_out" | awk '
    $2 == "=>" && $3 ~ /^\// { print $3; next }
    $1 ~ /^\// { print $1 }')
else
  case $ldd_out in
    *"not a dynamic executable"*|*"statically linked"*) ;;
    *) echo "rootfs.sh: ldd $bin: $ldd_out" >&2; exit 1 ;;
  esac
fi

ca=/etc/ssl/certs/ca-certificates.crt
if [ ! -s "$ca" ]; then
  echo "rootfs.sh: $ca is missing (Debian: apt-get install ca-certificates)" >&2
  exit 1
fi
install -m 0644 "$ca" "$root/etc/ssl/certs/ca-certificates.crt"

cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
clickgate:x:65532:65532:clickgate:/var/lib/clickgate:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
clickgate:x:65532:
nobody:x:65534:
GROUP
echo 'hosts: files dns' > "$root/etc/nsswitch.conf"
chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf"
