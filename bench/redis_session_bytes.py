#!/usr/bin/env python3
"""Redis bytes per session entry, layout by layout (bench/RESULTS.md "Redis
bytes per session"). Against a Redis Cluster you started yourself:

    scripts/redis-cluster.sh start --dir /tmp/rb --masters 3   # prints the ports
    python3 bench/redis_session_bytes.py PORT1 PORT2 PORT3
    scripts/redis-cluster.sh stop --dir /tmp/rb

For each layout it writes N (10,000) users with one session each, as
pipelined commands to each key's master, and prints the growth of
used_memory summed over the masters per user and MEMORY USAGE of one key.
The values are shaped like parley's (19-digit user ids, 13-digit ms times,
7-digit connection ids, a 6-character node name). used_memory deltas
include dict resizes, so they move by +-20 bytes with the order of runs."""
import subprocess
import sys

PORTS = [int(p) for p in sys.argv[1:]] or sys.exit(__doc__)
N = 10000


def cli(port, *args, data=None):
    return subprocess.run(["redis-cli", "-p", str(port), *args], input=data, capture_output=True, text=True).stdout


def used():
    total = 0
    for p in PORTS:
        for line in cli(p, "INFO", "memory").splitlines():
            if line.startswith("used_memory:"):
                total += int(line.split(":")[1])
    return total


def crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def ranges():
    # masters without replicas (scripts/redis-cluster.sh): start end ip port id per range
    out = cli(PORTS[0], "CLUSTER", "SLOTS").split()
    return [(int(out[i]), int(out[i + 1]), int(out[i + 3])) for i in range(0, len(out) - 4, 5)]


def load(layout, base):
    rs = ranges()
    cmds = {p: [] for p in PORTS}
    for k in range(N):
        key, commands = layout(base + k, k)
        tag = key[key.index("{") + 1:key.index("}")]
        slot = crc16(tag.encode()) % 16384
        port = next(p for s, e, p in rs if s <= slot <= e)
        cmds[port].extend(commands)
    for port, commands in cmds.items():
        data = "".join("*%d\r\n" % len(a) + "".join("$%d\r\n%s\r\n" % (len(x.encode()), x) for x in a)
                       for a in commands)
        cli(port, "--pipe", data=data)
    return layout(base, 0)[0]


def entry(k):
    return "%d %d %d gw-001" % (1796000000000 + k, 1796000045000 + k, 1000000 + k)


def with_last_seen(uid, k):   # parley before: device field and "l" written at connect
    key = "{u:%d}" % uid
    return key, [["HSET", key, "1", entry(k), "l", str(1796000000000 + k)], ["PEXPIRE", key, "2592000000"]]


def one_field(uid, k):        # parley now: "l" only at a disconnect or an expired entry's drop
    key = "{u:%d}" % uid
    return key, [["HSET", key, "1", entry(k)], ["PEXPIRE", key, "2592000000"]]


def no_ttl(uid, k):           # what the key's expiry costs (not an option: dead users' keys would stay)
    key = "{u:%d}" % uid
    return key, [["HSET", key, "1", entry(k)]]


def floor(uid, k):            # a bare string key of the same name: the per-key floor
    key = "{u:%d}" % uid
    return key, [["SET", key, "x"]]


for i, (name, layout) in enumerate([("device + l, TTL (before)", with_last_seen), ("device only, TTL (now)", one_field),
                                    ("device only, no TTL", no_ttl), ("SET key x (floor)", floor)]):
    before = used()
    key = load(layout, 9000000000000000000 + i * 1000000)
    after = used()
    usage = cli(PORTS[0], "-c", "MEMORY", "USAGE", key).strip()
    print("%-26s used_memory %6.1f B/user   MEMORY USAGE %s B" % (name, (after - before) / N, usage))
