"""Independent wire-format check: compiles the crate's .proto files with
grpcio-tools, talks to a butterfly-api server with pyzmq using raw bytes, and
checks the replies. usage: wire_client.py PROTO_DIR ENDPOINT KEY_B64
(KEY_B64 is the key of a second, encrypted server at ENDPOINT2 given as
argv[4]). Prints "OK <n checks>" on success; exits non-zero on failure."""
import base64
import importlib
import os
import sys
import tempfile

import zmq
from grpc_tools import protoc

import bfcrypto

proto_dir, endpoint, key_b64, endpoint2 = sys.argv[1:5]
out = tempfile.mkdtemp()
files = ["message.proto", "message_0.proto", "encrypted.proto"]
rc = protoc.main(["protoc", "-I" + proto_dir, "--python_out=" + out] + [os.path.join(proto_dir, f) for f in files])
assert rc == 0, "protoc failed"
sys.path.insert(0, out)
m = importlib.import_module("message_pb2")
m0 = importlib.import_module("message_0_pb2")
enc = importlib.import_module("encrypted_pb2")

ctx = zmq.Context()
checks = 0


def call(raw, ep=endpoint):
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, 5000)
    s.connect(ep)
    s.send(raw)
    rep = s.recv()
    s.close()
    r = m.Messages()
    r.ParseFromString(rep)
    return r


def check(cond, what):
    global checks
    if not cond:
        sys.exit("FAILED: " + what)
    checks += 1


def req(fill, message_id=None):
    msgs = m.Messages()
    msg = msgs.messages.add()
    msg.revision = 5
    if message_id is not None:
        msg.message_0.message_id = message_id
    fill(msg.message_0.request)
    return msgs


# nic_add with a non-canonical IPv6, then details
def nic(r):
    r.nic_add.id = "py-nic"
    r.nic_add.mac = "52:54:00:12:34:99"
    r.nic_add.vni = 77
    r.nic_add.ip.extend(["2001:0db8:0000:0000:0000:0000:0000:0001", "10.1.2.3"])
    r.nic_add.security_group.append("sg-py")


rep = call(req(nic, "id-1").SerializeToString())
check(len(rep.messages) == 1, "one reply")
check(rep.messages[0].revision == 6, "server revision 6")
check(rep.messages[0].message_0.message_id == "id-1", "message_id echoed")
res = rep.messages[0].message_0.response
check(res.status.status, "nic_add ok")
check(res.nic_add.path.endswith("qemu-vhost-py-nic"), "vhost path")

rep = call(req(lambda r: setattr(r, "nic_details", "py-nic")).SerializeToString())
d = rep.messages[0].message_0.response.nic_details[0]
check(list(d.ip) == ["2001:db8::1", "10.1.2.3"], "canonical IPs: %s" % list(d.ip))
check(d.vni == 77 and d.mac == "52:54:00:12:34:99", "vni/mac")
check(d.type == m0.MessageV0.Nic.VHOST_USER_SERVER, "type")

# two messages, second one invalid (bad MAC): independent replies in order
msgs = req(lambda r: setattr(r, "nic_list", True))
bad = msgs.messages.add()
bad.revision = 6
bad.message_0.request.nic_add.id = "x"
bad.message_0.request.nic_add.mac = "zz:54:00:12:34:99"
bad.message_0.request.nic_add.vni = 1
rep = call(msgs.SerializeToString())
check(len(rep.messages) == 2, "two replies")
check(list(rep.messages[0].message_0.response.nic_list) == ["py-nic"], "nic_list")
st = rep.messages[1].message_0.response.status
check(not st.status and st.error.description.startswith("Bad NIC format"), "bad mac rejected")

# rule with both cidr and sg
def rule(r):
    r.sg_rule_add.sg_id = "sg-py"
    r.sg_rule_add.rule.direction = m0.MessageV0.Rule.INBOUND
    r.sg_rule_add.rule.protocol = 6
    r.sg_rule_add.rule.port_start = 22
    r.sg_rule_add.rule.port_end = 22
    r.sg_rule_add.rule.cidr.address = "10.0.0.0"
    r.sg_rule_add.rule.cidr.mask_size = 8


rep = call(req(rule).SerializeToString())
check(rep.messages[0].message_0.response.status.status, "rule add")
rep = call(req(lambda r: setattr(r, "sg_rule_list", "sg-py")).SerializeToString())
rl = rep.messages[0].message_0.response.sg_rule_list
check(len(rl) == 1 and rl[0].port_start == 22 and rl[0].cidr.mask_size == 8, "rule listed")

# missing required field (nic_add without mac/vni): PARSE_ERROR for that message
partial = m.Messages()
pm = partial.messages.add()
pm.revision = 6
pm.message_0.request.nic_add.id = "no-mac"
rep = call(partial.SerializePartialToString())
check(len(rep.messages) == 1 and rep.messages[0].HasField("error"), "error reply")
check(rep.messages[0].error.code == m.Error.PARSE_ERROR, "PARSE_ERROR")
# state unchanged
rep = call(req(lambda r: setattr(r, "nic_list", True)).SerializeToString())
check(list(rep.messages[0].message_0.response.nic_list) == ["py-nic"], "state unchanged")

# garbage bytes -> a Messages with PARSE_ERROR; empty -> REJECTED; no message_0 -> VERSION_NOT_MANAGED
rep = call(b"\xff\xff\xff\xff")
check(rep.messages[0].error.code == m.Error.PARSE_ERROR, "garbage -> PARSE_ERROR")
rep = call(b"")
check(rep.messages[0].error.code == m.Error.REJECTED, "empty -> REJECTED")
nov = m.Messages()
nov.messages.add().revision = 6
rep = call(nov.SerializeToString())
check(rep.messages[0].error.code == m.Error.VERSION_NOT_MANAGED, "VERSION_NOT_MANAGED")

# butterfly-rs extension (fields 100+): a VNI's unicast flood list, set and read back
def vni_set(r):
    r.vni_set.vni = 77
    r.vni_set.mode = m0.MessageV0.VniBum.UNICAST
    r.vni_set.flood.extend(["10.9.0.2", "10.9.0.3"])


rep = call(req(vni_set).SerializeToString())
check(rep.messages[0].message_0.response.status.status, "vni_set")
rep = call(req(lambda r: r.vni_details.SetInParent()).SerializeToString())
vd = rep.messages[0].message_0.response.vni_details
check(len(vd) == 1 and vd[0].vni == 77 and vd[0].mode == m0.MessageV0.VniBum.UNICAST, "vni_details")
check(vd[0].own and list(vd[0].flood) == ["10.9.0.2", "10.9.0.3"] and vd[0].nics == 1, "vni state")
def vni_bad(r):
    r.vni_set.vni = 77
    r.vni_set.mode = m0.MessageV0.VniBum.UNICAST
    r.vni_set.flood.append("239.1.2.3")


rep = call(req(vni_bad).SerializeToString())
st = rep.messages[0].message_0.response.status
check(not st.status and "is a multicast address" in st.error.description, "multicast flood VTEP refused")

# encrypted server: clear request rejected, encrypted request served
key = base64.b64decode(key_b64)
clear = req(lambda r: setattr(r, "sg_list", True), "enc")
rep = call(clear.SerializeToString(), endpoint2)
check(rep.messages[0].error.code == m.Error.REJECTED, "clear rejected by keyed server")
wrapped = m.Messages()
wrapped.encrypted.aes256cbc_sha512 = bfcrypto.encrypt(key, clear.SerializeToString())
rep = call(wrapped.SerializeToString(), endpoint2)
check(rep.HasField("encrypted") and rep.encrypted.HasField("aes256cbc_sha512"), "encrypted reply")
inner = m.Messages()
inner.ParseFromString(bfcrypto.decrypt(key, rep.encrypted.aes256cbc_sha512))
check(inner.messages[0].message_0.message_id == "enc" and inner.messages[0].message_0.response.status.status,
      "decrypted reply")
wrong = m.Messages()
wrong.encrypted.aes256cbc_sha512 = bfcrypto.encrypt(bytes(32), clear.SerializeToString())
rep = call(wrong.SerializeToString(), endpoint2)
check(rep.encrypted.error.code == enc.Encrypted.Error.REJECTED, "wrong key -> Encrypted REJECTED")

print("OK", checks)
