# Captures ipvsadm's generic netlink traffic with the kernel (see README.md).
# Runs as root in a fresh network namespace of a kernel with IPVS.
set -e
ip link set lo up
modprobe ip_vs
S="strace -e trace=sendto,sendmsg,recvmsg,recvfrom -e write=3,4 -e read=3,4 -s 0"
T4=10.96.0.10:80
T6=[fd00:96::10]:443
echo "### list-empty"; $S ipvsadm -Ln 2>&1
echo "### add-service-tcp4"; $S ipvsadm -A -t $T4 -s rr 2>&1
echo "### add-service-exists"; $S ipvsadm -A -t $T4 -s rr 2>&1 || true
echo "### edit-service-tcp4"; $S ipvsadm -E -t $T4 -s wrr -p 300 -M 255.255.255.0 2>&1
echo "### add-dest-masq"; $S ipvsadm -a -t $T4 -r 10.244.0.11:8080 -m -w 2 2>&1
echo "### add-dest-route"; $S ipvsadm -a -t $T4 -r 10.244.0.12:80 -g -w 1 2>&1
echo "### edit-dest"; $S ipvsadm -e -t $T4 -r 10.244.0.11:8080 -m -w 5 -x 100 -y 10 2>&1
echo "### add-service-udp4"; $S ipvsadm -A -u 10.96.0.10:53 -s sh -b sh-fallback,sh-port -o 2>&1
echo "### add-service-tcp6"; $S ipvsadm -A -t $T6 -s rr -p 60 2>&1
echo "### add-dest-tcp6"; $S ipvsadm -a -t $T6 -r [fd00:244::11]:443 -i 2>&1
echo "### add-service-fwmark"; $S ipvsadm -A -f 42 -s lc 2>&1
# Some traffic, for non-zero counters: a local client's SYN to the service.
ip link add kube-ipvs0 type dummy
ip addr add 10.96.0.10/32 dev kube-ipvs0
ip link add dst0 type dummy; ip link set dst0 up
ip addr add 10.244.0.1/24 dev dst0
python3 -c "
import socket
for _ in range(2):
    s=socket.socket(); s.settimeout(0.3)
    try: s.connect(('10.96.0.10', 80))
    except OSError: pass
" || true
echo "### list"; $S ipvsadm -Ln 2>&1
echo "### list-service"; $S ipvsadm -Ln -t $T4 --stats 2>&1
echo "### set-timeouts"; $S ipvsadm --set 900 120 300 2>&1
echo "### get-timeouts"; $S ipvsadm -Ln --timeout 2>&1
echo "### del-dest"; $S ipvsadm -d -t $T4 -r 10.244.0.12:80 2>&1
echo "### del-dest-missing"; $S ipvsadm -d -t $T4 -r 10.244.0.99:80 2>&1 || true
echo "### del-service"; $S ipvsadm -D -t $T6 2>&1
echo "### del-service-missing"; $S ipvsadm -D -t 10.96.0.99:80 2>&1 || true
echo "### save"; $S ipvsadm -Sn 2>&1
echo "### clear"; $S ipvsadm -C 2>&1
