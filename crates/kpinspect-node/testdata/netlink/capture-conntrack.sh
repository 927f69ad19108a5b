set -e
A=capA$$; B=capB$$
ip netns add $A; ip netns add $B
trap 'ip netns del $A; ip netns del $B' EXIT
ip -n $A link set lo up; ip -n $B link set lo up
ip -n $A link add eth0 type veth peer name eth0 netns $B
ip -n $A addr add 10.0.0.1/24 dev eth0; ip -n $A link set eth0 up
ip -n $B addr add 10.0.0.2/24 dev eth0; ip -n $B link set eth0 up
ip -n $A route add default via 10.0.0.2
ip -n $A addr add fd00::1/64 dev eth0 nodad; ip -n $B addr add fd00::2/64 dev eth0 nodad
ip -n $A -6 route add default via fd00::2
ip netns exec $A ip6tables -t nat -A OUTPUT -d fd00:96::10/128 -p udp --dport 53 -j DNAT --to-destination [fd00::2]:5353
ip netns exec $A python3 -c "
import socket
s=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind(('fd00::1', 40001)); s.sendto(b'q', ('fd00:96::10', 53))
"
ip netns exec $A iptables -t nat -A OUTPUT -d 10.96.0.10/32 -p udp --dport 53 -j DNAT --to-destination 10.0.0.2:5353
ip netns exec $A python3 -c "
import socket
s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('10.0.0.1', 40000)); s.sendto(b'q', ('10.96.0.10', 53))
"
sleep 0.2
S="strace -e trace=sendto,sendmsg,recvmsg,recvfrom -e write=3,4 -e read=3,4 -s 0"
echo "### list"; ip netns exec $A $S conntrack -L -f ipv4 2>&1
echo "### delete"; ip netns exec $A $S conntrack -D -p udp --orig-dst 10.96.0.10 2>&1
echo "### list6"; ip netns exec $A $S conntrack -L -f ipv6 2>&1
echo "### list-after"; ip netns exec $A conntrack -L 2>&1
