set -e
ip link set lo up
S="strace -e trace=sendto,sendmsg,recvmsg,recvfrom -e write=3 -e read=3 -s 0"
echo "### add"; $S nfacct add ct_state_invalid_dropped_pkts 2>&1
echo "### add-again"; $S nfacct add ct_state_invalid_dropped_pkts 2>&1 || true
nfacct add localhost_nps_accepted_pkts
iptables -A OUTPUT -o lo -m nfacct --nfacct-name localhost_nps_accepted_pkts
python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); [s.sendto(b\"hello\", (\"127.0.0.1\", 9)) for _ in range(2)]"
echo "### list"; $S nfacct list 2>&1
echo "### get"; $S nfacct get localhost_nps_accepted_pkts 2>&1
echo "### get-missing"; $S nfacct get nope 2>&1 || true
echo "### delete-busy"; $S nfacct delete localhost_nps_accepted_pkts 2>&1 || true
echo "### delete-missing"; $S nfacct delete nope 2>&1 || true
iptables -D OUTPUT -o lo -m nfacct --nfacct-name localhost_nps_accepted_pkts
echo "### delete"; $S nfacct delete localhost_nps_accepted_pkts 2>&1
