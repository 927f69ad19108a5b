# Run as root in a fresh network namespace of a kernel with dummy links
# (the VM of tests/integration/vm: `unshare --net`, loopback up).
set -e
S="strace -e trace=sendto,sendmsg,recvmsg,recvfrom -e write=3 -e read=3 -s 0"
echo "### link-add"; $S ip link add kube-ipvs0 type dummy 2>&1
echo "### link-add-again"; $S ip link add kube-ipvs0 type dummy 2>&1 || true
echo "### link-show"; $S ip -d link show kube-ipvs0 2>&1
echo "### link-show-missing"; $S ip link show nosuch0 2>&1 || true
echo "### addr-add4"; $S ip addr add 10.96.0.10/32 dev kube-ipvs0 2>&1
echo "### addr-add4-again"; $S ip addr add 10.96.0.10/32 dev kube-ipvs0 2>&1 || true
echo "### addr-add6"; $S ip addr add fd00:96::10/128 dev kube-ipvs0 2>&1
echo "### addr-show"; $S ip -o addr show dev kube-ipvs0 2>&1
echo "### addr-del4"; $S ip addr del 10.96.0.10/32 dev kube-ipvs0 2>&1
echo "### addr-del4-again"; $S ip addr del 10.96.0.10/32 dev kube-ipvs0 2>&1 || true
echo "### addr-del6"; $S ip addr del fd00:96::10/128 dev kube-ipvs0 2>&1
echo "### link-del"; $S ip link del kube-ipvs0 2>&1
echo "### uname"; uname -r; ip -V
