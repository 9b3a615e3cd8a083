"""redis-py through the proxy, the way Celery uses it: many threads with their own
connections, pipelines, WATCH/MULTI transactions, BRPOP workers on a task queue and results
delivered by pub/sub. Run by tests/clients.rs against `mode = "multiplex"`; exits non-zero
(with the reason on stderr) when a reply is not the one its command expects (a reply given to
the wrong client), a blocking command misbehaves, or a message is lost or duplicated.

    python redis_py_mux.py --addr 127.0.0.1:PORT --protocol 2|3

Every value a client reads back carries its client's and command's number, so a reply routed
to another client, or out of order, never matches. Bounded: every wait has a timeout.
"""

import argparse
import json
import sys
import threading
import time

import redis

THREADS = 16
ROUNDS = 20
PIPELINE = 50
TX_THREADS = 8
TX_INCREMENTS = 25
TASKS = 300
WORKERS = 4
WAIT = 60.0


def fail(msg):
    print(f"redis_py_mux: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def client(args, **kw):
    host, port = args.addr.rsplit(":", 1)
    return redis.Redis(
        host=host,
        port=int(port),
        protocol=args.protocol,
        socket_timeout=30,
        socket_connect_timeout=10,
        single_connection_client=kw.pop("single", True),
        **kw,
    )


def run_threads(target, n):
    errors = []

    def wrap(i):
        try:
            target(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(f"thread {i}: {e!r}")

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
        if t.is_alive():
            errors.append("a thread did not finish in time")
    if errors:
        fail("; ".join(errors[:5]))


def pipelines(args):
    """Each thread: pipelines of SET/GET/INCR/ECHO/RPUSH/LRANGE on its own keys, checked."""

    def work(i):
        r = client(args)
        key, counter, lst = f"py:{i}:v", f"py:{i}:n", f"py:{i}:l"
        r.delete(key, counter, lst)
        n = 0
        for rnd in range(ROUNDS):
            p = r.pipeline(transaction=False)
            for j in range(PIPELINE):
                token = f"{i}-{rnd}-{j}"
                p.set(key, token)
                p.get(key)
                p.incr(counter)
                p.echo(token)
                p.rpush(lst, token)
            p.lrange(lst, -3, -1)
            replies = p.execute()
            for j in range(PIPELINE):
                token = f"{i}-{rnd}-{j}".encode()
                n += 1
                got = replies[j * 5 : j * 5 + 5]
                want = [True, token, n, token, n]
                if got != want:
                    fail(f"client {i} round {rnd} command {j}: got {got!r}, want {want!r}")
            tail = [f"{i}-{rnd}-{j}".encode() for j in range(PIPELINE - 3, PIPELINE)]
            if replies[-1] != tail:
                fail(f"client {i}: LRANGE {replies[-1]!r}, want {tail!r}")
            # One command at a time too, between pipelines.
            if r.get(key) != f"{i}-{rnd}-{PIPELINE - 1}".encode():
                fail(f"client {i}: GET after round {rnd}")
        r.close()

    run_threads(work, THREADS)


def transactions(args):
    """Optimistic locking: WATCH, read, MULTI/EXEC; retried on conflict. No lost update."""
    r0 = client(args)
    r0.set("py:tx:counter", 0)

    def work(i):
        r = client(args, single=False)
        for _ in range(TX_INCREMENTS):

            def incr(pipe):
                v = int(pipe.get("py:tx:counter"))
                pipe.multi()
                pipe.set("py:tx:counter", v + 1)
                pipe.rpush("py:tx:log", f"{i}")

            r.transaction(incr, "py:tx:counter")
        r.close()

    r0.delete("py:tx:log")
    run_threads(work, TX_THREADS)
    want = TX_THREADS * TX_INCREMENTS
    if int(r0.get("py:tx:counter")) != want or r0.llen("py:tx:log") != want:
        fail(f"transactions: counter {r0.get('py:tx:counter')!r}, log {r0.llen('py:tx:log')}, want {want}")
    # A plain MULTI/EXEC pipeline returns every reply in order.
    p = r0.pipeline(transaction=True)
    p.set("py:tx:a", "1").incr("py:tx:a").get("py:tx:a").echo("tx")
    if p.execute() != [True, 2, b"2", b"tx"]:
        fail("MULTI/EXEC pipeline replies")
    r0.close()


def celery(args):
    """Celery's broker and result backend: tasks LPUSHed to two queues, workers BRPOP both
    (high priority first) with a 1 s timeout, store the result and PUBLISH it; a consumer
    subscribed to the result channels receives each result once."""
    producer = client(args)
    producer.delete("celery", "celery.high")
    results = {}
    ready = threading.Event()
    done = threading.Event()

    def consume():
        c = client(args)
        ps = c.pubsub()
        ps.psubscribe("celery-task-meta-*")
        ready.set()
        deadline = time.monotonic() + WAIT
        while len(results) < TASKS and time.monotonic() < deadline:
            m = ps.get_message(timeout=1.0)
            if m and m["type"] == "pmessage":
                body = json.loads(m["data"])
                if body["task_id"] in results:
                    fail(f"result {body['task_id']} delivered twice")
                results[body["task_id"]] = body["result"]
        ps.close()
        c.close()
        done.set()

    consumer = threading.Thread(target=consume)
    consumer.start()
    if not ready.wait(10):
        fail("the result consumer did not subscribe")
    # Wait for the subscription to exist on the server before tasks run.
    deadline = time.monotonic() + 10
    while producer.pubsub_numpat() < 1:
        if time.monotonic() > deadline:
            fail("PSUBSCRIBE not seen by the server")
        time.sleep(0.01)

    taken = []
    lock = threading.Lock()

    def worker(w):
        r = client(args)
        idle = 0
        while True:
            with lock:
                if len(taken) >= TASKS:
                    break
            item = r.brpop(["celery.high", "celery"], timeout=1)
            if item is None:
                idle += 1
                if idle > WAIT:
                    fail(f"worker {w}: nothing to take for {WAIT} s")
                continue
            queue, raw = item
            msg = json.loads(raw)
            with lock:
                taken.append((queue, msg["id"]))
            result = {"task_id": msg["id"], "result": msg["args"][0] * 2, "worker": w}
            r.set(f"celery-task-meta-{msg['id']}", json.dumps(result), ex=300)
            r.publish(f"celery-task-meta-{msg['id']}", json.dumps(result))
        r.close()

    # A BRPOP that times out answers nil, and its connection goes on working.
    probe = client(args)
    if probe.brpop(["celery.empty"], timeout=0.2) is not None or not probe.ping():
        fail("BRPOP on an empty queue with a timeout")
    probe.close()
    workers = [threading.Thread(target=worker, args=(w,)) for w in range(WORKERS)]
    for t in workers:
        t.start()
    # Tasks are pushed once every worker is blocked in BRPOP.
    deadline = time.monotonic() + 10
    while int(producer.info("clients")["blocked_clients"]) < WORKERS:
        if time.monotonic() > deadline:
            fail("workers not blocked in BRPOP")
        time.sleep(0.01)
    for k in range(TASKS):
        queue = "celery.high" if k % 5 == 0 else "celery"
        producer.lpush(queue, json.dumps({"id": f"t{k}", "args": [k]}))
    for t in workers:
        t.join(WAIT)
    consumer.join(WAIT)
    if any(t.is_alive() for t in workers) or not done.is_set():
        fail("workers or the consumer did not finish")
    ids = sorted(i for _, i in taken)
    if ids != sorted(f"t{k}" for k in range(TASKS)):
        fail(f"tasks taken: {len(ids)} (distinct {len(set(ids))}), want each of {TASKS} once")
    want = {f"t{k}": 2 * k for k in range(TASKS)}
    if results != want:
        missing = sorted(set(want) - set(results))[:5]
        fail(f"results: {len(results)} of {TASKS}; missing {missing}")
    stored = json.loads(producer.get("celery-task-meta-t7"))
    if stored["result"] != 14:
        fail("stored result")
    producer.close()


def next_messages(sub, n, field):
    """`field` of up to `n` messages from `sub`, waiting at most 10 s in all."""
    got = []
    deadline = time.monotonic() + 10
    while len(got) < n and time.monotonic() < deadline:
        m = sub.get_message(timeout=1)
        if m:
            got.append(m[field])
    return got


def pubsub(args):
    """SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE on one connection; PUBLISH counts from others."""
    sub = client(args, single=False).pubsub()
    sub.subscribe("py:news")
    sub.psubscribe("py:alerts:*")
    pub = client(args)
    for want in [
        {"type": "subscribe", "channel": b"py:news", "data": 1},
        {"type": "psubscribe", "channel": b"py:alerts:*", "data": 2},
    ]:
        m = sub.get_message(timeout=5)
        if not m or any(m.get(k) != v for k, v in want.items()):
            fail(f"pubsub: got {m!r}, want {want!r}")
    for k in range(50):
        if pub.publish("py:news", f"n{k}") != 1 or pub.publish(f"py:alerts:{k}", f"a{k}") != 1:
            fail("PUBLISH receiver count")
    got = next_messages(sub, 100, "data")
    want = [x for k in range(50) for x in (f"n{k}".encode(), f"a{k}".encode())]
    if got != want:
        fail(f"pubsub messages: {got[:6]!r}..., want {want[:6]!r}...")
    sub.unsubscribe("py:news")
    sub.punsubscribe()
    # Both confirmations, before publishing again from the other connection.
    seen = next_messages(sub, 2, "type")
    if sorted(seen) != ["punsubscribe", "unsubscribe"]:
        fail(f"unsubscribe confirmations: {seen!r}")
    if pub.publish("py:news", "late") != 0:
        fail("UNSUBSCRIBE did not reach the server")
    sub.close()
    pub.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--protocol", type=int, choices=[2, 3], required=True)
    args = ap.parse_args()
    t0 = time.monotonic()
    for step in [pipelines, transactions, celery, pubsub]:
        step(args)
        print(f"{step.__name__}: ok ({time.monotonic() - t0:.1f} s)", flush=True)
    print(f"redis-py {redis.__version__}, RESP{args.protocol}: ok")


if __name__ == "__main__":
    main()
