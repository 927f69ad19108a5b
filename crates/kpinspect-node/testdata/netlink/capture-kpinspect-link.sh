# Run as a shell check of tests/integration/vm (KPINSPECT_TEST_BIN is the
# integration test binary): traces the Rust check that drives kube-ipvs0
# through kpinspect-node's SystemLinks, in its own network namespace.
set -e
export KPINSPECT_VM_CHECK="kube-ipvs0 over rtnetlink: ensure, add/list/del IPv4 and IPv6 as ip shows them"
strace -f -e trace=sendto,recvfrom -e write=all -e read=all -s 0 \
  "$KPINSPECT_TEST_BIN" vm::in_vm_check --exact --ignored --nocapture --test-threads=1 2>&1
