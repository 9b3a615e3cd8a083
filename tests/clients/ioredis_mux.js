// ioredis through the proxy, the way BullMQ uses it: Lua scripts defined with defineCommand
// (EVALSHA, EVAL after NOSCRIPT), workers blocked in BRPOPLPUSH / BLMOVE on their own
// connections while another connection pushes, pub/sub events, MULTI/EXEC and WATCH, and many
// clients auto-pipelining at once. Run by tests/clients.rs against `mode = "multiplex"`; exits
// non-zero (with the reason on stderr) when a reply is not the one its command expects (a reply
// given to the wrong client), a blocking command misbehaves, or a job or message is lost or
// duplicated.
//
//   node ioredis_mux.js --addr 127.0.0.1:PORT --lib ioredis|ioredis5 [--protocol 2|3]
//
// `ioredis5` is ioredis 5 (RESP2 only, what BullMQ 5 runs); `ioredis` is ioredis 6 (RESP3 by
// default). Every value a client reads back carries its client's and command's number, so a
// reply routed to another client never matches. Bounded: the whole run has a deadline.
"use strict";

const CLIENTS = 20;
const ROUNDS = 20;
const PIPELINE = 50;
const JOBS = 300;
const WORKERS = 4;
const DEADLINE_MS = 90_000;

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}
const [host, port] = arg("addr").split(":");
const lib = arg("lib", "ioredis");
const protocol = arg("protocol") ? Number(arg("protocol")) : undefined;
const Redis = require(lib);

function fail(msg) {
  process.stderr.write(`ioredis_mux (${lib}): ${msg}\n`);
  process.exit(1);
}
setTimeout(() => fail(`not done after ${DEADLINE_MS} ms`), DEADLINE_MS).unref();

const open = [];
function connect(extra = {}) {
  const opts = {
    host,
    port: Number(port),
    maxRetriesPerRequest: 0,
    retryStrategy: () => null, // a dropped connection is a failure here, not retried
    ...extra,
  };
  if (protocol !== undefined) opts.protocol = protocol;
  const r = new Redis(opts);
  r.on("error", (e) => fail(`connection error: ${e.message}`));
  open.push(r);
  return r;
}

function eq(got, want, what) {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  if (g !== w) fail(`${what}: got ${g}, want ${w}`);
}

// Many clients, auto-pipelined commands and explicit pipelines on their own keys, all at once.
async function pipelines() {
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, i) => {
      const r = connect({ enableAutoPipelining: i % 2 === 0 });
      const key = `js:${i}:v`;
      const counter = `js:${i}:n`;
      await r.del(key, counter);
      let n = 0;
      for (let rnd = 0; rnd < ROUNDS; rnd++) {
        const p = r.pipeline();
        for (let j = 0; j < PIPELINE; j++) {
          const token = `${i}-${rnd}-${j}`;
          p.set(key, token).get(key).incr(counter).echo(token);
        }
        const replies = await p.exec();
        for (let j = 0; j < PIPELINE; j++) {
          n++;
          const token = `${i}-${rnd}-${j}`;
          const got = replies.slice(j * 4, j * 4 + 4).map(([e, v]) => (e ? `ERR ${e.message}` : v));
          eq(got, ["OK", token, n, token], `client ${i} round ${rnd} command ${j}`);
        }
        // Single commands in flight at once (auto-pipelined on even clients).
        const singles = await Promise.all(
          Array.from({ length: 20 }, (_, j) => r.echo(`${i}-${rnd}-single-${j}`)),
        );
        eq(singles, Array.from({ length: 20 }, (_, j) => `${i}-${rnd}-single-${j}`), `client ${i} singles`);
      }
    }),
  );
}

// BullMQ's pattern: an "addJob" script (EVALSHA, EVAL on NOSCRIPT), workers blocked in
// BRPOPLPUSH / BLMOVE moving job ids from wait to active, a "moveToCompleted" script, and
// completion events published to a subscriber.
async function queue() {
  const admin = connect();
  await admin.del("bull:q:wait", "bull:q:active", "bull:q:completed", "bull:q:id");
  await admin.script("FLUSH"); // the first EVALSHA answers NOSCRIPT, and ioredis falls back
  const producer = connect();
  producer.defineCommand("addJob", {
    numberOfKeys: 2,
    lua: `local id = redis.call('INCR', KEYS[2])
          redis.call('HSET', KEYS[1] .. ':' .. id, 'data', 'payload-' .. id, 'tag', ARGV[1], 'state', 'wait')
          redis.call('LPUSH', KEYS[1] .. ':wait', id)
          return {id, ARGV[1]}`,
  });
  const events = connect();
  const completed = new Map();
  let allDone;
  const finished = new Promise((res) => (allDone = res));
  events.on("message", (channel, message) => {
    if (channel !== "bull:q:events") fail(`message on ${channel}`);
    const { id, result } = JSON.parse(message);
    if (completed.has(id)) fail(`job ${id} completed twice`);
    completed.set(id, result);
    if (completed.size === JOBS) allDone();
  });
  eq(await events.subscribe("bull:q:events"), 1, "SUBSCRIBE count");

  let taken = 0;
  const workers = Array.from({ length: WORKERS }, async (_, w) => {
    const blocking = connect();
    const r = connect();
    r.defineCommand("moveToCompleted", {
      numberOfKeys: 1,
      lua: `redis.call('LREM', KEYS[1] .. ':active', 1, ARGV[1])
            redis.call('HSET', KEYS[1] .. ':' .. ARGV[1], 'state', 'completed', 'result', ARGV[2])
            redis.call('ZADD', KEYS[1] .. ':completed', ARGV[1], ARGV[1])
            redis.call('PUBLISH', KEYS[1] .. ':events', cjson.encode({id = ARGV[1], result = ARGV[2]}))
            return 1`,
    });
    while (taken < JOBS) {
      // BullMQ's own blocking move: BRPOPLPUSH on odd workers, BLMOVE on even ones.
      const id =
        w % 2
          ? await blocking.brpoplpush("bull:q:wait", "bull:q:active", 1)
          : await blocking.blmove("bull:q:wait", "bull:q:active", "RIGHT", "LEFT", 1);
      if (id === null) continue; // timed out: block again
      taken++;
      const data = await r.hget(`bull:q:${id}`, "data");
      if (data !== `payload-${id}`) fail(`job ${id} has data ${data}`);
      eq(await r.moveToCompleted("bull:q", id, `done-${id}`), 1, "moveToCompleted");
    }
  });
  // Jobs are added once every worker is blocked.
  const until = Date.now() + 10_000;
  for (;;) {
    const info = await admin.info("clients");
    if (Number(/blocked_clients:(\d+)/.exec(info)[1]) >= WORKERS) break;
    if (Date.now() > until) fail("workers not blocked");
    await new Promise((res) => setTimeout(res, 10));
  }
  const ids = await Promise.all(
    Array.from({ length: JOBS }, async (_, k) => {
      // Each call's reply carries the tag it sent: a reply given to another call never matches.
      const [id, tag] = await producer.addJob("bull:q", "bull:q:id", `tag-${k}`);
      eq(tag, `tag-${k}`, "addJob reply");
      return id;
    }),
  );
  eq(new Set(ids).size, JOBS, "distinct job ids");
  await finished;
  await Promise.all(workers);
  for (let id = 1; id <= JOBS; id++) {
    if (completed.get(String(id)) !== `done-${id}`) fail(`job ${id}: ${completed.get(String(id))}`);
  }
  eq(await admin.llen("bull:q:active"), 0, "active jobs left");
  eq(await admin.zcard("bull:q:completed"), JOBS, "completed jobs");
  eq(await admin.hget("bull:q:7", "state"), "completed", "job 7 state");
}

// MULTI/EXEC, WATCH aborted by another client's write, pub/sub with patterns.
async function transactionsAndPubsub() {
  const r = connect();
  const other = connect();
  eq(await r.multi().set("js:tx", "1").incr("js:tx").get("js:tx").echo("tx").exec(), [
    [null, "OK"],
    [null, 2],
    [null, "2"],
    [null, "tx"],
  ], "MULTI/EXEC");
  await r.watch("js:tx");
  await other.set("js:tx", "changed");
  eq(await r.multi().set("js:tx", "mine").exec(), null, "EXEC after a WATCHed key changed");
  eq(await other.get("js:tx"), "changed", "the aborted transaction did not run");

  const sub = connect();
  const got = [];
  sub.on("pmessage", (pattern, channel, message) => got.push(`${pattern}|${channel}|${message}`));
  eq(await sub.psubscribe("js:alerts:*"), 1, "PSUBSCRIBE count");
  for (let k = 0; k < 50; k++) eq(await other.publish(`js:alerts:${k}`, `a${k}`), 1, "PUBLISH count");
  const until = Date.now() + 10_000;
  while (got.length < 50 && Date.now() < until) await new Promise((res) => setTimeout(res, 10));
  eq(got, Array.from({ length: 50 }, (_, k) => `js:alerts:*|js:alerts:${k}|a${k}`), "pmessages");
  await sub.punsubscribe();
  eq(await other.publish("js:alerts:late", "x"), 0, "PUBLISH after PUNSUBSCRIBE");
}

(async () => {
  const t0 = Date.now();
  for (const step of [pipelines, queue, transactionsAndPubsub]) {
    await step();
    console.log(`${step.name}: ok (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  }
  await Promise.all(open.map((r) => r.quit().catch(() => r.disconnect())));
  const version = require(`${lib}/package.json`).version;
  console.log(`${lib} ${version}, protocol ${protocol ?? "default"}: ok`);
  process.exit(0);
})().catch((e) => fail(e.stack || String(e)));
